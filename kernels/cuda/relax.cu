// CUDA twins of the fused relaxation kernels (kernels/relax_kernels.h): the
// Box and hBox ReLU steps (one thread per neuron), the backsubstitution step
// through a ReLU and the input step, with their backward kernels. The
// per-neuron formulas come from kernels/common/relu_relaxation.h, shared with
// kernels/cpu/relax.cpp. Launches go through cte::gpu::launch only. Every
// reduction has a fixed order and no atomics, so results are deterministic
// run to run:
//  - a forward step gives each coefficient row (sample s, row k) one block,
//    whose threads stride over the neurons and whose sums meet in a block
//    reduction (kernels/cuda/block_reduce.cuh);
//  - a backward step gives each neuron (s, j) one thread that sums its rows
//    k = 0, 1, ... in order (loads coalesce along j), and computes the
//    coefficient gradients element-wise (or, for a shared coefficient block,
//    one thread per (k, j) summing the samples in order).
#include "kernels/cuda/block_reduce.cuh"  // first: the emulator shim defines CTE_HD's qualifiers
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/common/relu_relaxation.h"
#include "kernels/relax_kernels.h"

namespace cte::kern {
namespace {

// centre, radius, centre_out, radius_out: [n]
__global__ void box_relu_forward_kernel(const float* centre, const float* radius, float* centre_out,
                                        float* radius_out, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) {
    const CentreRadius out = box_relu(centre[i], radius[i]);
    centre_out[i] = out.centre;
    radius_out[i] = out.radius;
  }
}

// every argument: [n]
__global__ void box_relu_backward_kernel(const float* centre, const float* radius,
                                         const float* d_centre_out, const float* d_radius_out,
                                         float* d_centre, float* d_radius, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) {
    const CentreRadius g = box_relu_grad(centre[i], radius[i], d_centre_out[i], d_radius_out[i]);
    d_centre[i] = g.centre;
    d_radius[i] = g.radius;
  }
}

// every argument: [n]
__global__ void hbox_relu_forward_kernel(const float* centre, const float* g_norm, const float* box,
                                         float* centre_out, float* box_out, float* lower_out,
                                         float* upper_out, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) {
    const HboxNeuron out = hbox_relu(centre[i], g_norm[i], box[i]);
    centre_out[i] = out.centre;
    box_out[i] = out.box;
    lower_out[i] = out.lower;
    upper_out[i] = out.upper;
  }
}

// every argument: [n]
__global__ void hbox_relu_backward_kernel(const float* centre, const float* g_norm, const float* box,
                                          const float* d_centre_out, const float* d_box_out,
                                          float* d_centre, float* d_g_norm, float* d_box, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) {
    const HboxNeuronGrad g = hbox_relu_grad(centre[i], g_norm[i], box[i], d_centre_out[i], d_box_out[i]);
    d_centre[i] = g.d_centre;
    d_g_norm[i] = g.d_g_norm;
    d_box[i] = g.d_box;
  }
}

// Neuron j's bounds and their derivatives, with the bias below folded in where given.
__device__ ReluLinearBounds bounds_at(ReluRule rule, float l, float u, const float* bias_below, int64_t j) {
  const ReluLinearBounds b = relu_linear_bounds(rule, l, u);
  return bias_below ? fold_bias_below(b, bias_below[j]) : b;
}
__device__ ReluLinearBoundsGrad bounds_grad_at(ReluRule rule, float l, float u, const float* bias_below, int64_t j) {
  const ReluLinearBoundsGrad g = relu_linear_bounds_grad(rule, l, u);
  return bias_below ? fold_bias_below(g, bias_below[j]) : g;
}

