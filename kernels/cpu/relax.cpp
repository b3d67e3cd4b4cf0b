// CPU twins of the fused relaxation kernels (kernels/relax_kernels.h): the
// Box and hBox ReLU steps and the backsubstitution step through a ReLU, with
// their backward kernels, on OpenMP. The per-neuron formulas come from
// kernels/common/relu_relaxation.h, shared with kernels/cuda/relax.cu. The
// backsubstitution kernels first tabulate each neuron's linear bounds (and
// their derivatives) once per (sample, neuron), since every one of the `rows`
// coefficient rows of a sample reads the same neuron's bounds. Sums over rows
// run in the order k = 0, 1, ... like the CUDA twin, and no two threads write
// one element, so results do not depend on the thread count.
#include <cstddef>
#include <vector>

#include "kernels/relax_kernels.h"

namespace cte::kern {
namespace {

constexpr int64_t kParallelThreshold = 1 << 14;  // elements below which threads cost more than they save

// Per-thread scratch reused across calls (a training step must not allocate).
template <typename T>
T* scratch_table(size_t count) {
  thread_local std::vector<T> table;
  if (table.size() < count) table.resize(count);
  return table.data();
}

// bounds[s * n + j] for every neuron of every sample.
const ReluLinearBounds* tabulate_bounds(ReluRule rule, const float* lower, const float* upper,
                                        int64_t count) {
  ReluLinearBounds* table = scratch_table<ReluLinearBounds>(size_t(count));
#pragma omp parallel for schedule(static) if (count > kParallelThreshold)
  for (int64_t i = 0; i < count; ++i) table[i] = relu_linear_bounds(rule, lower[i], upper[i]);
  return table;
}

const ReluLinearBoundsGrad* tabulate_bounds_grad(ReluRule rule, const float* lower, const float* upper,
                                                 int64_t count) {
  ReluLinearBoundsGrad* table = scratch_table<ReluLinearBoundsGrad>(size_t(count));
#pragma omp parallel for schedule(static) if (count > kParallelThreshold)
  for (int64_t i = 0; i < count; ++i) table[i] = relu_linear_bounds_grad(rule, lower[i], upper[i]);
  return table;
}

}  // namespace

void box_relu_forward_cpu(const float* centre, const float* radius, float* centre_out,
                          float* radius_out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const CentreRadius out = box_relu(centre[i], radius[i]);
    centre_out[i] = out.centre;
    radius_out[i] = out.radius;
  }
}

void box_relu_backward_cpu(const float* centre, const float* radius, const float* d_centre_out,
                           const float* d_radius_out, float* d_centre, float* d_radius, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const CentreRadius g = box_relu_grad(centre[i], radius[i], d_centre_out[i], d_radius_out[i]);
    d_centre[i] = g.centre;
    d_radius[i] = g.radius;
  }
}

void hbox_relu_forward_cpu(const float* centre, const float* g_norm, const float* box,
                           float* centre_out, float* box_out, float* lower_out, float* upper_out,
                           int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const HboxNeuron out = hbox_relu(centre[i], g_norm[i], box[i]);
    centre_out[i] = out.centre;
    box_out[i] = out.box;
    lower_out[i] = out.lower;
    upper_out[i] = out.upper;
  }
}

void hbox_relu_backward_cpu(const float* centre, const float* g_norm, const float* box,
                            const float* d_centre_out, const float* d_box_out, float* d_centre,
                            float* d_g_norm, float* d_box, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const HboxNeuronGrad g = hbox_relu_grad(centre[i], g_norm[i], box[i], d_centre_out[i], d_box_out[i]);
    d_centre[i] = g.d_centre;
    d_g_norm[i] = g.d_g_norm;
    d_box[i] = g.d_box;
  }
}

