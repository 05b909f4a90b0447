"""The layout's promises, checked: docs made from their sources are not stale, every
config key is described, each rule has one thin script of its name, and no module or
function outgrows what a newcomer can read."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

from yaware.workflow.config_doc import PAGE, SCHEMA, config_reference, keys, undescribed
from yaware.workflow.rulegraph import README, mermaid, readme_block, rule_edges

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def test_every_config_key_is_described_and_docs_config_is_current():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert undescribed(schema) == []
    names = [name for name, _, _ in keys(schema)]
    # Keys of every level are listed: a section, a nested key, a key of a named entry.
    assert {"pretraining", "pretraining.methods.yaware.sigma", "cohorts.<name>.task"} <= set(names)
    assert PAGE.read_text() == config_reference(schema), (
        "docs/config.md is stale: run python -m yaware.workflow.config_doc"
    )


def test_an_undescribed_key_is_found():
    schema = {"properties": {"a": {"type": "object", "description": "x", "properties": {}}}}
    schema["properties"]["a"]["properties"]["b"] = {"type": "integer", "default": 1}
    assert undescribed(schema) == ["a.b"]


def test_the_readme_rule_graph_is_snakemakes():
    dot = subprocess.run(
        [SNAKEMAKE, "--rulegraph", "--quiet", "all", "--cores", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    edges = rule_edges(dot)
    rules = {rule for edge in edges for rule in edge}
    assert {"pretrain", "features", "linear_probe", "tables", "figure_auc"} <= rules
    assert ("pretrain", "features") in edges
    assert readme_block(README.read_text()) == mermaid(edges), (
        "the README's rule graph is stale: run python -m yaware.workflow.rulegraph"
    )


def _rules() -> dict[str, str]:
    """Each rule's name and its script, from the rules files."""
    found = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.M):
            script = re.search(r'script:\s*\n\s*"\.\./workflow_scripts/(\w+)\.py"', body)
            found[name] = script.group(1) if script else None
    return found


def test_each_rule_has_one_thin_script_of_its_name_that_makes_one_run_call():
    rules = _rules()
    scripted = {name: script for name, script in rules.items() if script}
    assert len(scripted) >= 18
    assert all(name == script for name, script in scripted.items()), scripted
    scripts = {p.stem for p in (REPO / "workflow_scripts").glob("*.py")}
    assert scripts == set(scripted), scripts ^ set(scripted)
    for name in scripted:
        text = (REPO / "workflow_scripts" / f"{name}.py").read_text()
        assert len(text.splitlines()) <= 30, name
        tree = ast.parse(text)
        defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{name} defines {[n.name for n in defined]}: logic lives in yaware"
        imported = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        assert f"run_{name}" in imported, name
        # Wildcards reach the code as params, never parsed from paths.
        assert "wildcards" not in text, name


MODULE_LINES, FUNCTION_LINES = 400, 65  # "about 60" for a function


def test_no_module_over_its_limit_and_no_long_function():
    long_functions = []
    for path in sorted((REPO / "yaware").rglob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= MODULE_LINES, f"{path}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.FunctionDef)
                and node.end_lineno - node.lineno >= FUNCTION_LINES
            ):
                long_functions.append(f"{path.name}:{node.name}")
    assert long_functions == []


def test_the_snakefile_and_common_rules_stay_short():
    assert len((REPO / "Snakefile").read_text().splitlines()) <= 40
    assert len((REPO / "rules" / "common.smk").read_text().splitlines()) <= 200
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