// coeffs: [shared ? 1 : batch, rows, n]; lower, upper: [batch, n]; bias_below: [n] or nullptr;
// coeffs_out: [batch, rows, n]; bias_lower, bias_upper: [batch, rows] or nullptr.
// One warp per (s, k) row (CTE_WARP_ROW_LOOP), its lanes striding over the row.
__global__ void backsub_relu_forward_kernel(ReluRule rule, const float* coeffs, const float* lower,
                                            const float* upper, const float* bias_below, float* coeffs_out,
                                            float* bias_lower,
                                            float* bias_upper, int64_t batch, int64_t rows, int64_t n,
                                            bool shared) {
  const bool want_bias = bias_lower != nullptr || bias_upper != nullptr;  // uniform over the grid
  CTE_WARP_ROW_LOOP(row, lane, batch * rows) {
    const int64_t s = row / rows, k = row % rows;
    const float* a = coeffs + ((shared ? 0 : s) * rows + k) * n;
    float sum_lower = 0.0f, sum_upper = 0.0f;
    for (int64_t j = lane; j < n; j += gpu::kWarpSize) {
      const ReluLinearBounds b = bounds_at(rule, lower[s * n + j], upper[s * n + j], bias_below, j);
      const BacksubElement e = backsub_relu_element(b, a[j]);
      coeffs_out[row * n + j] = e.coeff_out;
      sum_lower += e.bias_lower;
      sum_upper += e.bias_upper;
    }
    if (!want_bias) continue;
    const float total_lower = gpu::warp_reduce(sum_lower, gpu::SumOp{});
    const float total_upper = gpu::warp_reduce(sum_upper, gpu::SumOp{});
    if (lane == 0) {
      if (bias_lower) bias_lower[row] = total_lower;
      if (bias_upper) bias_upper[row] = total_upper;
    }
  }
}

// One thread per neuron (s, j): its sign sums over the rows in order, then d_lower[s, j],
// d_upper[s, j] (and d_bias_below[s, j]) from them (backsub_relu_neuron_grad). Shapes as in backsub_relu_backward (kernels/relax_kernels.h).
__global__ void backsub_relu_backward_bounds_kernel(ReluRule rule, const float* coeffs,
                                                    const float* lower, const float* upper,
                                                    const float* bias_below, const float* d_coeffs_out,
                                                    const float* d_bias_lower,
                                                    const float* d_bias_upper, float* d_lower,
                                                    float* d_upper, float* d_bias_below, int64_t batch,
                                                    int64_t rows, int64_t n, bool shared) {
  CTE_GRID_STRIDE_LOOP(i, batch * n) {
    const int64_t s = i / n, j = i % n;
    const ReluLinearBounds b = bounds_at(rule, lower[i], upper[i], bias_below, j);
    const ReluLinearBoundsGrad g = bounds_grad_at(rule, lower[i], upper[i], bias_below, j);
    BacksubSignSums sums{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t k = 0; k < rows; ++k) {
      const int64_t row = s * rows + k;
      const float a = coeffs[((shared ? 0 : s) * rows + k) * n + j];
      add_signed(sums.out_pos, sums.out_neg, a, d_coeffs_out[row * n + j]);
      if (d_bias_lower) add_signed(sums.lower_pos, sums.lower_neg, a, d_bias_lower[row]);
      if (d_bias_upper) add_signed(sums.upper_pos, sums.upper_neg, a, d_bias_upper[row]);
    }
    const BacksubNeuronGrad out = backsub_relu_neuron_grad(b, g, sums);
    d_lower[i] = out.d_l;
    d_upper[i] = out.d_u;
    if (d_bias_below) d_bias_below[i] = out.d_bias_below;
  }
}

// d_coeffs[s, k, j] element-wise (not shared). Shapes as in backsub_relu_backward.
__global__ void backsub_relu_backward_coeffs_kernel(ReluRule rule, const float* coeffs,
                                                    const float* lower, const float* upper,
                                                    const float* bias_below, const float* d_coeffs_out,
                                                    const float* d_bias_lower,
                                                    const float* d_bias_upper, float* d_coeffs,
                                                    int64_t batch, int64_t rows, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, batch * rows * n) {
    const int64_t row = i / n, j = i % n, s = row / rows;
    const ReluLinearBounds b = bounds_at(rule, lower[s * n + j], upper[s * n + j], bias_below, j);
    d_coeffs[i] = backsub_relu_element_d_coeff(b, coeffs[i], d_coeffs_out[i], d_bias_lower ? d_bias_lower[row] : 0.0f,
                                               d_bias_upper ? d_bias_upper[row] : 0.0f);
  }
}

