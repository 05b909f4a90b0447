#!/usr/bin/env bash
# The project's main job on a fresh machine: set-up, a generated toy cohort, y-Aware
# pretraining of a small encoder on the CPU, then the representation of the validation
# scans. Outputs land in results/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
yaware=.venv/bin/yaware
$yaware toy-data --out results/demo/data --n 120 --shape 32 38 32 --seed 0
$yaware pretrain --config config/demo/pretrain.yaml --resume
$yaware extract --checkpoint results/demo/pretrain/best.pt \
    --data results/demo/data/val.npy --out results/demo/features/val.npy
echo
echo "Pretraining metrics (results/demo/pretrain/metrics.csv):"
cat results/demo/pretrain/metrics.csv
