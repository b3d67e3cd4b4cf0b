#!/usr/bin/env bash
# Integration tests of tools/reproduce (the reproduction runner) with the
# release binaries (built by make; this script builds nothing). In a temp folder:
#  1. the repository's recipe expands to the paper's cells with table 6's
#     settings scaled by the schedule (hand-computed flags for two cells), and
#     bad input (a missing recipe, an unknown --only pattern or --schedule, a
#     table-6 row missing) stops with its message and exit 2;
#     --slurm writes array jobs with their dependencies;
#  2. a tiny recipe on FashionMNIST (one Box cell, its cross-certification, the
#     SGD toy) runs with -j 2: every cell writes its JSON with its command; a
#     re-run runs nothing; after a recipe change the changed cell and the cell
#     on its net are stale and run again;
#  3. a training cell killed mid-run resumes from its checkpoint on the next
#     run and ends with the uninterrupted run's weights, bit for bit;
#  4. the report: our numbers are the cells' (read back from their JSON here),
#     the paper's come from the recipe, and the HTML page holds the same table.
# Parts 2-4 are skipped (exit 0) when FashionMNIST is not installed.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
for b in build/bin/train build/bin/certify; do
  [ -x "$b" ] || { echo "[reproduce_cli] $b is missing: run make first"; exit 1; }
done
source tests/cli/lib/common.sh  # $tmp, ok, bad, $failures, fashion_mnist_dir
reproduce() { tools/reproduce --runs "$tmp/runs" --results "$tmp/results" "$@"; }

echo "== the repository's recipe"
list=$(reproduce --list 2>&1)
n=$(wc -l <<<"$list")
# 12 + 4 + 6 + 4 training cells (tables 11, 11 at 200 epochs, 10, 13's extra seeds), 12 of table 7,
# 3 tightness nets + 4 curves (FC-SMALL's LPs on their own), 1 landscape net + 1 landscape, 2 SGD figures, figure 3; the SABR
# comparison: 2 SABR cells (its Box and CROWN-IBP cells are table 11's) and 6 certifications; table 14's
# 7 methods x 3 seeds and their 21 cross-certifications; table 11's 4 paper-schedule nets certified
# with sound and with fast bounds (8).
if [ "$n" -eq 108 ]; then ok "--list: 108 cells"; else bad "--list: $n cells, expected 108: $list"; fi
dry=$(reproduce --only 'fast-bounds/fmnist-conv-box-eps0.1@paper' --only 'sound-bounds/fmnist-conv-box-eps0.1@paper' --dry-run 2>&1)
# The same net, one command with --unsound-fast and one without; neither repeats the training cell's PGD attack.
certifies=$(grep -E "certify eval --checkpoint [^ ]*/fmnist-conv-box-eps0.1@paper --relaxations box,hbox --eps 0.1 " <<<"$dry")
cmds=$(grep -c . <<<"$certifies")
fast=$(grep -c -- "--unsound-fast" <<<"$certifies")
pgd=$(grep -cE -- "--pgd( |$)" <<<"$certifies")
if [ "$fast" -eq 1 ] && [ "$pgd" -eq 0 ] && [ "$cmds" -eq 2 ]; then
  ok "sound-bounds and fast-bounds: one sound and one --unsound-fast certify of the same net, no PGD"
else
  bad "sound/fast dry-run: $dry"
fi
dry=$(reproduce --only 'fmnist-pca16-fc-2x20-triangle-eps0.3@k3' --dry-run 2>&1)
# Table 14 states its own settings (appendix K.3, no table-6 row): 10 + 50 + 50 epochs as given, batch 64,
# the 16-D PCA of 1,024 training images; milestones 130, 190 of 200 -> 72 and 104 (round half to even) of 110.
want="--method triangle --certify-with triangle --eps-test 0.3 --epochs 110 --warmup 10 --rampup 50 --milestones 72,104"
want2="--pca 16 --train-subset 1024 --eps-train 0.3 --kappa-end 0.0"
if grep -qF -- "$want" <<<"$dry" && grep -qF -- "$want2" <<<"$dry" && grep -qF -- "--batch-size 64" <<<"$dry"; then
  ok "dry-run of table 14's Triangle cell: K.3's settings as given"
else
  bad "dry-run: $dry"
