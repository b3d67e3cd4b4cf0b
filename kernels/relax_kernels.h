// The fused kernels of the convex relaxations (relaxations/), declared once
// with their argument shapes. Like kernels/kernels.h, each entry expands to a
// name_cpu twin (kernels/cpu/relax.cpp, host pointers, OpenMP) and a
// name_cuda twin (kernels/cuda/relax.cu, device pointers); the per-neuron
// arithmetic both use lives in kernels/common/relu_relaxation.h. Every kernel
// fully overwrites its outputs and is deterministic (fixed summation order,
// no atomics), so gradient checkpointing may recompute it.
//
// Backsubstitution coefficients are laid out [batch, rows, n]: for each
// sample, `rows` linear functions of the n neurons of one layer. A `shared`
// coefficient block ([1, rows, n], e.g. weight rows before the first ReLU is
// crossed) is read by every sample.
#pragma once
#include <cstdint>

#include "kernels/common/relu_relaxation.h"
#include "kernels/kernels.h"

namespace cte::kern {

// The shape of a backsubstitution step: `rows` linear functions per sample
// over `n` neurons, for `batch` samples; shared: one coefficient block
// [rows, n] serves every sample.
struct BacksubShape {
  int64_t batch, rows, n;
  bool shared;
};

// Whether the backward of a ReLU step must sum d_lower, d_upper (and
// d_bias_below) over the rows: unless the coefficients are shared and the
// rule gives l and u no gradient (hBox's symbolic rows), where both are
// exactly zero and the CPU and CUDA kernels fill them instead.
inline bool backsub_relu_backward_sums_bounds(ReluRule rule, bool shared, bool bias_grad) {
  return !shared || relu_rule_has_bound_gradient(rule) || bias_grad;
}

// X(name, parameter list). Shapes are row-major, outermost first.
#define CTE_RELAX_KERNELS(X)                                                                   \
  /* Box ReLU: l = c - r, u = c + r -> c' = (relu(u) + relu(l)) / 2, r' = (relu(u) - relu(l)) / 2 */ \
  X(box_relu_forward, (const float* centre /*[n]*/, const float* radius /*[n]*/,               \
                       float* centre_out /*[n]*/, float* radius_out /*[n]*/, int64_t n))        \
  X(box_relu_backward, (const float* centre /*[n]*/, const float* radius /*[n]*/,              \
                        const float* d_centre_out /*[n]*/, const float* d_radius_out /*[n]*/,   \
                        float* d_centre /*[n]*/, float* d_radius /*[n]*/, int64_t n))           \
  /* hBox ReLU on centre, L1 norm of the symbolic row and box radius (relu_relaxation.h); */   \
  /* lower_out/upper_out = c -+ (g_norm + b) are side outputs without gradient.          */   \
  X(hbox_relu_forward, (const float* centre /*[n]*/, const float* g_norm /*[n]*/,              \
                        const float* box /*[n]*/, float* centre_out /*[n]*/,                    \
                        float* box_out /*[n]*/, float* lower_out /*[n]*/,                       \
                        float* upper_out /*[n]*/, int64_t n))                                   \
  X(hbox_relu_backward, (const float* centre /*[n]*/, const float* g_norm /*[n]*/,             \
                         const float* box /*[n]*/, const float* d_centre_out /*[n]*/,           \
                         const float* d_box_out /*[n]*/, float* d_centre /*[n]*/,               \
                         float* d_g_norm /*[n]*/, float* d_box /*[n]*/, int64_t n))             \
  /* One backsubstitution step through y = relu(x), x in [lower, upper], per element   */     \
  /* a = coeffs[s or 0, k, j] with the rule's bounds (ls, li, us, ui) of neuron (s, j): */     \
  /*   coeffs_out[s,k,j] = a * (a >= 0 ? ls : us)                                        */     \
  /*   bias_lower[s,k]   = sum_j a * (a >= 0 ? li : ui)   (lower bound of a.y)           */     \
  /*   bias_upper[s,k]   = sum_j a * (a >= 0 ? ui : li)   (upper bound of a.y; only for  */     \
  /*                       symmetric rules, where ls == us). Either bias may be nullptr. */     \
  /* bias_below (or nullptr): the bias of the affine layer under the ReLU, folded into */     \
  /* li and ui (fold_bias_below in kernels/common/relu_relaxation.h).                    */     \
  X(backsub_relu_forward, (ReluRule rule,                                                      \
                           const float* coeffs /*[shared ? 1 : batch, rows, n]*/,               \
                           const float* lower /*[batch, n]*/, const float* upper /*[batch, n]*/, \
                           const float* bias_below /*[n] or nullptr*/,                          \
                           float* coeffs_out /*[batch, rows, n]*/,                              \
                           float* bias_lower /*[batch, rows] or nullptr*/,                      \
                           float* bias_upper /*[batch, rows] or nullptr*/, BacksubShape s))    \
  /* Its adjoint: d_coeffs (summed over samples when shared), d_lower and d_upper      */     \
  /* (each summed over the rows in a fixed order). A nullptr d_bias_* counts as zero.  */     \
  /* With bias_below, d_bias_below (if not nullptr) gets each sample's gradient of it,  */     \
  /* summed over the rows like d_lower; the caller sums the samples.                    */     \
  X(backsub_relu_backward, (ReluRule rule,                                                     \
                            const float* coeffs /*[shared ? 1 : batch, rows, n]*/,              \
                            const float* lower /*[batch, n]*/, const float* upper /*[batch, n]*/, \
                            const float* bias_below /*[n] or nullptr*/,                         \
                            const float* d_coeffs_out /*[batch, rows, n]*/,                     \
                            const float* d_bias_lower /*[batch, rows] or nullptr*/,             \
                            const float* d_bias_upper /*[batch, rows] or nullptr*/,             \
                            float* d_coeffs /*[shared ? 1 : batch, rows, n]*/,                  \
                            float* d_lower /*[batch, n]*/, float* d_upper /*[batch, n]*/,       \
                            float* d_bias_below /*[batch, n] or nullptr*/, BacksubShape s))     \
  /* The input step of a backsubstitution over an input box with centre c, radius r: */     \
  /*   centre_term[s,k] = sum_j a[s,k,j] c[s,j],  spread[s,k] = sum_j |a[s,k,j]| r[s,j] */     \
  /* (lower bound = bias + centre_term - spread, upper = bias + centre_term + spread). */     \
  X(backsub_input_forward, (const float* coeffs /*[batch, rows, n]*/,                          \
                            const float* centre /*[batch, n]*/, const float* radius /*[batch, n]*/, \
                            float* centre_term /*[batch, rows]*/, float* spread /*[batch, rows]*/, \
                            int64_t batch, int64_t rows, int64_t n))                           \
  /* Its adjoint; d |a| / da = sign(a) (0 at 0, as ops::abs). A nullptr d_centre_term  */     \
  /* or d_spread counts as zero; d_centre / d_radius may be nullptr (not computed).    */     \
  X(backsub_input_backward, (const float* coeffs /*[batch, rows, n]*/,                         \
                             const float* centre /*[batch, n]*/, const float* radius /*[batch, n]*/, \
                             const float* d_centre_term /*[batch, rows] or nullptr*/,           \
                             const float* d_spread /*[batch, rows] or nullptr*/,                \
                             float* d_coeffs /*[batch, rows, n]*/,                              \
                             float* d_centre /*[batch, n] or nullptr*/,                         \
                             float* d_radius /*[batch, n] or nullptr*/, int64_t batch,          \
                             int64_t rows, int64_t n))                                  \
  /* live[i] = 1 where a step through neuron i reads its coefficients' gradient       */     \
  /* (backsub_relu_reads_coeff_grad in kernels/common/relu_relaxation.h), else 0.     */     \
  X(backsub_relu_live, (ReluRule rule, const float* lower /*[n]*/, const float* upper /*[n]*/, \
                        float* live /*[n]*/, int64_t n))                                      \
  /* An affine step A' = A W (backsub_linear) under a ReLU step that produced A and   */     \
  /* reads only its live columns (s.n = n_out, not shared): the sums run over live j,   */     \
  /* where A is 0 elsewhere anyway (a zero slope times a finite coefficient):          */     \
  /*   coeffs_out[s,k,t] = sum_{j: live[s,j] != 0} coeffs[s,k,j] weight[j,t]            */     \
  /* scratch: room for the masked coefficients where a twin masks them (the caller's,  */     \
  /* so the memory is the tensor allocator's); its contents are undefined after.       */     \
  X(backsub_linear_live_forward, (const float* coeffs /*[batch, rows, n_out]*/,                \
                                  const float* weight /*[n_out, n_in]*/,                       \
                                  const float* live /*[batch, n_out]*/,                        \
                                  float* coeffs_out /*[batch, rows, n_in]*/,                    \
                                  float* scratch /*[batch, rows, n_out]*/, int64_t n_in,        \
                                  BacksubShape s))                                             \
  /*   d_coeffs[s,k,j] = live[s,j] != 0 ? sum_t d_coeffs_out[s,k,t] weight[j,t] : 0     */     \
  X(backsub_linear_live_grad, (const float* d_coeffs_out /*[batch, rows, n_in]*/,              \
                               const float* weight /*[n_out, n_in]*/,                          \
                               const float* live /*[batch, n_out]*/,                           \
                               float* d_coeffs /*[batch, rows, n_out]*/, int64_t n_in,          \
                               BacksubShape s))                                                \
  /*   d_weight[j,t] = sum_{s: live[s,j] != 0} sum_k coeffs[s,k,j] d_coeffs_out[s,k,t]   */     \
  X(backsub_linear_live_weight_grad, (const float* coeffs /*[batch, rows, n_out]*/,            \
                                      const float* d_coeffs_out /*[batch, rows, n_in]*/,       \
                                      const float* live /*[batch, n_out]*/,                    \
                                      float* d_weight /*[n_out, n_in]*/,                        \
                                      float* scratch /*[batch, rows, n_out]*/, int64_t n_in,    \
                                      BacksubShape s))

#define CTE_DECLARE_RELAX_KERNEL_TWINS(name, params) \
  void name##_cpu params;                            \
  void name##_cuda params;
CTE_RELAX_KERNELS(CTE_DECLARE_RELAX_KERNEL_TWINS)
#undef CTE_DECLARE_RELAX_KERNEL_TWINS

}  // namespace cte::kern
