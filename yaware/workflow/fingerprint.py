"""The yaware source files a workflow script runs, found from its imports, and their hash.

Snakemake reruns a rule when its script changes, not when the package code it calls does.
The workflow passes this fingerprint as a rule parameter, so editing any module a step
imports (directly, through another module, or inside a function) reruns that step and
what follows, and nothing else. Imports are read from the source (``ast``), never run, so
planning stays fast and imports no torch.
"""

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_NAME = "yaware"

# Modules that only word errors and set up logs: editing them changes no result.
NO_RESULT_MODULES = frozenset({"yaware.errors", "yaware.workflow.logged"})


def module_file(module: str, package: Path) -> Path | None:
    """The source file of a ``yaware`` module or package under the folder ``package``, None
    if there is none."""
    parts = module.split(".")
    if parts[0] != PACKAGE_NAME:
        return None
    base = package.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages too."""
    parts = module.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


@cache
def imported_modules(path: Path, package: Path) -> frozenset[str]:
    """The ``yaware`` modules a source file imports anywhere in it (not transitively)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, path, package)
            if source is None:
                continue
            # `from yaware.losses import kernels` imports the submodule kernels.
            names = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE_NAME:
                found.update(m for m in _with_parents(name) if module_file(m, package) is not None)
    return frozenset(found)


def _absolute(node: ast.ImportFrom, path: Path, package: Path) -> str | None:
    """The absolute module name of a ``from ... import``; relative ones (``from .x``) are
    resolved from ``path``'s place in ``package``. None if it leaves the package."""
    if node.level == 0:
        return node.module
    try:
        parts = [PACKAGE_NAME, *path.relative_to(package).with_suffix("").parts]
    except ValueError:  # a script outside the package: relative imports mean nothing here
        return None
    # Level 1 is the package the module is in: a package's __init__ is in itself.
    own_package = parts[:-1]
    base = own_package[: len(own_package) - (node.level - 1)]
    if not base:
        return None
    return ".".join(base + ([node.module] if node.module else []))


def module_closure(script: Path, package: Path) -> list[Path]:
    """The files of every ``yaware`` module ``script`` imports, transitively, from the
    package folder ``package``, sorted; the modules in NO_RESULT_MODULES are left out."""
    package = package.resolve()
    seen: set[str] = set()
    pending = list(imported_modules(script.resolve(), package))
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        source = module_file(module, package)
        if source is not None:
            pending.extend(imported_modules(source, package))
    files = {module_file(m, package) for m in seen - NO_RESULT_MODULES}
    return sorted(f for f in files if f is not None)


def code_fingerprint(script: Path, package: Path) -> str:
    """A short hash of the yaware source behind ``script`` (its imports, transitively)."""
    digest = hashlib.sha256()
    package = package.resolve()
    for source in module_closure(script, package):
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]