fi
dry=$(reproduce --only table14 --schedule smoke --dry-run 2>&1)
# Under --schedule smoke (2 epochs) K.3's 10 + 50 of 110 epochs scale to 0 + 1.
if grep -qF -- "--method parallelogram --certify-with parallelogram --eps-test 0.3 --epochs 2 --warmup 0 --rampup 1" <<<"$dry"; then
  ok "table 14 under --schedule smoke: its own epoch counts scaled"
else
  bad "smoke dry-run: $dry"
fi
dry=$(reproduce --only 'fmnist-conv-sabr-eps0.3@short' --dry-run 2>&1)
# SABR has no table-6 row: Box's CONV eps-0.3 row (eps_train 0.3, N_r 50 -> 15, kappa_end 0.5, L1 5e-6) and lambda 0.6.
want="--method sabr --certify-with box --eps-train 0.3 --eps-test 0.3 --kappa-end 0.5 --l1 5e-06 --lr 0.0005 --lr-schedule milestones --elide --sabr-lambda 0.6 --epochs 60 --warmup 0 --rampup 15"
if grep -qF -- "$want" <<<"$dry"; then ok "dry-run of the SABR cell: Box's table-6 row and its own lambda"; else bad "dry-run: $dry"; fi
dry=$(reproduce --only 'fmnist-conv-crown-eps0.3@short' --dry-run 2>&1)
# Table 6, CONV CROWN eps 0.3: eps_train 0.3, N_w 10, N_r 100, kappa_end 0, lambda 0, lr 5e-4;
# the short schedule (60 of 200 epochs) scales 10 -> 3, 100 -> 30, milestones 130, 190 -> 39, 57.
want="--method crown --certify-with crown --eps-train 0.3 --eps-test 0.3 --kappa-end 0.0 --l1 0.0 --lr 0.0005 --lr-schedule milestones --elide --epochs 60 --warmup 3 --rampup 30 --milestones 39,57"
if grep -qF -- "$want" <<<"$dry"; then ok "dry-run of the CROWN cell has table 6's settings, scaled"; else bad "dry-run: $dry"; fi
dry=$(reproduce --only 'fmnist-fc-deepz-eps0.3@short' --dry-run 2>&1)
want="--method deepz --certify-with deepz --eps-train 0.3 --eps-test 0.3 --kappa-end 0.0 --l1 5e-06 --lr 0.001 --lr-schedule steps --no-elide --epochs 60 --warmup 0 --rampup 15"
if grep -qF -- "$want" <<<"$dry" && grep -qF -- "--lr-step-every 6" <<<"$dry"; then
  ok "dry-run of FC DeepZ eps 0.3: steps schedule, no elision (table 6)"
else
  bad "dry-run: $dry"
fi

dry=$(reproduce --only 'tightness-fc-small-lp/*' --dry-run 2>&1)
# The LP relaxations make a certify batch minutes long: the recipe's batch_size reaches certify curve,
# which saves its counts after every batch.
if grep -qF -- "--points 21 --batch-size 1" <<<"$dry"; then
  ok "dry-run of tightness-fc-small-lp: the recipe's batch_size reaches certify curve"
else
  bad "dry-run: $dry"
fi

expect_error() {  # WANT ARGS...: tools/reproduce ARGS exits 2 and prints WANT
  local want="$1"; shift
  local out rc
  out=$(reproduce "$@" 2>&1); rc=$?
  if [ "$rc" -eq 2 ] && grep -qF -- "$want" <<<"$out"; then ok "reproduce $* -> $want"; else bad "reproduce $* -> exit $rc: $out"; fi
}
expect_error "nope.toml: no such recipe file" --recipe "$tmp/nope.toml" --list
expect_error "--only table99: matches no cell or experiment" --only table99 --list
expect_error "--schedule weekly: the recipe has paper, short, brief, k3, smoke" --schedule weekly --list
sed 's/\["conv", 0.3, "CROWN", 0.3, 10, 100/["conv", 0.35, "CROWN", 0.3, 10, 100/' recipes/paradox-fashion-mnist.toml > "$tmp/broken.toml"
expect_error "table6 has 0 rows for (conv, 0.3, CROWN), need 1" --recipe "$tmp/broken.toml" --list
sed 's/, "0.3" = { sabr-lambda = 0.6 }//' recipes/paradox-fashion-mnist.toml > "$tmp/no_lambda.toml"
expect_error "method 'SABR' has flags_by_eps for 0.1 but not 0.3" --recipe "$tmp/no_lambda.toml" --list

