#!/usr/bin/env bash
# Integration tests of build/bin/train and build/bin/certify (built by make;
# this script builds nothing). In a temp folder:
#  1. bad input (unknown method/net/dataset, negative eps, a ramp-up longer
#     than training, batch size 0, a missing data set, CUDA without a GPU, an
#     unknown flag or config key) stops with its message and a non-zero exit,
#     before creating the output folder;
#  2. a tiny real run on FashionMNIST writes metrics.jsonl, config.json and a
#     checkpoint and prints accuracy, PGD accuracy and certified accuracy;
#  3. --resume after a 1-epoch run, and after a run killed (SIGTERM) in its
#     second epoch, reaches the uninterrupted run's weights bit for bit
#     (the trainer prints an FNV-1a hash of the parameters);
#  4. certify eval on that checkpoint agrees with the trainer's evaluation
#     (and elides as the run trained), and --resume refuses a checkpoint of
#     another network;
#  5. certify curve, landscape and table on those checkpoints: their files,
#     values cross-checked against certify eval / certify bounds, bad flags;
#  6. a newcomer's conventions: schedule flags a method does not read are
#     ignored (natural) or refused with what to change; --resume takes the
#     run's own config.json, refuses experiment changes without --force and
#     says when a run is finished; banners on stderr (certify eval --json is
#     clean JSON on stdout); run folders as --checkpoint; export-inputs;
#     gnuplot scripts that run from their own folder; an aligned table;
#  7. --pca: a run on PCA coordinates and certify eval on its checkpoint agree;
#  8. --bound-memory-cap: the chunks a CROWN step keeps or recomputes, in
#     metrics.jsonl's bound_chunks, and the one-time hint.
# Parts 2-5 are skipped (exit 0) when FashionMNIST is not installed.
set -uo pipefail
cd "$(dirname "$0")/../.."
TRAIN=build/bin/train
CERTIFY=build/bin/certify
for b in "$TRAIN" "$CERTIFY"; do
  [ -x "$b" ] || { echo "[train_cli] $b is missing: run make first"; exit 1; }
done
source tests/cli/lib/common.sh  # $tmp, ok, bad, $failures, fashion_mnist_dir

