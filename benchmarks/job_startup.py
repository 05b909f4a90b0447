"""Start-up cost of the workflow's jobs: each workflow script's imports, in a fresh Python.

Every Snakemake job starts a new interpreter, so what a script imports is paid once per job.
The table gives, per script, the best of ``--repeats`` wall times of an interpreter that
runs the script's imports and exits, whether it loads torch, its number of jobs in the
default config, and the job-seconds that makes. Baselines from the same run: a bare
interpreter and ``import torch``; with ``--compare DIR``, the same scripts of another
checkout (e.g. ``git worktree add /tmp/before HEAD~1``).

    python -m benchmarks.job_startup [--repeats 5] [--compare DIR]
"""

import argparse
import ast
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, markdown_table

REPO = Path(__file__).resolve().parents[1]

REPORT_TORCH = "\nimport sys\nprint('torch' in sys.modules)"


def script_imports(script: Path) -> str:
    """The module-level import statements of a script (what runs before its first job line)."""
    tree = ast.parse(script.read_text())
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return ast.unparse(ast.Module(body=imports, type_ignores=[]))


def import_seconds(code: str, checkout: Path, repeats: int) -> tuple[float, bool]:
    """Best wall seconds of a fresh interpreter that runs ``code``, started from ``checkout``
    (so its ``yaware`` is the one imported), and whether torch was loaded."""
    best, torch_loaded = float("inf"), False
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code + REPORT_TORCH],
            capture_output=True,
            text=True,
            check=True,
            cwd=checkout,
        )
        best = min(best, time.perf_counter() - start)
        torch_loaded = done.stdout.strip() == "True"
    return best, torch_loaded


def default_job_counts(checkout: Path = REPO) -> dict[str, int]:
    """Jobs per rule of a checkout's default config, from a dry run's job stats."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config").mkdir()
        (Path(tmp) / "config" / "config.yaml").write_text(
            (checkout / "config" / "config.yaml").read_text()
        )
        command = [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"), "-d", tmp]
        done = subprocess.run([*command, "-n"], capture_output=True, text=True, check=True)
    stats = done.stdout.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}


def rule_scripts(checkout: Path = REPO) -> dict[str, str]:
    """Rule name -> the workflow script it runs, in a checkout."""
    scripts = {}
    for rules in (checkout / "rules").glob("*.smk"):
        text = rules.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.M | re.S):
            found = re.search(r"workflow_scripts/(\w+)\.py", body)
            if found:
                scripts[rule] = found.group(1)
    return scripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout to measure alongside")
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    bare, _ = import_seconds("pass", REPO, args.repeats)
    torch_alone, _ = import_seconds("import torch", REPO, args.repeats)
    counts = default_job_counts()
    header = ["script", "jobs (default)", "start-up s", "loads torch", "job-seconds"]
    mine = rule_scripts()
    theirs, their_counts = {}, {}
    if args.compare:  # its own rules and DAG: a rule may be new, gone or split in two
        header += ["compared: jobs", "compared: start-up s", "compared: job-seconds"]
        theirs, their_counts = rule_scripts(args.compare), default_job_counts(args.compare)
    rows, total, total_compared = [], 0.0, 0.0
    for rule in sorted(mine.keys() | theirs.keys()):
        row: list = [mine.get(rule) or theirs[rule]]
        if rule in mine:
            jobs = counts.get(rule, 0)
            seconds, torch_loaded = import_seconds(
                script_imports(REPO / "workflow_scripts" / f"{mine[rule]}.py"), REPO, args.repeats
            )
            row += [jobs, seconds, "yes" if torch_loaded else "no", seconds * jobs]
            total += seconds * jobs
        else:
            row += ["", "", "", ""]
        if rule in theirs:
            jobs = their_counts.get(rule, 0)
            other = args.compare / "workflow_scripts" / f"{theirs[rule]}.py"
            before, _ = import_seconds(script_imports(other), args.compare, args.repeats)
            row += [jobs, before, before * jobs]
            total_compared += before * jobs
        elif args.compare:
            row += ["", "", ""]
        rows.append(row)
    rows.append(["all jobs", sum(counts.get(r, 0) for r in mine), "", "", total])
    if args.compare:
        rows[-1] += [sum(their_counts.get(r, 0) for r in theirs), "", total_compared]
    print(markdown_table(header, rows))
    print(
        f"\nBaselines, same run: bare interpreter {bare:.3f} s, `import torch` {torch_alone:.3f} s."
    )
    if args.compare:
        print(
            f"Compared checkout: {args.compare}; ratio of job-seconds {total_compared / total:.2f}"
        )


if __name__ == "__main__":
    main()
