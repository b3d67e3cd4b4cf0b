// CPU twins of the fused relaxation kernels (kernels/relax_kernels.h): the
// Box and hBox ReLU steps, the backsubstitution step through a ReLU and the
// input step, with their backward kernels, on OpenMP. The per-neuron formulas
// come from kernels/common/relu_relaxation.h, shared with kernels/cuda/relax.cu.
// The ReLU step first tabulates each neuron's linear bounds once per (sample,
// neuron), one array per coefficient so the loops over neurons vectorize, since
// all `rows` coefficient rows of a sample read the same neuron's bounds. Sums
// over rows run in the order k = 0, 1, ... and sums over samples in the order
// s = 0, 1, ... like the CUDA twin (sums over neurons are vectorized), and no
// two threads write one element, so results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "kernels/relax_kernels.h"

namespace cte::kern {
namespace {

constexpr int64_t kParallelThreshold = 1 << 14;  // elements below which threads cost more than they save
// The backward's neuron block: its bounds and running sums (up to 10 arrays)
// stay in L1 or registers while the rows go by: two 512-bit registers per
// array (blocks of 64 spilled and ran slower in a trial on AVX-512). Its rows
// are n floats apart: d_coeffs_out is prefetched kPrefetchRows rows ahead.
constexpr int64_t kNeuronBlock = 32;
constexpr int64_t kPrefetchRows = 16;

// Per-thread scratch reused across calls (a training step must not allocate).
float* scratch_floats(size_t count) {
  thread_local std::vector<float> table;
  if (table.size() < count) table.resize(count);
  return table.data();
}

// Each neuron's four coefficients, tabulated once per (sample, neuron) as
// separate arrays so the loops over neurons vectorize.
struct BoundsTable {
  const float *ls, *li, *us, *ui;
  ReluLinearBounds at(int64_t i) const { return {ls[i], li[i], us[i], ui[i]}; }
  BoundsTable row(int64_t offset) const { return {ls + offset, li + offset, us + offset, ui + offset}; }
};

// per_neuron(i, j) for every neuron i = s n + j of `batch` samples of n.
template <class PerNeuron>
void for_each_neuron(int64_t batch, int64_t n, PerNeuron per_neuron) {
#pragma omp parallel for collapse(2) schedule(static) if (batch * n > kParallelThreshold)
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t j = 0; j < n; ++j) per_neuron(s * n + j, j);
}

// The tables of `batch` samples of n neurons, with the bias below folded in
// where given (fold_bias_below).
BoundsTable tabulate_bounds(ReluRule rule, const float* lower, const float* upper, const float* bias_below,
                            int64_t batch, int64_t n, float* storage) {
  const int64_t count = batch * n;
  float* ls = storage;
  float* li = ls + count;
  float* us = li + count;
  float* ui = us + count;
  for_each_neuron(batch, n, [&](int64_t i, int64_t j) {
    ReluLinearBounds b = relu_linear_bounds(rule, lower[i], upper[i]);
    if (bias_below) b = fold_bias_below(b, bias_below[j]);
    ls[i] = b.lower_slope, li[i] = b.lower_intercept, us[i] = b.upper_slope, ui[i] = b.upper_intercept;
  });
  return {ls, li, us, ui};
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
                              const float* upper, const float* bias_below, float* coeffs_out, float* bias_lower,
                              float* bias_upper, BacksubShape shape) {
  const int64_t batch = shape.batch, rows = shape.rows, n = shape.n;
  const bool shared = shape.shared;
  if (batch == 0 || rows == 0) return;
  const int64_t count = batch * n;
  const BoundsTable bounds =
      tabulate_bounds(rule, lower, upper, bias_below, batch, n, scratch_floats(size_t(4 * count)));
  const int64_t total_rows = batch * rows;
#pragma omp parallel for schedule(static) if (total_rows * n > kParallelThreshold)
  for (int64_t row = 0; row < total_rows; ++row) {
    const int64_t s = row / rows, k = row % rows;
    const float* a = coeffs + ((shared ? 0 : s) * rows + k) * n;
    float* out = coeffs_out + row * n;
    const BoundsTable sample_bounds = bounds.row(s * n);
    float sum_lower = 0.0f, sum_upper = 0.0f;
#pragma omp simd reduction(+ : sum_lower, sum_upper)
    for (int64_t j = 0; j < n; ++j) {
      const BacksubElement e = backsub_relu_element(sample_bounds.at(j), a[j]);
      out[j] = e.coeff_out;
      sum_lower += e.bias_lower;
      sum_upper += e.bias_upper;
    }
    if (bias_lower) bias_lower[row] = sum_lower;
    if (bias_upper) bias_upper[row] = sum_upper;
  }
}

namespace {

// The backward of a ReLU step for neurons [j0, j0 + kNeuronBlock) (fewer at the end) of samples
// [s_first, s_last): each row's coefficient gradients (written, or added into the shared block's)
// and, over the rows in order k = 0, 1, ..., the sign sums of those neurons (BacksubSignSums), then
// their d_lower, d_upper and d_bias_below (backsub_relu_neuron_grad). Which incoming gradients
// exist is compiled in: the loop is bound by how many arrays it touches per element.
template <bool kShared, bool kLowerBias, bool kUpperBias, bool kBoundSums>
void relu_backward_block(ReluRule rule, const float* coeffs, const float* lower, const float* upper,
                         const float* bias_below, const float* d_coeffs_out, const float* d_bias_lower,
                         const float* d_bias_upper, float* d_coeffs, float* d_lower, float* d_upper,
                         float* d_bias_below, const BoundsTable& bounds, int64_t rows, int64_t n, int64_t j0,
                         int64_t s_first, int64_t s_last) {
  const int64_t width = std::min(kNeuronBlock, n - j0);
  alignas(64) float ls[kNeuronBlock], li[kNeuronBlock], us[kNeuronBlock], ui[kNeuronBlock];
  alignas(64) float out_pos[kNeuronBlock], out_neg[kNeuronBlock], lower_pos[kNeuronBlock], lower_neg[kNeuronBlock],
      upper_pos[kNeuronBlock], upper_neg[kNeuronBlock];
  for (int64_t s = s_first; s < s_last; ++s) {
    for (int64_t j = 0; j < width; ++j) {
      const int64_t i = s * n + j0 + j;
      ls[j] = bounds.ls[i], li[j] = bounds.li[i], us[j] = bounds.us[i], ui[j] = bounds.ui[i];
      out_pos[j] = out_neg[j] = lower_pos[j] = lower_neg[j] = upper_pos[j] = upper_neg[j] = 0.0f;
    }
    for (int64_t k = 0; k < rows; ++k) {
      const int64_t row = s * rows + k;
      const float* a = coeffs + ((kShared ? 0 : s) * rows + k) * n + j0;
      const float* d_out = d_coeffs_out + row * n + j0;
      float* d_a = d_coeffs + (kShared ? k : row) * n + j0;
      const float dbl = kLowerBias ? d_bias_lower[row] : 0.0f, dbu = kUpperBias ? d_bias_upper[row] : 0.0f;
      // A block's rows are n floats apart, a stride the hardware prefetchers miss.
      if (k + kPrefetchRows < rows) {
        __builtin_prefetch(d_out + kPrefetchRows * n);
        __builtin_prefetch(d_out + kPrefetchRows * n + kNeuronBlock / 2);
      }
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        const float g = backsub_relu_element_d_coeff<kLowerBias, kUpperBias>({ls[j], li[j], us[j], ui[j]}, a[j],
                                                                             d_out[j], dbl, dbu);
        if constexpr (kShared) d_a[j] += g;
        else d_a[j] = g;
        if constexpr (kBoundSums) {
          add_signed(out_pos[j], out_neg[j], a[j], d_out[j]);
          if constexpr (kLowerBias) add_signed(lower_pos[j], lower_neg[j], a[j], dbl);
          if constexpr (kUpperBias) add_signed(upper_pos[j], upper_neg[j], a[j], dbu);
        }
      }
    }
    if constexpr (kBoundSums) {
      for (int64_t j = 0; j < width; ++j) {
        const int64_t i = s * n + j0 + j;
        ReluLinearBoundsGrad g = relu_linear_bounds_grad(rule, lower[i], upper[i]);
        if (bias_below) g = fold_bias_below(g, bias_below[j0 + j]);
        const BacksubNeuronGrad out = backsub_relu_neuron_grad(
            {ls[j], li[j], us[j], ui[j]}, g,
            {out_pos[j], out_neg[j], lower_pos[j], lower_neg[j], upper_pos[j], upper_neg[j]});
        d_lower[i] = out.d_l;
        d_upper[i] = out.d_u;
        if (d_bias_below) d_bias_below[i] = out.d_bias_below;
      }
    }
  }
}

}  // namespace

