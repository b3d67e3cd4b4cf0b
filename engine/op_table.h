// The op table: every op of the engine in one list. For each op: its name (the
// front-end function in engine/ops.h and the node name on the tape), the
// kernel stems from kernels/kernels.h it runs (each has a _cpu and a _cuda
// twin), and whether it is differentiable. tests/test_op_table.cpp walks this
// list and fails when an op lacks a gradient check, a CPU-vs-CUDA parity check,
// or a kernel twin, and, from the kernels CTE_RUN logs while each op's cases
// run forward and backward, when an op launches a kernel it does not list or
// lists one it never launches. The relaxations' fused ops are listed in the
// same format in relaxations/relax_ops.h (CTE_RELAXATION_OPS), walked by the
// same test for their kernel twins.
#pragma once

// X(name, "kernel stems", differentiable)
#define CTE_ENGINE_OPS(X)                                                   \
  X(add, "binary reduce_sum", true)                                         \
  X(sub, "binary reduce_sum unary", true)                                         \
  X(mul, "binary reduce_sum", true)                                         \
  X(div, "binary reduce_sum unary", true)                                         \
  X(minimum, "binary reduce_sum select", true)                              \
  X(maximum, "binary reduce_sum select", true)                              \
  X(compare, "binary", false)                                               \
  X(select, "select", true)                                                 \
  X(scale, "unary", true)                                                   \
  X(add_scalar, "unary", true)                                              \
  X(neg, "unary", true)                                                     \
  X(abs, "unary binary", true)                                              \
  X(sum_abs, "reduce_sum_abs binary", true)                                 \
  X(relu, "unary binary", true)                                             \
  X(clamp, "unary binary", true)                                            \
  X(exp, "unary binary", true)                                              \
  X(log, "unary binary", true)                                              \
  X(sqrt, "unary binary", true)                                             \
  X(sum, "reduce_sum fill binary", true)                                           \
  X(sum_axis, "reduce_sum binary", true)                                    \
  X(mean, "reduce_sum fill binary", true)                                          \
  X(mean_axis, "reduce_sum binary", true)                                   \
  X(reshape, "", true)                                                      \
  X(flatten, "", true)                                                      \
  X(transpose, "transpose", true)                                           \
  X(slice_batch, "fill", true)                                              \
  X(concat_batch, "", true)                                                 \
  X(matmul, "gemm", true)                                        \
  X(linear, "gemm reduce_sum binary", true)                                 \
  X(conv2d, "conv2d_forward conv2d_backward_data conv2d_backward_filter reduce_sum", true) \
  X(conv2d_transpose, "conv2d_backward_data conv2d_forward conv2d_backward_filter", true) \
  X(batch_norm, "batch_norm_apply batch_norm_backward", true)               \
  X(batch_norm_train, "batch_norm_stats batch_norm_apply batch_norm_backward", true) \
  X(log_softmax, "log_softmax log_softmax_backward", true)                  \
  X(logsumexp, "logsumexp logsumexp_backward", true)                        \
  X(softmax_cross_entropy, "softmax_xent softmax_xent_backward", true)     \
  X(margin_spec, "margin_spec", false)                                      \
  X(count_correct, "argmax_hits reduce_sum", false)                         \
  X(misclassified, "misclassified_rows", false)
