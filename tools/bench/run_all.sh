#!/usr/bin/env bash
# Runs every benchmark binary (build/bin/bench_*) in turn; `make bench` calls it.
# Extra arguments (e.g. --device cuda) are passed to each.
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0
for b in build/bin/bench_*; do
  [ -x "$b" ] || continue
  echo "==== $(basename "$b")"
  "$b" "$@" || status=1
  echo
done
exit $status