echo "== Slurm"
out=$(reproduce --only table11 --only table7 --slurm "$tmp/sweep" --sbatch=--gres=gpu:1 2>&1)
if [ -x "$tmp/sweep/submit.sh" ] && bash -n "$tmp/sweep/submit.sh" && bash -n "$tmp/sweep/train.sbatch" \
   && grep -qx "#SBATCH --array=0-11" "$tmp/sweep/train.sbatch" && grep -qx "#SBATCH --array=0-11" "$tmp/sweep/certify.sbatch" \
   && grep -qx "#SBATCH --gres=gpu:1" "$tmp/sweep/train.sbatch" \
   && grep -qF "'fmnist-conv-crown-eps0.3@short'" "$tmp/sweep/train.sbatch" \
   && grep -qF 'sbatch --parsable $after "$here/certify.sbatch"' "$tmp/sweep/submit.sh"; then
  ok "--slurm: 12 training tasks, then 12 certify tasks after them, then the report"
else
  bad "--slurm: $out"
fi

data=$(fashion_mnist_dir)
if [ -z "$data" ]; then
  echo "skip parts 2-4: FashionMNIST is not installed (make deps)"
  [ "$failures" -eq 0 ] && { echo "[reproduce_cli] all checks passed"; exit 0; }
  exit 1
fi

# A tiny recipe: the repository's method table and settings, one CONV Box cell.
cat > "$tmp/tiny.toml" <<EOF
title = "tiny"
dataset = "fashion-mnist"
[defaults]
batch-size = 50
data-dir = "$data"
pgd-steps = 5
pgd-step-size = 0.05
[schedules.tiny]
epochs = 4
about = "4 epochs on 600 images"
train-subset = 600
test-subset = 100
[methods]
"Box" = { method = "box", certify = "box" }
[table6]
columns = ["net", "eps_test", "method", "eps_train", "warmup", "rampup", "kappa_end", "l1", "lr", "lr_schedule", "elide"]
rows = [["conv", 0.1, "Box", 0.1, 0, 100, 0.5, 5e-6, 5e-4, "milestones", true]]
[paper_results]
columns = ["net", "method", "eps_test", "accuracy", "pgd", "certified"]
rows = [["conv", "Box", 0.1, 80.3, 74.1, 72.7]]
[[experiment]]
id = "t"
kind = "train"
net = "conv"
eps_test = [0.1]
methods = ["Box"]
schedule = "tiny"
[[experiment]]
id = "x"
kind = "cross-certify"
of = "t"
relaxations = ["box", "crown"]
[[experiment]]
id = "toy"
kind = "sgd"
args = ["--relaxations", "box,crown", "--steps", "3", "--points", "21"]
EOF

echo "== a tiny recipe, -j 2"
out=$(reproduce --recipe "$tmp/tiny.toml" -j 2 2>&1); rc=$?
cell="$tmp/results/cells/fmnist-conv-box-eps0.1@tiny.json"
if [ "$rc" -eq 0 ] && [ -f "$cell" ] && [ -f "$tmp/results/cells/x__fmnist-conv-box-eps0.1@tiny.json" ] \
   && [ -f "$tmp/results/cells/toy.json" ] && [ -f "$tmp/results/figures/toy.svg" ]; then
  ok "3 cells ran and wrote their JSON and figures"
else
  bad "run: exit $rc: $out"
fi
check=$($PY - "$cell" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
cmd = r["command"]
assert cmd[0] == "build/bin/train", cmd[0]
assert cmd[cmd.index("--epochs") + 1] == "4" and cmd[cmd.index("--rampup") + 1] == "2", cmd  # 100 * 4/200
assert r["epochs"] == 4 and r["evaluation"]["n"] == 100, (r["epochs"], r["evaluation"]["n"])
assert r["train_seconds"] > 0 and r["machine"]["cores"] >= 1
print("fine")
EOF
)
if [ "$check" = fine ]; then ok "the cell's JSON: command, epochs, images, seconds, machine"; else bad "cell JSON: $check"; fi
check=$($PY - "$cell" "$tmp/results/cells/x__fmnist-conv-box-eps0.1@tiny.json" <<'EOF'
import json, sys
net, on_net = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert net["weights_hash"], net.get("weights_hash")
assert on_net["needs_weights_hash"] == {"fmnist-conv-box-eps0.1@tiny": net["weights_hash"]}, on_net.get("needs_weights_hash")
print("fine")
EOF
)
if [ "$check" = fine ]; then ok "a cell on a trained net records which training it ran on (its weights hash)"; else bad "needs_weights_hash: $check"; fi
out=$(reproduce --recipe "$tmp/tiny.toml" -j 2 2>&1)
if grep -qF "3 cells selected, 3 already done, 0 to run" <<<"$out"; then ok "a re-run runs nothing"; else bad "re-run: $out"; fi