// d_coeffs[k, j] of a shared block ([1, rows, n]): one thread per (k, j) sums the samples in order.
__global__ void backsub_relu_backward_shared_coeffs_kernel(ReluRule rule, const float* coeffs,
                                                           const float* lower, const float* upper,
                                                           const float* bias_below,
                                                           const float* d_coeffs_out,
                                                           const float* d_bias_lower,
                                                           const float* d_bias_upper,
                                                           float* d_coeffs, int64_t batch,
                                                           int64_t rows, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, rows * n) {
    const int64_t k = i / n, j = i % n;
    float sum = 0.0f;
    for (int64_t s = 0; s < batch; ++s) {
      const int64_t row = s * rows + k;
      const ReluLinearBounds b = bounds_at(rule, lower[s * n + j], upper[s * n + j], bias_below, j);
      sum += backsub_relu_element_d_coeff(b, coeffs[i], d_coeffs_out[row * n + j],
                                          d_bias_lower ? d_bias_lower[row] : 0.0f,
                                          d_bias_upper ? d_bias_upper[row] : 0.0f);
    }
    d_coeffs[i] = sum;
  }
}

// coeffs: [batch, rows, n]; centre, radius: [batch, n]; centre_term, spread: [batch, rows].
// One warp per row (CTE_WARP_ROW_LOOP), its lanes striding over the row.
__global__ void backsub_input_forward_kernel(const float* coeffs, const float* centre, const float* radius,
                                             float* centre_term, float* spread, int64_t batch, int64_t rows,
                                             int64_t n) {
  CTE_WARP_ROW_LOOP(row, lane, batch * rows) {
    const int64_t s = row / rows;
    float sum_centre = 0.0f, sum_spread = 0.0f;
    for (int64_t j = lane; j < n; j += gpu::kWarpSize) {
      const float a = coeffs[row * n + j];
      sum_centre += a * centre[s * n + j];
      sum_spread += fabsf(a) * radius[s * n + j];
    }
    const float total_centre = gpu::warp_reduce(sum_centre, gpu::SumOp{});
    const float total_spread = gpu::warp_reduce(sum_spread, gpu::SumOp{});
    if (lane == 0) {
      centre_term[row] = total_centre;
      spread[row] = total_spread;
    }
  }
}

// d_coeffs[s, k, j] element-wise. Shapes as in backsub_input_backward.
__global__ void backsub_input_backward_coeffs_kernel(const float* coeffs, const float* centre,
                                                     const float* radius, const float* d_centre_term,
                                                     const float* d_spread, float* d_coeffs, int64_t batch,
                                                     int64_t rows, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, batch * rows * n) {
    const int64_t row = i / n, j = i % n, s = row / rows;
    const float dc = d_centre_term ? d_centre_term[row] : 0.0f, ds = d_spread ? d_spread[row] : 0.0f;
    d_coeffs[i] = dc * centre[s * n + j] + ds * abs_derivative(coeffs[i]) * radius[s * n + j];
  }
}

// One thread per input neuron (s, j): d_centre, d_radius summed over rows in order.
__global__ void backsub_input_backward_box_kernel(const float* coeffs, const float* d_centre_term,
                                                  const float* d_spread, float* d_centre, float* d_radius,
                                                  int64_t batch, int64_t rows, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, batch * n) {
    const int64_t s = i / n, j = i % n;
    float dcen = 0.0f, drad = 0.0f;
    for (int64_t k = 0; k < rows; ++k) {
      const int64_t row = s * rows + k;
      const float a = coeffs[row * n + j];
      if (d_centre_term) dcen += d_centre_term[row] * a;
      if (d_spread) drad += d_spread[row] * fabsf(a);
    }
    if (d_centre) d_centre[i] = dcen;
    if (d_radius) d_radius[i] = drad;
  }
}

// lower, upper, live: [n]
__global__ void backsub_relu_live_kernel(ReluRule rule, const float* lower, const float* upper, float* live,
                                         int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) { live[i] = backsub_relu_reads_coeff_grad(rule, lower[i], upper[i]) ? 1.0f : 0.0f; }
}

