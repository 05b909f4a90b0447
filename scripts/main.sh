#!/usr/bin/env bash
# The project's main job on a fresh machine: set-up, then the whole workflow on the
# built-in synthetic cohorts (config/config.yaml) with 2 cores. Outputs land in results/.
# Extra arguments go to Snakemake (e.g. `bash scripts/main.sh --cores 8`, or a target).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/snakemake --cores 2 "$@"
