#!/usr/bin/env bash
# Integration tests of the benchmark binaries' shared command line and of
# tools/update_readme_demo.sh (built by make; this script builds nothing):
#  1. bench_bounds, bench_engine and bench_data take --threads (and reject a
#     negative count naming the flag); bench_data takes --seconds and
#     --device like the others; bench_bounds takes train's lowercase network
#     names and still the uppercase ones; --gap-to prints each line's gap to
#     a reference relaxation (alpha-CROWN never above CROWN) and only in the
#     certify modes;
#  2. the README updater puts a `make run` result paragraph between the
#     demo-result markers of a README, leaves the rest alone, and refuses a
#     README without the markers.
set -uo pipefail
cd "$(dirname "$0")/../.."
for b in build/bin/bench_bounds build/bin/bench_engine build/bin/bench_data; do
  [ -x "$b" ] || { echo "[tools_cli] $b is missing: run make first"; exit 1; }
done
source tests/cli/lib/common.sh  # $tmp, ok, bad, $failures, fashion_mnist_dir

echo "== benchmarks: --threads, --device, lowercase networks"
for nets in fc FC; do
  out=$(build/bin/bench_bounds --nets "$nets" --relaxations box --runs 1 --threads 1 --device cpu 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && grep -q "^fc  *50  box" <<<"$out" && grep -q "^backend: .*1 OpenMP threads" <<<"$out"; then
    ok "bench_bounds --nets $nets --threads 1"
  else
    bad "bench_bounds --nets $nets: exit $rc: $out"
  fi
done
out=$(build/bin/bench_bounds --nets mlp --relaxations box --runs 1 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF "unknown net 'mlp' (expected fc, conv, conv+, fc-small)" <<<"$out"; then ok "bench_bounds --nets mlp -> exit $rc"
else bad "bench_bounds --nets mlp: exit $rc: $out"; fi
# --gap-to: the reference's line first with gap 0; alpha-CROWN starts from
# CROWN's slopes and keeps each row's best, so it is never above CROWN (gap <= 0).
out=$(build/bin/bench_bounds --nets fc-small --batch 2 --mode certify-fast --relaxations alpha-crown --alpha-steps 5 \
      --gap-to crown --runs 1 --threads 1 2>&1); rc=$?
reference=$(grep "^fc-small" <<<"$out" | head -1)
alpha_gap=$(awk '$3 == "alpha-crown/5" {print $9}' <<<"$out")
if [ "$rc" -eq 0 ] && grep -q "^fc-small  *2  crown .* 0.00e+00" <<<"$reference" && [ -n "$alpha_gap" ] &&
   awk -v g="$alpha_gap" 'BEGIN {exit !(g + 0 <= 0)}'; then ok "bench_bounds --gap-to crown: alpha-crown/5 gap $alpha_gap"
else bad "bench_bounds --gap-to crown: exit $rc, alpha-crown gap '$alpha_gap': $out"; fi
out=$(build/bin/bench_bounds --nets fc --gap-to triangle-lp --runs 1 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--gap-to compares certification bounds" <<<"$out"; then ok "bench_bounds --gap-to in train mode -> exit $rc"
else bad "bench_bounds --gap-to in train mode: exit $rc: $out"; fi
out=$(build/bin/bench_engine --seconds 0.01 --threads 1 --device cpu 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q "^backend: .*1 OpenMP threads" <<<"$out" && grep -q "GFLOP/s" <<<"$out"; then ok "bench_engine --threads 1"
else bad "bench_engine --threads 1: exit $rc: $out"; fi
out=$(CTE_DATA_DIR="$tmp/empty" build/bin/bench_data --seconds 0.1 --threads 1 --device cpu 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q "^bench_data: 1 OpenMP threads, up to 0.1 s per loader" <<<"$out" &&
   grep -q "^synthetic-3x32x32  batches/s" <<<"$out"; then ok "bench_data --seconds 0.1 --threads 1 --device cpu"
else bad "bench_data flags: exit $rc: $out"; fi
for b in bench_bounds bench_engine bench_data; do
  out=$(build/bin/$b --threads -1 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && grep -qF -- "--threads -1 must be >= 0" <<<"$out"; then ok "$b --threads -1 -> exit $rc"
  else bad "$b --threads -1: exit $rc: $out"; fi
done

echo "== the README's demo paragraph"
printf 'intro\n<!-- demo-result:begin -->\nold numbers 84.8%%\n<!-- demo-result:end -->\nrest\n' > "$tmp/README.md"
printf '`make run` ends at 84.60%% accuracy.\nsecond line\n' > "$tmp/result.md"
out=$(bash tools/update_readme_demo.sh "$tmp/result.md" "$tmp/README.md" 2>&1); rc=$?
want=$(printf 'intro\n<!-- demo-result:begin -->\n`make run` ends at 84.60%% accuracy.\nsecond line\n<!-- demo-result:end -->\nrest')
if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/README.md")" = "$want" ]; then ok "update_readme_demo.sh replaces the marked paragraph only"
else bad "update_readme_demo.sh: exit $rc: $out; README now: $(cat "$tmp/README.md")"; fi
printf 'no markers\n' > "$tmp/plain.md"
out=$(bash tools/update_readme_demo.sh "$tmp/result.md" "$tmp/plain.md" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF "needs exactly one" <<<"$out" && [ "$(cat "$tmp/plain.md")" = "no markers" ]; then
  ok "update_readme_demo.sh refuses a README without the markers"
else
  bad "update_readme_demo.sh without markers: exit $rc: $out"
fi
if [ "$(grep -cxF '<!-- demo-result:begin -->' README.md)" -eq 1 ] && [ "$(grep -cxF '<!-- demo-result:end -->' README.md)" -eq 1 ]; then
  ok "README.md has the demo-result markers"
else
  bad "README.md lacks the demo-result markers"
fi

if [ "$failures" -ne 0 ]; then echo "[tools_cli] $failures failure(s)"; exit 1; fi
echo "[tools_cli] all passed"
