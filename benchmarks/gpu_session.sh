#!/usr/bin/env bash
# The checks a session lent a GPU runs in one call: sections of the GPU benchmark (default:
# "engine_compile", pretrain() end to end with compile: true against the original's data
# path: one compilation of about 4 minutes on an H200, and "engine_compile_one_stream", the
# same without the side stream, compiled from inductor's cache), then the CUDA tests
# (about 90 s).
# "compile_pool0" (the whole compiled step with the stem's tail eager and all compiled: two
# compilations) needs about 8 minutes, "stem_pool" (the head only) about 2.
# Results go to the folder given first.
#
#   bash benchmarks/gpu_session.sh "$OUT" [section ...]
#
# It uses the machine's own python3 and torch; the repository is put on PYTHONPATH.
# GPU_BENCH_ARGS adds arguments to the benchmark (default "--long-scans 1536": each engine
# also runs a 1,536-scan epoch, to take the per-epoch cost apart from the per-scan rate; set
# it to "" to leave that out, or e.g. "--shape 32 40 32 --batch 2");
# GPU_BENCH_LIMIT (seconds, default 480) stops the benchmark so that the tests still run
# inside one device call (its sections are saved as they finish).
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT_FOLDER [section ...]}
shift
sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(engine_compile engine_compile_one_stream)
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# shellcheck disable=SC2086 # GPU_BENCH_ARGS is a list of words
timeout "${GPU_BENCH_LIMIT:-480}" python3 -m benchmarks.gpu_pretrain --out "$out/gpu.json" \
    --sections "${sections[@]}" ${GPU_BENCH_ARGS---long-scans 1536} 2>&1 |
    tee "$out/gpu-benchmark.log"
benchmark=${PIPESTATUS[0]}
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda-tests.log"
tests=${PIPESTATUS[0]}
echo "benchmark: exit $benchmark; cuda tests: exit $tests"
exit $((tests || benchmark))
