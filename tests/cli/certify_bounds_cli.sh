# Integration tests of `certify bounds` (tools/certify/bounds.cpp) and
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
#     set needed): its files, determinism for a seed, a bad flag, the banner
#     on stderr, a script that plots from its own folder, and its network
#     re-checked by certify bounds --no-clip at its input x outside [0, 1];
#  5. certify toy-jumps (figure 3): the closed forms of section 4.1 in its
#     CSV, the jumps at w = 0 and w = 1, the figure, and --crown-tie 1;
#  4. --relaxations (one line each; --relaxation still works), --threads,
#     and --no-clip accepting inputs outside [0, 1] (x = (2, -1), eps 0 on
#     the appendix network: x1 = (1, 3), x2 = (1, 3), x3 = (4, -2));
#     --bound-memory-cap: a cap of one neuron's workspace gives the default
#     cap's bounds on a two-hidden-layer net, and 0 is refused.
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

echo "== the appendix A network on [-1, 1]^2 (fast bounds: the exact values of the paper)"
common=(--net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 1 --no-clip --unsound-fast)
expect_bounds '{"relaxation": "deepz", "sound": false, "crown_tie": 0, "lower": [[-1, -2]], "upper": [[3, 2]]}' "${common[@]}" --relaxation deepz
expect_bounds '{"relaxation": "crown", "sound": false, "crown_tie": 0, "lower": [[0, -2]], "upper": [[3, 2]]}' "${common[@]}" --relaxation crown
expect_bounds '{"relaxation": "box", "sound": false, "crown_tie": 0, "lower": [[0, -2]], "upper": [[4, 2]]}' "${common[@]}" --relaxation box
expect_bounds '{"relaxation": "hbox", "sound": false, "crown_tie": 0, "lower": [[0, -2]], "upper": [[4, 2]]}' "${common[@]}" --relaxation hbox
expect_bounds '{"relaxation": "deepz", "sound": false, "crown_tie": 0, "lower": [[-4]], "upper": [[2]]}' "${common[@]}" --relaxation deepz --spec label
# --no-elide: the logits' box [-1, 3] x [-2, 2] gives z2 - z1 in [-2 - 3, 2 + 1] (folding C gave [-4, 2]).
expect_bounds '{"relaxation": "deepz", "sound": false, "crown_tie": 0, "lower": [[-5]], "upper": [[3]]}' "${common[@]}" --relaxation deepz --spec label --no-elide
# --crown-tie 1: both ReLUs have -l = u = 2, so CROWN's lower slope is 1: x31 >= x11 + x12 = 2 x01 >= -2,
# x32 >= (x01 + x02) - ((x01 - x02) / 2 + 1) >= -3, x32 <= ((x01 + x02) / 2 + 1) - (x01 - x02) <= 3.
expect_bounds '{"relaxation": "crown", "sound": false, "crown_tie": 1, "lower": [[-2, -3]], "upper": [[3, 3]]}' "${common[@]}" --relaxation crown --crown-tie 1
expect_error "--crown-tie: 2 not in {0,1}" "${common[@]}" --relaxation crown --crown-tie 2
# Clipping: x = 0, eps 1 clipped to [0, 1]^2: x1 in [0, 2] x [-1, 1]; Box: x3_1 = x21 + x22 in [0, 3].
expect_bounds '{"relaxation": "box", "sound": false, "crown_tie": 0, "lower": [[0, -1]], "upper": [[3, 2]]}' \
  --net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 1 --relaxation box --unsound-fast