# A recorded result whose recipe settings changed since is stale: listed with what changed; a run
# withdraws it and the result of every cell on its net, selected or not, keeping their run folders
# aside, and trains the net again (on copies of the runs and results).
sed 's/5e-6, 5e-4, "milestones"/5e-6, 1e-3, "milestones"/' "$tmp/tiny.toml" > "$tmp/tiny_lr.toml"
cp -r "$tmp/runs" "$tmp/runs_stale"; cp -r "$tmp/results" "$tmp/results_stale"
stale() { tools/reproduce --runs "$tmp/runs_stale" --results "$tmp/results_stale" --recipe "$tmp/tiny_lr.toml" "$@"; }
list=$(stale --list 2>&1)
if grep -qE '^fmnist-conv-box-eps0.1@tiny +stale \(changed since it ran: lr 0.0005 -> 0.001\)' <<<"$list" \
   && grep -qE '^x/fmnist-conv-box-eps0.1@tiny +stale \(changed since it ran: its net fmnist-conv-box-eps0.1@tiny is stale\)' <<<"$list" \
   && grep -qE '^toy +done$' <<<"$list"; then
  ok "--list: a changed lr makes the training cell and the cell on its net stale, not the SGD toy"
else
  bad "stale --list: $list"
fi
dry=$(stale --only t --dry-run 2>&1)
if grep -A1 -E '^fmnist-conv-box-eps0.1@tiny$' <<<"$dry" | grep -qF -- "--lr 0.001" \
   && ! grep -qF -- "--resume" <<<"$dry" && [ -f "$tmp/results_stale/cells/x__fmnist-conv-box-eps0.1@tiny.json" ]; then
  ok "--dry-run of a stale cell: trains afresh (no --resume), changes nothing"
else
  bad "stale --dry-run: $dry"
fi
out=$(stale --only t --no-report 2>&1); rc=$?
check=$($PY - "$tmp/results_stale/cells" "$tmp/runs_stale" <<'EOF'
import json, pathlib, sys
cells, runs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
r = json.load(open(cells / "fmnist-conv-box-eps0.1@tiny.json"))
assert r["flags"]["lr"] == 0.001, r["flags"]["lr"]
kept = list(runs.glob("fmnist-conv-box-eps0.1@tiny.stale-*/checkpoint.ckpt"))
assert len(kept) == 1, kept
assert not (cells / "x__fmnist-conv-box-eps0.1@tiny.json").exists(), "the cell on the old net kept its result"
print("fine")
EOF
)
after=$(stale --list 2>&1)
if [ "$rc" -eq 0 ] && [ "$check" = fine ] && grep -qF "1 cells selected, 0 already done, 1 to run" <<<"$out" \
   && grep -qE '^x/fmnist-conv-box-eps0.1@tiny +pending$' <<<"$after" && grep -qE '^fmnist-conv-box-eps0.1@tiny +done$' <<<"$after"; then
  ok "--only the stale net: it trains again at the new lr, the unselected cell on it is pending, old folders kept"
else
  bad "stale run: exit $rc: $out $check $after"
fi
rm -rf "$tmp/runs_stale" "$tmp/results_stale"

