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

#include "kernels/cpu/gemm_cpu.h"
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

void backsub_relu_live_cpu(ReluRule rule, const float* lower, const float* upper, float* live, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) live[i] = backsub_relu_reads_coeff_grad(rule, lower[i], upper[i]) ? 1.0f : 0.0f;
}

// The live-column steps of backsub_linear. Where most columns are live the one
// large product wins; below this share of live (sample, neuron) pairs each
// sample's live columns go through products of their own, which read W's live
// rows in place (gemm_selected_rows; on trained nets at large eps a few percent
// are live). The choice depends on the data only.
// Each sample's products run single-threaded inside the parallel region, so
// the gathered path's bits do not depend on the thread count (the large
// product's are gemm_cpu's).
constexpr double kGatherBelowLiveShare = 0.75;

namespace {

bool gather_live_columns(const float* live, int64_t count) {
  int64_t live_count = 0;
  for (int64_t i = 0; i < count; ++i) live_count += live[i] != 0.0f;
  return double(live_count) <= kGatherBelowLiveShare * double(count);
}

// The live columns j of one sample's live [n].
void live_columns_of(const float* sample_live, int64_t n, std::vector<int64_t>& columns) {
  columns.clear();
  for (int64_t j = 0; j < n; ++j)
    if (sample_live[j] != 0.0f) columns.push_back(j);
}

// coeffs [batch, rows, n] with the columns that are not live set to 0, into out.
void mask_dead_columns(const float* coeffs, const float* live, float* out, BacksubShape s) {
#pragma omp parallel for schedule(static) if (s.batch * s.rows * s.n > kParallelThreshold)
  for (int64_t row = 0; row < s.batch * s.rows; ++row) {
    const float* sample_live = live + (row / s.rows) * s.n;
    for (int64_t j = 0; j < s.n; ++j) out[row * s.n + j] = sample_live[j] != 0.0f ? coeffs[row * s.n + j] : 0.0f;
  }
}

// Columns `columns` of the rows `rows` of a matrix [*, width], packed into out [rows, columns].
void gather_columns(const float* matrix, const std::vector<int64_t>& rows, int64_t width,
                    const std::vector<int64_t>& columns, float* out) {
  const int64_t m = int64_t(columns.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    const float* row = matrix + rows[k] * width;
    for (int64_t c = 0; c < m; ++c) out[int64_t(k) * m + c] = row[columns[size_t(c)]];
  }
}

// The same transposed: out [columns, rows].
void gather_columns_transposed(const float* matrix, const std::vector<int64_t>& rows, int64_t width,
                               const std::vector<int64_t>& columns, float* out) {
  const int64_t used = int64_t(rows.size());
  for (size_t c = 0; c < columns.size(); ++c)
    for (int64_t k = 0; k < used; ++k) out[int64_t(c) * used + k] = matrix[rows[size_t(k)] * width + columns[c]];
}

// The rows of a sample's [rows, width] matrix that hold a non-zero, in order,
// into `used`. A per-sample row plan (relaxations/backsub.cpp's plan_rows) pads
// every sample's list of neurons with zero rows up to the longest one: at the
// end, or for CROWN's stacked rows [C; -C] at the end of each half. The
// products skip them. Leaving exact zeros' products out changes no finite sum
// (the product of a skipped row is +0, as the fill; a -0 sum may stay -0), as
// in gemm.cpp's zero-k skip. `columns`: only these columns are read (all where null).
void rows_in_use(const float* matrix, int64_t rows, int64_t width, const std::vector<int64_t>* columns,
                 std::vector<int64_t>& used) {
  used.clear();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = matrix + r * width;
    bool nonzero = false;
    if (columns) {
      for (int64_t c : *columns)
        if (row[c] != 0.0f) {
          nonzero = true;
          break;
        }
    } else {
      for (int64_t c = 0; c < width && !nonzero; ++c) nonzero = row[c] != 0.0f;
    }
    if (nonzero) used.push_back(r);
  }
}

// run(first_row, count, offset) for each maximal run of consecutive rows in
// `used` (offset: where the run starts in `used`): the products take whole runs.
template <class Run>
void for_each_run(const std::vector<int64_t>& used, Run run) {
  for (size_t begin = 0, end = 0; begin < used.size(); begin = end) {
    for (end = begin + 1; end < used.size() && used[end] == used[end - 1] + 1;) ++end;
    run(used[begin], int64_t(end - begin), int64_t(begin));
  }
}

