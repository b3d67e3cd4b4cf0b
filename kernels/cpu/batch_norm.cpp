// CPU twins of the BatchNorm kernels: per-channel statistics, the normalising
// affine map, and its backward. Channel sums accumulate in double; the
// per-element formulas are kernels/common/batch_norm_math.h, shared with CUDA.
#include "kernels/common/batch_norm_math.h"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// Element k (of n * plane) of channel ch in x [n, channels, plane].
inline int64_t channel_element(int64_t k, int64_t ch, int64_t channels, int64_t plane) {
  return (k / plane) * channels * plane + ch * plane + k % plane;
}

}  // namespace

void batch_norm_stats_cpu(const float* x, float* mean, float* var, int64_t n, int64_t channels, int64_t plane) {
  const int64_t m = n * plane;
#pragma omp parallel for schedule(static) if (m * channels > 32768)
  for (int64_t ch = 0; ch < channels; ++ch) {
    double sum = 0.0;
    for (int64_t k = 0; k < m; ++k) sum += x[channel_element(k, ch, channels, plane)];
    const double mu = m > 0 ? sum / double(m) : 0.0;
    double squares = 0.0;
    for (int64_t k = 0; k < m; ++k) {
      const double d = x[channel_element(k, ch, channels, plane)] - mu;
      squares += d * d;
    }
    mean[ch] = float(mu);
    var[ch] = m > 0 ? float(squares / double(m)) : 0.0f;
  }
}

void batch_norm_apply_cpu(const float* x, const float* mean, const float* var, const float* gamma, const float* beta,
                          float* y, int64_t n, int64_t channels, int64_t plane, float eps) {
  const int64_t total = n * channels * plane;
#pragma omp parallel for schedule(static) if (total > 32768)
  for (int64_t i = 0; i < total; ++i) {
    const int64_t ch = (i / plane) % channels;
    y[i] = batch_norm_value(x[i], mean[ch], batch_norm_inv_std(var[ch], eps), gamma[ch], beta[ch]);
  }
}

void batch_norm_backward_cpu(const float* dy, const float* x, const float* mean, const float* var, const float* gamma,
                             const float* dmean, const float* dvar, float* dx, float* dgamma, float* dbeta, int64_t n,
                             int64_t channels, int64_t plane, float eps, int batch_stats) {
  const int64_t m = n * plane;
#pragma omp parallel for schedule(static) if (m * channels > 32768)
  for (int64_t ch = 0; ch < channels; ++ch) {
    const float inv_std = batch_norm_inv_std(var[ch], eps);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t k = 0; k < m; ++k) {
      const int64_t i = channel_element(k, ch, channels, plane);
      sum_dy += dy[i];
      sum_dy_xhat += double(dy[i]) * ((x[i] - mean[ch]) * inv_std);
    }
    dgamma[ch] = float(sum_dy_xhat);
    dbeta[ch] = float(sum_dy);
    const float dm = dmean ? dmean[ch] : 0.0f, dv = dvar ? dvar[ch] : 0.0f;
    for (int64_t k = 0; k < m; ++k) {
      const int64_t i = channel_element(k, ch, channels, plane);
      dx[i] = batch_norm_input_grad(dy[i], x[i], mean[ch], inv_std, gamma[ch], batch_stats != 0, float(sum_dy),
                                    float(sum_dy_xhat), dm, dv, float(m));
    }
  }
}

}  // namespace cte::kern
