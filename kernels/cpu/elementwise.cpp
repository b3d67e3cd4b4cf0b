// CPU twins of the element-wise kernels (fill, unary, binary with numpy-style
// broadcasting, select). The scalar formulas come from
// kernels/common/elementwise_ops.h, shared with the CUDA kernels.
#include "kernels/common/elementwise_ops.h"
#include "kernels/kernels.h"

namespace cte::kern {

namespace {
constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save
}

void fill_cpu(float* out, int64_t n, float value) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}

void unary_cpu(UnaryOp op, const float* x, float* y, int64_t n, float alpha, float beta) {
  // Switch outside the loop so each op's loop vectorizes.
  switch (op) {
#define CTE_UNARY_CASE(name)                                                        \
  case UnaryOp::name:                                                               \
    _Pragma("omp parallel for simd schedule(static) if (n > kParallelThreshold)") \
    for (int64_t i = 0; i < n; ++i) y[i] = apply_unary(UnaryOp::name, x[i], alpha, beta); \
    break;
    CTE_UNARY_CASE(relu)
    CTE_UNARY_CASE(abs)
    CTE_UNARY_CASE(neg)
    CTE_UNARY_CASE(scale)
    CTE_UNARY_CASE(add_scalar)
    CTE_UNARY_CASE(clamp)
    CTE_UNARY_CASE(exp)
    CTE_UNARY_CASE(log)
    CTE_UNARY_CASE(sqrt)
    CTE_UNARY_CASE(square)
    CTE_UNARY_CASE(positive)
    CTE_UNARY_CASE(sign)
#undef CTE_UNARY_CASE
  }
}

namespace {

// The common cases get tight loops; anything else walks the 4-D index.
template <BinaryOp op>
void binary_typed(const float* a, const float* b, float* out, const Broadcast4& shape) {
  const int64_t n = broadcast_numel(shape);
  const int64_t inner = shape.out[3];
  const bool a_dense = shape.a_stride[3] == 1 && shape.a_stride[2] == inner &&
                       shape.a_stride[1] == inner * shape.out[2] &&
                       shape.a_stride[0] == inner * shape.out[2] * shape.out[1];
  const bool b_same = shape.b_stride[0] == shape.a_stride[0] && shape.b_stride[1] == shape.a_stride[1] &&
                      shape.b_stride[2] == shape.a_stride[2] && shape.b_stride[3] == shape.a_stride[3];
  if (a_dense && b_same) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) out[i] = apply_binary(op, a[i], b[i]);
    return;
  }
  // Broadcast over the last dimension's rows ([rows, inner] op [inner]), e.g. a bias.
  const bool b_row = shape.b_stride[3] == 1 && shape.b_stride[2] == 0 && shape.b_stride[1] == 0 &&
                     shape.b_stride[0] == 0;
  if (a_dense && b_row) {
    const int64_t rows = n / (inner == 0 ? 1 : inner);
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
    for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) out[r * inner + i] = apply_binary(op, a[r * inner + i], b[i]);
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const BroadcastOffsets off = broadcast_offsets(shape, i);
    out[i] = apply_binary(op, a[off.a], b[off.b]);
  }
}

}  // namespace

void binary_cpu(BinaryOp op, const float* a, const float* b, float* out, Broadcast4 shape) {
  if (broadcast_numel(shape) == 0) return;
  switch (op) {
#define CTE_BINARY_CASE(name) \
  case BinaryOp::name: binary_typed<BinaryOp::name>(a, b, out, shape); break;
    CTE_BINARY_CASE(add)
    CTE_BINARY_CASE(sub)
    CTE_BINARY_CASE(mul)
    CTE_BINARY_CASE(div)
    CTE_BINARY_CASE(min)
    CTE_BINARY_CASE(max)
    CTE_BINARY_CASE(gt)
    CTE_BINARY_CASE(ge)
    CTE_BINARY_CASE(lt)
    CTE_BINARY_CASE(le)
    CTE_BINARY_CASE(eq)
#undef CTE_BINARY_CASE
  }
}

void select_cpu(const float* mask, const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = mask[i] != 0.0f ? a[i] : b[i];
}

}  // namespace cte::kern
