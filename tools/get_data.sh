#!/usr/bin/env bash
# Downloads the data sets the engine trains on into <dir>/<name>/ (default
# dir: $CTE_DATA_DIR if set, else ./data), which is where find_data_dir looks:
# MNIST and FashionMNIST (the four gzipped IDX files each, kept gzipped since
# the reader takes .gz), SVHN (train_32x32.mat and test_32x32.mat; "extra" is
# not used), and CIFAR-10's binary version (cifar-10-binary.tar.gz, unpacked so
# data_batch_1..5.bin and test_batch.bin sit directly in <dir>/cifar10). Every
# download is checked against the MD5 sum its publishers list (the same sums
# torchvision checks) before it is put in place; files already present with
# the right sum are not fetched again. Needs curl or wget, md5sum, tar.
# (Debian's dataset-fashion-mnist package ships the same images recompressed,
# so its .gz files have other MD5 sums; the engine uses it without this script.)
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tools/get_data.sh [--dir DIR] [NAME ...]

Downloads data sets into DIR/NAME/ and verifies their MD5 sums.
  NAME      mnist | fashion-mnist | svhn | cifar10 | all   (default: all)
  --dir DIR where to put them (default: $CTE_DATA_DIR if set, else ./data)
  -h, --help  this text

Sizes: mnist 11 MB, fashion-mnist 30 MB, svhn 240 MB (train+test), cifar10 163 MB.
The engine finds DIR/NAME by itself when DIR is ./data or $CTE_DATA_DIR;
otherwise pass the directory with the trainer's data-directory flag.
EOF
}

# ---------------------------------------------------------------- what to fetch
# Each entry: file name, MD5 of that file, then URLs to try in order (the
# publisher's first; a mirror only where the original is known to be flaky).
MNIST_URLS=("http://yann.lecun.com/exdb/mnist" "https://ossci-datasets.s3.amazonaws.com/mnist")
MNIST_FILES=(
  "train-images-idx3-ubyte.gz f68b3c2dcbeaaa9fbdd348bbdeb94873"
  "train-labels-idx1-ubyte.gz d53e105ee54ea40749a09fcbcd1e9432"
  "t10k-images-idx3-ubyte.gz 9fb629c4189551a2d022fa330f9573f3"
  "t10k-labels-idx1-ubyte.gz ec29112dd5afa0611ce80d1b7f02629c"
)
FASHION_URLS=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
              "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion")
FASHION_FILES=(
  "train-images-idx3-ubyte.gz 8d4fb7e6c68d591d4c3dfef9ec88bf0d"
  "train-labels-idx1-ubyte.gz 25c81989df183df01b3e8a0aad5dffbe"
  "t10k-images-idx3-ubyte.gz bef4ecab320f06d8554ea6380940ec79"
  "t10k-labels-idx1-ubyte.gz bb300cfdad3c16e7a12a480ee83cd310"
)
SVHN_URLS=("http://ufldl.stanford.edu/housenumbers")
SVHN_FILES=(
  "train_32x32.mat e26dedcc434d2e4c54c9b2d4a06d8373"
  "test_32x32.mat eb5a983be6a315427106f1b164d9cef3"
)
CIFAR_URL="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_MD5="c32a1d4ab5d03f1284b67883e8d87530"
CIFAR_BINS=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)
CIFAR_BIN_BYTES=30730000  # 10,000 records of 3073 bytes

# ---------------------------------------------------------------- helpers
say() { echo "[get_data] $*"; }
die() { echo "[get_data] error: $*" >&2; exit 1; }

md5_of() { md5sum "$1" | cut -d' ' -f1; }

# fetch URL OUT: download to OUT (overwriting), failing on HTTP errors.
fetch() {
  local url=$1 out=$2
  if command -v curl >/dev/null 2>&1; then
    curl --fail --location --retry 3 --connect-timeout 30 --progress-bar -o "$out" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget --tries=3 --timeout=30 -O "$out" "$url"
  else
    die "neither curl nor wget is installed"
  fi
}

