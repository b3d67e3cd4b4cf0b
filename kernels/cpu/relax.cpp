// CPU twins of the fused relaxation kernels (kernels/relax_kernels.h): the
// Box and hBox ReLU steps, the backsubstitution step through a ReLU and the
// input step, with their backward kernels, on OpenMP. The per-neuron formulas
// come from kernels/common/relu_relaxation.h, shared with kernels/cuda/relax.cu.
// The ReLU step first tabulates each neuron's linear bounds (and their
// derivatives) once per (sample, neuron), one array per coefficient so the
// loops over neurons vectorize, since all `rows` coefficient rows of a sample
// read the same neuron's bounds. Sums over rows run in the order k = 0, 1, ...
// like the CUDA twin (sums over neurons are vectorized), and no two threads
// write one element, so results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "kernels/relax_kernels.h"

namespace cte::kern {
namespace {

constexpr int64_t kParallelThreshold = 1 << 14;  // elements below which threads cost more than they save
constexpr int64_t kSharedBlockFloats = int64_t(1) << 15;  // 128 KiB of shared rows (and as much of their sums) in L2

// Per-thread scratch reused across calls (a training step must not allocate).
float* scratch_floats(size_t count) {
  thread_local std::vector<float> table;
  if (table.size() < count) table.resize(count);
  return table.data();
}

// Each neuron's four coefficients (and, for the backward, their eight
// partial derivatives), tabulated once per (sample, neuron) as separate
// arrays so the loops over neurons vectorize.
struct BoundsTable {
  const float *ls, *li, *us, *ui;
  ReluLinearBounds at(int64_t i) const { return {ls[i], li[i], us[i], ui[i]}; }
  BoundsTable row(int64_t offset) const { return {ls + offset, li + offset, us + offset, ui + offset}; }
};
struct BoundsGradTable {
  const float* d[8];  // d/dl of ls, li, us, ui, then d/du of the same
  // The table of one sample, its pointers in locals the vectorizer can keep in registers.
  struct Row {
    const float *l0, *l1, *l2, *l3, *u0, *u1, *u2, *u3;
    ReluLinearBoundsGrad at(int64_t j) const { return {{l0[j], l1[j], l2[j], l3[j]}, {u0[j], u1[j], u2[j], u3[j]}}; }
  };
  Row row(int64_t offset) const {
    return {d[0] + offset, d[1] + offset, d[2] + offset, d[3] + offset,
            d[4] + offset, d[5] + offset, d[6] + offset, d[7] + offset};
  }
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

BoundsGradTable tabulate_bounds_grad(ReluRule rule, const float* lower, const float* upper, const float* bias_below,
                                     int64_t batch, int64_t n, float* storage) {
  const int64_t count = batch * n;
  BoundsGradTable t;
  float* d[8];
  for (int k = 0; k < 8; ++k) t.d[k] = d[k] = storage + k * count;
  for_each_neuron(batch, n, [&](int64_t i, int64_t j) {
    ReluLinearBoundsGrad g = relu_linear_bounds_grad(rule, lower[i], upper[i]);
    if (bias_below) g = fold_bias_below(g, bias_below[j]);
    d[0][i] = g.d_l.lower_slope, d[1][i] = g.d_l.lower_intercept, d[2][i] = g.d_l.upper_slope,
    d[3][i] = g.d_l.upper_intercept;
    d[4][i] = g.d_u.lower_slope, d[5][i] = g.d_u.lower_intercept, d[6][i] = g.d_u.upper_slope,
    d[7][i] = g.d_u.upper_intercept;
  });
  return t;
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

void backsub_relu_backward_cpu(ReluRule rule, const float* coeffs, const float* lower,
                               const float* upper, const float* bias_below, const float* d_coeffs_out,
                               const float* d_bias_lower, const float* d_bias_upper,
                               float* d_coeffs, float* d_lower, float* d_upper, float* d_bias_below,
                               BacksubShape shape) {
  const int64_t batch = shape.batch, rows = shape.rows, n = shape.n;
  const bool shared = shape.shared;
  if (batch == 0) {  // no sample reads the shared block: its gradient is zero
    if (shared)
      for (int64_t i = 0; i < rows * n; ++i) d_coeffs[i] = 0.0f;
    return;
  }
  const int64_t count = batch * n;
  float* storage = scratch_floats(size_t(12 * count));
  const BoundsTable bounds = tabulate_bounds(rule, lower, upper, bias_below, batch, n, storage);
  const BoundsGradTable grads = tabulate_bounds_grad(rule, lower, upper, bias_below, batch, n, storage + 4 * count);
  // Rows [k_first, k_last) of sample s: their coefficient gradients (written
  // when not shared; with kSharedSum added into the shared block's sums) and
  // their terms of d_lower, d_upper (and d_bias_below), added in row order.
  // The bias's sum is compiled in only where asked for, the shared block's
  // only where this pass also computes it: the loop is memory-bound, and each
  // running sum is another stream.
  auto rows_pass = [&](int64_t s, int64_t k_first, int64_t k_last, auto bias_grad, auto shared_sum) {
    constexpr bool kBiasGrad = decltype(bias_grad)::value, kSharedSum = decltype(shared_sum)::value;
    float* dl = d_lower + s * n;
    float* du = d_upper + s * n;
    float* db = kBiasGrad ? d_bias_below + s * n : nullptr;
    const BoundsGradTable::Row sample_grads = grads.row(s * n);
    const BoundsTable sample_bounds = bounds.row(s * n);
    for (int64_t k = k_first; k < k_last; ++k) {
      const int64_t row = s * rows + k;
      const float* a = coeffs + ((shared ? 0 : s) * rows + k) * n;
      const float* d_out = d_coeffs_out + row * n;
      const float dbl = d_bias_lower ? d_bias_lower[row] : 0.0f, dbu = d_bias_upper ? d_bias_upper[row] : 0.0f;
      float* d_a = d_coeffs + (shared ? k : row) * n;
      // Element j's terms of the sample's sums; returns its coefficient gradient.
      auto add_bound_terms = [&](int64_t j) {
        const BacksubElementGrad g =
            backsub_relu_element_grad(sample_bounds.at(j), sample_grads.at(j), a[j], d_out[j], dbl, dbu);
        dl[j] += g.d_l;
        du[j] += g.d_u;
        if constexpr (kBiasGrad) db[j] += g.d_bias_below;
        return g.d_coeff;
      };
      if (!shared) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) d_a[j] = add_bound_terms(j);
      } else if (kSharedSum) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) d_a[j] += add_bound_terms(j);
      } else {  // the shared block's gradient is summed over the samples elsewhere
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) add_bound_terms(j);
      }
    }
  };
  auto with_bias_grad = [&](auto&& pass) {
    if (d_bias_below) pass(std::true_type{});
    else pass(std::false_type{});
  };
  const bool bound_grads = backsub_relu_backward_sums_bounds(rule, shared, d_bias_below != nullptr);
  std::fill(d_lower, d_lower + count, 0.0f);
  std::fill(d_upper, d_upper + count, 0.0f);
  if (d_bias_below) std::fill(d_bias_below, d_bias_below + count, 0.0f);
  const bool threaded = omp_get_max_threads() > 1 && batch * rows * n > kParallelThreshold;
  if (shared && bound_grads && !threaded) {
    // One thread, shared coefficients: one pass over d_coeffs_out computes
    // both the per-sample sums and the shared block's, a block of rows at a
    // time (its sums and coefficients stay in L2 while the samples go by).
    // Each sum is added in the order of the two-pass code below (rows
    // ascending for d_lower, samples ascending for the shared block), so the
    // result is the same bit for bit, and the same on any thread count.
    std::fill(d_coeffs, d_coeffs + rows * n, 0.0f);
    const int64_t block_rows = std::clamp<int64_t>(kSharedBlockFloats / std::max<int64_t>(n, 1), 1, std::max<int64_t>(rows, 1));
    for (int64_t first = 0; first < rows; first += block_rows)
      for (int64_t s = 0; s < batch; ++s)
        with_bias_grad([&](auto bias) { rows_pass(s, first, std::min(rows, first + block_rows), bias, std::true_type{}); });
    return;
  }
  // hBox's symbolic rows on shared coefficients have d_lower = d_upper = 0
  // exactly, and the shared block's gradient comes from the pass below: a
  // pass over every sample's d_coeffs_out would only add zeros.
  if (bound_grads) {
    // Each thread owns whole samples: their coefficient gradients (not shared)
    // and their sums into d_lower, d_upper, d_bias_below.
#pragma omp parallel for schedule(static) if (threaded)
    for (int64_t s = 0; s < batch; ++s)
      with_bias_grad([&](auto bias) { rows_pass(s, 0, rows, bias, std::false_type{}); });
  }
  if (!shared || rows == 0) return;
  // Shared coefficients: each thread owns whole rows and sums the samples in order.
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t k = 0; k < rows; ++k) {
    float* out = d_coeffs + k * n;
    const float* a = coeffs + k * n;
    for (int64_t j = 0; j < n; ++j) out[j] = 0.0f;
    for (int64_t s = 0; s < batch; ++s) {
      const int64_t row = s * rows + k;
      const float* d_out = d_coeffs_out + row * n;
      const float dbl = d_bias_lower ? d_bias_lower[row] : 0.0f, dbu = d_bias_upper ? d_bias_upper[row] : 0.0f;
      const BoundsGradTable::Row sample_grads = grads.row(s * n);
      const BoundsTable sample_bounds = bounds.row(s * n);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j)
        out[j] += backsub_relu_element_grad(sample_bounds.at(j), sample_grads.at(j), a[j], d_out[j], dbl, dbu).d_coeff;
    }
  }
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
