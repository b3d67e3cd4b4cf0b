#!/usr/bin/env bash
# Installs the Debian packages the project needs, when run as root; otherwise
# prints the exact command. Called by `make deps` (and so by make test/run).
set -euo pipefail
packages=(
  g++ make
  libopenblas-openmp-dev  # CPU GEMM (OpenMP build: one thread pool with our kernels)
  doctest-dev          # test framework
  libstb-dev           # image-folder data sets (stb_image)
  zlib1g-dev           # gzipped IDX, checkpoint CRC
  libmatio-dev         # SVHN .mat files
  libglpk-dev          # the LP relaxations (Triangle, Parallelogram)
  nlohmann-json3-dev   # network JSON, metrics
  libonnx-dev libprotobuf-dev  # networks as ONNX (engine/onnx_io.cpp: the ONNX protobuf schema)
  python3-onnx         # the ONNX export test: onnx.checker and onnx.reference in another tool
  libcli11-dev         # command-line flags
  dataset-fashion-mnist  # the real FashionMNIST, for make run and the integration tests
  gnuplot-nox          # figures
  python3              # tools/reproduce, the reproduction runner (Python >= 3.11: tomllib)
  clang lld            # the relaxation viewer's WebAssembly module (tools/viewer/)
  chromium nodejs      # the viewer's browser test (tests/cli/viewer_browser.sh, puppeteer-core from npm)
  clang-14             # the libFuzzer harnesses (make fuzz)
  libclang-rt-14-dev   # libFuzzer and clang's sanitizer runtimes
  libopenmpi-dev openmpi-bin  # data-parallel training: mpirun -np N build/bin/train (train/distributed.h)
)
# npm: Debian's package, unless an npm already came with another Node.js build
# (NodeSource's nodejs bundles it and conflicts with Debian's npm package).
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all Debian packages present"
  exit 0
fi
echo "[deps] missing: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[deps] run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  exit 1
fi
