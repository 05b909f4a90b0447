"""docs/config.md, made from config/schema.yaml: every key with its type, default and
description. ``python -m yaware.workflow.config_doc`` rewrites the page; a test fails when
the page is stale or a key has no description."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from yaware.io import write_atomic

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config" / "schema.yaml"
PAGE = ROOT / "docs" / "config.md"

HEADER = """# Configuration keys

Made from `config/schema.yaml` by `python -m yaware.workflow.config_doc`; do not edit by
hand. Every key has its default in the schema, so a config sets only what it changes;
an unknown key is an error. `config/config.yaml` is the 2-core default, `config/paper.yaml`
the paper's setup. `<name>` stands for a name you choose (a cohort's, a model's).
"""


def _resolved(node: dict, defs: dict) -> dict:
    """``node`` with its ``$ref`` into ``$defs`` merged in (its own keys win)."""
    if "$ref" not in node:
        return node
    target = defs[node["$ref"].rsplit("/", 1)[-1]]
    return {**_resolved(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}


def _type(node: dict) -> str:
    if "enum" in node:
        return "one of " + ", ".join("null" if v is None else str(v) for v in node["enum"])
    kind = node.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and isinstance(node.get("items"), dict):
        inner = _type(node["items"])
        kinds = [f"list of {inner or 'values'}" if k == "array" else k for k in kinds]
    if "object" in kinds and isinstance(node.get("additionalProperties"), dict):
        kinds = ["mapping by name" if k == "object" else k for k in kinds]
    return " or ".join(k for k in kinds if k)


def _default(node: dict, required: bool) -> str:
    if "default" in node:
        return json.dumps(node["default"])
    return "required" if required else "unset"


def keys(schema: dict) -> Iterator[tuple[str, dict, bool]]:
    """Every key of the schema, depth first: (dotted name, its schema, whether required)."""
    defs = schema.get("$defs", {})

    def walk(node: dict, prefix: str) -> Iterator[tuple[str, dict, bool]]:
        node = _resolved(node, defs)
        required = set(node.get("required", []))
        defaults = node.get("default") if isinstance(node.get("default"), dict) else {}
        for name, child in node.get("properties", {}).items():
            child = _resolved(child, defs)
            if "default" not in child and name in defaults:  # set by the section's default
                child = {**child, "default": defaults[name]}
            yield prefix + name, child, name in required
            yield from walk(child, f"{prefix}{name}.")
        named = node.get("additionalProperties")
        if isinstance(named, dict) and "properties" in _resolved(named, defs):
            yield from walk(named, f"{prefix}<name>.")

    yield from walk(schema, "")


def undescribed(schema: dict) -> list[str]:
    return [name for name, node, _ in keys(schema) if not node.get("description")]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def config_reference(schema: dict) -> str:
    """The page: one table per top-level section."""
    lines = [HEADER]
    section = None
    for name, node, required in keys(schema):
        top = name.split(".")[0]
        if top != section:
            section = top
            lines += ["", f"## `{top}`", "", _cell(node.get("description", "")), ""]
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
        cells = [_type(node), _default(node, required), node.get("description", "")]
        escaped = [_cell(c).replace("<", "&lt;").replace(">", "&gt;") for c in cells]
        lines.append("| " + " | ".join([f"`{name}`", *escaped]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or [str(PAGE)])[0])
    text = config_reference(yaml.safe_load(SCHEMA.read_text()))
    write_atomic(target, lambda handle: handle.write(text.encode()))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
