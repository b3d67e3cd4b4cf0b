# Shared by the CLI tests (tests/cli/*.sh, sourced after their `cd` to the
# repository root; kept in a subfolder so tests/run_all.sh does not run it as
# a test): a scratch folder removed on exit, ok/bad reporting with a failure
# count, and where FashionMNIST lives.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }

# Prints the FashionMNIST folder ($CTE_DATA_DIR/fashion-mnist, data/fashion-mnist,
# Debian's dataset-fashion-mnist), or nothing when it is not installed.
fashion_mnist_dir() {
  local d
  for d in "${CTE_DATA_DIR:-/nonexistent}/fashion-mnist" data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    if ls "$d"/train-images-idx3-ubyte* >/dev/null 2>&1; then echo "$d"; return; fi
  done
}