# get_verified DEST_DIR FILE MD5 BASE_URL...: puts DEST_DIR/FILE in place with
# the given MD5, trying each base URL in turn; a wrong sum is never kept.
get_verified() {
  local dest=$1 file=$2 md5=$3
  shift 3
  local target="$dest/$file" part="$dest/$file.part"
  if [[ -f "$target" ]]; then
    if [[ "$(md5_of "$target")" == "$md5" ]]; then
      say "$target: present, MD5 ok"
      return 0
    fi
    say "$target: present but MD5 differs; downloading again"
  fi
  local base got
  for base in "$@"; do
    say "downloading $base/$file"
    if ! fetch "$base/$file" "$part"; then
      say "failed: $base/$file"
      rm -f "$part"
      continue
    fi
    got=$(md5_of "$part")
    if [[ "$got" == "$md5" ]]; then
      mv -f "$part" "$target"
      say "$target: MD5 ok ($md5)"
      return 0
    fi
    say "MD5 mismatch for $base/$file: got $got, expected $md5"
    rm -f "$part"
  done
  die "could not get $file with MD5 $md5 from: $*"
}

get_file_list() {  # get_file_list NAME URL_ARRAY_NAME FILE_ARRAY_NAME
  local name=$1
  local -n urls=$2 files=$3
  local dest="$DATA_DIR/$name" entry
  mkdir -p "$dest"
  for entry in "${files[@]}"; do
    # shellcheck disable=SC2086
    set -- $entry
    get_verified "$dest" "$1" "$2" "${urls[@]}"
  done
}

get_cifar10() {
  local dest="$DATA_DIR/cifar10" f all_present=1
  mkdir -p "$dest"
  for f in "${CIFAR_BINS[@]}"; do
    if [[ ! -f "$dest/$f" ]] || [[ "$(stat -c %s "$dest/$f")" != "$CIFAR_BIN_BYTES" ]]; then
      all_present=0
    fi
  done
  if [[ $all_present == 1 ]]; then
    say "$dest: all six batch files present with the right sizes"
    return 0
  fi
  local archive=cifar-10-binary.tar.gz
  get_verified "$dest" "$archive" "$CIFAR_MD5" "${CIFAR_URL%/*}"
  local tmp="$dest/.extract"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  tar -xzf "$dest/$archive" -C "$tmp"
  for f in "${CIFAR_BINS[@]}" batches.meta.txt; do
    [[ -f "$tmp/cifar-10-batches-bin/$f" ]] || die "$archive has no cifar-10-batches-bin/$f"
    mv -f "$tmp/cifar-10-batches-bin/$f" "$dest/$f"
  done
  rm -rf "$tmp"
  # The archive was verified and unpacked; the batch files are all we read.
  rm -f "$dest/$archive"
  say "$dest: unpacked ${CIFAR_BINS[*]}"
}

# ---------------------------------------------------------------- arguments
DATA_DIR="${CTE_DATA_DIR:-data}"
NAMES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dir) [[ $# -ge 2 ]] || die "--dir needs a directory"; DATA_DIR=$2; shift 2 ;;
    --dir=*) DATA_DIR=${1#--dir=}; shift ;;
    mnist|fashion-mnist|svhn|cifar10) NAMES+=("$1"); shift ;;
    all) NAMES+=(mnist fashion-mnist svhn cifar10); shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ ${#NAMES[@]} -gt 0 ]] || NAMES=(mnist fashion-mnist svhn cifar10)
command -v md5sum >/dev/null 2>&1 || die "md5sum is missing (Debian package coreutils)"

for name in "${NAMES[@]}"; do
  say "== $name -> $DATA_DIR/$name"
  case "$name" in
    mnist) get_file_list mnist MNIST_URLS MNIST_FILES ;;
    fashion-mnist) get_file_list fashion-mnist FASHION_URLS FASHION_FILES ;;
    svhn) get_file_list svhn SVHN_URLS SVHN_FILES ;;
    cifar10) get_cifar10 ;;
  esac
done
say "done: ${NAMES[*]} in $DATA_DIR"