// Work goes by blocks of kNeuronBlock neurons. Shared coefficients: a thread
// owns whole blocks, walking every sample through them (their gradient sums
// the samples in order); otherwise it owns (sample, block) pairs. The
// coefficients, bounds and sums of a block stay in L1 or registers while
// d_coeffs_out streams by once (README, "The ReLU step's backward": its
// measurements against the per-row derivative tables this replaced).
void backsub_relu_backward_cpu(ReluRule rule, const float* coeffs, const float* lower,
                               const float* upper, const float* bias_below, const float* d_coeffs_out,
                               const float* d_bias_lower, const float* d_bias_upper,
                               float* d_coeffs, float* d_lower, float* d_upper, float* d_bias_below,
                               BacksubShape shape) {
  const int64_t batch = shape.batch, rows = shape.rows, n = shape.n;
  const bool shared = shape.shared;
  if (shared) std::fill(d_coeffs, d_coeffs + rows * n, 0.0f);
  const int64_t count = batch * n;
  // hBox's symbolic rows on shared coefficients have d_lower = d_upper = 0 exactly.
  const bool bound_sums = backsub_relu_backward_sums_bounds(rule, shared, d_bias_below != nullptr);
  if (!bound_sums || rows == 0) {
    std::fill(d_lower, d_lower + count, 0.0f);
    std::fill(d_upper, d_upper + count, 0.0f);
    if (d_bias_below) std::fill(d_bias_below, d_bias_below + count, 0.0f);
  }
  if (batch == 0 || rows == 0 || n == 0) return;
  const BoundsTable bounds = tabulate_bounds(rule, lower, upper, bias_below, batch, n, scratch_floats(size_t(4 * count)));
  const int64_t blocks = (n + kNeuronBlock - 1) / kNeuronBlock;
  [[maybe_unused]] const bool threaded = batch * rows * n > kParallelThreshold;  // (unused without OpenMP)
  auto run = [&](auto lower_bias, auto upper_bias, auto sums) {
    constexpr bool kLower = decltype(lower_bias)::value, kUpper = decltype(upper_bias)::value,
                   kSums = decltype(sums)::value;
    if (shared) {
#pragma omp parallel for schedule(static) if (threaded)
      for (int64_t jb = 0; jb < blocks; ++jb)
        relu_backward_block<true, kLower, kUpper, kSums>(rule, coeffs, lower, upper, bias_below, d_coeffs_out,
                                                         d_bias_lower, d_bias_upper, d_coeffs, d_lower, d_upper,
                                                         d_bias_below, bounds, rows, n, jb * kNeuronBlock, 0, batch);
    } else {
#pragma omp parallel for collapse(2) schedule(static) if (threaded)
      for (int64_t s = 0; s < batch; ++s)
        for (int64_t jb = 0; jb < blocks; ++jb)
          relu_backward_block<false, kLower, kUpper, kSums>(rule, coeffs, lower, upper, bias_below, d_coeffs_out,
                                                            d_bias_lower, d_bias_upper, d_coeffs, d_lower, d_upper,
                                                            d_bias_below, bounds, rows, n, jb * kNeuronBlock, s, s + 1);
    }
  };
  // The gradient arguments that exist, compiled in (with shared or not: 16 variants of one loop).
  auto with_sums = [&](auto lower_bias, auto upper_bias) {
    if (bound_sums) run(lower_bias, upper_bias, std::true_type{});
    else run(lower_bias, upper_bias, std::false_type{});
  };
  auto with_upper = [&](auto lower_bias) {
    if (d_bias_upper) with_sums(lower_bias, std::true_type{});
    else with_sums(lower_bias, std::false_type{});
  };
  if (d_bias_lower) with_upper(std::true_type{});
  else with_upper(std::false_type{});
}

