// The kernel table: every compute kernel of the engine, declared once with its
// argument shapes. Each entry expands to two functions with identical
// signatures: name_cpu (kernels/cpu/*.cpp, host pointers) and name_cuda
// (kernels/cuda/*.cu, device pointers). The engine's dispatch is the only place
// that picks one. Kernels know nothing about tensors or the tape: raw pointers,
// sizes, and the shapes written beside each argument. Every kernel fully
// overwrites its outputs (no accumulation) unless its comment says otherwise.
#pragma once
#include <cstdint>

namespace cte::kern {

enum class UnaryOp : int {
  relu,       // max(x, 0)
  abs,        // |x|
  neg,        // -x
  scale,      // alpha * x
  add_scalar, // x + alpha
  clamp,      // min(max(x, alpha), beta)
  exp,        // e^x
  log,        // ln x
  sqrt,       // sqrt x
  square,     // x * x
  positive,   // 1 if x > 0 else 0   (ReLU's derivative mask)
  sign,       // -1, 0 or 1
};

enum class BinaryOp : int {
  add, sub, mul, div, min, max,
  gt, ge, lt, le, eq,  // comparison masks: 1.0f where true, 0.0f otherwise
  // a times the derivative of relu / abs at b: the backward of relu and abs in
  // one pass, with the bits of mul(a, positive(b)) and mul(a, sign(b))
  mul_positive, mul_sign,
};

// Numpy-style broadcasting of two operands, padded on the left to 4 dims.
// out[i0,i1,i2,i3] = op(a[sum ik*a_stride[k]], b[sum ik*b_stride[k]]);
// a stride is 0 on a dimension where that operand has extent 1.
struct Broadcast4 {
  int64_t out[4];
  int64_t a_stride[4];
  int64_t b_stride[4];
};

// Geometry of a 2-D convolution in NCHW / OIHW layout (cross-correlation, as
// cuDNN's CUDNN_CROSS_CORRELATION and PyTorch's conv2d).
struct ConvGeometry {
  int n, c_in, h_in, w_in;
  int c_out, kh, kw;
  int stride, padding;
  int h_out, w_out;  // conv_output_extent(h_in, kh, stride, padding), likewise w
};

// C[i] = alpha op(A[i]) op(B[i]) + beta C[i] for i < batch, row-major; op
// transposes when trans_* is set. ld*: row strides; stride_*: the distance
// between consecutive matrices of the batch (0: one matrix shared by all).
struct GemmShape {
  bool trans_a, trans_b;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  int64_t batch;
};

// One product of contiguous row-major operands: C (m, n) = op(A) (m, k) op(B) (k, n),
// A stored (m, k) or, transposed, (k, m); B stored (k, n) or (n, k).
constexpr GemmShape dense_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
  return {trans_a, trans_b, m, n, k, trans_a ? m : k, trans_b ? k : n, n, 0, 0, 0, 1};
}

// The one output-size rule of a convolution along one axis (the network, the
// op front-end and the CUDA twin's check all call it). Negative when the
// kernel is larger than the padded input.
constexpr int conv_output_extent(int in, int kernel, int stride, int padding) {
  const int span = in + 2 * padding - kernel;
  return span < 0 ? -1 : span / stride + 1;
}

