"""Which package code a workflow step depends on, and which steps start without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from yaware.workflow.fingerprint import code_fingerprint, module_closure

REPO = Path(__file__).resolve().parents[1]

PACKAGE_FILES = {
    "__init__.py": "",
    "a.py": "from yaware import b\n",
    "b.py": "def late():\n    import yaware.c.d\n",  # an import inside a function counts
    "c/__init__.py": "from .h import NAME\n",  # level 1 in an __init__: the package itself
    "c/d.py": "from yaware.errors import Failure\nfrom ..f import VALUE\nfrom . import g\n",
    "errors.py": "import yaware.e\nclass Failure(Exception): ...\n",
    "e.py": "VALUE = 1\n",
    "f.py": "VALUE = 2\n",  # reached by a relative import only
    "c/g.py": "",
    "c/h.py": "NAME = 'h'\n",
    "unused.py": "import yaware.a\n",
}


@pytest.fixture
def package(tmp_path) -> Path:
    root = tmp_path / "yaware"
    for name, text in PACKAGE_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "step.py").write_text("import numpy\nfrom yaware.a import something\n")
    return root


def test_the_closure_follows_every_import_form_and_leaves_out_message_modules(package):
    found = {
        p.relative_to(package.resolve()).as_posix()
        for p in module_closure(package.parent / "step.py", package)
    }
    # errors.py only words failures: left out, but what it imports is followed (e.py).
    assert found == {
        "__init__.py",
        "a.py",
        "b.py",
        "c/__init__.py",
        "c/d.py",
        "c/g.py",
        "c/h.py",
        "e.py",
        "f.py",
    }


@pytest.mark.parametrize(
    ("edited", "changes"),
    [("c/d.py", True), ("e.py", True), ("f.py", True), ("errors.py", False), ("unused.py", False)],
)
def test_the_fingerprint_changes_with_the_code_a_step_runs_only(tmp_path, edited, changes):
    fingerprints = []
    for version in ("before", "after"):
        root = tmp_path / version / "yaware"
        for name, text in PACKAGE_FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            edit = "\n# edited\n" if version == "after" and name == edited else ""
            (root / name).write_text(text + edit)
        (root.parent / "step.py").write_text("from yaware.a import something\n")
        fingerprints.append(code_fingerprint(root.parent / "step.py", root))
    assert (fingerprints[0] != fingerprints[1]) is changes


# Steps that neither train nor extract: they should not pay torch's import (about 1 s, and
# these are most of the workflow's jobs).
TORCH_FREE_STEPS = [
    "synth_cohort",
    "qc_metrics",
    "qc",
    "convert",
    "split",
    "draws",
    "linear_probe",
    "age_site_probe",
    "pca_fit",
    "pca_features",
    "tables",
    "figure_auc",
    "figure_sigma",
    "figure_umap",
]


@pytest.mark.parametrize("step", TORCH_FREE_STEPS)
def test_steps_that_do_not_train_start_without_torch(step):
    tree = ast.parse((REPO / "workflow_scripts" / f"{step}.py").read_text())
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert imports, step
    code = ast.unparse(ast.Module(body=imports, type_ignores=[]))
    probe = f"{code}\nimport sys\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False", f"{step} imports torch"


def _top_level_imports(text: str) -> list[str]:
    """The import statements at the top level of a rules file (not Python: Snakemake's
    own syntax around them), those in parentheses over several lines whole."""
    statements, open_statement = [], False
    for line in text.splitlines():
        if open_statement or line.startswith(("import ", "from ")):
            statements.append(line)
            open_statement = ")" not in line and ("(" in line or open_statement)
    return statements


def test_the_workflow_builds_its_dag_without_torch():
    """Every Snakemake invocation (and every Slurm job) parses the rules: a torch import
    there would add seconds to each."""
    lines = [
        line
        for source in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
        for line in _top_level_imports(source.read_text())
    ]
    assert any("yaware" in line for line in lines)
    probe = "\n".join([*lines, "import sys", "print('torch' in sys.modules)"])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False", "the rules import torch"
