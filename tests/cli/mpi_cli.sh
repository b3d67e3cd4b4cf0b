#!/usr/bin/env bash
# Integration tests of `mpirun -np 2 build/bin/train` (train/distributed.h)
# on a tiny FashionMNIST run (fc-small, 300 images, batch 64: the last batch
# of 44 splits 22/22, the full ones 32/32):
#  1. N = 2 prints the results once, writes one run folder, and is
#     bit-identical run to run (the trainer's fnv1a64 of the weights);
#  2. N = 2 equals N = 1 up to float summation order: every weight within
#     1e-5 (Adam moves a weight by at most lr = 5e-4 a step, 10 steps; rounding
#     differences stay near 1e-6) and the same training loss to 1e-5
#     relative. --l1 makes the data term's normalisation matter (Adam alone
#     would not see a gradient scaled by N);
#  3. --resume under MPI: 1 epoch at N = 2 then --resume at N = 2 equals the
#     2-epoch N = 2 run bit for bit; the same checkpoint resumed at N = 1
#     lands within the tolerance of the N = 1 run;
#  4. certify eval under mpirun -np 2 prints exactly what one process prints;
#     the other certify commands are refused under mpirun.
# Skipped (exit 0) without mpirun or FashionMNIST.
set -uo pipefail
cd "$(dirname "$0")/../.."
TRAIN=build/bin/train
CERTIFY=build/bin/certify
if ! command -v mpirun >/dev/null; then
  echo "[mpi_cli] mpirun is not installed (make deps installs openmpi-bin): skipping"
  exit 0
fi
source tests/cli/lib/common.sh  # $tmp, ok, bad, $failures, fashion_mnist_dir
fm=$(fashion_mnist_dir)
if [ -z "$fm" ]; then
  echo "[mpi_cli] FashionMNIST is not installed (make deps installs dataset-fashion-mnist): skipping"
  exit 0
fi
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
weights_hash() { grep -o 'weights fnv1a64 [0-9a-f]*' <<<"$1" | awk '{print $3}'; }
# close A B: every weight of A's network.json within 1e-5 of B's, and the
# epochs' training losses within 1e-5 relative.
close() {
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, sys
def weights(run):
    out = []
    def walk(x):
        if isinstance(x, list):
            for v in x: walk(v)
        else:
            out.append(float(x))
    for layer in json.load(open(run + "/network.json"))["layers"]:
        for key in ("W", "b"):
            if key in layer: walk(layer[key])
    return out
def losses(run):
    return [json.loads(l)["train_loss"] for l in open(run + "/metrics.jsonl") if "train_loss" in l]
a, b = weights(sys.argv[1]), weights(sys.argv[2])
worst = max(abs(x - y) for x, y in zip(a, b)) if a and len(a) == len(b) else float("inf")
la, lb = losses(sys.argv[1]), losses(sys.argv[2])
loss_ok = len(la) == len(lb) > 0 and all(abs(x - y) <= 1e-5 * abs(y) for x, y in zip(la, lb))
print(f"largest weight difference {worst:.3g}, losses {la} vs {lb}")
sys.exit(0 if worst <= 1e-5 and loss_ok else 1)
EOF
}

common=(--dataset fashion-mnist --data-dir "$fm" --net fc-small --method crown-ibp --train-subset 300
        --test-subset 100 --batch-size 64 --rampup 1 --eps-train 0.1 --eps-test 0.1 --pgd-steps 5 --milestones 5
        --l1 1e-4 --threads 1 --seed 5 --quiet)

echo "== N = 2 against N = 1"
out_1=$("$TRAIN" "${common[@]}" --epochs 2 --out "$tmp/n1" 2>&1)
out_2=$("${mpi[@]}" "$TRAIN" "${common[@]}" --epochs 2 --out "$tmp/n2" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ "$(grep -c '\[result\] accuracy' <<<"$out_2")" -eq 1 ] &&
   [ "$(grep -c '^backend: ' <<<"$out_2")" -eq 1 ] && grep -q "MPI, Open MPI.*2 ranks" <<<"$out_2" &&
   [ "$(wc -l <"$tmp/n2/metrics.jsonl")" -eq 3 ]; then
  ok "mpirun -np 2 train: one banner naming MPI, one result, one metrics file of 2 epochs + final"
else
  bad "mpirun -np 2 train: exit $rc: $out_2"
fi
if why=$(close "$tmp/n2" "$tmp/n1"); then ok "N = 2 equals N = 1 up to summation order: $why"
else bad "N = 2 differs from N = 1: $why"; fi

out_2b=$("${mpi[@]}" "$TRAIN" "${common[@]}" --epochs 2 --out "$tmp/n2b" 2>&1)
hash_2=$(weights_hash "$out_2")
if [ -n "$hash_2" ] && [ "$hash_2" = "$(weights_hash "$out_2b")" ]; then ok "N = 2 twice: bit-identical ($hash_2)"
else bad "N = 2 twice: $hash_2 vs $(weights_hash "$out_2b")"; fi

echo "== --resume under MPI, with any N"
"${mpi[@]}" "$TRAIN" "${common[@]}" --epochs 1 --out "$tmp/r2" >/dev/null 2>&1
cp -r "$tmp/r2" "$tmp/r1"
out=$("${mpi[@]}" "$TRAIN" "${common[@]}" --epochs 2 --out "$tmp/r2" --resume 2>&1)
if [ "$(weights_hash "$out")" = "$hash_2" ]; then ok "1 epoch at N = 2, --resume at N = 2: the uninterrupted run's weights"
else bad "resume at N = 2: $(weights_hash "$out") vs $hash_2: $out"; fi
"$TRAIN" "${common[@]}" --epochs 2 --out "$tmp/r1" --resume >/dev/null 2>&1
if why=$(close "$tmp/r1" "$tmp/n1"); then ok "1 epoch at N = 2, --resume at N = 1: within tolerance of N = 1: $why"
else bad "resume at N = 1 after N = 2: $why"; fi

echo "== certify under MPI"
eval_1=$("$CERTIFY" eval --checkpoint "$tmp/n1" --threads 1 2>/dev/null)
eval_2=$("${mpi[@]}" "$CERTIFY" eval --checkpoint "$tmp/n1" --threads 1 2>/dev/null); rc=$?
# The lines without timings must agree exactly.
strip() { sed -E 's/[0-9.]+ ?s\b//g; s/[0-9.]+ images\/s//g' <<<"$1"; }
if [ "$rc" -eq 0 ] && [ -n "$eval_1" ] && [ "$(strip "$eval_1")" = "$(strip "$eval_2")" ]; then
  ok "mpirun -np 2 certify eval prints what one process prints"
else
  bad "certify eval under MPI: exit $rc:"$'\n'"$eval_2"$'\n'"one process:"$'\n'"$eval_1"
fi
out=$("${mpi[@]}" "$CERTIFY" curve --checkpoint "$tmp/n1" --out "$tmp/curve" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -q "under mpirun only 'certify eval' runs distributed" <<<"$out"; then
  ok "certify curve under mpirun is refused with what to do"
else
  bad "certify curve under mpirun: exit $rc: $out"
fi

echo
if [ "$failures" -eq 0 ]; then echo "[mpi_cli] all passed"; else echo "[mpi_cli] $failures FAILED"; fi
[ "$failures" -eq 0 ]