// The rows of out [rows, width] that `used` does not list, set to 0.
void zero_rows_not_in(float* out, int64_t rows, int64_t width, const std::vector<int64_t>& used) {
  int64_t next = 0;
  for (int64_t r : used) {
    std::fill(out + next * width, out + r * width, 0.0f);
    next = r + 1;
  }
  std::fill(out + next * width, out + rows * width, 0.0f);
}

// per_sample(sample, columns, scratch) for samples [first, last) in parallel, with the
// sample's live columns and a per-thread buffer to reuse, kept across calls (thread_local,
// as scratch_floats: a training step must not allocate). Always a parallel region, so the
// GEMMs inside run single-threaded whatever the thread count.
template <class PerSample>
void for_each_live_sample(const float* live, int64_t n, int64_t first, int64_t last, PerSample per_sample) {
#pragma omp parallel
  {
    thread_local std::vector<int64_t> columns;
    thread_local std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t sample = first; sample < last; ++sample) {
      live_columns_of(live + sample * n, n, columns);
      per_sample(sample, columns, scratch);
    }
  }
}

}  // namespace

void backsub_linear_live_forward_cpu(const float* coeffs, const float* weight, const float* live, float* coeffs_out,
                                     float* scratch, int64_t n_in, BacksubShape s) {
  const int64_t batch = s.batch, rows = s.rows, n = s.n;
  if (batch == 0 || rows == 0 || n_in == 0) return;
  if (!gather_live_columns(live, batch * n)) {
    mask_dead_columns(coeffs, live, scratch, s);
    gemm_cpu(dense_gemm(false, false, batch * rows, n_in, n), 1.0f, scratch, weight, 0.0f, coeffs_out);
    return;
  }
  // Per sample: its live columns of A (used rows x m) times W's live rows (m x n_in).
  for_each_live_sample(live, n, 0, batch, [&](int64_t sample, const std::vector<int64_t>& columns,
                                              std::vector<float>& scratch) {
    thread_local std::vector<int64_t> used;
    const int64_t m = int64_t(columns.size());
    const float* a = coeffs + sample * rows * n;
    float* out = coeffs_out + sample * rows * n_in;
    used.clear();
    if (m > 0) rows_in_use(a, rows, n, &columns, used);
    zero_rows_not_in(out, rows, n_in, used);
    if (used.empty()) return;
    std::vector<float>& a_live = scratch;
    a_live.resize(used.size() * size_t(m));
    gather_columns(a, used, n, columns, a_live.data());
    for_each_run(used, [&](int64_t first, int64_t count, int64_t offset) {
      gemm_selected_rows_cpu({count, n_in, m, m, n_in, n_in, columns.data()}, a_live.data() + offset * m, weight,
                             out + first * n_in);
    });
  });
}

void backsub_linear_live_grad_cpu(const float* d_coeffs_out, const float* weight, const float* live,
                                  float* d_coeffs, int64_t n_in, BacksubShape s) {
  const int64_t batch = s.batch, rows = s.rows, n = s.n;
  if (batch == 0 || rows == 0 || n == 0) return;
  if (!gather_live_columns(live, batch * n)) {
    // d_coeffs = d_coeffs_out W^T, then the columns nobody reads set to 0.
    gemm_cpu(dense_gemm(false, true, batch * rows, n, n_in), 1.0f, d_coeffs_out, weight, 0.0f, d_coeffs);
    mask_dead_columns(d_coeffs, live, d_coeffs, s);
    return;
  }
  // Per sample: d_coeffs_out[s] (rows x n_in) times W's live rows transposed (n_in x m),
  // scattered into the live columns.
  for_each_live_sample(live, n, 0, batch, [&](int64_t sample, const std::vector<int64_t>& columns,
                                              std::vector<float>& scratch) {
    thread_local std::vector<int64_t> used;
    const int64_t m = int64_t(columns.size());
    const float* d_out = d_coeffs_out + sample * rows * n_in;
    float* out = d_coeffs + sample * rows * n;
    std::fill(out, out + rows * n, 0.0f);
    used.clear();
    if (m > 0) rows_in_use(d_out, rows, n_in, nullptr, used);
    if (used.empty()) return;
    std::vector<float>& product = scratch;
    product.resize(used.size() * size_t(m));
    for_each_run(used, [&](int64_t first, int64_t count, int64_t offset) {
      gemm_selected_rows_t_cpu({count, m, n_in, n_in, n_in, m, columns.data()}, d_out + first * n_in, weight,
                               product.data() + offset * m);
    });
    for (size_t k = 0; k < used.size(); ++k)
      for (int64_t c = 0; c < m; ++c) out[used[k] * n + columns[size_t(c)]] = product[k * size_t(m) + size_t(c)];
  });
}

