#!/usr/bin/env bash
# `make run`: the main job of the README. Certified training with Box (IBP)
# of the paper's CONV network on the real FashionMNIST (Debian's
# dataset-fashion-mnist), on the CPU, for a few epochs, then accuracy, PGD
# accuracy (100 steps of 0.01) and Box-certified accuracy at eps 0.1 on the
# first 1000 test images. Sized to finish within 10 minutes on a 2-core CPU.
#
# Knobs (environment): EPOCHS (default 12), THREADS (OpenMP/BLAS threads,
# default 1), TEST_SUBSET (1000), OUT (runs/demo-fashion-mnist-conv-box).
# One thread by default: on a 2-core machine that also runs anything else,
# two OpenMP threads spin at every barrier while the other is descheduled and
# ran up to 15x slower than one (measured here). One thread does an epoch of
# 60,000 images in about 8 s (12 epochs + evaluation: about 1.5 minutes);
# THREADS=2 is about 1.7x faster, but only on an idle machine
# (OMP_WAIT_POLICY=passive limits the damage if it is not idle after all).
# Extra arguments are passed to build/bin/train (they override the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."

TRAIN=build/bin/train
[ -x "$TRAIN" ] || { echo "[demo] $TRAIN is missing: run make"; exit 1; }

data_dir=""
for d in "${CTE_DATA_DIR:-/nonexistent}/fashion-mnist" data/fashion-mnist /usr/share/datasets/fashion-mnist; do
  if ls "$d"/train-images-idx3-ubyte* >/dev/null 2>&1; then data_dir=$d; break; fi
done
if [ -z "$data_dir" ]; then
  echo "[demo] FashionMNIST was not found (looked in \$CTE_DATA_DIR/fashion-mnist, data/fashion-mnist and"
  echo "[demo] /usr/share/datasets/fashion-mnist). Install Debian's package with: make deps"
  echo "[demo] (or: sudo apt-get install dataset-fashion-mnist), or put the four IDX files in data/fashion-mnist."
  exit 1
fi

EPOCHS=${EPOCHS:-12}
THREADS=${THREADS:-1}
TEST_SUBSET=${TEST_SUBSET:-1000}
OUT=${OUT:-runs/demo-fashion-mnist-conv-box}
rampup=$(( EPOCHS / 2 ))
last=$(( EPOCHS * 5 / 6 ))  # learning rate x0.1 for the last sixth

echo "[demo] Box certified training of CONV on FashionMNIST ($data_dir): $EPOCHS epochs (ramp-up $rampup),"
echo "[demo] eps 0.1, then accuracy, PGD accuracy and certified accuracy on the first $TEST_SUBSET test images"
rm -rf "$OUT"
start=$(date +%s)
mkdir -p "$OUT"
log="$OUT/train.log"
"$TRAIN" --dataset fashion-mnist --data-dir "$data_dir" --net conv --method box \
  --epochs "$EPOCHS" --warmup 0 --rampup "$rampup" --eps-train 0.1 --eps-test 0.1 \
  --kappa-start 1 --kappa-end 0.5 --l1 5e-6 --lr 5e-4 --milestones "$last" \
  --batch-size 100 --pgd-steps 100 --pgd-step-size 0.01 --certify-with box \
  --test-subset "$TEST_SUBSET" --threads "$THREADS" --device cpu --seed 0 --out "$OUT" "$@" | tee "$log"
seconds=$(( $(date +%s) - start ))

# The README's demo paragraph, from this run's own [result] lines: the README
# quotes it through `make readme-demo` (tools/update_readme_demo.sh), never retyped.
result() { awk -v k="$1" 'index($0, "[result] " k) == 1 {for (i = 1; i <= NF; ++i) if ($i ~ /%$/) {print $i; exit}}' "$log"; }
accuracy=$(result "accuracy"); pgd=$(result "PGD accuracy"); certified=$(result "certified (box)")
n=$(awk '/^\[result\] [0-9]+ test images/ {print $2; exit}' "$log")
if [ -z "$accuracy" ] || [ -z "$pgd" ] || [ -z "$certified" ] || [ -z "$n" ]; then
  echo "[demo] no [result] lines in $log"
  exit 1
fi
{
  echo "\`make run\` (measured $(date -u +%F), $THREADS thread(s) of a $(nproc)-core CPU: $seconds s for"
  echo "$EPOCHS epochs of 60,000 images and the evaluation) ends at $accuracy accuracy, $pgd PGD"
  echo "accuracy and $certified Box-certified accuracy (sound bounds) at eps 0.1 on the first $n test images."
} > "$OUT/demo_result.md"
echo "[demo] finished in $seconds s; metrics in $OUT/metrics.jsonl; the README's paragraph in" \
     "$OUT/demo_result.md (make readme-demo puts it into README.md)"
echo "[demo] re-certify with: build/bin/certify eval --checkpoint $OUT --relaxations box,crown-ibp --eps 0.05,0.1"
