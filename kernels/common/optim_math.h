// The per-element update rules of the fused optimizer kernels (adam_step,
// sgd_step in kernels/kernels.h), shared by the CPU twins (kernels/cpu/optim.cpp)
// and the CUDA kernels (kernels/cuda/optim.cu) so both apply the same formula
// in the same order of operations.
#pragma once
#include <math.h>

#include "kernels/common/hd.h"

namespace cte::kern {

// The gradient of loss + l1 * sum |p|: the L1 penalty folded into the step,
// the sum the tape's sum_abs backward would accumulate (sign(0) = 0). The sign
// is written without branches so the CPU loop stays vectorised (a branchy one
// made Adam 1.5x slower); it gives 0 for a NaN parameter, whose NaN loss skips
// the step anyway. l1 = 0 adds exactly 0.
CTE_HD inline float with_l1(float grad, float param, float l1) {
  const float sign = (param > 0.0f ? 1.0f : 0.0f) - (param < 0.0f ? 1.0f : 0.0f);
  return grad + l1 * sign;
}

// Adam (Kingma & Ba), with the bias corrections bc = 1 - beta^t passed in:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps),
// arranged as PyTorch's Adam (step size lr / bc1, sqrt(v) scaled by sqrt(bc2)),
// with the division by sqrt(bc2) replaced by a multiply by its reciprocal, both
// folded once per call (AdamScalars): p -= (lr / bc1) * m / (sqrt(v) * (1 / sqrt(bc2)) + eps).
// One division and one square root per element instead of three and one; the
// last bits differ from PyTorch's and from the textbook order (one more rounding).
struct AdamScalars {
  float step_size;     // lr / bc1
  float inv_sqrt_bc2;  // 1 / sqrt(bc2)
};

CTE_HD inline AdamScalars adam_scalars(float lr, float bias_correction1, float bias_correction2) {
  return {lr / bias_correction1, 1.0f / sqrtf(bias_correction2)};
}

CTE_HD inline void adam_update(float& param, float grad, float& m, float& v, float beta1, float beta2,
                               float eps, AdamScalars s) {
  m = beta1 * m + (1.0f - beta1) * grad;
  v = beta2 * v + (1.0f - beta2) * (grad * grad);
  param -= s.step_size * m / (sqrtf(v) * s.inv_sqrt_bc2 + eps);
}

// SGD with momentum as PyTorch (dampening 0, no Nesterov):
//   buf = momentum * buf + g;  p -= lr * buf.
CTE_HD inline void sgd_update(float& param, float grad, float& buf, float lr, float momentum) {
  buf = momentum * buf + grad;
  param -= lr * buf;
}

}  // namespace cte::kern