// X(name, parameter list). Shapes are row-major, outermost first.
#define CTE_KERNELS(X)                                                                  \
  X(fill, (float* out /*[n]*/, int64_t n, float value))                                 \
  X(unary, (UnaryOp op, const float* x /*[n]*/, float* y /*[n]*/, int64_t n,            \
            float alpha, float beta))                                                   \
  X(binary, (BinaryOp op, const float* a /*broadcast*/, const float* b /*broadcast*/,   \
             float* out /*[out0,out1,out2,out3]*/, Broadcast4 shape))                  \
  X(select, (const float* mask /*[n]*/, const float* a /*[n]*/, const float* b /*[n]*/, \
             float* out /*[n] = mask != 0 ? a : b*/, int64_t n))                      \
  X(reduce_sum, (const float* x /*[outer,reduce,inner]*/, float* y /*[outer,inner]*/,   \
                 int64_t outer, int64_t reduce, int64_t inner, float scale))           \
  X(reduce_sum_abs, (const float* x /*[n]*/, float* y /*[] = scale * sum |x|*/,         \
                     int64_t n, float scale))                                           \
  /* Row-major C = alpha * op(A) * op(B) + beta * C for each of `batch` matrices;   */ \
  /* op(A) is [m,k], op(B) is [k,n]; beta == 0 ignores C's old contents (NaN too). */  \
  X(gemm, (GemmShape s, float alpha, const float* a, const float* b, float beta,       \
           float* c))                                                                   \
  /* y = conv(x, w) + bias[c] on channel c (bias may be null: no bias) */              \
  X(conv2d_forward, (const float* x /*[n,c_in,h_in,w_in]*/,                             \
                     const float* w /*[c_out,c_in,kh,kw]*/,                             \
                     const float* bias /*[c_out] or null*/,                             \
                     float* y /*[n,c_out,h_out,w_out]*/, ConvGeometry g))               \
  X(conv2d_backward_data, (const float* dy /*[n,c_out,h_out,w_out]*/,                   \
                           const float* w /*[c_out,c_in,kh,kw]*/,                       \
                           float* dx /*[n,c_in,h_in,w_in]*/, ConvGeometry g))           \
  X(conv2d_backward_filter, (const float* x /*[n,c_in,h_in,w_in]*/,                     \
                             const float* dy /*[n,c_out,h_out,w_out]*/,                 \
                             float* dw /*[c_out,c_in,kh,kw]*/, ConvGeometry g))         \
  X(transpose, (const float* x /*[batch,rows,cols]*/, float* y /*[batch,cols,rows]*/,   \
                int64_t batch, int64_t rows, int64_t cols))                             \
  X(log_softmax, (const float* x /*[rows,cols]*/, float* y /*[rows,cols]*/,             \
                  int64_t rows, int64_t cols))                                          \
  /* dx = dy - exp(y) * sum_j dy */                                                     \
  X(log_softmax_backward, (const float* dy /*[rows,cols]*/, const float* y /*[rows,cols]*/, \
                           float* dx /*[rows,cols]*/, int64_t rows, int64_t cols))      \
  X(logsumexp, (const float* x /*[rows,cols]*/, float* y /*[rows]*/, int64_t rows,      \
                int64_t cols))                                                          \
  /* dx = dy[row] * exp(x - y[row]) */                                                  \
  X(logsumexp_backward, (const float* dy /*[rows]*/, const float* x /*[rows,cols]*/,    \
                         const float* y /*[rows]*/, float* dx /*[rows,cols]*/,          \
                         int64_t rows, int64_t cols))                                   \
  /* loss[r] = logsumexp(logits[r]) - logits[r, labels[r]]; probs = softmax(logits). */ \
  /* labels hold class indices as floats (exact below 2^24).                          */ \
  X(softmax_xent, (const float* logits /*[rows,cols]*/, const float* labels /*[rows]*/, \
                   float* loss /*[rows]*/, float* probs /*[rows,cols]*/, int64_t rows,  \
                   int64_t cols))                                                       \
  /* dlogits = dloss[r] * (probs - onehot(labels[r])) */                                \
  X(softmax_xent_backward, (const float* dloss /*[rows]*/, const float* probs           \
                            /*[rows,cols]*/, const float* labels /*[rows]*/,            \
                            float* dlogits /*[rows,cols]*/, int64_t rows, int64_t cols)) \
  /* The margin specification of each sample: row r of sample s is e_o - e_y, o the */ \
  /* r-th class other than y = labels[s] (kernels/common/label_math.h); NaN rows for */ \
  /* a label that is not a class index.                                               */ \
  X(margin_spec, (const float* labels /*[n]*/, float* spec /*[n,classes-1,classes]*/,    \
                  int64_t n, int64_t classes))                                          \
  /* hits[r] = 1 when the first largest logit of row r is at labels[r], else 0.       */ \
  X(argmax_hits, (const float* logits /*[rows,cols]*/, const float* labels /*[rows]*/,   \
                  float* hits /*[rows]*/, int64_t rows, int64_t cols))                  \
  /* flags[r] = 1 when some other logit of row r is >= the one at labels[r] (or NaN, */ \
  /* or the label names no class), else 0: PGD's "already broken" test.              */ \
  X(misclassified_rows, (const float* logits /*[rows,cols]*/, const float* labels     \
                         /*[rows]*/, float* flags /*[rows]*/, int64_t rows, int64_t cols)) \
  /* Per channel c of x [n, channels, plane]: mean and biased variance over n*plane  */ \
  /* values (two passes: the mean first, then the squared deviations).              */ \
  X(batch_norm_stats, (const float* x /*[n,channels,plane]*/, float* mean /*[channels]*/,  \
                       float* var /*[channels]*/, int64_t n, int64_t channels,             \
                       int64_t plane))                                                    \
  /* y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]                      */ \
  X(batch_norm_apply, (const float* x /*[n,channels,plane]*/, const float* mean /*[channels]*/, \
                       const float* var /*[channels]*/, const float* gamma /*[channels]*/,  \
                       const float* beta /*[channels]*/, float* y /*[n,channels,plane]*/,   \
                       int64_t n, int64_t channels, int64_t plane, float eps))            \
  /* dx, dgamma = sum dy xhat, dbeta = sum dy per channel. batch_stats: mean and var */ \
  /* are the batch's own (dx through them, plus dmean and dvar, [channels] or null);  */ \
  /* otherwise fixed (dx = dy gamma inv_std). kernels/common/batch_norm_math.h.      */ \
  X(batch_norm_backward, (const float* dy /*[n,channels,plane]*/, const float* x /*[n,channels,plane]*/, \
                          const float* mean /*[channels]*/, const float* var /*[channels]*/,   \
                          const float* gamma /*[channels]*/, const float* dmean /*[channels] or null*/, \
                          const float* dvar /*[channels] or null*/, float* dx /*[n,channels,plane]*/, \
                          float* dgamma /*[channels]*/, float* dbeta /*[channels]*/, int64_t n,   \
                          int64_t channels, int64_t plane, float eps, int batch_stats))          \
  /* g is grad + l1 * sign(p): an L1 penalty l1 * sum |p| folded into the step (0:   */ \
  /* none), instead of two more passes over every weight on the tape.                 */ \
  /* In place: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;                           */ \
  /* p -= lr * (m / bias_correction1) / (sqrt(v / bias_correction2) + eps).           */ \
  /* skip: a device flag read by the kernel; nonzero leaves p, m and v as they are    */ \
  /* (a step whose loss or gradient is not finite), null never skips.                 */ \
  X(adam_step, (float* param /*[n]*/, const float* grad /*[n]*/, float* m /*[n]*/,      \
                float* v /*[n]*/, int64_t n, float lr, float beta1, float beta2,         \
                float eps, float bias_correction1, float bias_correction2,              \
                float l1, const float* skip /*[1] or null*/))                           \
  /* In place: buf = momentum * buf + g; p -= lr * buf (PyTorch's SGD); g, skip as above. */ \
  X(sgd_step, (float* param /*[n]*/, const float* grad /*[n]*/, float* buf /*[n]*/,     \
               int64_t n, float lr, float momentum, float l1,                           \
               const float* skip /*[1] or null*/))

#define CTE_DECLARE_KERNEL_TWINS(name, params) \
  void name##_cpu params;                      \
  void name##_cuda params;
CTE_KERNELS(CTE_DECLARE_KERNEL_TWINS)
#undef CTE_DECLARE_KERNEL_TWINS

// How the CPU convolutions run a batch of images (kernels/cpu/conv.cpp): by
// image size (the default: many small images in vector lanes, large ones
// through im2col + sgemm), or always one way. The calling thread's choice;
// tests run both paths against the reference, benchmarks time them.
enum class CpuConvPath { by_size, gemm, lanes };
void set_cpu_conv_path(CpuConvPath path);
bool cpu_conv_by_size_takes_lanes(const ConvGeometry& g);

}  // namespace cte::kern