void backsub_linear_live_weight_grad_cpu(const float* coeffs, const float* d_coeffs_out, const float* live,
                                         float* d_weight, float* scratch, int64_t n_in, BacksubShape s) {
  const int64_t batch = s.batch, rows = s.rows, n = s.n;
  if (n == 0 || n_in == 0) return;
  if (batch == 0 || rows == 0) {
    std::fill(d_weight, d_weight + n * n_in, 0.0f);
    return;
  }
  if (!gather_live_columns(live, batch * n)) {
    mask_dead_columns(coeffs, live, scratch, s);
    gemm_cpu(dense_gemm(true, false, n, n_in, batch * rows), 1.0f, scratch, d_coeffs_out, 0.0f, d_weight);
    return;
  }
  std::fill(d_weight, d_weight + n * n_in, 0.0f);
  // Groups of samples: each sample's share (m x n_in, its live columns of A transposed
  // times d_coeffs_out[s]) in parallel, then added into W's live rows in sample order by
  // threads owning column ranges. Groups hold about 4 Mi floats of shares (at least one
  // sample), so the grouping, and with it every sum's order, depends on the data only.
  constexpr int64_t kGroupFloats = int64_t(1) << 22;
  // The calling thread's buffers, kept across calls; the parallel region below reads them
  // through these references (a thread_local name there would be each worker's own).
  thread_local std::vector<std::vector<int64_t>> columns_kept;
  thread_local std::vector<float> shares_kept;
  thread_local std::vector<int64_t> offsets_kept;
  std::vector<std::vector<int64_t>>& columns = columns_kept;
  std::vector<float>& shares = shares_kept;
  std::vector<int64_t>& offsets = offsets_kept;
  if (columns.size() < size_t(batch)) columns.resize(size_t(batch));
  for (int64_t sample = 0; sample < batch; ++sample) live_columns_of(live + sample * n, n, columns[size_t(sample)]);
  for (int64_t first = 0; first < batch;) {
    int64_t last = first, floats = 0;
    offsets.clear();
    while (last < batch && (last == first || floats + int64_t(columns[size_t(last)].size()) * n_in <= kGroupFloats)) {
      offsets.push_back(floats);
      floats += int64_t(columns[size_t(last)].size()) * n_in;
      ++last;
    }
    if (shares.size() < size_t(floats)) shares.resize(size_t(floats));
#pragma omp parallel
    {
      thread_local std::vector<float> a_live;
      thread_local std::vector<int64_t> used;
#pragma omp for schedule(dynamic, 1)
      for (int64_t sample = first; sample < last; ++sample) {
        const std::vector<int64_t>& cols = columns[size_t(sample)];
        const int64_t m = int64_t(cols.size());
        if (m == 0) continue;
        const float* a = coeffs + sample * rows * n;
        rows_in_use(a, rows, n, &cols, used);  // none: the share is m x n_in zeros
        const int64_t k = int64_t(used.size());
        a_live.resize(size_t(m * k));
        gather_columns_transposed(a, used, n, cols, a_live.data());
        // The used rows of d_coeffs_out[s] read in place, as the selected rows of B.
        gemm_selected_rows_cpu({m, n_in, k, k, n_in, n_in, used.data()}, a_live.data(),
                               d_coeffs_out + sample * rows * n_in, shares.data() + offsets[size_t(sample - first)]);
      }
      // Each thread adds the group's shares into its own range of W's columns.
      const int threads = omp_get_num_threads(), thread = omp_get_thread_num();
      const int64_t begin = n_in * thread / threads, end = n_in * (thread + 1) / threads;
      for (int64_t sample = first; sample < last; ++sample) {
        const std::vector<int64_t>& cols = columns[size_t(sample)];
        const float* share = shares.data() + offsets[size_t(sample - first)];
        for (size_t c = 0; c < cols.size(); ++c) {
          float* row = d_weight + cols[c] * n_in;
          const float* add = share + int64_t(c) * n_in;
#pragma omp simd
          for (int64_t t = begin; t < end; ++t) row[t] += add[t];
        }
      }
    }
    first = last;
  }
}

}  // namespace cte::kern