echo "== sound bounds (the default): outside the exact values, by float rounding only"
# numbers_of JSON KEY: the numbers of "KEY": [[...]] in certify bounds' one-line answer, one per line.
numbers_of() { sed -E "s/.*\"$2\": \[\[([^]]*)\]\].*/\1/" <<<"$1" | tr ',' '\n'; }
# expect_around 'L1 L2' 'U1 U2' ARGS...: each sound lower bound lies in [L - 1e-4, L], each
# upper in [U, U + 1e-4] (the worst-case rounding of a few float32 steps), and says "sound": true.
expect_around() {
  local lower="$1" upper="$2"; shift 2
  local out rc verdict
  out=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds "$@" 2>/dev/null); rc=$?
  verdict=$( { echo "$lower"; numbers_of "$out" lower; echo "$upper"; numbers_of "$out" upper; } | awk '
    NR == 1 { n = split($0, lo, " "); next }
    NR <= 1 + n { g = $1 + 0; w = lo[NR - 1] + 0; if (!(g <= w && g >= w - 1e-4)) bad = 1; next }
    NR == 2 + n { split($0, hi, " "); next }
    { g = $1 + 0; w = hi[NR - 2 - n] + 0; if (!(g >= w && g <= w + 1e-4)) bad = 1 }
    END { print (bad ? "no" : "yes") }')
  if [ "$rc" -eq 0 ] && [ "$verdict" = yes ] && grep -qF '"sound": true' <<<"$out"; then
    ok "certify bounds $* -> just outside [$lower], [$upper]: $out"
  else bad "certify bounds $* -> exit $rc: '$out', wanted just outside [$lower], [$upper]"; fi
}
sound=(--net "$tmp/appendix_a.json" --x "$tmp/origin.json" --eps 1 --no-clip)
expect_around '-1 -2' '3 2' "${sound[@]}" --relaxation deepz
expect_around '0 -2' '3 2' "${sound[@]}" --relaxation crown
expect_around '0 -2' '4 2' "${sound[@]}" --relaxation box
expect_around '0 -2' '4 2' "${sound[@]}" --relaxation hbox
expect_around '-4' '2' "${sound[@]}" --relaxation deepz --spec label

echo "== a net where float32 rounding fakes a certificate (tests/test_soundness.cpp explains it)"
cat > "$tmp/trap.json" <<'EOF'
{"input_shape": [1],
 "layers": [{"type": "linear", "W": [[1e8], [1e8]], "b": [3, 0]}, {"type": "relu"},
            {"type": "linear", "W": [[0, 0], [1, -1]], "b": [0, 0]},
            {"type": "linear", "W": [[1, 0], [0, 1]], "b": [0, -1]}]}
EOF
echo '{"x": [[1]], "y": [0]}' > "$tmp/one.json"
# The real margin z1 - z0 is +2 (label 0 is not robust); fast Box says -1: a false certificate.
expect_bounds '{"relaxation": "box", "sound": false, "crown_tie": 0, "lower": [[-1]], "upper": [[-1]]}' \
  --net "$tmp/trap.json" --x "$tmp/one.json" --eps 0 --relaxation box --spec label --unsound-fast
out=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds --net "$tmp/trap.json" --x "$tmp/one.json" --eps 0 --relaxation box --spec label 2>/dev/null)
if awk -v lo="$(numbers_of "$out" lower)" -v hi="$(numbers_of "$out" upper)" 'BEGIN { exit !(lo + 0 <= -1 && hi + 0 >= 2) }'; then
  ok "sound Box covers the real margin +2 and the float32 one -1: $out"
else bad "sound Box on the trap net: $out"; fi