# expect_error WANT ARGS...: train ARGS must fail, print WANT, and leave --out uncreated.
expect_error() {
  local want="$1"; shift
  local out rc
  local env=()
  while [[ "${1:-}" == env-* ]]; do env+=("${1#env-}"); shift; done  # env-NAME=VALUE: set for this run
  out=$(env "${env[@]}" "$TRAIN" --out "$tmp/never" --threads 1 "$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && grep -qF -- "$want" <<<"$out" && [ ! -e "$tmp/never" ]; then
    ok "train $* -> exit $rc: $want"
  else
    bad "train $* -> exit $rc, wanted '$want'; output: $out"
  fi
}

# weights_hash OUTPUT: the hash from the trainer's "[result] weights fnv1a64 H" line.
weights_hash() { grep -o 'weights fnv1a64 [0-9a-f]*' <<<"$1" | awk '{print $3}'; }

echo "== bad input"
expect_error "--method 'ibp++' is unknown" --method ibp++
expect_error "--net 'resnet' is unknown" --net resnet
expect_error "--net nope.json: no such network JSON file" --net nope.json
expect_error "--dataset 'imagenet' is unknown" --dataset imagenet
expect_error "--eps-train -0.1 must be a number >= 0" --eps-train -0.1
expect_error "--eps-test nan must be a number >= 0" --eps-test nan
expect_error "is longer than --epochs 10" --epochs 10 --warmup 5 --rampup 6
expect_error "--batch-size 0 must be at least 1" --batch-size 0
expect_error "--sparse-bounds 'some' is unknown; expected auto, on or off" --sparse-bounds some
expect_error "--early-stops refines the sparse intermediate bounds; it needs --sparse-bounds auto or on" \
  --method crown --early-stops --sparse-bounds off
expect_error "--net conv convolves images" --pca 16
expect_error "--pca -1 must be >= 0" --pca -1 --net fc
expect_error "[mnist] data set not found" --dataset mnist --data-dir "$tmp/no-such-dir"
expect_error "The following argument was not expected: --frobnicate" --frobnicate
echo '{"epoch": 3}' > "$tmp/bad.json"
expect_error "unknown key 'epoch'" --config "$tmp/bad.json"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "[device] CUDA was requested but no CUDA device is available" --device cuda
fi
out=$("$CERTIFY" eval --checkpoint "$tmp/none.ckpt" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF "cannot open" <<<"$out"; then ok "certify eval with a missing checkpoint -> exit $rc"; else bad "certify eval missing checkpoint: exit $rc: $out"; fi
# Slips a hostile user found (issue 11).
expect_error "--eps-train: an empty value is not a number" --eps-train ""
expect_error "--epochs: an empty value is not a number" --epochs ""
mkdir -p "$tmp/dir.json"
expect_error "$tmp/dir.json: is a directory, expected a file" --config "$tmp/dir.json"
expect_error "--net $tmp/dir.json is a directory, expected a network JSON file" --net "$tmp/dir.json"
expect_error "\$CTE_DATA_DIR=$tmp/no-data: $tmp/no-data/mnist" env-CTE_DATA_DIR="$tmp/no-data"
expect_error "\$CTE_DATA_DIR is set but empty" env-CTE_DATA_DIR=
expect_error "warning: --eps-test 2 is >= 1" --eps-test 2 --eps-train 2 --dataset mnist --data-dir "$tmp/no-such-dir"
certify_error() {
  local want="$1"; shift
  local out rc
  out=$("$CERTIFY" "$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && grep -qF -- "$want" <<<"$out"; then ok "certify $* -> exit $rc: $want"
  else bad "certify $* -> exit $rc, wanted '$want'; output: $out"; fi
}
certify_error "--pgd-step-size nan must be > 0" eval --checkpoint "$tmp/none.ckpt" --pgd --pgd-step-size nan
certify_error "--pgd-step-size -1 must be > 0" eval --checkpoint "$tmp/none.ckpt" --pgd --pgd-step-size -1
certify_error "--pgd-step-size inf must be > 0" eval --checkpoint "$tmp/none.ckpt" --pgd --pgd-step-size inf
certify_error "--pgd-restarts -2 must be >= 0" eval --checkpoint "$tmp/none.ckpt" --pgd --pgd-restarts -2
certify_error "--eps: an empty value is not a number" eval --checkpoint "$tmp/none.ckpt" --eps ""
certify_error "--bab-timeout 0 must be a number > 0" eval --checkpoint "$tmp/none.ckpt" --bab-timeout 0
certify_error "--test-subset: an empty value is not a number" curve --checkpoint "$tmp/none.ckpt" --eps-max 0.1 --test-subset ""
certify_error "--checkpoint $tmp/dir.json: is a directory without a checkpoint.ckpt" eval --checkpoint "$tmp/dir.json"
out=$("$CERTIFY" frob 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF "unknown command 'frob'" <<<"$out"; then ok "certify frob -> exit $rc"; else bad "certify frob: exit $rc: $out"; fi

# Method-aware schedule flags (no data needed: the data set is missing on purpose).
expect_error "[mnist] data set not found" --method natural --epochs 3 --dataset mnist --data-dir "$tmp/no-such-dir"
expect_error "give --rampup 3 or less, or --epochs 50 or more" --method box --epochs 3
# --print-config: the merged settings (a recipe, then a flag over it) as JSON, nothing trained or written.
out=$("$TRAIN" --recipe paradox-crown-ibp-conv-0.1 --epochs 150 --print-config --out "$tmp/printed" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ ! -e "$tmp/printed" ] && python3 -c 'import json,sys; c = json.loads(sys.argv[1]);
assert (c["method"], c["epochs"], c["eps-train"]) == ("crown-ibp", 150, 0.2), c' "$out" 2>/dev/null; then
  ok "--print-config: the recipe's method and eps_train with --epochs 150 over it, no output folder"
else
  bad "--print-config: exit $rc: $out"
fi
out=$("$TRAIN" --method box --epochs 2 --rampup 1 --milestones 20,27 --dataset mnist --data-dir "$tmp/no-such-dir" \
      --out "$tmp/never" 2>&1)
if grep -qF -- "--milestones 20,27 lie at or beyond --epochs 2" <<<"$out"; then ok "--milestones 20,27 with --epochs 2 gets a note"
else bad "--milestones beyond --epochs: no note: $out"; fi
help=$("$TRAIN" --help)
if ! grep -qF "{false}" <<<"$help" && grep -q -- "--no-elide" <<<"$help" && grep -q -- "--elide .*(default: on)" <<<"$help" &&
   grep -q -- "--force" <<<"$help"; then ok "train --help: --elide shown as default on, no {false}, --force"
else bad "train --help: $help"; fi
help=$("$CERTIFY" eval --help)
if grep -q -- "--batch-size INT=100" <<<"$help" && grep -q -- "--pgd-steps INT=100" <<<"$help" &&
   grep -q -- "--threads INT=0" <<<"$help"; then ok "certify eval --help shows the defaults"
else bad "certify eval --help: $help"; fi

fm=$(fashion_mnist_dir)
if [ -z "$fm" ]; then
  echo "[train_cli] FashionMNIST is not installed (make deps installs dataset-fashion-mnist): skipping the runs"
  [ "$failures" -eq 0 ]; exit $?
fi

common=(--dataset fashion-mnist --data-dir "$fm" --net conv --method box --train-subset 500 --test-subset 100
        --rampup 1 --eps-train 0.1 --eps-test 0.1 --pgd-steps 10 --milestones 2 --threads 1 --seed 5)

echo "== a tiny run"
# --eval-every 1 evaluates after epoch 1 too; the resumed runs below evaluate
# only at the end and must still match: evaluation leaves training alone.
out_a=$("$TRAIN" "${common[@]}" --epochs 2 --eval-every 1 --out "$tmp/a" 2>&1); rc=$?
hash_a=$(weights_hash "$out_a")
# (--milestones 2 with --epochs 2 earns a note before it, which is fine.)
if [ "$rc" -eq 0 ] && [ -n "$hash_a" ] && grep -q "^backend: " <<<"$(grep -v '^\[train\] note' <<<"$out_a" | head -1)" &&
   grep -q "\[result\] accuracy" <<<"$out_a" && grep -q "\[result\] PGD accuracy" <<<"$out_a" &&
   grep -q "\[result\] certified (box)" <<<"$out_a"; then
  ok "train 2 epochs: banner first, accuracy / PGD / certified lines, weights $hash_a"
else
  bad "tiny run: exit $rc: $out_a"
fi
if grep -q '^\[epoch 1/2\] .* eps [0-9.]* kappa [0-9.]* lr ' <<<"$out_a" && ! grep -q '^\[epoch.*beta' <<<"$out_a"; then
  ok "box epoch lines show eps and kappa, not beta"
else
  bad "box epoch lines: $(grep '^\[epoch' <<<"$out_a")"
fi
lines=$(wc -l < "$tmp/a/metrics.jsonl" 2>/dev/null || echo 0)
if [ -f "$tmp/a/checkpoint.ckpt" ] && [ -f "$tmp/a/config.json" ] && [ "$lines" -eq 3 ] &&
   grep -q '"final":true' "$tmp/a/metrics.jsonl" && grep '"epoch":1,' "$tmp/a/metrics.jsonl" | grep -q '"eval"'; then
  ok "checkpoint.ckpt, config.json and metrics.jsonl (2 epochs, the first with --eval-every 1, + final line)"
else
  bad "outputs of the tiny run: $(ls "$tmp/a" 2>&1); metrics lines $lines"
fi

if grep -qF "[fashion-mnist] data directory: $fm" <<<"$out_a"; then ok "the run names its data directory ($fm)"
else bad "the run does not name its data directory: $out_a"; fi
# A second trainer on a locked folder stops with the holder's pid (this shell
# holds the lock through fd 9; the pid in the file is what a trainer writes).
mkdir -p "$tmp/locked"
echo 4242 > "$tmp/locked/.lock"
exec 9<"$tmp/locked/.lock"
flock -n 9
out=$("$TRAIN" "${common[@]}" --epochs 1 --out "$tmp/locked" 9<&- 2>&1); rc=$?
exec 9<&-
if [ "$rc" -ne 0 ] && grep -qF "$tmp/locked is in use by another process (pid 4242" <<<"$out" && [ ! -e "$tmp/locked/metrics.jsonl" ]; then
  ok "train on a folder another process holds -> exit $rc, names pid 4242"
else
  bad "train on a locked folder: exit $rc: $out"
fi

echo "== resume after a 1-epoch run"
"$TRAIN" "${common[@]}" --epochs 1 --out "$tmp/b" >/dev/null 2>&1
# Only --epochs and --out: the rest comes from the run's config.json.
out_b=$("$TRAIN" --epochs 2 --out "$tmp/b" --resume 2>&1); rc=$?
hash_b=$(weights_hash "$out_b")
if [ "$rc" -eq 0 ] && [ "$hash_b" = "$hash_a" ] && grep -q "continuing with epoch 2 of 2" <<<"$out_b"; then
  ok "1 epoch + --resume --epochs 2 (every other flag from config.json) gives the uninterrupted weights ($hash_b)"
else
  bad "resume: exit $rc, hash '$hash_b' vs '$hash_a': $out_b"
fi
if [ "$(grep -c '"epoch":' "$tmp/b/metrics.jsonl")" -eq 3 ]; then ok "resumed metrics.jsonl has epochs 1, 2 and the final line"; else bad "resumed metrics: $(cat "$tmp/b/metrics.jsonl")"; fi

metrics_b=$(cat "$tmp/b/metrics.jsonl")
out=$("$TRAIN" --out "$tmp/b" --resume 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -qF "is finished: 2 of 2 epochs" <<<"$out" && [ "$(cat "$tmp/b/metrics.jsonl")" = "$metrics_b" ]; then
  ok "--resume of a finished run says so and changes nothing"
else
  bad "resume of a finished run: exit $rc: $out"
fi
out=$("$TRAIN" --out "$tmp/b" --resume --epochs 3 --method crown 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- '--method is "crown" now but "box"' <<<"$out" && grep -qF -- "add --force" <<<"$out" &&
   [ "$(cat "$tmp/b/metrics.jsonl")" = "$metrics_b" ]; then
  ok "--resume with another --method is refused (without --force)"
else
  bad "resume with another method: exit $rc: $out"
fi

echo "== resume after a kill"
long=("${common[@]}" --train-subset 1500 --epochs 3 --eval-every 0)
ref=$(weights_hash "$("$TRAIN" "${long[@]}" --out "$tmp/ref" 2>&1)")
"$TRAIN" "${long[@]}" --out "$tmp/k" >"$tmp/k.log" 2>&1 &
pid=$!
for _ in $(seq 1 1200); do
  [ -s "$tmp/k/metrics.jsonl" ] && [ -f "$tmp/k/checkpoint.ckpt" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"; rc=$?
if [ "$rc" -eq 143 ] && grep -q "interrupted (signal 15)" "$tmp/k.log" && grep -q "continue with the same command and --resume" "$tmp/k.log"; then
  ok "SIGTERM in epoch $(grep -c '"epoch":' "$tmp/k/metrics.jsonl")+1 -> exit 143, says where the checkpoint is"
elif [ "$rc" -eq 0 ]; then
  echo "note the run finished before the kill arrived; resume is checked on the finished run"
else
  bad "killed run: exit $rc: $(cat "$tmp/k.log")"
fi
out_k=$("$TRAIN" "${long[@]}" --out "$tmp/k" --resume 2>&1); rc=$?
hash_k=$(weights_hash "$out_k")
if [ "$rc" -eq 0 ] && [ -n "$ref" ] && [ "$hash_k" = "$ref" ]; then
  ok "killed + --resume gives the uninterrupted weights ($hash_k)"
else
  bad "resume after kill: exit $rc, hash '$hash_k' vs '$ref': $out_k"
fi

echo "== a checkpoint of another network"
out=$("$TRAIN" "${common[@]}" --net fc --epochs 2 --out "$tmp/b" --resume 2>&1); rc=$?
out_forced=$("$TRAIN" "${common[@]}" --net fc --epochs 2 --out "$tmp/b" --resume --force 2>&1); rc_forced=$?
if [ "$rc" -ne 0 ] && grep -qF -- '--net is "fc" now but "conv"' <<<"$out" &&
   [ "$rc_forced" -ne 0 ] && grep -qF "[resume] $tmp/b/checkpoint.ckpt holds a network" <<<"$out_forced" &&
   grep -qF "but --net fc builds" <<<"$out_forced"; then
  ok "--resume with --net fc on a conv checkpoint is refused (with --force too: the weights do not fit)"
else
  bad "resume with another network: exit $rc: $out"
fi

echo "== a network JSON"
out=$("$TRAIN" "${common[@]}" --net "$tmp/a/network.json" --epochs 1 --out "$tmp/j" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q "conv(1->16, 4x4, s2, p1)" <<<"$out" && [ -f "$tmp/j/checkpoint.ckpt" ]; then
  ok "--net PATH.json (the trained network.json) trains on"
else
  bad "--net network.json: exit $rc: $out"
fi

echo "== natural training"
# The default --rampup 50 is longer than --epochs 2: natural training ignores it.
out=$("$TRAIN" --dataset fashion-mnist --data-dir "$fm" --net fc --method natural --epochs 2 --train-subset 300 \
      --test-subset 50 --pgd-steps 0 --threads 1 --out "$tmp/nat" 2>"$tmp/nat.err"); rc=$?
if [ "$rc" -eq 0 ] && grep -q '^\[epoch 2/2\] loss [0-9.]* train-acc [0-9.]*% lr ' <<<"$out" && ! grep -q '^\[epoch.* eps ' <<<"$out" &&
   ! grep -q "^backend:" <<<"$out" && grep -q "^backend:" "$tmp/nat.err"; then
  ok "natural training: --rampup ignored, epoch lines without eps/kappa/beta, banner on stderr"
else
  bad "natural run: exit $rc: $out $(cat "$tmp/nat.err")"
fi

# --milestones '' is no milestones (the late-milestones note advises it for a constant rate); CLI11
# alone read it as a milestone at epoch 0, which trained at a tenth of --lr from the first epoch.
out=$("$TRAIN" --dataset fashion-mnist --data-dir "$fm" --net fc --method natural --epochs 2 --train-subset 300 \
      --test-subset 50 --pgd-steps 0 --threads 1 --milestones '' --out "$tmp/flat" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q '^\[epoch 1/2\] .* lr 0.0005 ' <<<"$out" && grep -q '^\[epoch 2/2\] .* lr 0.0005 ' <<<"$out" &&
   grep -q '"milestones": *\[\]' "$tmp/flat/config.json"; then
  ok "--milestones '': no milestones, lr 0.0005 in both epochs"
else
  bad "--milestones '': exit $rc: $out $(cat "$tmp/flat/config.json" 2>/dev/null)"
fi
expect_error "--milestones: an empty value among others; give '' alone for an empty list" --method box --epochs 3 \
  --rampup 1 --milestones '' --milestones 2
# The same for the training attack's step decay (README: the paper's attack is --train-pgd-decay-at '').
out=$("$TRAIN" --dataset fashion-mnist --data-dir "$fm" --net fc --method pgd --epochs 1 --rampup 0 --train-subset 100 \
      --test-subset 20 --pgd-steps 0 --train-pgd-steps 2 --threads 1 --train-pgd-decay-at '' --out "$tmp/nodecay" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q '"train-pgd-decay-at": *\[\]' "$tmp/nodecay/config.json"; then
  ok "--train-pgd-decay-at '': an empty list in config.json"
else
  bad "--train-pgd-decay-at '': exit $rc: $out $(cat "$tmp/nodecay/config.json" 2>/dev/null)"
fi

echo "== CNN7 (BatchNorm) through a checkpoint"
# The running averages travel in the checkpoint: certify eval on it must see the trainer's accuracy
# (with BatchNorm's defaults, mean 0 and variance 1, it would not) and the same weights.
out=$("$TRAIN" --dataset fashion-mnist --data-dir "$fm" --net cnn7 --method natural --epochs 1 --train-subset 500 \
      --test-subset 50 --batch-size 50 --lr 0.001 --pgd-steps 0 --threads 1 --quiet --out "$tmp/cnn7" 2>&1); rc=$?
ev=$("$CERTIFY" eval --checkpoint "$tmp/cnn7" --relaxations box --eps 0.01 --test-subset 50 --threads 1 --json 2>/dev/null | tail -1)
final=$(grep '"final":true' "$tmp/cnn7/metrics.jsonl" 2>/dev/null)
if [ "$rc" -eq 0 ] && /usr/bin/python3 - "$ev" "$final" <<'EOF'
import json, sys
ev, final = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert ev["n"] == final["eval"]["n"] == 50 and ev["accuracy"] == final["eval"]["accuracy"], (ev, final)
assert ev["accuracy"] > 0.2, ev  # above chance (measured: 32% after these 10 steps), so the statistics matter
assert ev["weights_hash"] == final["weights_hash"], (ev["weights_hash"], final["weights_hash"])
EOF
then
  ok "cnn7 checkpoint: certify eval's accuracy and weights are the trainer's ($(grep -o '"accuracy":[0-9.]*' <<<"$ev" | head -1))"
else
  bad "cnn7 checkpoint: exit $rc: $out | eval: $ev | final: $final"
fi

echo "== PCA inputs (table 14's setting) through a checkpoint"
# The basis is fitted on the 200 training images and saved in the checkpoint; certify eval must
# project the test images exactly as the trainer did: same accuracy, same certified counts and the
# same smallest certified margins (which move with any change of the inputs), unclipped balls.
out=$("$TRAIN" --dataset fashion-mnist --data-dir "$fm" --net fc-2x20 --method box --pca 4 --train-subset 200 \
      --test-subset 100 --epochs 2 --rampup 1 --eps-train 0.05 --eps-test 0.05 --certify-with box,crown \
      --batch-size 32 --lr 0.01 --pgd-steps 0 --milestones 100 --threads 1 --out "$tmp/pca" 2>&1); rc=$?
# The trainer evaluates in batches of --batch-size: the same here, as BLAS may round CROWN's products
# differently for another batch size (the margins then differ in the 7th digit).
ev=$("$CERTIFY" eval --checkpoint "$tmp/pca" --relaxations box,crown --test-subset 100 --batch-size 32 --threads 1 \
     --json 2>/dev/null | tail -1)
final=$(grep '"final":true' "$tmp/pca/metrics.jsonl" 2>/dev/null)
if [ "$rc" -eq 0 ] && grep -q "inputs: 4-D PCA of 200 training images" <<<"$out" &&
   grep -q "input(1,1,4) -> normalize -> flatten -> linear(4->20)" <<<"$out" && /usr/bin/python3 - "$ev" "$final" <<'EOF'
import json, sys
ev, final = json.loads(sys.argv[1]), json.loads(sys.argv[2])["eval"]
assert ev["n"] == final["n"] == 100 and ev["accuracy"] == final["accuracy"], (ev, final)
assert ev["accuracy"] > 0.3, ev  # above chance: the coordinates carry the images
a, b = ev["radii"][0], final["radii"][0]
assert a["certified"] == b["certified"], (a, b)
assert a["certified"]["crown"] > 0, a  # something to compare the margins of
assert a["smallest_certified_margin"] == b["smallest_certified_margin"], (a, b)
EOF
then
  ok "--pca 4: certify eval on the checkpoint reproduces the trainer's accuracy, certified counts and margins ($(grep -o '"accuracy":[0-9.]*' <<<"$ev" | head -1))"
else
  bad "--pca run: exit $rc: $out | eval: $ev | final: $final"
fi

echo "== --bound-memory-cap: the chunks a training step recomputes"
# CROWN on PCA coordinates (4 -> 20 -> 20 -> 10): the second layer's bounds are backsubstituted
# in chunks of neurons. The default cap (1024 MiB) keeps every chunk on the tape; 100 bytes, one
# neuron a chunk, leaves each one to be recomputed in the backward pass, and the run says so once.
cap_run() {
  "$TRAIN" --dataset fashion-mnist --data-dir "$fm" --net fc-2x20 --method crown --pca 4 --train-subset 100 \
    --test-subset 20 --epochs 1 --rampup 1 --eps-train 0.05 --eps-test 0.05 --batch-size 50 --pgd-steps 0 \
    --threads 1 "$@" 2>&1
}
wide=$(cap_run --out "$tmp/cap_wide"); rc_wide=$?
narrow=$(cap_run --out "$tmp/cap_narrow" --bound-memory-cap 0.0001); rc_narrow=$?
if [ "$rc_wide" -eq 0 ] && [ "$rc_narrow" -eq 0 ] && ! grep -q "recomputed in the backward pass" <<<"$wide" &&
   [ "$(grep -c "recomputed in the backward pass: they did not fit --bound-memory-cap (104 bytes)" <<<"$narrow")" -eq 1 ] &&
   /usr/bin/python3 - "$tmp/cap_wide/metrics.jsonl" "$tmp/cap_narrow/metrics.jsonl" <<'EOF'
import json, sys
wide, narrow = (json.loads(open(f).readline())["bound_chunks"] for f in sys.argv[1:])
assert wide["chunks"] >= 1 and wide["recomputed"] == 0, wide
assert narrow["chunks"] > wide["chunks"] and narrow["recomputed"] == narrow["chunks"], (wide, narrow)
EOF
then
  ok "--bound-memory-cap: the default keeps every chunk, one neuron's worth recomputes them all and says so"
else
  bad "--bound-memory-cap: exit $rc_wide / $rc_narrow: $wide | $narrow"
fi

echo "== certify eval"
out=$("$CERTIFY" eval --checkpoint "$tmp/a/checkpoint.ckpt" --relaxations box --eps 0.1 --test-subset 100 --pgd \
      --pgd-steps 10 --threads 1 --json 2>&1); rc=$?
json=$(tail -1 <<<"$out")
final=$(grep '"final":true' "$tmp/a/metrics.jsonl")
if [ "$rc" -eq 0 ] && command -v python3 >/dev/null; then
  if python3 - "$json" "$final" "$hash_a" <<'EOF'
import json, sys
ev, final, h = json.loads(sys.argv[1]), json.loads(sys.argv[2])["eval"], sys.argv[3]
assert ev["weights_hash"] == h, (ev["weights_hash"], h)
assert ev["n"] == final["n"] == 100
assert ev["accuracy"] == final["accuracy"], (ev["accuracy"], final["accuracy"])
a, b = ev["radii"][0], final["radii"][0]
assert a["certified"]["box"] == b["certified"]["box"], (a, b)
assert a["pgd_accuracy"] == b["pgd_accuracy"], (a, b)
EOF
  then ok "certify eval --json matches the trainer's final evaluation"; else bad "certify eval disagrees: $out"; fi
elif [ "$rc" -eq 0 ] && grep -q '"weights_hash":"'"$hash_a"'"' <<<"$json"; then
  ok "certify eval --json (python3 absent: checked the hash only)"
else
  bad "certify eval: exit $rc: $out"
fi
# Elision: without a flag certify eval must use the run's own setting (on).
# At eps 0.005 this run certifies clearly more with elision than without, so
# a default that silently drops it (a bug we had) shows here.
box_at() { "$CERTIFY" eval --checkpoint "$tmp/a/checkpoint.ckpt" --relaxations box --eps 0.005 --test-subset 100 \
             --threads 1 "$@" 2>&1 | awk '$1 == "box" {print $2}'; }
default_cert=$(box_at); elide_cert=$(box_at --elide); no_elide_cert=$(box_at --no-elide)
if [ -n "$default_cert" ] && [ "$default_cert" = "$elide_cert" ] && [ "$no_elide_cert" != "$elide_cert" ]; then
  ok "certify eval elides as the run trained: $default_cert (--no-elide: $no_elide_cert)"
else
  bad "certify eval elision: default '$default_cert', --elide '$elide_cert', --no-elide '$no_elide_cert'"
fi
json_out=$("$CERTIFY" eval --checkpoint "$tmp/a" --relaxations box --eps 0.005 --test-subset 100 --threads 1 --json 2>/dev/null)
if ! grep -q "^backend:" <<<"$json_out" && command -v python3 >/dev/null &&
   python3 -c 'import json, sys; print("%.2f%%" % (100 * json.loads(sys.argv[1])["radii"][0]["certified"]["box"]))' \
     "$(tail -1 <<<"$json_out")" | grep -qxF "$default_cert"; then
  ok "certify eval --checkpoint RUN-FOLDER --json: no banner on stdout, box $default_cert as above"
else
  bad "certify eval on the run folder / --json: $json_out"
fi
out=$("$CERTIFY" eval --checkpoint "$tmp/a/checkpoint.ckpt" --relaxations box,hbox,deepz,crown,crown-ibp \
      --eps 0.05,0.1 --test-subset 20 --threads 1 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q "^crown-ibp" <<<"$out" && grep -q "eps=0.05" <<<"$out"; then
  ok "certify eval table: 5 relaxations x 2 radii"
else
  bad "certify eval table: exit $rc: $out"
fi
# The bab column: branch and bound (1 s per image) on the images box leaves; it
# and best count at least what box does, and every run ends in one verdict.
out=$("$CERTIFY" eval --checkpoint "$tmp/a" --relaxations box,bab,best --eps 0.05 --test-subset 5 --bab-timeout 1 \
      --threads 1 --json 2>/dev/null); rc=$?
if [ "$rc" -eq 0 ] && grep -q "^bab " <<<"$out" && grep -q "^best " <<<"$out" &&
   grep -q "^\[certify\] bab: branch and bound .* 1 s each: eps 0.05 [0-9]* runs" <<<"$out" &&
   /usr/bin/python3 - "$(tail -1 <<<"$out")" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])["radii"][0]
c, b = r["certified"], r["bab"]
assert c["bab"] >= c["box"] and c["best"] >= c["bab"], c
assert b["runs"] == b["unsat"] + b["sat"] + b["timeouts"] + b["unknown"], b
assert b["timeout_s"] == 1, b
EOF
then
  ok "certify eval --relaxations box,bab,best: bab and best rows, >= box, verdict counts in the JSON"
else
  bad "certify eval with bab: exit $rc: $out"
fi

echo "== certify curve"
out=$("$CERTIFY" curve --checkpoint "$tmp/a/checkpoint.ckpt" --eps-max 0.01 --points 3 --relaxations box,crown \
      --test-subset 100 --threads 1 --out "$tmp/curve" 2>&1); rc=$?
csv="$tmp/curve/cr_curve.csv"
if [ "$rc" -eq 0 ] && [ "$(head -1 "$csv" 2>/dev/null)" = "eps,box,crown" ] && [ "$(wc -l < "$csv")" -eq 4 ] &&
   [ "$(cut -d, -f1 "$csv" | tr '\n' ' ')" = "eps 0 0.005 0.01 " ] && [ -f "$tmp/curve/cr_curve.gp" ]; then
  ok "certify curve writes cr_curve.csv (3 radii x box, crown) and cr_curve.gp"
else
  bad "certify curve: exit $rc: $out; csv: $(cat "$csv" 2>&1)"
fi
if command -v gnuplot >/dev/null 2>&1; then
  if [ -s "$tmp/curve/cr_curve.png" ]; then ok "certify curve plots cr_curve.png with gnuplot"; else bad "certify curve: no PNG: $out"; fi
fi
if [ "$rc" -eq 0 ] && command -v python3 >/dev/null; then
  # At eps 0 the box is a point: every relaxation certifies exactly the
  # correctly classified images. At 0.005 the curve must agree with certify
  # eval. CR-AUC must be the trapezoidal area of the CSV's columns.
  if python3 - "$csv" "$tmp/curve/cr_auc.json" "$elide_cert" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
auc = json.load(open(sys.argv[2]))
acc = 100 * auc["accuracy"]
assert abs(float(rows[0]["box"]) - acc) < 1e-6 and abs(float(rows[0]["crown"]) - acc) < 1e-6, (rows[0], acc)
assert abs(float(rows[1]["box"]) - float(sys.argv[3].rstrip("%"))) < 1e-6, (rows[1], sys.argv[3])
for name in ("box", "crown"):
    xs = [float(r["eps"]) for r in rows]; ys = [float(r[name]) for r in rows]
    area = sum((ys[i] + ys[i - 1]) / 2 * (xs[i] - xs[i - 1]) for i in range(1, len(xs)))
    assert abs(area - auc["cr_auc"][name]) < 1e-4, (name, area, auc["cr_auc"][name])
EOF
  then ok "certify curve: CR(0) = accuracy, CR(0.005) = certify eval's, CR-AUC = trapezoid of the CSV"
  else bad "certify curve values: $(cat "$csv") $(cat "$tmp/curve/cr_auc.json")"; fi
fi
# In parts: --batches-per-run 1 stops after one batch of 50 (exit 3, counts in the partial file),
# the same command continues, and the finished parts give the uninterrupted run's curve.
parts=("$CERTIFY" curve --checkpoint "$tmp/a/checkpoint.ckpt" --eps-max 0.01 --points 3 --relaxations box,crown
       --test-subset 100 --batch-size 50 --threads 1 --no-plot --out "$tmp/curve-parts")
"${parts[@]}" --batches-per-run 1 >/dev/null 2>&1; rc1=$?
partial_n=$(grep -o '"n":[0-9]*' "$tmp/curve-parts/cr_curve.partial.json" 2>/dev/null)
out=$("${parts[@]}" --points 4 2>&1); rc_other=$?
"${parts[@]}" --batches-per-run 1 >/dev/null 2>&1; rc2=$?
if [ "$rc1" -eq 3 ] && [ "$partial_n" = '"n":50' ] && [ "$rc_other" -ne 0 ] &&
   grep -qF "cr_curve.partial.json holds a run with other settings" <<<"$out" && [ "$rc2" -eq 0 ] &&
   [ ! -e "$tmp/curve-parts/cr_curve.partial.json" ] && cmp -s "$tmp/curve-parts/cr_curve.csv" "$csv"; then
  ok "certify curve --batches-per-run: exit 3 after 50 images, other flags refused, the second part finishes the uninterrupted curve"
else
  bad "certify curve in parts: exits $rc1, $rc_other, $rc2; partial $partial_n; $out; $(cat "$tmp/curve-parts/cr_curve.csv" 2>&1) vs $(cat "$csv")"
fi
gp="$tmp/curve/cr_curve.gp"
if grep -qF "set output 'cr_curve.png'" "$gp" && grep -qF "'cr_curve.csv' using 1:2 with lines" "$gp" && ! grep -qF "$tmp" "$gp" &&
   grep -qF "set xrange [0:0.01]" "$gp" && grep -q "title 'box (CR-AUC [0-9.e+-]*)'" "$gp" &&
   grep -q "title 'crown (CR-AUC [0-9.e+-]*)'" "$gp" && grep -qF "dashtype 2" "$gp"; then
  ok "cr_curve.gp: paths relative to its folder, x axis to eps-max, CR-AUC in the legend, distinct dash patterns"
else
  bad "cr_curve.gp: $(cat "$gp")"
fi
if command -v gnuplot >/dev/null 2>&1; then
  rm -f "$tmp/curve/cr_curve.png"
  if (cd "$tmp/curve" && gnuplot cr_curve.gp) && [ -s "$tmp/curve/cr_curve.png" ]; then ok "cd DIR && gnuplot cr_curve.gp re-plots"
  else bad "gnuplot cr_curve.gp from its folder failed"; fi
fi
out=$("$CERTIFY" curve --checkpoint "$tmp/nat" --eps-max 0.01 --points 3 --relaxations box --test-subset 20 --threads 1 \
      --no-plot 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ -f "$tmp/nat/cr_curve.csv" ] && grep -qF "natural-trained" "$tmp/nat/cr_curve.gp"; then
  ok "certify curve --checkpoint RUN-FOLDER writes into the run folder; the title names the method"
else
  bad "certify curve on a run folder: exit $rc: $out"
fi
out=$("$CERTIFY" curve --checkpoint "$tmp/a/checkpoint.ckpt" --eps-max 0 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--eps-max 0 must be a number > 0" <<<"$out"; then ok "certify curve --eps-max 0 -> exit $rc"; else bad "certify curve --eps-max 0: exit $rc: $out"; fi
out=$("$CERTIFY" curve --checkpoint "$tmp/a/checkpoint.ckpt" --eps-max 0.1 --points 1 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--points 1 must be at least 2" <<<"$out"; then ok "certify curve --points 1 -> exit $rc"; else bad "certify curve --points 1: exit $rc: $out"; fi

echo "== certify landscape"
out=$("$CERTIFY" landscape --checkpoint "$tmp/a/checkpoint.ckpt" --index 0 --eps 0.05 --delta-max 0.1 --points 5 \
      --relaxations box,crown --threads 1 --no-plot --out "$tmp/land" 2>&1); rc=$?
lcsv="$tmp/land/landscape.csv"
if [ "$rc" -eq 0 ] && [ "$(head -1 "$lcsv" 2>/dev/null)" = "delta,box,crown" ] &&
   [ "$(cut -d, -f1 "$lcsv" | tr '\n' ' ')" = "delta -0.1 -0.05 0 0.05 0.1 " ] && [ -f "$tmp/land/landscape.gp" ]; then
  ok "certify landscape writes landscape.csv (5 deltas x box, crown) and landscape.gp"
else
  bad "certify landscape: exit $rc: $out; csv: $(cat "$lcsv" 2>&1)"
fi
if [ "$rc" -eq 0 ] && command -v python3 >/dev/null; then
  # At delta 0 the weights are the trained ones: the bounds must be certify
  # bounds' on the same image (test image 0, read here from the IDX file).
  python3 - "$fm" "$tmp/x0.json" <<'EOF'
import glob, gzip, json, sys
path = sorted(glob.glob(sys.argv[1] + "/t10k-images-idx3-ubyte*"))[0]
data = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
lpath = sorted(glob.glob(sys.argv[1] + "/t10k-labels-idx1-ubyte*"))[0]
labels = (gzip.open if lpath.endswith(".gz") else open)(lpath, "rb").read()
json.dump({"x": [[b / 255 for b in data[16:16 + 784]]], "y": [labels[8]]}, open(sys.argv[2], "w"))
EOF
  label=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["y"][0])' "$tmp/x0.json")
  for r in box crown; do
    # (landscapes study the bounds training uses: the fast ones)
    want=$("$CERTIFY" bounds --net "$tmp/a/network.json" --x "$tmp/x0.json" --eps 0.05 --relaxation "$r" --unsound-fast 2>/dev/null |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["lower"][0][int(sys.argv[1])])' "$label")
    col=$([ "$r" = box ] && echo 2 || echo 3)
    got=$(awk -F, -v c="$col" '$1 == "0" {print $c}' "$lcsv")
    if python3 -c 'import sys; g, w = map(float, sys.argv[1:]); sys.exit(abs(g - w) > 1e-4 * (1 + abs(w)))' "$got" "$want"; then
      ok "certify landscape at delta 0 ($r: $got) = certify bounds' lower bound of output $label"
    else
      bad "certify landscape at delta 0 ($r): $got, certify bounds: $want"
    fi
  done
fi
lgp="$tmp/land/landscape.gp"
if grep -qF "using 1:(\$2 - (" "$lgp" && grep -qF "using 1:(\$3 - (" "$lgp" && grep -q "title 'box (.* at delta 0)'" "$lgp" &&
   grep -qF "lower bound minus its value at delta = 0" "$lgp" && grep -qF "set key below" "$lgp" && ! grep -qF "$tmp" "$lgp"; then
  ok "landscape.gp: each bound minus its value at delta 0, legend below the plot, relative paths"
else
  bad "landscape.gp: $(cat "$lgp")"
fi
if command -v gnuplot >/dev/null 2>&1; then
  if (cd "$tmp/land" && gnuplot landscape.gp) && [ -s "$tmp/land/landscape.png" ]; then ok "cd DIR && gnuplot landscape.gp plots"
  else bad "gnuplot landscape.gp from its folder failed"; fi
fi
if command -v python3 >/dev/null; then
  out=$("$CERTIFY" export-inputs --dataset fashion-mnist --data-dir "$fm" --indices 0-2 --out "$tmp/x3.json" 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && python3 - "$tmp/x3.json" "$tmp/x0.json" <<'EOF'
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert len(got["x"]) == 3 and len(got["y"]) == 3 and len(got["x"][0]) == 784
assert got["y"][0] == want["y"][0]
assert max(abs(a - b) for a, b in zip(got["x"][0], want["x"][0])) < 1e-7
EOF
  then ok "certify export-inputs --indices 0-2: test image 0 and its label as read from the IDX files"
  else bad "certify export-inputs: exit $rc: $out"; fi
  out=$("$CERTIFY" bounds --net "$tmp/a/network.json" --x "$tmp/x3.json" --eps 0.01 --relaxations box,crown --spec label \
        --threads 1 2>/dev/null); rc=$?
  if [ "$rc" -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 2 ] && python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert [l["relaxation"] for l in lines] == ["box", "crown"]
assert all(len(l["lower"]) == 3 and len(l["lower"][0]) == 9 for l in lines)' <<<"$out"; then
    ok "certify bounds --relaxations box,crown on the exported x.json: one line per relaxation, 3 rows of 9 margins"
  else
    bad "certify bounds on exported inputs: exit $rc: $out"
  fi
  # The run's ONNX export: onnx.checker accepts it and it is the same network as the JSON.
  out_onnx=$("$CERTIFY" bounds --net "$tmp/a/network.onnx" --x "$tmp/x3.json" --eps 0.01 --relaxations box,crown \
             --spec label --threads 1 2>/dev/null); rc=$?
  if [ "$rc" -eq 0 ] && [ "$out_onnx" = "$out" ] &&
     /usr/bin/python3 -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' "$tmp/a/network.onnx"; then
    ok "train writes network.onnx: onnx.checker accepts it, certify bounds on it equals the JSON's"
  else
    bad "network.onnx: exit $rc: $out_onnx"
  fi
fi
out=$("$CERTIFY" export-inputs --dataset fashion-mnist --data-dir "$fm" --indices 9999-10000 --out "$tmp/bad.json" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--indices: 10000 is outside the 10000 images" <<<"$out"; then ok "certify export-inputs --indices 9999-10000 -> exit $rc"
else bad "certify export-inputs out of range: exit $rc: $out"; fi
out=$("$CERTIFY" landscape --checkpoint "$tmp/a/checkpoint.ckpt" --index 10000 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--index 10000 is outside the 10000 test images" <<<"$out"; then ok "certify landscape --index 10000 -> exit $rc"; else bad "certify landscape --index 10000: exit $rc: $out"; fi
out=$("$CERTIFY" landscape --checkpoint "$tmp/a/checkpoint.ckpt" --direction sideways 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--direction 'sideways' is neither logit nor a relaxation" <<<"$out"; then ok "certify landscape --direction sideways -> exit $rc"; else bad "certify landscape --direction: exit $rc: $out"; fi

echo "== certify table"
out=$("$CERTIFY" table --checkpoints "$tmp/a,$tmp/j/checkpoint.ckpt" --relaxations box,crown-ibp \
      --eps 0.005 --test-subset 100 --threads 1 --out "$tmp/table.md" 2>/dev/null); rc=$?
box_cell=$(awk -F'|' 'NR == 3 {print $8 + 0}' "$tmp/table.md" 2>/dev/null)
if [ "$rc" -eq 0 ] && [ "$(wc -l < "$tmp/table.md")" -eq 4 ] &&
   [ "$(head -1 "$tmp/table.md")" = "| run | net | data set | eps | trained with | crown tie | box | crown-ibp |" ] &&
   [ "$(awk -F'|' 'NR == 3 {print $2}' "$tmp/table.md")" = " a " ] && [ "$(awk -F'|' 'NR == 4 {print $2}' "$tmp/table.md")" = " j " ] &&
   awk -v a="$box_cell" -v b="${elide_cert%\%}" 'BEGIN {exit !(a - b < 0.05 && b - a < 0.05)}'; then
  ok "certify table: rows a and j (run column) x (box, crown-ibp) in Markdown; the first row's box cell ($box_cell) is certify eval's"
else
  bad "certify table: exit $rc: $out; $(cat "$tmp/table.md" 2>&1)"
fi
# The text table: every line as long as the header (columns padded to their widest cell).
widths=$(grep -v '^\[table\]' <<<"$out" | awk '{print length($0)}' | sort -u | wc -l)
if [ "$rc" -eq 0 ] && [ "$(grep -vc '^\[table\]' <<<"$out")" -eq 3 ] && [ "$widths" -eq 1 ] && grep -q '^run ' <<<"$out"; then
  ok "certify table text: 3 lines of one width, columns aligned"
else
  bad "certify table text not aligned: $out"
fi

if [ "$failures" -eq 0 ]; then echo "[train_cli] all passed"; else echo "[train_cli] $failures failed"; fi
[ "$failures" -eq 0 ]
