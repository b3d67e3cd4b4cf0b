// Op front-ends: shape checks, the forward kernel call, and the tape record
// with the backward rule, side by side in engine/ops/*.cpp (one file per
// family). Every op listed in engine/op_table.h is declared here. Errors start
// with the op's name and give the shapes, e.g.
//   [matmul] a is (100,784) but b is (400,200): inner extents differ.
// Binary element-wise ops broadcast like numpy (shapes aligned on the right,
// extents equal or 1); the gradient of a broadcast operand is summed back to
// its shape.
#pragma once
#include <vector>

#include "engine/tensor.h"
#include "kernels/kernels.h"

namespace cte::ops {

// ---- element-wise (engine/ops/elementwise.cpp)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);  // ties send the gradient to a
Tensor maximum(const Tensor& a, const Tensor& b);  // ties send the gradient to a
// 1.0 where `a op b` holds, else 0.0 (op is one of gt, ge, lt, le, eq). Not differentiable.
Tensor compare(const Tensor& a, const Tensor& b, kern::BinaryOp op);
// mask != 0 ? a : b, all three of one shape; differentiable in a and b.
Tensor select(const Tensor& mask, const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float factor);
Tensor add_scalar(const Tensor& x, float value);
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);    // gradient sign(x) (0 at 0)
Tensor sum_abs(const Tensor& x);  // sum |x|, a scalar, in one pass; gradient sign(x)
Tensor relu(const Tensor& x);   // gradient 1 where x > 0
Tensor clamp(const Tensor& x, float lo, float hi);  // gradient 1 where lo <= x <= hi
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);   // gradient 1 / (2 sqrt x)
// dst += src in place, outside the tape (gradient accumulation, optimizers).
void add_into(Tensor& dst, const Tensor& src);

// ---- reductions (engine/ops/reduce.cpp)
Tensor sum(const Tensor& x);                                // scalar (shape ())
Tensor sum_axis(const Tensor& x, int axis, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean_axis(const Tensor& x, int axis, bool keepdim = false);
// Sums a broadcast result back to `shape` (not recorded: used inside backward rules).
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- shapes (engine/ops/shape.cpp)
Tensor reshape(const Tensor& x, const Shape& shape);  // shares storage
Tensor flatten(const Tensor& x);                      // (N, ...) -> (N, rest)
Tensor transpose(const Tensor& x);                    // swaps the last two axes
Tensor slice_batch(const Tensor& x, int64_t begin, int64_t end);  // rows [begin, end) of axis 0
Tensor concat_batch(const std::vector<Tensor>& parts);            // along axis 0

// ---- linear algebra (engine/ops/matmul.cpp) and convolution (engine/ops/conv.cpp)
// op(a) op(b) with a (m,k) or (B,m,k) and b (k,n) or (B,k,n) (before the
// transposes). A 2-D b is shared by every batch of a 3-D a (then trans_a must be false).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x (N, in) W^T + bias: weight (out, in), bias (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// x (N, C, H, W), weight (O, C, kh, kw), bias (O) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding);
// The adjoint of conv2d in its input (cuDNN's backward-data), as a
// differentiable op: dy (N, O, h_out, w_out) -> (N, C, h_in, w_in). Used to
// backsubstitute through a convolution without forming its matrix.
Tensor conv2d_transpose(const Tensor& dy, const Tensor& weight, int stride, int padding,
                        int h_in, int w_in);
kern::ConvGeometry conv_geometry(const Shape& x, const Shape& weight, int stride, int padding,
                                 const char* op);

// ---- BatchNorm over axis 1 of x (N, C) or (N, C, H, W) (engine/ops/batch_norm.cpp)
// Fixed statistics mean, var (C), no gradient to them (evaluation mode):
// y = (x - mean) / sqrt(var + eps) * gamma + beta; differentiable in x, gamma, beta.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& var,
                  float eps);
// Training mode: the batch's mean and biased variance over N (and H, W), as
// outputs of the same node (differentiable: their gradients reach x).
struct BatchNormTrainResult {
  Tensor y, mean, var;
};
BatchNormTrainResult batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps);

// ---- softmax family over the last axis (engine/ops/softmax.cpp)
Tensor log_softmax(const Tensor& x);
Tensor logsumexp(const Tensor& x);  // drops the last axis
// Per-row loss logsumexp(z) - z[label]; logits (N, K), labels (N) holding class indices.
// A label outside [0, K) is an error on the CPU and a NaN loss on CUDA (no per-step copy back).
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);

// ---- labels on the device (engine/ops/softmax.cpp): a training step builds its
// specification and counts its hits without copying the batch back to the host.
// labels (N) hold class indices; a label that is not one gives NaN rows / no hit.
// The margin specification (N, K-1, K): row r of sample s is e_o - e_y, o the
// r-th class other than y (relaxations.h margin_spec builds the same from host labels).
Tensor margin_spec(const Tensor& labels, int64_t num_classes);
// How many rows of logits (N, K) have their first largest entry at the label: a scalar.
Tensor count_correct(const Tensor& logits, const Tensor& labels);
// Per row of logits (N, K): 1 when some other class's logit is at or above the
// label's (a NaN counts, as does a label naming no class), else 0; shape (N).
// PGD's test for a broken sample, kept on the device (train/pgd.cpp).
Tensor misclassified(const Tensor& logits, const Tensor& labels);

}  // namespace cte::ops