void backsub_relu_forward_cpu(ReluRule rule, const float* coeffs, const float* lower,
                              const float* upper, float* coeffs_out, float* bias_lower,
                              float* bias_upper, int64_t batch, int64_t rows, int64_t n,
                              bool shared) {
  if (batch == 0 || rows == 0) return;
  const ReluLinearBounds* bounds = tabulate_bounds(rule, lower, upper, batch * n);
  const int64_t total_rows = batch * rows;
#pragma omp parallel for schedule(static) if (total_rows * n > kParallelThreshold)
  for (int64_t row = 0; row < total_rows; ++row) {
    const int64_t s = row / rows, k = row % rows;
    const float* a = coeffs + ((shared ? 0 : s) * rows + k) * n;
    const ReluLinearBounds* b = bounds + s * n;
    float* out = coeffs_out + row * n;
    float sum_lower = 0.0f, sum_upper = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const BacksubElement e = backsub_relu_element(b[j], a[j]);
      out[j] = e.coeff_out;
      sum_lower += e.bias_lower;
      sum_upper += e.bias_upper;
    }
    if (bias_lower) bias_lower[row] = sum_lower;
    if (bias_upper) bias_upper[row] = sum_upper;
  }
}

void backsub_relu_backward_cpu(ReluRule rule, const float* coeffs, const float* lower,
                               const float* upper, const float* d_coeffs_out,
                               const float* d_bias_lower, const float* d_bias_upper,
                               float* d_coeffs, float* d_lower, float* d_upper, int64_t batch,
                               int64_t rows, int64_t n, bool shared) {
  if (batch == 0) {  // no sample reads the shared block: its gradient is zero
    if (shared)
      for (int64_t i = 0; i < rows * n; ++i) d_coeffs[i] = 0.0f;
    return;
  }
  const int64_t count = batch * n;
  const ReluLinearBounds* bounds = tabulate_bounds(rule, lower, upper, count);
  const ReluLinearBoundsGrad* grads = tabulate_bounds_grad(rule, lower, upper, count);
  auto element_grad = [&](int64_t s, int64_t k, int64_t j) {
    const int64_t row = s * rows + k;
    const float a = coeffs[((shared ? 0 : s) * rows + k) * n + j];
    return backsub_relu_element_grad(bounds[s * n + j], grads[s * n + j], a, d_coeffs_out[row * n + j],
                                     d_bias_lower ? d_bias_lower[row] : 0.0f,
                                     d_bias_upper ? d_bias_upper[row] : 0.0f);
  };
  // d_lower, d_upper: each thread owns whole samples and sums their rows in order.
#pragma omp parallel for schedule(static) if (batch * rows * n > kParallelThreshold)
  for (int64_t s = 0; s < batch; ++s) {
    float* dl = d_lower + s * n;
    float* du = d_upper + s * n;
    for (int64_t j = 0; j < n; ++j) dl[j] = du[j] = 0.0f;
    for (int64_t k = 0; k < rows; ++k)
      for (int64_t j = 0; j < n; ++j) {
        const BacksubElementGrad g = element_grad(s, k, j);
        dl[j] += g.d_l;
        du[j] += g.d_u;
      }
  }
  if (rows == 0) return;
  if (!shared) {
#pragma omp parallel for schedule(static) if (batch * rows * n > kParallelThreshold)
    for (int64_t row = 0; row < batch * rows; ++row)
      for (int64_t j = 0; j < n; ++j) d_coeffs[row * n + j] = element_grad(row / rows, row % rows, j).d_coeff;
    return;
  }
  // Shared coefficients: each thread owns whole rows and sums the samples in order.
#pragma omp parallel for schedule(static) if (batch * rows * n > kParallelThreshold)
  for (int64_t k = 0; k < rows; ++k) {
    float* out = d_coeffs + k * n;
    for (int64_t j = 0; j < n; ++j) out[j] = 0.0f;
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t j = 0; j < n; ++j) out[j] += element_grad(s, k, j).d_coeff;
  }
}

}  // namespace cte::kern
