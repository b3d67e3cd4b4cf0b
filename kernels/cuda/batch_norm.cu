// CUDA twins of the BatchNorm kernels. The statistics and the backward run one
// block per channel (grid-striding over channels) with deterministic block
// reductions (block_reduce.cuh); the affine map is element-wise. Per-element
// formulas: kernels/common/batch_norm_math.h, shared with the CPU twins.
#include "kernels/common/batch_norm_math.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

__device__ int64_t channel_element(int64_t k, int64_t ch, int64_t channels, int64_t plane) {
  return (k / plane) * channels * plane + ch * plane + k % plane;
}

// x: [n, channels, plane]; mean, var: [channels]; one block per channel.
__global__ void batch_norm_stats_kernel(const float* x, float* mean, float* var, int64_t n, int64_t channels,
                                        int64_t plane) {
  CTE_DYNAMIC_SHARED(float, shared);
  const int64_t m = n * plane;
  for (int64_t ch = blockIdx.x; ch < channels; ch += gridDim.x) {
    float partial = 0.0f;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) partial += x[channel_element(k, ch, channels, plane)];
    const float mu = m > 0 ? gpu::block_reduce(partial, shared, gpu::SumOp{}) / float(m) : 0.0f;
    float squares = 0.0f;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      const float d = x[channel_element(k, ch, channels, plane)] - mu;
      squares += d * d;
    }
    const float total = gpu::block_reduce(squares, shared, gpu::SumOp{});
    if (threadIdx.x == 0) {
      mean[ch] = mu;
      var[ch] = m > 0 ? total / float(m) : 0.0f;
    }
  }
}

// x, y: [n, channels, plane]; element-wise.
__global__ void batch_norm_apply_kernel(const float* x, const float* mean, const float* var, const float* gamma,
                                        const float* beta, float* y, int64_t n, int64_t channels, int64_t plane,
                                        float eps) {
  CTE_GRID_STRIDE_LOOP(i, n * channels * plane) {
    const int64_t ch = (i / plane) % channels;
    y[i] = batch_norm_value(x[i], mean[ch], batch_norm_inv_std(var[ch], eps), gamma[ch], beta[ch]);
  }
}

// dy, x, dx: [n, channels, plane]; the rest [channels]; one block per channel.
__global__ void batch_norm_backward_kernel(const float* dy, const float* x, const float* mean, const float* var,
                                           const float* gamma, const float* dmean, const float* dvar, float* dx,
                                           float* dgamma, float* dbeta, int64_t n, int64_t channels, int64_t plane,
                                           float eps, int batch_stats) {
  CTE_DYNAMIC_SHARED(float, shared);
  const int64_t m = n * plane;
  for (int64_t ch = blockIdx.x; ch < channels; ch += gridDim.x) {
    const float inv_std = batch_norm_inv_std(var[ch], eps);
    float part_dy = 0.0f, part_dy_xhat = 0.0f;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      const int64_t i = channel_element(k, ch, channels, plane);
      part_dy += dy[i];
      part_dy_xhat += dy[i] * ((x[i] - mean[ch]) * inv_std);
    }
    const float sum_dy = gpu::block_reduce(part_dy, shared, gpu::SumOp{});
    const float sum_dy_xhat = gpu::block_reduce(part_dy_xhat, shared, gpu::SumOp{});
    if (threadIdx.x == 0) {
      dgamma[ch] = sum_dy_xhat;
      dbeta[ch] = sum_dy;
    }
    const float dm = dmean ? dmean[ch] : 0.0f, dv = dvar ? dvar[ch] : 0.0f;
    for (int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      const int64_t i = channel_element(k, ch, channels, plane);
      dx[i] = batch_norm_input_grad(dy[i], x[i], mean[ch], inv_std, gamma[ch], batch_stats != 0, sum_dy, sum_dy_xhat,
                                    dm, dv, float(m));
    }
  }
}


}  // namespace

void batch_norm_stats_cuda(const float* x, float* mean, float* var, int64_t n, int64_t channels, int64_t plane) {
  if (channels <= 0) return;
  const gpu::RowLaunch shape = gpu::row_launch(channels, n * plane);  // one block per channel
  gpu::launch("batch_norm_stats", shape.grid, shape.block, shape.shared_bytes, batch_norm_stats_kernel, x, mean, var,
              n, channels, plane);
}

void batch_norm_apply_cuda(const float* x, const float* mean, const float* var, const float* gamma,
                           const float* beta, float* y, int64_t n, int64_t channels, int64_t plane, float eps) {
  gpu::launch_1d("batch_norm_apply", n * channels * plane, batch_norm_apply_kernel, x, mean, var, gamma, beta, y, n,
                 channels, plane, eps);
}

void batch_norm_backward_cuda(const float* dy, const float* x, const float* mean, const float* var,
                              const float* gamma, const float* dmean, const float* dvar, float* dx, float* dgamma,
                              float* dbeta, int64_t n, int64_t channels, int64_t plane, float eps, int batch_stats) {
  if (channels <= 0) return;
  const gpu::RowLaunch shape = gpu::row_launch(channels, n * plane);  // one block per channel
  gpu::launch("batch_norm_backward", shape.grid, shape.block, shape.shared_bytes, batch_norm_backward_kernel, dy, x,
              mean, var, gamma, dmean, dvar, dx, dgamma, dbeta, n, channels, plane, eps, batch_stats);
}

}  // namespace cte::kern
