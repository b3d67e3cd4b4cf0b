#!/usr/bin/env bash
# One prepared run for a lent GPU machine (minutes of device time, one call):
# build the nvcc binaries and the GPU test suite, run the suite, then the
# training benchmarks (eager, then as CUDA graphs) and the bound benchmarks on the device, each under its own time limit,
# everything logged and the JSON kept under OUT (default: $OUT, else
# build/gpu-session). Usage: bash tools/bench/gpu_session.sh [OUT]
#   GPU_SESSION_SECONDS  seconds per timed benchmark configuration (default 2)
#   GPU_SESSION_SKIP_TESTS=1  only the benchmarks
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-build/gpu-session}}"
mkdir -p "$out"
seconds="${GPU_SESSION_SECONDS:-2}"
log() { echo "[gpu-session] $(date +%H:%M:%S) $*" | tee -a "$out/session.log"; }
status=0

log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
log "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "build (nproc $(nproc))"
if ! make -j"$(nproc)" build/bin/bench_train build/bin/bench_bounds build/test/tests_gpu >"$out/build.log" 2>&1; then
  log "build failed: tail of $out/build.log"; tail -20 "$out/build.log"; exit 1
fi
if [ "${GPU_SESSION_SKIP_TESTS:-0}" != 1 ]; then
  log "tests_gpu (kernel parity and the CUDA suites on the real device)"
  CTE_TEST_GPU=1 timeout 240 build/test/tests_gpu >"$out/tests_gpu.log" 2>&1 || { status=1; log "tests_gpu FAILED"; }
  tail -3 "$out/tests_gpu.log"
fi
log "bench_train --device cuda: images/s and host round trips per step"
for batch in 100 1000; do
  timeout 150 build/bin/bench_train --device cuda --nets fc,conv --methods natural,box,crown-ibp,sabr \
    --batch "$batch" --seconds "$seconds" --json "$out/bench_train_b$batch.json" 2>&1 | tee -a "$out/bench_train.log" ||
    status=1
done
log "bench_train --device cuda --cuda-graph: the same steps replayed as CUDA graphs"
for batch in 100 1000; do
  timeout 150 build/bin/bench_train --device cuda --cuda-graph --nets fc,conv --methods natural,box,crown-ibp,sabr \
    --batch "$batch" --seconds "$seconds" --json "$out/bench_train_graph_b$batch.json" 2>&1 |
    tee -a "$out/bench_train_graph.log" || status=1
done
log "bench_train --device cuda, deepz and crown: sparse intermediate bounds, dense, and dense as CUDA graphs"
for mode in "--sparse-bounds on" "--sparse-bounds off" "--sparse-bounds off --cuda-graph"; do
  # shellcheck disable=SC2086  # mode holds several flags
  timeout 120 build/bin/bench_train --device cuda $mode --nets fc,conv --methods deepz,crown \
    --batch 100 --seconds "$seconds" 2>&1 | tee -a "$out/bench_train_backsub.log" || status=1
done
log "bench_bounds --device cuda"
timeout 150 build/bin/bench_bounds --device cuda --nets fc,conv --runs 3 2>&1 | tee "$out/bench_bounds.log" || status=1
log "done (status $status); files in $out"
exit $status
