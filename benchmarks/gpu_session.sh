#!/usr/bin/env bash
# The checks a session lent a GPU runs in one call: the CUDA tests, then sections of the GPU
# benchmark (default: "stem_pool", the network's head eager, compiled, and compiled with the
# stem's max-pool left eager; about 3 minutes on an H200 with the tests). "stem compile_profile"
# (the eager step with each stem, the compiled step with its profile) takes 6-7 minutes.
# Results go to the folder given first.
#
#   bash benchmarks/gpu_session.sh "$OUT" [section ...]
#
# It uses the machine's own python3 and torch; the repository is put on PYTHONPATH.
# GPU_BENCH_ARGS adds arguments to the benchmark (e.g. "--shape 32 40 32 --batch 2").
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT_FOLDER [section ...]}
shift
sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(stem_pool)
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda-tests.log"
tests=${PIPESTATUS[0]}
# shellcheck disable=SC2086 # GPU_BENCH_ARGS is a list of words
python3 -m benchmarks.gpu_pretrain --out "$out/gpu.json" --sections "${sections[@]}" \
    ${GPU_BENCH_ARGS:-} 2>&1 |
    tee "$out/gpu-benchmark.log"
benchmark=${PIPESTATUS[0]}
echo "cuda tests: exit $tests; benchmark: exit $benchmark"
exit $((tests || benchmark))
