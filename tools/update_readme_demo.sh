#!/usr/bin/env bash
# `make readme-demo`: replaces the README's demo paragraph (the lines between
# <!-- demo-result:begin --> and <!-- demo-result:end -->) with the one
# `make run` wrote from its own output (tools/run_demo.sh), so the README
# quotes the shipped command's numbers instead of retyped ones.
# Usage: tools/update_readme_demo.sh [RESULT.md [README.md]]
#        (defaults: runs/demo-fashion-mnist-conv-box/demo_result.md, README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
result=${1:-runs/demo-fashion-mnist-conv-box/demo_result.md}
readme=${2:-README.md}
[ -s "$result" ] || { echo "[readme-demo] $result is missing or empty: run make run first"; exit 1; }
begin='<!-- demo-result:begin -->'
end='<!-- demo-result:end -->'
if [ "$(grep -cxF -- "$begin" "$readme")" != 1 ] || [ "$(grep -cxF -- "$end" "$readme")" != 1 ]; then
  echo "[readme-demo] $readme needs exactly one '$begin' line and one '$end' line"
  exit 1
fi
awk -v begin="$begin" -v end="$end" -v result="$result" '
  $0 == begin { print; while ((getline line < result) > 0) print line; skipping = 1; next }
  $0 == end { skipping = 0 }
  !skipping { print }' "$readme" > "$readme.tmp"
mv "$readme.tmp" "$readme"
echo "[readme-demo] $readme now quotes $result"
