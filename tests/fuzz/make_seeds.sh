#!/usr/bin/env bash
# Regenerates the seed corpora tests/fuzz/corpus/<harness>/ (committed; rerun
# only to change them). Small valid files of each format, written by the
# project's own writers where it has them (train writes the checkpoint,
# network.json and config.json) and otherwise by the libraries the readers use
# (libmatio, stb_image_write, zlib), plus a few hand-made edge cases.
# Needs build/bin/train (make) and g++ with libmatio and stb.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"
mkdir -p "$out"/{idx,cifar10,svhn,image_folder,netjson,xjson,checkpoint,config,onnx,vnnlib}

# IDX: mode byte (bit 0: the harness gzips the rest, bit 1: the rest is the
# label file), then the file; plus real gzip files (mode 0, raw gzip bytes).
python3 - "$out/idx" <<'PY'
import gzip, struct, sys
d = sys.argv[1]
images = struct.pack(">IIII", 0x803, 2, 3, 2) + bytes(range(12))
labels = struct.pack(">II", 0x801, 2) + bytes([1, 9])
open(f"{d}/images", "wb").write(b"\x00" + images)
open(f"{d}/images_gz_by_harness", "wb").write(b"\x01" + images)
open(f"{d}/labels", "wb").write(b"\x02" + labels)
open(f"{d}/labels_gz_by_harness", "wb").write(b"\x03" + labels)
open(f"{d}/images_gzip_file", "wb").write(b"\x00" + gzip.compress(images, mtime=0))
open(f"{d}/labels_gzip_file", "wb").write(b"\x02" + gzip.compress(labels, mtime=0))
PY

# CIFAR-10: one record (label, then 3x32x32 planes).
python3 -c "import sys; sys.stdout.buffer.write(bytes([7]) + bytes((i * 37) % 256 for i in range(3072)))" \
  > "$out/cifar10/one_record.bin"

