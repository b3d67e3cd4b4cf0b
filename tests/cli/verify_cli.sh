#!/usr/bin/env bash
# Integration tests of certify verify (built by make; this script builds
# nothing), on the mnistfc fixtures of tests/fixtures/mnistfc:
#  1. a property PGD violates: `sat` and a counterexample that numpy, on the
#     weights read by Debian's python3-onnx, confirms (in the box, a disjunct holds);
#  2. a hard property under --timeout 2: `timeout`, within the limit;
#  3. --instances: a CSV with one row per instance;
#  4. --export-vnnlib writes properties our own (JSON) nets verify;
#  5. bad input: a missing property names the file.
set -uo pipefail
cd "$(dirname "$0")/../.."
CERTIFY=build/bin/certify
PY=/usr/bin/python3
FIX=tests/fixtures/mnistfc
[ -x "$CERTIFY" ] || { echo "[verify_cli] $CERTIFY is missing: run make first"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }

out=$("$CERTIFY" verify --onnx "$FIX/mnist-net_256x2.onnx" --vnnlib "$FIX/prop_7_0.05.vnnlib" --threads 1 \
      --result "$tmp/result.txt" 2>/dev/null); rc=$?
if [ "$rc" -eq 0 ] && [ "$(head -1 <<<"$out")" = sat ] && cmp -s <(echo "$out") "$tmp/result.txt" &&
   "$PY" - "$FIX/mnist-net_256x2.onnx" "$FIX/prop_7_0.05.vnnlib" "$tmp/result.txt" <<'PYEOF'
import re, sys
import numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
lo, hi = np.full(784, np.nan), np.full(784, np.nan)
for line in open(sys.argv[2]):
    a = re.match(r"\(assert \((<=|>=) X_(\d+) (\S+)\)\)", line)
    if a: (hi if a.group(1) == "<=" else lo)[int(a.group(2))] = float(a.group(3))
text = open(sys.argv[3]).read()
x = np.full(784, np.nan)
for k, v in re.findall(r"\(X_(\d+) (\S+?)\)", text): x[int(k)] = float(v)
assert np.all(x >= lo) and np.all(x <= hi), "counterexample outside the box"
h = x
for i in (0, 2, 4):
    h = w[f"layers.{i}.weight"] @ h + w[f"layers.{i}.bias"]
    if i < 4: h = np.maximum(h, 0)
assert any(h[j] >= h[9] for j in range(9)), h  # prop_7: label 9, violated when another output >= Y_9
PYEOF
then ok "verify prop_7_0.05: sat, result file written, numpy confirms the counterexample"
else bad "verify prop_7_0.05: exit $rc: $(head -3 <<<"$out")"; fi

start=$(date +%s)
out=$("$CERTIFY" verify --onnx "$FIX/mnist-net_256x2.onnx" --vnnlib "$FIX/prop_0_0.03.vnnlib" --timeout 2 --threads 1 2>/dev/null); rc=$?
took=$(( $(date +%s) - start ))
if [ "$rc" -eq 0 ] && [ "$out" = timeout ] && [ "$took" -lt 30 ]; then ok "verify prop_0_0.03 --timeout 2: timeout (${took} s in all)"
else bad "verify --timeout 2: exit $rc, ${took} s: $out"; fi

mkdir -p "$tmp/bench"
cp "$FIX"/* "$tmp/bench/"
printf 'mnist-net_256x2.onnx,prop_7_0.05.vnnlib,60\nmnist-net_256x2.onnx,prop_0_0.03.vnnlib,1\n' > "$tmp/bench/instances.csv"
out=$("$CERTIFY" verify --instances "$tmp/bench/instances.csv" --csv "$tmp/results.csv" --threads 1 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ "$(head -1 "$tmp/results.csv")" = "onnx,vnnlib,result,seconds,domains" ] &&
   grep -q '^mnist-net_256x2.onnx,prop_7_0.05.vnnlib,sat,' "$tmp/results.csv" &&
   grep -q '^mnist-net_256x2.onnx,prop_0_0.03.vnnlib,timeout,' "$tmp/results.csv"; then
  ok "verify --instances: one CSV row per instance (sat, timeout under the CSV's 1 s)"
else bad "verify --instances: exit $rc: $out; $(cat "$tmp/results.csv" 2>&1)"; fi

# y0 = relu(x0) + relu(x1), y1 = 1; label 0 at (0.9, 0.9): at eps 0.05 min y0 = 1.7 > 1 (unsat);
# at eps 0.6 the box is [0.3, 1]^2 (clipped at 1) and y0 = 0.6 < 1 at (0.3, 0.3) (sat).
cat > "$tmp/net.json" <<'JSON'
{"input_shape": [2], "layers": [{"type": "linear", "W": [[1, 0], [0, 1]], "b": [0, 0]}, {"type": "relu"},
 {"type": "linear", "W": [[1, 1], [0, 0]], "b": [0, 1]}]}
JSON
echo '{"x": [[0.9, 0.9]], "y": [0]}' > "$tmp/x.json"
for eps in 0.05 0.6; do
  "$CERTIFY" verify --export-vnnlib "$tmp/props_$eps" --x "$tmp/x.json" --eps "$eps" --classes 2 >/dev/null 2>&1
done
r_small=$("$CERTIFY" verify --net "$tmp/net.json" --vnnlib "$tmp/props_0.05/prop_0.vnnlib" --threads 1 2>/dev/null | head -1)
r_big=$("$CERTIFY" verify --net "$tmp/net.json" --vnnlib "$tmp/props_0.6/prop_0.vnnlib" --threads 1 2>/dev/null | head -1)
if [ "$r_small" = unsat ] && [ "$r_big" = sat ]; then
  ok "verify --export-vnnlib: a JSON net's robustness properties (unsat at eps 0.05, sat at 0.6)"
else bad "export-vnnlib round trip: $r_small / $r_big"; fi

out=$("$CERTIFY" verify --onnx "$FIX/mnist-net_256x2.onnx" --vnnlib "$tmp/none.vnnlib" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -q "none.vnnlib" <<<"$out"; then ok "a missing property: exit $rc naming the file"
else bad "missing property: exit $rc: $out"; fi

[ "$failures" -eq 0 ] || { echo "[verify_cli] $failures failure(s)"; exit 1; }
echo "[verify_cli] all passed"
