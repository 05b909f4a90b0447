#!/usr/bin/env bash
# The project's test command: set-up, lint, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two worker processes (pytest-xdist), each test file whole on one of them so that its
# module fixtures (a whole workflow run, a Slurm cluster) run once: 27 % less wall time on
# 2 cores. TEST_WORKERS=0 runs every test in this one process.
workers=${TEST_WORKERS:-2}
parallel=()
[ "$workers" -gt 0 ] && parallel=(-n "$workers" --dist loadfile)
.venv/bin/python -m pytest "${parallel[@]}" "$@"
