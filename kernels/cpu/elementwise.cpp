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
// True when `stride` walks the output shape densely (row-major), ignoring
// extent-1 dimensions, whose stride never matters.
bool dense_strides(const int64_t* stride, const int64_t* out) {
  int64_t expected = 1;
  for (int d = 3; d >= 0; --d) {
    if (out[d] != 1 && stride[d] != expected) return false;
    expected *= out[d];
  }
  return true;
}

// Broadcast of a trailing row: stride 1 over the last dimension, 0 elsewhere.
bool row_strides(const int64_t* stride, const int64_t* out) {
  if (out[3] != 1 && stride[3] != 1) return false;
  for (int d = 0; d < 3; ++d)
    if (out[d] != 1 && stride[d] != 0) return false;
  return true;
}

// The common cases get tight loops; anything else walks the 4-D index.
template <BinaryOp op>
void binary_typed(const float* a, const float* b, float* out, const Broadcast4& shape) {
  const int64_t n = broadcast_numel(shape);
  const int64_t inner = shape.out[3];
  const bool a_dense = dense_strides(shape.a_stride, shape.out);
  if (a_dense && dense_strides(shape.b_stride, shape.out)) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) out[i] = apply_binary(op, a[i], b[i]);
    return;
  }
  // [rows, inner] op [inner], e.g. adding a bias.
  if (a_dense && row_strides(shape.b_stride, shape.out)) {
    const int64_t rows = n / (inner == 0 ? 1 : inner);
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
    for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) out[r * inner + i] = apply_binary(op, a[r * inner + i], b[i]);
    return;
  }
  // General broadcasting: merge the dimensions that both operands walk
  // contiguously, then loop over rows of the innermost merged dimension with
  // the offsets computed once per row (a per-element index division would
  // cost more than the arithmetic).
  int64_t extent[4], sa[4], sb[4];
  int dims = 0;
  for (int d = 0; d < 4; ++d) {
    if (shape.out[d] == 1) continue;
    if (dims > 0 && sa[dims - 1] == shape.a_stride[d] * shape.out[d] && sb[dims - 1] == shape.b_stride[d] * shape.out[d]) {
      extent[dims - 1] *= shape.out[d];
      sa[dims - 1] = shape.a_stride[d];
      sb[dims - 1] = shape.b_stride[d];
      continue;
    }
    extent[dims] = shape.out[d], sa[dims] = shape.a_stride[d], sb[dims] = shape.b_stride[d];
    ++dims;
  }
  if (dims == 0) {  // a single element
    out[0] = apply_binary(op, a[0], b[0]);
    return;
  }
  const int64_t width = extent[dims - 1], step_a = sa[dims - 1], step_b = sb[dims - 1];
  const int64_t rows = n / width;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rest = r, off_a = 0, off_b = 0;
    for (int d = dims - 2; d >= 0; --d) {
      const int64_t i = rest % extent[d];
      rest /= extent[d];
      off_a += i * sa[d];
      off_b += i * sb[d];
    }
    const float* ra = a + off_a;
    const float* rb = b + off_b;
    float* ro = out + r * width;
    if (step_a == 1 && step_b == 0) {
      const float bv = rb[0];
#pragma omp simd
      for (int64_t i = 0; i < width; ++i) ro[i] = apply_binary(op, ra[i], bv);
    } else if (step_a == 0 && step_b == 1) {
      const float av = ra[0];
#pragma omp simd
      for (int64_t i = 0; i < width; ++i) ro[i] = apply_binary(op, av, rb[i]);
    } else if (step_a == 1 && step_b == 1) {
#pragma omp simd
      for (int64_t i = 0; i < width; ++i) ro[i] = apply_binary(op, ra[i], rb[i]);
    } else {
      for (int64_t i = 0; i < width; ++i) ro[i] = apply_binary(op, ra[i * step_a], rb[i * step_b]);
    }
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
    CTE_BINARY_CASE(mul_positive)
    CTE_BINARY_CASE(mul_sign)
#undef CTE_BINARY_CASE
  }
}

void select_cpu(const float* mask, const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = mask[i] != 0.0f ? a[i] : b[i];
}

}  // namespace cte::kern