# SVHN .mat (plain and zlib-compressed v5, like the real files), PNG and JPEG.
cat > "$tmp/write.cpp" <<'CPP'
#include <matio.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#include <cstdio>
#include <string>
#include <vector>
static void mat(const std::string& path, bool compress) {
  mat_t* m = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  std::vector<unsigned char> x(32 * 32 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (unsigned char)(i * 7 % 251);
  double y[1] = {10};
  size_t xd[4] = {32, 32, 3, 1}, yd[2] = {1, 1};
  matvar_t* vx = Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 4, xd, x.data(), 0);
  matvar_t* vy = Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, yd, y, 0);
  Mat_VarWrite(m, vx, compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE);
  Mat_VarWrite(m, vy, compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE);
  Mat_VarFree(vx);
  Mat_VarFree(vy);
  Mat_Close(m);
}
int main(int, char** argv) {
  const std::string dir = argv[1];
  mat(dir + "/svhn/plain.mat", false);
  mat(dir + "/svhn/compressed.mat", true);
  unsigned char gray[4] = {0, 80, 160, 240}, rgb[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
  stbi_write_png((dir + "/png_gray.png").c_str(), 2, 2, 1, gray, 2);
  stbi_write_png((dir + "/png_rgb.png").c_str(), 2, 2, 3, rgb, 6);
  stbi_write_jpg((dir + "/jpg_rgb.jpg").c_str(), 2, 2, 3, rgb, 90);
  // The tiny training set for the checkpoint: two classes of 2x2 gray images.
  for (const char* split : {"train", "test"})
    for (int c = 0; c < 2; ++c) {
      unsigned char px[4] = {(unsigned char)(c * 200), 10, 20, (unsigned char)(255 - c * 200)};
      stbi_write_png((dir + "/folder/" + split + "/" + std::to_string(c) + "/0.png").c_str(), 2, 2, 1, px, 2);
    }
  return 0;
}
CPP
g++ -std=c++17 -O1 "$tmp/write.cpp" -o "$tmp/write" -lmatio
mkdir -p "$tmp/w/svhn" "$tmp/w/folder/train/0" "$tmp/w/folder/train/1" "$tmp/w/folder/test/0" "$tmp/w/folder/test/1"
"$tmp/write" "$tmp/w"
cp "$tmp/w/svhn/"*.mat "$out/svhn/"
# image_folder: a byte picking the extension (even: .png, odd: .jpg), then the file.
for f in png_gray png_rgb; do { printf '\x00'; cat "$tmp/w/$f.png"; } > "$out/image_folder/$f"; done
{ printf '\x01'; cat "$tmp/w/jpg_rgb.jpg"; } > "$out/image_folder/jpg_rgb"

# train writes the checkpoint, network.json and config.json of a 1-epoch run
# of a tiny network (2x2 gray images, 4-3-2 dense) given as network JSON.
cat > "$tmp/tiny.json" <<'JSON'
{"input_shape": [1, 2, 2], "layers": [{"type": "flatten"},
 {"type": "linear", "W": [[0.5, -0.5, 0.25, 0], [0, 1, -1, 0.5], [0.25, 0.25, 0.25, 0.25]], "b": [0, 0.1, -0.1]},
 {"type": "relu"}, {"type": "linear", "W": [[1, -1, 0.5], [-1, 1, 0.5]], "b": [0, 0]}]}
JSON
build/bin/train --dataset folder --data-dir "$tmp/w/folder" --net "$tmp/tiny.json" --epochs 1 --rampup 0 \
  --batch-size 2 --pgd-steps 1 --threads 1 --quiet --out "$tmp/run" >/dev/null 2>&1
# checkpoint: a byte (odd: the harness recomputes the CRC), then the file.
{ printf '\x00'; cat "$tmp/run/checkpoint.ckpt"; } > "$out/checkpoint/trained"
{ printf '\x01'; cat "$tmp/run/checkpoint.ckpt"; } > "$out/checkpoint/trained_crc_by_harness"
cp "$tmp/run/network.json" "$out/netjson/trained.json"
cp "$tmp/run/config.json" "$out/config/trained.json"
cp "$tmp/run/network.onnx" "$out/onnx/trained.onnx"
echo '{"epochs": 3, "method": "crown-ibp", "certify-with": "box,crown", "milestones": [1, 2]}' > "$out/config/flags.json"
cat > "$out/netjson/conv.json" <<'JSON'
{"input_shape": [1, 3, 3], "layers": [{"type": "normalize", "mean": [0.5], "std": [0.25]},
 {"type": "conv", "W": [[[[1, -1], [0, 2]]]], "b": [0.5], "stride": 1, "padding": 1}, {"type": "relu"},
 {"type": "flatten"}, {"type": "linear", "W": [[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1]], "b": [0]}]}
JSON
echo '{"input_shape": [2], "layers": [{"type": "linear", "W": [[1, 1], [1, -1]], "b": [0, 0]}, {"type": "relu"}]}' \
  > "$out/netjson/linear.json"
echo '{"x": [[0, 0.5], [1, 0.25]], "y": [0, 1]}' > "$out/xjson/two.json"
echo '{"x": [[[[0.5]]]]}' > "$out/xjson/nested.json"
# ONNX written by another tool (python3-onnx's helper, make deps installs it):
# Sub/Div input normalisation, Conv with padding, Relu, Flatten, MatMul + Add
# and a Constant node, the ops the importer folds.
/usr/bin/python3 - "$out/onnx/conv_normalized.onnx" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
w = np.array([[[[1, -1], [0, 2]]], [[[0.5, 0.5], [-0.5, 0.25]]]], dtype=np.float32)  # (2, 1, 2, 2)
fc = (np.arange(18 * 3, dtype=np.float32).reshape(18, 3) % 5 - 2) / 4  # (2*3*3, 3)
inits = [numpy_helper.from_array(a, name) for a, name in [
    (np.array([[[0.5]]], dtype=np.float32), "mean"), (np.array([[[0.25]]], dtype=np.float32), "std"),
    (w, "conv.W"), (np.array([0.5, -0.25], dtype=np.float32), "conv.b"), (fc, "fc.W")]]
nodes = [
    helper.make_node("Sub", ["x", "mean"], ["centred"]),
    helper.make_node("Div", ["centred", "std"], ["normalized"]),
    helper.make_node("Conv", ["normalized", "conv.W", "conv.b"], ["conv"], pads=[1, 1, 1, 1], strides=[1, 1]),
    helper.make_node("Relu", ["conv"], ["relu"]),
    helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
    helper.make_node("MatMul", ["flat", "fc.W"], ["mm"]),
    helper.make_node("Constant", [], ["fc.b"], value=numpy_helper.from_array(np.array([0.1, 0, -0.1], dtype=np.float32))),
    helper.make_node("Add", ["mm", "fc.b"], ["y"]),
]
graph = helper.make_graph(nodes, "conv_normalized", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
PY

# VNNLIB: VNN-COMP's robustness form (one disjunct per other class) and a
# nested and/or with every operator and a scaled term.
cat > "$out/vnnlib/robustness.vnnlib" <<'VNN'
; robustness of a 2-input, 3-output net around (0.5, 0.25), label 0
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (<= X_0 0.6))
(assert (>= X_0 0.4))
(assert (<= X_1 0.35))
(assert (>= X_1 0.15))
(assert (or
  (and (>= Y_1 Y_0))
  (and (>= Y_2 Y_0))
))
VNN
cat > "$out/vnnlib/nested.vnnlib" <<'VNN'
(declare-const X_0 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (and (>= X_0 -1) (<= X_0 1.5e0)))
(assert (or (and (< (+ Y_0 (* 2 Y_1)) 3) (> (- Y_1 Y_0) -0.5)) (<= Y_1 0)))
VNN

du -sh "$out"; find "$out" -type f | wc -l
