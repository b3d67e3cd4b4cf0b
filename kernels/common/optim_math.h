// The per-element update rules of the fused optimizer kernels (adam_step,
// sgd_step in kernels/kernels.h), shared by the CPU twins (kernels/cpu/optim.cpp)
// and the CUDA kernels (kernels/cuda/optim.cu) so both apply the same formula
// in the same order of operations.
#pragma once
#include <math.h>

#include "kernels/common/hd.h"

namespace cte::kern {

// Adam (Kingma & Ba), with the bias corrections 1 - beta^t passed in:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
CTE_HD inline void adam_update(float& param, float grad, float& m, float& v, float lr,
                               float beta1, float beta2, float eps, float bias_correction1,
                               float bias_correction2) {
  m = beta1 * m + (1.0f - beta1) * grad;
  v = beta2 * v + (1.0f - beta2) * (grad * grad);
  const float m_hat = m / bias_correction1;
  const float v_hat = v / bias_correction2;
  param -= lr * m_hat / (sqrtf(v_hat) + eps);
}

// SGD with momentum as PyTorch (dampening 0, no Nesterov):
//   buf = momentum * buf + g;  p -= lr * buf.
CTE_HD inline void sgd_update(float& param, float grad, float& buf, float lr, float momentum) {
  buf = momentum * buf + grad;
  param -= lr * buf;
}

}  // namespace cte::kern