# A trainer default the cell leaves alone that changed since it ran makes it stale too (the training
# attack's defaults once changed under a recorded PGD net); one the cell sets (lr) does not.
cp -r "$tmp/runs" "$tmp/runs_stale"; cp -r "$tmp/results" "$tmp/results_stale"
$PY - "$tmp/results_stale/cells/fmnist-conv-box-eps0.1@tiny.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["trainer_defaults"]
assert d["train-pgd-steps"] == 8 and "out" not in d, d  # recorded from train --print-config
d["train-pgd-steps"], d["lr"] = 100, 0.5
json.dump(r, open(sys.argv[1], "w"))
EOF
list=$(tools/reproduce --runs "$tmp/runs_stale" --results "$tmp/results_stale" --recipe "$tmp/tiny.toml" --list 2>&1)
if grep -qE "^fmnist-conv-box-eps0.1@tiny +stale \(changed since it ran: the trainer's default train-pgd-steps 100 -> 8\)" <<<"$list" \
   && ! grep -qF "default lr" <<<"$list"; then
  ok "--list: a changed trainer default the cell leaves alone makes it stale; one it sets does not"
else
  bad "trainer default --list: $list"
fi
rm -rf "$tmp/runs_stale" "$tmp/results_stale"

# A net whose recorded result stands but whose checkpoint is a retraining stopped part-way (its
# metrics end before the last epoch) is no net to certify: a cell on it resumes the training first.
tiny_run="$tmp/runs/fmnist-conv-box-eps0.1@tiny"
cp "$tiny_run/metrics.jsonl" "$tmp/metrics.keep"
head -n 2 "$tmp/metrics.keep" > "$tiny_run/metrics.jsonl"
mv "$tmp/results/cells/x__fmnist-conv-box-eps0.1@tiny.json" "$tmp/x.keep"
out=$(reproduce --recipe "$tmp/tiny.toml" --only 'x/*' --dry-run 2>&1)
if grep -qF "checkpoint is gone or unfinished; training it again" <<<"$out" \
   && grep -A1 -F "fmnist-conv-box-eps0.1@tiny" <<<"$out" | grep -qF -- "--resume"; then
  ok "a cell on an unfinished retraining resumes it first"
else
  bad "unfinished net: $out"
fi
cp "$tmp/metrics.keep" "$tiny_run/metrics.jsonl"
mv "$tmp/x.keep" "$tmp/results/cells/x__fmnist-conv-box-eps0.1@tiny.json"

echo "== a killed training cell resumes"
sed 's/epochs = 4/epochs = 6/; s/"tiny"/"six"/g; s/schedules.tiny/schedules.six/' "$tmp/tiny.toml" > "$tmp/six.toml"
nice -n 3 tools/reproduce --runs "$tmp/runs" --results "$tmp/results" --recipe "$tmp/six.toml" --only 't' --no-report \
  >/dev/null 2>&1 &  # not through the function: $! must be the runner's own process
runner=$!
metrics="$tmp/runs/fmnist-conv-box-eps0.1@six/metrics.jsonl"
for _ in $(seq 1 600); do
  [ -f "$metrics" ] && [ "$(wc -l < "$metrics")" -ge 2 ] && break
  sleep 0.1
done
# The cell runs in a session (scheduler autogroup) of its own, which keeps the runner's niceness.
cell_pid=$(pgrep -f -- "--out $tmp/runs/fmnist-conv-box-eps0.1@six" | head -1)
if [ ! -r /proc/self/autogroup ]; then
  echo "skip the cell's autogroup niceness: this kernel has no autogroups"
elif [ -n "$cell_pid" ] && grep -q "nice 3$" "/proc/$cell_pid/autogroup"; then
  ok "a cell of 'nice -n 3 tools/reproduce' runs in an autogroup of niceness 3"
else
  bad "cell autogroup: pid '$cell_pid': $(cat "/proc/$cell_pid/autogroup" 2>&1)"
fi
kill -TERM "$runner"; wait "$runner"; rc=$?
if [ "$rc" -eq 130 ] && [ ! -f "$tmp/results/cells/fmnist-conv-box-eps0.1@six.json" ] \
   && [ -f "$tmp/runs/fmnist-conv-box-eps0.1@six/checkpoint.ckpt" ]; then
  ok "SIGTERM stops the runner (exit 130) and leaves a checkpoint, no result"
else
  bad "kill: exit $rc"
