// Scalar semantics of the element-wise kernels (UnaryOp / BinaryOp from
// kernels/kernels.h), shared verbatim by the CPU twins (kernels/cpu/) and the
// CUDA kernels (kernels/cuda/elementwise.cu) so both backends evaluate the same
// formula. NaN propagates through every op whose result depends on the value
// (relu, clamp, min, max, sign, ...) so a NaN in a bound is never silently
// turned into a finite number; comparisons with NaN give 0 (false), as in IEEE.
// Only correctly specified libm calls (expf, logf, sqrtf) are used: no fast
// intrinsics, whose error would leak into certified bounds.
#pragma once
#include <math.h>

#include "kernels/common/hd.h"
#include "kernels/kernels.h"

namespace cte::kern {

CTE_HD inline float nan_propagating_min(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  return b < a ? b : a;
}

CTE_HD inline float nan_propagating_max(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  return b > a ? b : a;
}

CTE_HD inline float apply_unary(UnaryOp op, float x, float alpha, float beta) {
  switch (op) {
    case UnaryOp::relu: return x < 0.0f ? 0.0f : x;  // NaN passes through
    case UnaryOp::abs: return fabsf(x);
    case UnaryOp::neg: return -x;
    case UnaryOp::scale: return alpha * x;
    case UnaryOp::add_scalar: return x + alpha;
    case UnaryOp::clamp: return x < alpha ? alpha : (x > beta ? beta : x);
    case UnaryOp::exp: return expf(x);
    case UnaryOp::log: return logf(x);
    case UnaryOp::sqrt: return sqrtf(x);
    case UnaryOp::square: return x * x;
    case UnaryOp::positive: return x > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::sign:
      if (x > 0.0f) return 1.0f;
      if (x < 0.0f) return -1.0f;
      return x == 0.0f ? 0.0f : x;  // +-0 -> 0, NaN stays NaN
  }
  return x;  // unreachable for valid ops
}

CTE_HD inline float apply_binary(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::min: return nan_propagating_min(a, b);
    case BinaryOp::max: return nan_propagating_max(a, b);
    case BinaryOp::gt: return a > b ? 1.0f : 0.0f;
    case BinaryOp::ge: return a >= b ? 1.0f : 0.0f;
    case BinaryOp::lt: return a < b ? 1.0f : 0.0f;
    case BinaryOp::le: return a <= b ? 1.0f : 0.0f;
    case BinaryOp::eq: return a == b ? 1.0f : 0.0f;
    case BinaryOp::mul_positive: return a * apply_unary(UnaryOp::positive, b, 0.0f, 0.0f);
    case BinaryOp::mul_sign: return a * apply_unary(UnaryOp::sign, b, 0.0f, 0.0f);
  }
  return a;  // unreachable for valid ops
}

// Flat offsets into a and b of output element `flat` (row-major over shape.out).
struct BroadcastOffsets {
  int64_t a, b;
};

CTE_HD inline BroadcastOffsets broadcast_offsets(const Broadcast4& shape, int64_t flat) {
  BroadcastOffsets off{0, 0};
  for (int d = 3; d >= 0; --d) {
    const int64_t extent = shape.out[d];
    const int64_t i = flat % extent;
    flat /= extent;
    off.a += i * shape.a_stride[d];
    off.b += i * shape.b_stride[d];
  }
  return off;
}

CTE_HD inline int64_t broadcast_numel(const Broadcast4& shape) {
  return shape.out[0] * shape.out[1] * shape.out[2] * shape.out[3];
}

}  // namespace cte::kern
