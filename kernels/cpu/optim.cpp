// CPU twins of the fused optimizer steps; the per-element rule is shared with
// the CUDA kernels through kernels/common/optim_math.h.
#include "kernels/common/optim_math.h"
#include "kernels/kernels.h"

namespace cte::kern {

void adam_step_cpu(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                   float beta1, float beta2, float eps, float bias_correction1,
                   float bias_correction2, float l1, const float* skip) {
  if (skip != nullptr && *skip != 0.0f) return;
  const AdamScalars s = adam_scalars(lr, bias_correction1, bias_correction2);
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) adam_update(param[i], with_l1(grad[i], param[i], l1), m[i], v[i], beta1, beta2, eps, s);
}

void sgd_step_cpu(float* param, const float* grad, float* buf, int64_t n, float lr,
                  float momentum, float l1, const float* skip) {
  if (skip != nullptr && *skip != 0.0f) return;
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) sgd_update(param[i], with_l1(grad[i], param[i], l1), buf[i], lr, momentum);
}

}  // namespace cte::kern