fi
out=$(reproduce --recipe "$tmp/six.toml" --only 't' --no-report 2>&1)
resumed=$($PY -c "import json; print(json.load(open('$tmp/results/cells/fmnist-conv-box-eps0.1@six.json'))['weights_hash'])" 2>&1)
grep -q -- "--resume" "$tmp/runs/fmnist-conv-box-eps0.1@six/stdout.log" || bad "the second run did not pass --resume"
reproduce --recipe "$tmp/six.toml" --only 't' --no-report --runs "$tmp/runs2" --results "$tmp/results2" >/dev/null 2>&1
straight=$($PY -c "import json; print(json.load(open('$tmp/results2/cells/fmnist-conv-box-eps0.1@six.json'))['weights_hash'])" 2>&1)
if [ -n "$resumed" ] && [ "$resumed" = "$straight" ]; then
  ok "killed and resumed = uninterrupted (weights $resumed)"
else
  bad "resumed $resumed vs uninterrupted $straight: $out"
fi
# The result lists both processes: the killed one (exit != 0, stopped after
# >= 1 epoch) and the resuming one, which ends at epoch 6 having started where
# the first stopped.
check=$($PY - "$tmp/results/cells/fmnist-conv-box-eps0.1@six.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))["processes"]
ok = (len(p) == 2 and p[0]["exit"] != 0 and p[0]["epochs_before"] == 0 and 1 <= p[0]["epochs_after"] < 6
      and p[1]["exit"] == 0 and p[1]["epochs_before"] == p[0]["epochs_after"] and p[1]["epochs_after"] == 6
      and all(q["binary_sha256"] and q["commit"] for q in p))
print("fine" if ok else json.dumps(p))
EOF
)
if [ "$check" = fine ]; then ok "the result lists each process of the cell (binary, commit, epochs)"; else bad "processes: $check"; fi

echo "== the report"
check=$($PY - "$tmp/results" <<'EOF'
import json, sys
from pathlib import Path
res = Path(sys.argv[1])
r = json.load(open(res / "cells" / "fmnist-conv-box-eps0.1@tiny.json"))
at = r["evaluation"]["radii"][0]
ours = "| Box | %.1f | %.1f | %.1f | 80.3 | 74.1 | 72.7 |" % (100 * r["evaluation"]["accuracy"], 100 * at["pgd_accuracy"],
                                                          100 * at["certified"]["box"])
md = (res / "report.md").read_text()
assert ours in md, ours + " not in the report:\n" + md
x = json.load(open(res / "cells" / "x__fmnist-conv-box-eps0.1@tiny.json"))["evaluation"]["radii"][0]["certified"]
row = "| Box (tiny) | 0.1 | %.1f | %.1f | %.1f |" % (100 * r["evaluation"]["accuracy"], 100 * x["box"], 100 * x["crown"])
assert row in md, row + " not in the report"
page = (res / "report.html").read_text()
assert page.count("<table>") >= 2 and "<td>72.7</td>" in page and 'src="figures/toy.svg"' in page
print("fine")
EOF
)
if [ "$check" = fine ]; then ok "report.md and report.html: our numbers from the cells, the paper's from the recipe"; else bad "report: $check"; fi

# --readme: the block between the markers is rewritten from the cells, the text around it kept.
printf 'before\n<!-- reproduce-status:begin -->\nold\n<!-- reproduce-status:end -->\nafter\n' > "$tmp/README.md"
reproduce --recipe "$tmp/tiny.toml" --report --readme "$tmp/README.md" >/dev/null 2>&1
box_row=$(grep -F "| Box |" "$tmp/results/report.md" | grep -F "| 80.3 |" | head -1)  # ours beside the paper's
if [ "$(head -1 "$tmp/README.md")" = before ] && [ "$(tail -1 "$tmp/README.md")" = after ] && ! grep -qx old "$tmp/README.md" \
   && grep -qF -- "$box_row" "$tmp/README.md"; then
  ok "--readme: the measured-so-far block holds the report's Box row ($box_row), the text around it kept"
else
  bad "--readme: $(cat "$tmp/README.md")"
fi
printf 'no markers\n' > "$tmp/plain.md"
expect_error "no <!-- reproduce-status:begin --> ... <!-- reproduce-status:end --> block" --recipe "$tmp/tiny.toml" --report --readme "$tmp/plain.md"
expect_error "--readme only works with --report" --readme "$tmp/plain.md" --list

if [ "$failures" -eq 0 ]; then echo "[reproduce_cli] all checks passed"; else echo "[reproduce_cli] $failures check(s) FAILED"; exit 1; fi
