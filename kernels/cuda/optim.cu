// CUDA twins of the fused optimizer steps (adam_step, sgd_step): one thread per
// parameter, updating param and its optimizer state in place in one pass. The
// per-element rule is kernels/common/optim_math.h, shared with the CPU twins.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/common/optim_math.h"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// param, grad, m, v: [n]; param, m and v are updated in place unless skip[0] != 0;
// l1: the L1 penalty folded into the gradient (with_l1).
__global__ void adam_step_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                                 float beta1, float beta2, float eps, AdamScalars s, float l1,
                                 const float* skip) {
  if (skip != nullptr && *skip != 0.0f) return;  // one flag for the whole grid: no divergence
  CTE_GRID_STRIDE_LOOP(i, n) { adam_update(param[i], with_l1(grad[i], param[i], l1), m[i], v[i], beta1, beta2, eps, s); }
}

// param, grad, buf: [n]; param and buf are updated in place unless skip[0] != 0.
__global__ void sgd_step_kernel(float* param, const float* grad, float* buf, int64_t n, float lr,
                                float momentum, float l1, const float* skip) {
  if (skip != nullptr && *skip != 0.0f) return;
  CTE_GRID_STRIDE_LOOP(i, n) { sgd_update(param[i], with_l1(grad[i], param[i], l1), buf[i], lr, momentum); }
}

}  // namespace

void adam_step_cuda(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                    float beta1, float beta2, float eps, float bias_correction1,
                    float bias_correction2, float l1, const float* skip) {
  gpu::launch_1d("adam_step", n, adam_step_kernel, param, grad, m, v, n, beta1, beta2, eps,
                 adam_scalars(lr, bias_correction1, bias_correction2), l1, skip);
}

void sgd_step_cuda(float* param, const float* grad, float* buf, int64_t n, float lr,
                   float momentum, float l1, const float* skip) {
  gpu::launch_1d("sgd_step", n, sgd_step_kernel, param, grad, buf, n, lr, momentum, l1, skip);
}

}  // namespace cte::kern
