// Networks as ONNX, the verification community's exchange format (VNN-COMP),
// read and written through the ONNX protobuf schema of Debian's libonnx-dev.
//
// Import walks the graph's nodes in order along the one data path from the
// graph input to its output and maps them to layers:
//   Gemm, MatMul (+ Add of a constant)   -> linear (alpha, beta, transA/B folded)
//   Conv (group 1, dilation 1, equal strides and symmetric equal pads) -> conv
//   Relu -> relu;  Flatten, Reshape to (batch, -1) -> flatten
//   Add, Sub, Mul, Div by a constant: folded into the preceding linear/conv
//     layer; before any affine layer a scalar or per-channel constant becomes a
//     normalize layer (the usual input normalisation)
//   BatchNormalization (inference form) -> folded into the preceding linear/conv
//   Constant and initialisers -> the constants the nodes above read
// Anything else fails with "[onnx] PATH: node 'NAME' (OP): ..." naming why.
// Weights are stored as float32 (the engine's type); float64 initialisers
// are rounded.
//
// Export writes opset 13: normalize as Sub and Div by (C,1,1) constants,
// linear as Gemm (transB = 1), conv as Conv, relu, flatten (axis 1); the
// input is (N, input_shape...) with a symbolic batch dimension.
#pragma once
#include <string>

#include "engine/nn.h"

namespace cte {

Network load_network_onnx(const std::string& path);
void save_network_onnx(const std::string& path, const Network& net);  // atomic (temp + rename)

// The network file formats the tools read: ONNX for a path ending in .onnx,
// else the network JSON (engine/netjson.h).
Network load_network_file(const std::string& path);

}  // namespace cte
