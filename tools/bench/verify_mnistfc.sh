#!/usr/bin/env bash
# certify verify on VNN-COMP 2021's mnistfc 256x2 instances (not part of make
# test or make bench: up to 30 x TIMEOUT seconds). The benchmark folder is
# ../shared/vnncomp2021/mnistfc or $CTE_VNNCOMP_MNISTFC; results go to
# build/bench/verify_mnistfc_256x2.csv (onnx,vnnlib,result,seconds,domains).
# Arguments after TIMEOUT go to certify verify (e.g. --alpha).
set -euo pipefail
cd "$(dirname "$0")/../.."
timeout_s=${1:-30}
dir=${CTE_VNNCOMP_MNISTFC:-../shared/vnncomp2021/mnistfc}
[ -f "$dir/mnistfc_instances.csv" ] || { echo "[verify_mnistfc] $dir/mnistfc_instances.csv not found"; exit 1; }
mkdir -p build/bench
grep '256x2' "$dir/mnistfc_instances.csv" > build/bench/instances_256x2.csv
# The instances name their files relative to the CSV's folder.
ln -sf "$(cd "$dir" && pwd)"/*.onnx "$(cd "$dir" && pwd)"/*.vnnlib build/bench/
build/bin/certify verify --instances build/bench/instances_256x2.csv --timeout "$timeout_s" --threads 1 \
  --csv build/bench/verify_mnistfc_256x2.csv "${@:2}"
