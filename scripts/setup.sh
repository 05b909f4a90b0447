#!/usr/bin/env bash
# Creates .venv and installs the project into it. Idempotent: a second run only checks.
# torch is pinned to the 2.13.0 CPU build first, because an unpinned torch would pull a
# multi-GB CUDA build; a cluster user with their own CUDA torch can skip this script.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.yaware-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
