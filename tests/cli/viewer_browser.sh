# The relaxation viewer (certify viewer, tools/lib/viewer.h): the page is
# written whole and loads nothing from elsewhere; then, in a real browser,
# tests/browser/viewer_test.mjs drives Debian's headless Chromium over it with
# puppeteer-core and compares every number the page shows with certify
# bounds. The browser part is skipped (exit 0, saying why) where chromium,
# node or npm is missing; `make deps` installs them. Screenshots go to
# $CTE_VIEWER_SHOTS (default: a temporary folder, removed).
set -uo pipefail
cd "$(dirname "$0")/../.."
CERTIFY=build/bin/certify
[ -x "$CERTIFY" ] || { echo "[viewer_browser] $CERTIFY is missing: run make first"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Without a browser: the page is written whole and loads nothing from elsewhere.
"$CERTIFY" viewer --out "$tmp/page" || { echo "FAIL certify viewer"; exit 1; }
page="$tmp/page/index.html"
if grep -q "@@CTE_" "$page" || grep -qiE "<script[^>]* src=|<link |<img |@import|url\(http" "$page"; then
  echo "FAIL certify viewer: $page has an unfilled marker or loads something from elsewhere"; exit 1
fi
echo "ok   certify viewer writes one self-contained page ($(wc -c < "$page") bytes)"
out=$("$CERTIFY" viewer --points 1 --out "$tmp/bad" 2>&1); rc=$?
if [ "$rc" -eq 0 ] || ! grep -qF -- "--points 1 must be at least 2" <<<"$out"; then
  echo "FAIL certify viewer --points 1: exit $rc: $out"; exit 1
fi
echo "ok   certify viewer --points 1 -> exit $rc"

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "[viewer_browser] SKIPPED the browser test: needs $chromium, node and npm (make deps installs them)"
  exit 0
fi
shots=${CTE_VIEWER_SHOTS:-$tmp/shots}
mkdir -p "$shots"
# puppeteer-core, at the version package-lock.json pins (node_modules is not in git).
if [ ! -d tests/browser/node_modules/puppeteer-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) || { echo "[viewer_browser] npm ci failed"; exit 1; }
fi
"$CERTIFY" sgd --seed 3 --search 2 --steps 5 --points 21 --no-plot --out "$tmp/sgd" >/dev/null 2>&1 ||
  { echo "FAIL certify sgd (the CSVs the file picker reads)"; exit 1; }
CHROMIUM="$chromium" node tests/browser/viewer_test.mjs "$page" "$CERTIFY" "$shots" "$tmp/sgd"
