"""The README's picture of the workflow: Snakemake's rule graph as a Mermaid flowchart.

``python -m yaware.workflow.rulegraph`` runs ``snakemake --rulegraph`` on the default
config and rewrites the block between the README's ``rulegraph`` markers; a test fails
when that block is stale. Snakemake numbers the rules in no fixed order, so edges are
written sorted by rule name.
"""

import re
import subprocess
import sys
from pathlib import Path

from yaware.io import write_atomic

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BEGIN, END = "<!-- rulegraph: begin -->", "<!-- rulegraph: end -->"
NODE = re.compile(r'^\s*(\d+)\[label = "([^"]+)"', re.M)
EDGE = re.compile(r"^\s*(\d+) -> (\d+)", re.M)


def rule_edges(dot: str) -> list[tuple[str, str]]:
    """(upstream rule, downstream rule) pairs of a ``snakemake --rulegraph`` output."""
    names = dict(NODE.findall(dot))
    return sorted({(names[a], names[b]) for a, b in EDGE.findall(dot)})


def mermaid(edges: list[tuple[str, str]]) -> str:
    lines = ["```mermaid", "flowchart LR"]
    lines += [f"    {a} --> {b}" for a, b in edges if b != "all"]
    return "\n".join([*lines, "```"])


def current_rulegraph(snakemake: str = "snakemake") -> str:
    """``snakemake --rulegraph`` of the default config, run in the repository."""
    command = [snakemake, "--rulegraph", "--quiet", "all", "--cores", "1"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def readme_block(readme: str) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[start:end].strip()


def main() -> None:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    block = mermaid(rule_edges(current_rulegraph(snakemake)))
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    updated = f"{text[:start]}\n{block}\n{text[end:]}"
    write_atomic(README, lambda handle: handle.write(updated.encode()))
    print(f"wrote the rule graph into {README}")


if __name__ == "__main__":
    main()
