# Integration tests of `certify bounds` (relaxations/cli_bounds.h) and
# `certify sgd`, built by make (this script builds nothing):
#  1. the paper's appendix A network (x1 = (x01 + x02, x01 - x02), ReLU, the
#     same map again) on [-1, 1]^2 (x = 0, eps 1, --no-clip): DeepZ gives the
#     appendix's l3 = (-1, -2), u3 = (3, 2); CROWN (-l >= u: lower slope 0)
#     (0, -2) and (3, 2); Box and hBox (0, -2) and (4, 2). With --spec label
#     and y = 0 the margin z_1 - z_0 = -2 relu(x01 - x02) gets DeepZ's
#     [-4, 2] (derived by hand: slope 1/2, intercept 1 on x12 in [-2, 2]);
#  2. bad input stops with a message naming the flag or file and a non-zero
#     exit: eps below 0 or NaN, an input outside [0, 1], a label out of
#     range, a wrong input size, an unknown layer type, an infinite weight,
#     an unknown relaxation;
#  3. certify sgd (the section 4.4 experiment on random 1-D networks, no data
#     set needed): its files, determinism for a seed, a bad flag.
set -uo pipefail
cd "$(dirname "$0")/../.."
CERTIFY=build/bin/certify
[ -x "$CERTIFY" ] || { echo "[certify_bounds_cli] $CERTIFY is missing: run make first"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }

cat > "$tmp/appendix_a.json" <<'EOF'
{"input_shape": [2],
 "layers": [{"type": "linear", "W": [[1, 1], [1, -1]], "b": [0, 0]},
            {"type": "relu"},
            {"type": "linear", "W": [[1, 1], [1, -1]], "b": [0, 0]}]}
EOF
echo '{"x": [[0, 0]], "y": [0]}' > "$tmp/origin.json"

# expect_bounds WANT ARGS...: certify bounds ARGS must succeed and print WANT on stdout.
expect_bounds() {
  local want="$1"; shift
  local out rc
  out=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds "$@" 2>/dev/null); rc=$?
  if [ "$rc" -eq 0 ] && [ "$out" = "$want" ]; then ok "certify bounds $* -> $want"
  else bad "certify bounds $* -> exit $rc: '$out', wanted '$want'"; fi
}

# expect_error WANT ARGS...: certify bounds ARGS must fail and print WANT.
expect_error() {
  local want="$1"; shift
  local out rc
  out=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds "$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && grep -qF -- "$want" <<<"$out"; then ok "certify bounds $* -> exit $rc: $want"
  else bad "certify bounds $* -> exit $rc, wanted '$want'; output: $out"; fi
}

echo "== the appendix A network on [-1, 1]^2"
common=(--net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 1 --no-clip)
expect_bounds '{"relaxation": "deepz", "lower": [[-1, -2]], "upper": [[3, 2]]}' "${common[@]}" --relaxation deepz
expect_bounds '{"relaxation": "crown", "lower": [[0, -2]], "upper": [[3, 2]]}' "${common[@]}" --relaxation crown
expect_bounds '{"relaxation": "box", "lower": [[0, -2]], "upper": [[4, 2]]}' "${common[@]}" --relaxation box
expect_bounds '{"relaxation": "hbox", "lower": [[0, -2]], "upper": [[4, 2]]}' "${common[@]}" --relaxation hbox
expect_bounds '{"relaxation": "deepz", "lower": [[-4]], "upper": [[2]]}' "${common[@]}" --relaxation deepz --spec label
# Clipping: x = 0, eps 1 clipped to [0, 1]^2: x1 in [0, 2] x [-1, 1]; Box: x3_1 = x21 + x22 in [0, 3].
expect_bounds '{"relaxation": "box", "lower": [[0, -1]], "upper": [[3, 2]]}' \
  --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 1 --relaxation box