echo "== --relaxations, --threads, --no-clip"
both=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds "${common[@]}" --relaxations deepz,crown --threads 1 2>/dev/null)
if [ "$both" = '{"relaxation": "deepz", "sound": false, "crown_tie": 0, "lower": [[-1, -2]], "upper": [[3, 2]]}
{"relaxation": "crown", "sound": false, "crown_tie": 0, "lower": [[0, -2]], "upper": [[3, 2]]}' ]; then ok "certify bounds --relaxations deepz,crown --threads 1: one line each"
else bad "certify bounds --relaxations deepz,crown: '$both'"; fi
echo '{"x": [[2, -1]]}' > "$tmp/outside_point.json"
expect_bounds '{"relaxation": "box", "sound": false, "crown_tie": 0, "lower": [[4, -2]], "upper": [[4, -2]]}' \
  --net "$tmp/appendix_a.json" --x "$tmp/outside_point.json" --eps 0 --no-clip --relaxations box --unsound-fast
expect_error "x[0][0] = 2 is outside [0, 1] (--no-clip accepts it)" \
  --net "$tmp/appendix_a.json" --x "$tmp/outside_point.json" --eps 0 --relaxations box
expect_error "--threads -1 must be >= 0" "${common[@]}" --relaxations box --threads -1

echo "== --bound-memory-cap: chunks of intermediate bounds change the work, not the bounds"
# Two hidden layers, so layer 2's bounds are backsubstituted: 100 bytes holds
# one neuron's workspace, every neuron its own chunk.
cat > "$tmp/two_hidden.json" <<'EOF'
{"input_shape": [3],
 "layers": [{"type": "linear", "W": [[0.5, -1, 0.25], [1, 0.5, -0.5], [-0.75, 0.25, 1], [0.3, 0.9, -0.6]],
             "b": [0.1, -0.2, 0.05, 0]},
            {"type": "relu"},
            {"type": "linear", "W": [[1, -0.5, 0.25, 0.5], [-0.25, 1, 0.5, -1], [0.6, 0.2, -0.9, 0.4], [0.1, -0.3, 0.7, 1]],
             "b": [0, 0.1, -0.1, 0.2]},
            {"type": "relu"},
            {"type": "linear", "W": [[1, -1, 0.5, 0.25], [-0.5, 0.75, 1, -0.25]], "b": [0, 0]}]}
EOF
echo '{"x": [[0.4, 0.6, 0.5], [0.1, 0.9, 0.3]]}' > "$tmp/two_points.json"
hidden=(--net "$tmp/two_hidden.json" --x "$tmp/two_points.json" --eps 0.2 --relaxations deepz,crown,hbox,crown-ibp)
default_cap=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds "${hidden[@]}" 2>/dev/null)
tiny_cap=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds "${hidden[@]}" --bound-memory-cap 0.0001 2>/dev/null)
if [ -n "$default_cap" ] && [ "$(wc -l <<<"$default_cap")" -eq 4 ] && [ "$default_cap" = "$tiny_cap" ]; then
  ok "certify bounds --bound-memory-cap 0.0001 (one neuron a chunk) = the default 1024 MiB, 4 relaxations"
else bad "certify bounds --bound-memory-cap: default '$default_cap' vs tiny '$tiny_cap'"; fi
expect_error "--bound-memory-cap" "${hidden[@]}" --bound-memory-cap 0

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
expect_error "--relaxations: [relaxation] unknown relaxation 'zonotope'" "${common[@]}" --relaxation zonotope
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
err=$("$CERTIFY" sgd --seed 3 --search 4 --steps 5 --points 21 --no-plot --threads 1 --out "$tmp/sgd4" 2>&1 >/dev/null)
if grep -q "^backend: " <<<"$err"; then ok "certify sgd prints the banner on stderr"; else bad "certify sgd banner: '$err'"; fi
if grep -qF "'sgd_landscape.csv' using 1:2" "$tmp/sgd/sgd.gp" && ! grep -qF "$tmp" "$tmp/sgd/sgd.gp" &&
   grep -qF "initial gradient of the box bound" "$tmp/sgd/sgd.gp" && grep -qF "Gradient ascent on the lower bound of output 0" "$tmp/sgd/sgd.gp"; then
  ok "sgd.gp: relative paths; the title says what is plotted and whose gradient sets the direction"
else
  bad "sgd.gp: $(cat "$tmp/sgd/sgd.gp")"
