// BatchNorm's per-element arithmetic, shared by the CPU twins
// (kernels/cpu/batch_norm.cpp) and the CUDA kernels (kernels/cuda/batch_norm.cu)
// so both backends evaluate the same formula: y = (x - mean) inv_std gamma + beta
// with inv_std = 1 / sqrt(var + eps) (PyTorch's, eps inside the root).
#pragma once
#include <math.h>

#include "kernels/common/hd.h"

namespace cte::kern {

CTE_HD inline float batch_norm_inv_std(float var, float eps) { return 1.0f / sqrtf(var + eps); }

CTE_HD inline float batch_norm_value(float x, float mean, float inv_std, float gamma, float beta) {
  return (x - mean) * inv_std * gamma + beta;
}

// dL/dx of one element. Evaluation mode (fixed statistics): dy gamma inv_std.
// Batch statistics over m elements per channel, with sum_dy = sum dy and
// sum_dy_xhat = sum dy xhat over the channel, plus the gradients reaching the
// batch mean and (biased) variance as outputs of their own:
//   gamma inv_std (dy - sum_dy / m - xhat sum_dy_xhat / m) + dmean / m + dvar 2 (x - mean) / m.
CTE_HD inline float batch_norm_input_grad(float dy, float x, float mean, float inv_std, float gamma, bool batch_stats,
                                          float sum_dy, float sum_dy_xhat, float dmean, float dvar, float m) {
  if (!batch_stats) return dy * gamma * inv_std;
  const float xhat = (x - mean) * inv_std;
  return gamma * inv_std * (dy - sum_dy / m - xhat * sum_dy_xhat / m) + dmean / m + dvar * 2.0f * (x - mean) / m;
}

}  // namespace cte::kern
