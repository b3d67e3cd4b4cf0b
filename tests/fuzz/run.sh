#!/usr/bin/env bash
# Runs the libFuzzer harnesses built by `make fuzz-build` (build/fuzz/bin/):
#   tests/fuzz/run.sh SECONDS [HARNESS...]   (default: every harness)
# For each harness: first every saved crash input of tests/fuzz/regressions/
# <harness>/ once (each must now pass), then SECONDS of fuzzing from the seed
# corpus tests/fuzz/corpus/<harness>/ (read-only here; new inputs go to
# build/fuzz/corpus/<harness>/). A crash leaves its input in
# build/fuzz/artifacts/ and fails the run. Used by `make fuzz` (60 s each) and
# `make test` (tests/run_all.sh, a few seconds each).
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for b in build/fuzz/bin/fuzz_*; do [ -x "$b" ] && harnesses+=("$(basename "$b")"); done
fi
[ ${#harnesses[@]} -gt 0 ] || { echo "[fuzz] no harnesses in build/fuzz/bin: run make fuzz-build"; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
mkdir -p build/fuzz/artifacts
for h in "${harnesses[@]}"; do
  bin=build/fuzz/bin/$h
  name=${h#fuzz_}
  [ -x "$bin" ] || { echo "[fuzz] $bin is missing"; failed=$((failed + 1)); continue; }
  regressions=(tests/fuzz/regressions/"$name"/*)
  if [ -e "${regressions[0]}" ]; then
    if "$bin" -runs=1 "${regressions[@]}" >"build/fuzz/$name.regressions.log" 2>&1; then
      echo "[fuzz] $name: ${#regressions[@]} regression input(s) pass"
    else
      echo "[fuzz] $name: a regression input fails again:"; tail -30 "build/fuzz/$name.regressions.log"
      failed=$((failed + 1))
    fi
  fi
  mkdir -p "build/fuzz/corpus/$name"
  # libmatio's Mat_VarReadInfo allocates whatever a variable header claims
  # (up to 2 GB seen; an open finding, inputs in tests/fuzz/open/svhn/):
  # such allocations are left untouched, so for svhn they may return null or
  # stay virtual instead of counting as findings; real memory use is still
  # capped by -rss_limit_mb.
  extra=()
  asan=$ASAN_OPTIONS
  if [ "$name" = svhn ]; then extra=(-malloc_limit_mb=1048576); asan="$ASAN_OPTIONS:allocator_may_return_null=1"; fi
  # -rss_limit_mb and -malloc_limit_mb: an input that makes a parser allocate
  # more than 2 GB is a finding (a header must not buy memory the file lacks).
  if ASAN_OPTIONS=$asan "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=2048 "${extra[@]}" -print_final_stats=1 \
       -artifact_prefix="build/fuzz/artifacts/$name-" "build/fuzz/corpus/$name" "tests/fuzz/corpus/$name" \
       >"build/fuzz/$name.log" 2>&1; then
    echo "[fuzz] $name: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "build/fuzz/$name.log" | awk '{print $2}') runs in ${seconds} s, no crash (cov $(grep -o 'cov: [0-9]*' "build/fuzz/$name.log" | tail -1 | awk '{print $2}'))"
  else
    echo "[fuzz] $name: FOUND A CRASH (log build/fuzz/$name.log):"; grep -A25 "ERROR\|==ERROR\|runtime error\|deadly signal\|uncaught" "build/fuzz/$name.log" | head -40
    failed=$((failed + 1))
  fi
done
exit $(( failed > 0 ))