// out [batch, rows, n] = coeffs [batch, rows, n] where live [batch, n] is nonzero, else 0 (in place allowed).
__global__ void mask_dead_columns_kernel(const float* coeffs, const float* live, float* out, int64_t batch,
                                         int64_t rows, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, batch * rows * n) {
    const int64_t sample = i / (rows * n), j = i % n;
    out[i] = live[sample * n + j] != 0.0f ? coeffs[i] : 0.0f;
  }
}

}  // namespace

void box_relu_forward_cuda(const float* centre, const float* radius, float* centre_out,
                           float* radius_out, int64_t n) {
  gpu::launch_1d("box_relu_forward", n, box_relu_forward_kernel, centre, radius, centre_out,
                 radius_out, n);
}

void box_relu_backward_cuda(const float* centre, const float* radius, const float* d_centre_out,
                            const float* d_radius_out, float* d_centre, float* d_radius, int64_t n) {
  gpu::launch_1d("box_relu_backward", n, box_relu_backward_kernel, centre, radius, d_centre_out,
                 d_radius_out, d_centre, d_radius, n);
}

void hbox_relu_forward_cuda(const float* centre, const float* g_norm, const float* box,
                            float* centre_out, float* box_out, float* lower_out, float* upper_out,
                            int64_t n) {
  gpu::launch_1d("hbox_relu_forward", n, hbox_relu_forward_kernel, centre, g_norm, box, centre_out,
                 box_out, lower_out, upper_out, n);
}

void hbox_relu_backward_cuda(const float* centre, const float* g_norm, const float* box,
                             const float* d_centre_out, const float* d_box_out, float* d_centre,
                             float* d_g_norm, float* d_box, int64_t n) {
  gpu::launch_1d("hbox_relu_backward", n, hbox_relu_backward_kernel, centre, g_norm, box,
                 d_centre_out, d_box_out, d_centre, d_g_norm, d_box, n);
}

void backsub_relu_forward_cuda(ReluRule rule, const float* coeffs, const float* lower,
                               const float* upper, const float* bias_below, float* coeffs_out, float* bias_lower,
                               float* bias_upper, BacksubShape s) {
  const int64_t batch = s.batch, rows = s.rows, n = s.n;
  const bool shared = s.shared;
  const int64_t total_rows = batch * rows;
  if (total_rows <= 0) return;
  const gpu::RowLaunch shape = gpu::warp_row_launch(total_rows);
  gpu::launch("backsub_relu_forward", shape.grid, shape.block, shape.shared_bytes, backsub_relu_forward_kernel, rule,
              coeffs, lower, upper, bias_below, coeffs_out, bias_lower, bias_upper, batch, rows, n, shared);
}

void backsub_relu_backward_cuda(ReluRule rule, const float* coeffs, const float* lower,
                                const float* upper, const float* bias_below, const float* d_coeffs_out,
                                const float* d_bias_lower, const float* d_bias_upper,
                                float* d_coeffs, float* d_lower, float* d_upper, float* d_bias_below,
                                BacksubShape s) {
  const int64_t batch = s.batch, rows = s.rows, n = s.n;
  const bool shared = s.shared;
  // Otherwise two fills instead of a pass that reads every sample's d_coeffs_out.
  if (backsub_relu_backward_sums_bounds(rule, shared, d_bias_below != nullptr)) {
    gpu::launch_1d("backsub_relu_backward_bounds", batch * n, backsub_relu_backward_bounds_kernel,
                   rule, coeffs, lower, upper, bias_below, d_coeffs_out, d_bias_lower, d_bias_upper, d_lower,
                   d_upper, d_bias_below, batch, rows, n, shared);
  } else {
    fill_cuda(d_lower, batch * n, 0.0f);
    fill_cuda(d_upper, batch * n, 0.0f);
  }
  if (shared)
    gpu::launch_1d("backsub_relu_backward_shared_coeffs", rows * n,
                   backsub_relu_backward_shared_coeffs_kernel, rule, coeffs, lower, upper, bias_below,
                   d_coeffs_out, d_bias_lower, d_bias_upper, d_coeffs, batch, rows, n);
  else
    gpu::launch_1d("backsub_relu_backward_coeffs", batch * rows * n,
                   backsub_relu_backward_coeffs_kernel, rule, coeffs, lower, upper, bias_below, d_coeffs_out,
                   d_bias_lower, d_bias_upper, d_coeffs, batch, rows, n);
}

