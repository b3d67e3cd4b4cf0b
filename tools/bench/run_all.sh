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
# Triangle by optimised slopes against its exact GLPK LP on FC-SMALL (issue
# 14): seconds per batch of 2 and the largest relative gap above the LP (fast
# bounds: the optimisation's own gap; sound bounds add sound.cpp's rounding).
if [ -x build/bin/bench_bounds ]; then
  echo "==== bench_bounds: triangle's optimised slopes against the LP (FC-SMALL)"
  build/bin/bench_bounds "$@" --nets fc-small --batch 2 --mode certify-fast --relaxations crown,triangle \
    --alpha-steps 20,50,100 --gap-to triangle-lp --runs 1 || status=1
  echo
fi
# The data-parallel step again on 2 ranks (bench_distributed ran as 1 above).
if [ -x build/bin/bench_distributed ] && command -v mpirun >/dev/null; then
  echo "==== bench_distributed under mpirun -np 2"
  mpi=(mpirun --oversubscribe -np 2)
  [ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
  "${mpi[@]}" build/bin/bench_distributed || status=1
fi
exit $status