fi
if command -v gnuplot >/dev/null 2>&1; then
  if (cd "$tmp/sgd" && gnuplot sgd.gp) && [ -s "$tmp/sgd/sgd.png" ]; then ok "cd DIR && gnuplot sgd.gp plots"
  else bad "gnuplot sgd.gp from its folder failed"; fi
fi
# The sampled network takes its integer x in [-4, 4]: --no-clip lets certify bounds check it.
x=$(awk '/^\[sgd\] network seed/ {for (i = 1; i <= NF; ++i) if ($i == "x") {v = $(i + 2); sub(",", "", v); print v}}' <<<"$out")
echo "{\"x\": [[$x]]}" > "$tmp/sgd_x.json"
out2=$(OMP_NUM_THREADS=1 "$CERTIFY" bounds --net "$tmp/sgd/sgd_network.json" --x "$tmp/sgd_x.json" --eps 0.5 --no-clip \
       --relaxations box 2>&1); rc=$?
if [ -n "$x" ] && [ "$rc" -eq 0 ] && grep -q '"lower": \[\[' <<<"$out2"; then ok "certify bounds --no-clip re-checks the sgd network at x = $x"
else bad "certify bounds on the sgd network at x = '$x': exit $rc: $out2"; fi
out=$("$CERTIFY" sgd --neuron 2 --out "$tmp/sgd3" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--neuron 2 must be 0 or 1" <<<"$out"; then ok "certify sgd --neuron 2 -> exit $rc"; else bad "certify sgd --neuron 2: exit $rc: $out"; fi

echo "== certify toy-jumps (figure 3)"
# CROWN's l31 is 1 up to w = 0 and w after it; hBox's l32 is -1 - w on (-1, 1) and 0 from w = 1 (section 4.1).
out=$("$CERTIFY" toy-jumps --points 31 --out "$tmp/toy" 2>/dev/null); rc=$?
csv="$tmp/toy/toy_jumps.csv"
if [ "$rc" -eq 0 ] && [ "$(head -1 "$csv")" = "w,crown_lower_x31,hbox_lower_x32" ] &&
   grep -qx "0,1,-1" "$csv" && grep -qx "1,1,0" "$csv" && grep -qx -- "-0.5,1,-0.5" "$csv" &&
   grep -qF "crown_lower_x31 jumps between w = 0 and 0.001: 1 -> " <<<"$out" &&
   grep -qF "hbox_lower_x32 jumps between w = 0.999 and 1: " <<<"$out" &&
   grep -qF '"crown_tie": 0' "$tmp/toy/toy_jumps.json"; then
  ok "certify toy-jumps: the closed forms at w = -0.5, 0, 1 and the jumps at w = 0 and w = 1"
else bad "certify toy-jumps: exit $rc: $out; $(head -3 "$csv" 2>&1)"; fi
if command -v gnuplot >/dev/null; then
  if [ -s "$tmp/toy/toy_jumps.png" ] && grep -q "<svg" "$tmp/toy/toy_jumps.svg"; then ok "certify toy-jumps draws toy_jumps.png and toy_jumps.svg"
  else bad "certify toy-jumps: no figure: $(ls "$tmp/toy")"; fi
fi
out=$("$CERTIFY" toy-jumps --points 31 --crown-tie 1 --no-plot --out "$tmp/toy1" 2>/dev/null); rc=$?
if [ "$rc" -eq 0 ] && grep -qx "0,0,-1" "$tmp/toy1/toy_jumps.csv" && grep -qF "crown_lower_x31 jumps between w = -0.001 and 0: 1 -> 0" <<<"$out"; then
  ok "certify toy-jumps --crown-tie 1: w = 0 on the right side of the jump"
else bad "certify toy-jumps --crown-tie 1: exit $rc: $out"; fi

if [ "$failures" -ne 0 ]; then echo "[certify_bounds_cli] $failures failure(s)"; exit 1; fi
echo "[certify_bounds_cli] all passed"