void backsub_input_forward_cuda(const float* coeffs, const float* centre, const float* radius, float* centre_term,
                                float* spread, int64_t batch, int64_t rows, int64_t n) {
  const int64_t total_rows = batch * rows;
  if (total_rows <= 0) return;
  const gpu::RowLaunch shape = gpu::warp_row_launch(total_rows);
  gpu::launch("backsub_input_forward", shape.grid, shape.block, shape.shared_bytes, backsub_input_forward_kernel, coeffs, centre, radius, centre_term, spread, batch, rows, n);
}

void backsub_input_backward_cuda(const float* coeffs, const float* centre, const float* radius,
                                 const float* d_centre_term, const float* d_spread, float* d_coeffs, float* d_centre,
                                 float* d_radius, int64_t batch, int64_t rows, int64_t n) {
  gpu::launch_1d("backsub_input_backward_coeffs", batch * rows * n, backsub_input_backward_coeffs_kernel, coeffs,
                 centre, radius, d_centre_term, d_spread, d_coeffs, batch, rows, n);
  if (d_centre || d_radius)
    gpu::launch_1d("backsub_input_backward_box", batch * n, backsub_input_backward_box_kernel, coeffs,
                   d_centre_term, d_spread, d_centre, d_radius, batch, rows, n);
}

void backsub_relu_live_cuda(ReluRule rule, const float* lower, const float* upper, float* live, int64_t n) {
  gpu::launch_1d("backsub_relu_live", n, backsub_relu_live_kernel, rule, lower, upper, live, n);
}

// On the GPU the live-column steps are the one dense product (cuBLAS) with the
// dead columns masked: gathering each sample's columns would cost more launches
// than the FLOPs it saves.
namespace {

void mask_dead_columns(const float* coeffs, const float* live, float* out, BacksubShape s) {
  gpu::launch_1d("backsub_linear_live_mask", s.batch * s.rows * s.n, mask_dead_columns_kernel, coeffs, live, out,
                 s.batch, s.rows, s.n);
}

}  // namespace

void backsub_linear_live_forward_cuda(const float* coeffs, const float* weight, const float* live,
                                      float* coeffs_out, float* scratch, int64_t n_in, BacksubShape s) {
  if (s.batch == 0 || s.rows == 0 || n_in == 0) return;
  if (s.n > 0) mask_dead_columns(coeffs, live, scratch, s);
  gemm_cuda(dense_gemm(false, false, s.batch * s.rows, n_in, s.n), 1.0f, scratch, weight, 0.0f, coeffs_out);
}

void backsub_linear_live_grad_cuda(const float* d_coeffs_out, const float* weight, const float* live,
                                   float* d_coeffs, int64_t n_in, BacksubShape s) {
  if (s.batch == 0 || s.rows == 0 || s.n == 0) return;
  gemm_cuda(dense_gemm(false, true, s.batch * s.rows, s.n, n_in), 1.0f, d_coeffs_out, weight, 0.0f, d_coeffs);
  mask_dead_columns(d_coeffs, live, d_coeffs, s);
}

void backsub_linear_live_weight_grad_cuda(const float* coeffs, const float* d_coeffs_out, const float* live,
                                          float* d_weight, float* scratch, int64_t n_in, BacksubShape s) {
  if (s.n == 0 || n_in == 0) return;
  if (s.batch > 0 && s.rows > 0) mask_dead_columns(coeffs, live, scratch, s);
  gemm_cuda(dense_gemm(true, false, s.n, n_in, s.batch * s.rows), 1.0f, scratch, d_coeffs_out, 0.0f, d_weight);
}

}  // namespace cte::kern