void backsub_input_forward_cpu(const float* coeffs, const float* centre, const float* radius, float* centre_term,
                               float* spread, int64_t batch, int64_t rows, int64_t n) {
  const int64_t total_rows = batch * rows;
#pragma omp parallel for schedule(static) if (total_rows * n > kParallelThreshold)
  for (int64_t row = 0; row < total_rows; ++row) {
    const float* a = coeffs + row * n;
    const float* c = centre + (row / rows) * n;
    const float* r = radius + (row / rows) * n;
    float sum_centre = 0.0f, sum_spread = 0.0f;
#pragma omp simd reduction(+ : sum_centre, sum_spread)
    for (int64_t j = 0; j < n; ++j) {
      sum_centre += a[j] * c[j];
      sum_spread += (a[j] < 0.0f ? -a[j] : a[j]) * r[j];
    }
    centre_term[row] = sum_centre;
    spread[row] = sum_spread;
  }
}

void backsub_input_backward_cpu(const float* coeffs, const float* centre, const float* radius,
                                const float* d_centre_term, const float* d_spread, float* d_coeffs, float* d_centre,
                                float* d_radius, int64_t batch, int64_t rows, int64_t n) {
  const int64_t total_rows = batch * rows;
#pragma omp parallel for schedule(static) if (total_rows * n > kParallelThreshold)
  for (int64_t row = 0; row < total_rows; ++row) {
    const float* a = coeffs + row * n;
    const float* c = centre + (row / rows) * n;
    const float* r = radius + (row / rows) * n;
    const float dc = d_centre_term ? d_centre_term[row] : 0.0f, ds = d_spread ? d_spread[row] : 0.0f;
    float* out = d_coeffs + row * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) out[j] = dc * c[j] + ds * abs_derivative(a[j]) * r[j];
  }
  if (!d_centre && !d_radius) return;
  // Each thread owns whole samples and sums their rows in order.
#pragma omp parallel for schedule(static) if (total_rows * n > kParallelThreshold)
  for (int64_t s = 0; s < batch; ++s) {
    float* dcen = d_centre ? d_centre + s * n : nullptr;
    float* drad = d_radius ? d_radius + s * n : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      if (dcen) dcen[j] = 0.0f;
      if (drad) drad[j] = 0.0f;
    }
    for (int64_t k = 0; k < rows; ++k) {
      const int64_t row = s * rows + k;
      const float* a = coeffs + row * n;
      const float dc = d_centre_term ? d_centre_term[row] : 0.0f, ds = d_spread ? d_spread[row] : 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        if (dcen) dcen[j] += dc * a[j];
        if (drad) drad[j] += ds * (a[j] < 0.0f ? -a[j] : a[j]);
      }
    }
  }
}

}  // namespace cte::kern
