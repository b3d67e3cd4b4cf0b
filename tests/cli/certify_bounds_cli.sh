#!/usr/bin/env bash
# Integration tests of `certify bounds` (relaxations/cli_bounds.h), built by
# make (this script builds nothing):
#  1. the paper's appendix A network (x1 = (x01 + x02, x01 - x02), ReLU, the
#     same map again) on [-1, 1]^2 (x = 0, eps 1, --no-clip): DeepZ gives the
#     appendix's l3 = (-1, -2), u3 = (3, 2); CROWN (-l >= u: lower slope 0)
#     (0, -2) and (3, 2); Box and hBox (0, -2) and (4, 2). With --spec label
#     and y = 0 the margin z_1 - z_0 = -2 relu(x01 - x02) gets DeepZ's
#     [-4, 2] (derived by hand: slope 1/2, intercept 1 on x12 in [-2, 2]);
#  2. bad input stops with a message naming the flag or file and a non-zero
#     exit: eps below 0 or NaN, an input outside [0, 1], a label out of
#     range, a wrong input size, an unknown layer type, an infinite weight,
#     an unknown relaxation.
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

if [ "$failures" -ne 0 ]; then echo "[certify_bounds_cli] $failures failure(s)"; exit 1; fi
echo "[certify_bounds_cli] all passed"
