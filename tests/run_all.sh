#!/usr/bin/env bash
# Runs every test suite (called by `make test` after the build):
#  1. the full doctest suite on the CPU and the emulated CUDA backend, under
#     AddressSanitizer + UndefinedBehaviorSanitizer;
#  2. the emulator and kernel-parity suites under ThreadSanitizer, whose CUDA
#     threads are real threads;
#  3. proofs that the sanitizers catch deliberately broken kernels (an
#     out-of-bounds write under ASan, a missing __syncthreads under TSan);
#  4. shell-level integration tests of the binaries (tests/cli/*.sh);
#     (suite 1 also replays every fuzz harness's saved regression and corpus
#     inputs: tests/fuzz/replay_test.cpp; `make fuzz` is where fuzzing runs);
#  5. on a machine with a GPU (or CTE_TEST_GPU=1): the suites on the real device;
#  6. where OpenMPI is installed: the MPI suite under `mpirun -np 2` (the
#     data-parallel trainer's own integration test is tests/cli/mpi_cli.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
failed=0
step() { echo; echo "==== $*"; }
# Each suite's wall time is printed, so a slow one shows in CI's log.
run() {
  local start=$SECONDS
  "$@" || { echo "FAILED: $*"; failed=$((failed + 1)); }
  echo "[run_all] $((SECONDS - start)) s: $*"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

step "unit and parity tests (CPU + emulated CUDA, ASan/UBSan)"
run build/test/tests

step "emulator and kernel parity under ThreadSanitizer"
# OpenBLAS's own worker threads (OpenMP ones, in the build we link) are
# invisible to TSan: keep the CPU GEMM single-threaded here.
run env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 build/test/tests_tsan -tc="emulator:*,parity:*"

step "the sanitizers catch deliberately broken kernels"
run bash tests/expect_sanitizer_failure.sh build/test/tests "emulator: deliberately out-of-bounds kernel" "heap-buffer-overflow"
run bash tests/expect_sanitizer_failure.sh build/test/tests_tsan "emulator: deliberately racy kernel (missing __syncthreads)" "data race"

step "command-line integration tests"
for t in tests/cli/*.sh; do
  [ -e "$t" ] || continue
  run bash "$t"
done

if [ -x build/test/tests_gpu ] && { [ "${CTE_TEST_GPU:-}" = 1 ] || nvidia-smi -L >/dev/null 2>&1; }; then
  step "the same suites on the real GPU"
  run env CTE_TEST_GPU=1 build/test/tests_gpu
else
  step "real-GPU suites skipped: no GPU on this machine (set CTE_TEST_GPU=1 to require one)"
fi

if [ -x build/test/tests_mpi ] && command -v mpirun >/dev/null; then
  step "the MPI suite on 2 ranks (data-parallel training and evaluation)"
  mpi=(mpirun --oversubscribe -np 2)
  [ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
  run "${mpi[@]}" build/test/tests_mpi
else
  step "MPI suite skipped: OpenMPI is not installed (make deps installs it)"
fi

echo
echo "[run_all] all suites: $SECONDS s"
if [ "$failed" -eq 0 ]; then
  echo "all test suites passed"
else
  echo "$failed test suite(s) FAILED"
fi
exit $(( failed > 0 ))
