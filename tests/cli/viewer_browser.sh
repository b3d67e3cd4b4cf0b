# The relaxation viewer (certify viewer, tools/lib/viewer.h) in a real
# browser: writes the page, then tests/browser/viewer_test.mjs drives Debian's
# headless Chromium over it with puppeteer-core and compares every number the
# page shows with certify bounds. Skipped (exit 0, with the reason) where
# chromium or node is not installed; `make deps` installs both. Screenshots
# go to $CTE_VIEWER_SHOTS (default: a temporary folder, removed).
set -uo pipefail
cd "$(dirname "$0")/../.."
CERTIFY=build/bin/certify
[ -x "$CERTIFY" ] || { echo "[viewer_browser] $CERTIFY is missing: run make first"; exit 1; }
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "[viewer_browser] SKIPPED: needs $chromium, node and npm (make deps installs them)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shots=${CTE_VIEWER_SHOTS:-$tmp/shots}
mkdir -p "$shots"
# puppeteer-core, at the version package-lock.json pins (node_modules is not in git).
if [ ! -d tests/browser/node_modules/puppeteer-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) || { echo "[viewer_browser] npm ci failed"; exit 1; }
fi
"$CERTIFY" viewer --out "$tmp/page" || { echo "FAIL certify viewer"; exit 1; }
"$CERTIFY" sgd --seed 3 --search 2 --steps 5 --points 21 --no-plot --out "$tmp/sgd" >/dev/null 2>&1 ||
  { echo "FAIL certify sgd (the CSVs the file picker reads)"; exit 1; }
CHROMIUM="$chromium" node tests/browser/viewer_test.mjs "$tmp/page/index.html" "$CERTIFY" "$shots" "$tmp/sgd"
