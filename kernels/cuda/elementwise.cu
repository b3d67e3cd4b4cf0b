// CUDA twins of the element-wise kernels: fill, unary, binary (numpy-style
// broadcast over 4 dims) and select. One thread per output element in a
// grid-stride loop; the scalar formulas come from kernels/common/elementwise_ops.h,
// shared with the CPU twins in kernels/cpu/elementwise.cpp.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/common/elementwise_ops.h"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// out: [n]
__global__ void fill_kernel(float* out, int64_t n, float value) {
  CTE_GRID_STRIDE_LOOP(i, n) { out[i] = value; }
}

// x: [n], y: [n]
__global__ void unary_kernel(UnaryOp op, const float* x, float* y, int64_t n, float alpha,
                             float beta) {
  CTE_GRID_STRIDE_LOOP(i, n) { y[i] = apply_unary(op, x[i], alpha, beta); }
}

// a, b: broadcast operands addressed through shape's strides;
// out: [shape.out[0], shape.out[1], shape.out[2], shape.out[3]], n = its element count.
__global__ void binary_kernel(BinaryOp op, const float* a, const float* b, float* out,
                              Broadcast4 shape, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) {
    const BroadcastOffsets off = broadcast_offsets(shape, i);
    out[i] = apply_binary(op, a[off.a], b[off.b]);
  }
}

// mask, a, b, out: [n]
__global__ void select_kernel(const float* mask, const float* a, const float* b, float* out,
                              int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) { out[i] = mask[i] != 0.0f ? a[i] : b[i]; }
}

}  // namespace

void fill_cuda(float* out, int64_t n, float value) {
  gpu::launch_1d("fill", n, fill_kernel, out, n, value);
}

void unary_cuda(UnaryOp op, const float* x, float* y, int64_t n, float alpha, float beta) {
  gpu::launch_1d("unary", n, unary_kernel, op, x, y, n, alpha, beta);
}

void binary_cuda(BinaryOp op, const float* a, const float* b, float* out, Broadcast4 shape) {
  const int64_t n = broadcast_numel(shape);
  gpu::launch_1d("binary", n, binary_kernel, op, a, b, out, shape, n);
}

void select_cuda(const float* mask, const float* a, const float* b, float* out, int64_t n) {
  gpu::launch_1d("select", n, select_kernel, mask, a, b, out, n);
}

}  // namespace cte::kern