echo "== bad input"
expect_error "--eps: must be a finite number >= 0, got -0.1" --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps -0.1 --relaxation box
expect_error "--eps: must be a finite number >= 0, got nan" --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps nan --relaxation box
echo '{"x": [[0.5, 1.5]]}' > "$tmp/outside.json"
expect_error "x[0][1] = 1.5 is outside [0, 1]" --net "$tmp/appendix_a.json" --x "$tmp/outside.json" --eps 0.1 --relaxation box
echo '{"x": [[0.5, 0.5]], "y": [2]}' > "$tmp/label.json"
expect_error "y[0] = 2 is outside [0, 2)" --net "$tmp/appendix_a.json" --x "$tmp/label.json" --eps 0.1 --relaxation crown --spec label
echo '{"x": [[0.5, 0.5, 0.5]]}' > "$tmp/size.json"
expect_error "x[0] has 3 values but the network takes 2" --net "$tmp/appendix_a.json" --x "$tmp/size.json" --eps 0.1 --relaxation box
cat > "$tmp/maxpool.json" <<'EOF'
{"input_shape": [2], "layers": [{"type": "maxpool"}]}
EOF
expect_error "layer 0: unknown layer type \"maxpool\"" --net "$tmp/maxpool.json" --x "$tmp/origin.json" --eps 0.1 --relaxation deepz
cat > "$tmp/infinite.json" <<'EOF'
{"input_shape": [2], "layers": [{"type": "linear", "W": [[1e39, 1], [1, -1]], "b": [0, 0]}]}
EOF
expect_error "layer 0 (linear): weight contains NaN or infinite values" --net "$tmp/infinite.json" --x "$tmp/origin.json" --eps 0.1 --relaxation crown
expect_error "--relaxation: [relaxation] unknown relaxation 'zonotope'" "${common[@]}" --relaxation zonotope
# Slips a hostile user found (issue 11): each a clear error, or a warning.
expect_error "--eps: an empty value is not a number" --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps "" --relaxation box
cat > "$tmp/strides.json" <<'EOF'
{"input_shape": [1, 2, 2], "layers": [{"type": "conv", "W": [[[[1]]]], "b": [0], "strides": 2}, {"type": "flatten"}]}
EOF
expect_error 'layer 0 (conv): unknown key "strides"' --net "$tmp/strides.json" --x "$tmp/origin.json" --eps 0.1 --relaxation box
cat > "$tmp/twice.json" <<'EOF'
{"input_shape": [2], "layers": [{"type": "relu", "type": "flatten"}]}
EOF
expect_error 'layer 0 (relu): duplicate key "type"' --net "$tmp/twice.json" --x "$tmp/origin.json" --eps 0.1 --relaxation box
mkdir -p "$tmp/dir.json"
expect_error "$tmp/dir.json: is a directory, expected a file" --net "$tmp/dir.json" --x "$tmp/origin.json" --eps 0.1 --relaxation box
expect_error "$tmp/dir.json: is a directory, expected a file" --net "$tmp/appendix_a.json" --x "$tmp/dir.json" --eps 0.1 --relaxation box
out=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 2 --relaxation box 2>&1 >/dev/null); rc=$?
if [ "$rc" -eq 0 ] && grep -qF "warning: --eps 2 is >= 1" <<<"$out"; then ok "certify bounds --eps 2 warns: $out"
else bad "certify bounds --eps 2: exit $rc, no warning: $out"; fi
out=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 0.5 --relaxation box 2>&1 >/dev/null)
if ! grep -qF "warning" <<<"$out"; then ok "certify bounds --eps 0.5 does not warn"; else bad "certify bounds --eps 0.5 warns: $out"; fi

echo "== certify sgd"
out=$("$CERTIFY" sgd --seed 3 --search 4 --steps 5 --points 21 --no-plot --out "$tmp/sgd" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ "$(head -1 "$tmp/sgd/sgd_landscape.csv" 2>/dev/null)" = "delta,box,crown" ] &&
   [ "$(wc -l < "$tmp/sgd/sgd_landscape.csv")" -eq 22 ] &&
   [ "$(head -1 "$tmp/sgd/sgd_path.csv")" = "step,delta_box,bound_box,delta_crown,bound_crown" ] &&
   [ "$(wc -l < "$tmp/sgd/sgd_path.csv")" -eq 7 ] && [ "$(sed -n 2p "$tmp/sgd/sgd_path.csv" | cut -d, -f2,4)" = "0,0" ] &&
   grep -q '"input_shape"' "$tmp/sgd/sgd_network.json" && [ -f "$tmp/sgd/sgd.gp" ]; then
  ok "certify sgd writes the landscape (21 deltas), the paths (6 points from delta 0), the network and the script"
else
  bad "certify sgd: exit $rc: $out; $(cat "$tmp/sgd/sgd_path.csv" 2>&1)"
fi
out2=$("$CERTIFY" sgd --seed 3 --search 4 --steps 5 --points 21 --no-plot --out "$tmp/sgd2" 2>&1)
if cmp -s "$tmp/sgd/sgd_path.csv" "$tmp/sgd2/sgd_path.csv" && cmp -s "$tmp/sgd/sgd_landscape.csv" "$tmp/sgd2/sgd_landscape.csv"; then
  ok "certify sgd is deterministic for a seed"
else
  bad "certify sgd differs between two runs: $out2"
fi
out=$("$CERTIFY" sgd --neuron 2 --out "$tmp/sgd3" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--neuron 2 must be 0 or 1" <<<"$out"; then ok "certify sgd --neuron 2 -> exit $rc"; else bad "certify sgd --neuron 2: exit $rc: $out"; fi

if [ "$failures" -ne 0 ]; then echo "[certify_bounds_cli] $failures failure(s)"; exit 1; fi
echo "[certify_bounds_cli] all passed"
