#!/usr/bin/env bash
# Runs every benchmark binary (build/bin/bench_*) in turn; `make bench` calls it.
# Extra arguments (e.g. --device cuda) are passed to each. bench_distributed
# then runs again on 2 MPI ranks where OpenMPI is installed.
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0
for b in build/bin/bench_*; do
  [ -x "$b" ] || continue
  echo "==== $(basename "$b")"
  "$b" "$@" || status=1
  echo
done
# The data-parallel step again on 2 ranks (bench_distributed ran as 1 above).
if [ -x build/bin/bench_distributed ] && command -v mpirun >/dev/null; then
  echo "==== bench_distributed under mpirun -np 2"
  mpi=(mpirun --oversubscribe -np 2)
  [ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
  "${mpi[@]}" build/bin/bench_distributed || status=1
fi
exit $status
