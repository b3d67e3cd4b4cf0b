// Matrix products: matmul (optionally transposed, batched, or with a matrix
// shared by every batch) and linear, on OpenBLAS / cuBLAS through the gemm
// kernel twins (kernels/cpu/gemm.cpp, kernels/cuda/gemm.cu).
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::ops {
namespace {

struct MatmulDims {
  int64_t batch, m, n, k;
  bool shared_b;  // a 2-D b used by every batch of a
};

// Row-major C[batch] = op(A[batch]) op(B[batch or shared]).
void run_gemm(Device device, bool ta, bool tb, const MatmulDims& d, const float* a,
              const float* b, float* c, float beta = 0.0f) {
  const int64_t lda = ta ? d.m : d.k, ldb = tb ? d.k : d.n;
  if (d.shared_b && !ta) {
    // One GEMM: stack the batches of A as rows.
    CTE_RUN(device, gemm, kern::dense_gemm(false, tb, d.batch * d.m, d.n, d.k), 1.0f, a, b, beta, c);
    return;
  }
  const kern::GemmShape shape{ta, tb, d.m, d.n, d.k, lda, ldb, d.n, d.m * d.k, d.shared_b ? 0 : d.k * d.n, d.m * d.n,
                              d.batch};
  CTE_RUN(device, gemm, shape, 1.0f, a, b, beta, c);
}

MatmulDims matmul_dims(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int ra = a.ndim(), rb = b.ndim();
  if ((ra != 2 && ra != 3) || (rb != 2 && rb != 3) || (ra == 2 && rb == 3))
    fail("matmul", "supports (m,k)x(k,n), (B,m,k)x(k,n) and (B,m,k)x(B,k,n); got " +
                       a.shape().str() + " x " + b.shape().str());
  MatmulDims d;
  d.batch = ra == 3 ? a.shape()[0] : 1;
  d.shared_b = rb == 2;
  const int64_t a_rows = a.shape()[-2], a_cols = a.shape()[-1];
  const int64_t b_rows = b.shape()[-2], b_cols = b.shape()[-1];
  d.m = ta ? a_cols : a_rows;
  d.k = ta ? a_rows : a_cols;
  const int64_t kb = tb ? b_cols : b_rows;
  d.n = tb ? b_rows : b_cols;
  if (d.k != kb)
    fail("matmul", "a is " + a.shape().str() + (ta ? " (transposed)" : "") + " but b is " +
                       b.shape().str() + (tb ? " (transposed)" : "") + ": inner extents " +
                       std::to_string(d.k) + " and " + std::to_string(kb) + " differ");
  if (rb == 3 && b.shape()[0] != d.batch)
    fail("matmul", "batch sizes differ: " + a.shape().str() + " x " + b.shape().str());
  if (d.shared_b && ta && d.batch > 1 && ra == 3)
    fail("matmul", "a transposed 3-D a with a shared 2-D b is not supported");
  return d;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const Device device = common_device("matmul", {&a, &b});
  const MatmulDims d = matmul_dims(a, b, ta, tb);
  Tensor c = a.ndim() == 3 ? Tensor::empty(Shape{d.batch, d.m, d.n}, device)
                           : Tensor::empty(Shape{d.m, d.n}, device);
  run_gemm(device, ta, tb, d, a.data(), b.data(), c.data());
  if (should_record({&a, &b}))
    record("matmul", {a, b}, c, [a, b, ta, tb](const Tensor& g) {
      // C = op(A) op(B):  dA = g op(B)^T (or its transpose), dB = op(A)^T g (or its transpose).
      if (a.requires_grad()) accumulate_grad(a, ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb));
      if (b.requires_grad()) {
        if (b.ndim() == 2 && a.ndim() == 3) {
          // Shared b: stack the batches, one GEMM sums their contributions.
          const Tensor a2 = alias_with_shape(a, Shape{a.shape()[0] * a.shape()[1], a.shape()[2]});
          const Tensor g2 = alias_with_shape(g, Shape{g.shape()[0] * g.shape()[1], g.shape()[2]});
          accumulate_grad(b, tb ? matmul(g2, a2, true, false) : matmul(a2, g2, true, false));
        } else {
          accumulate_grad(b, tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false));
        }
      }
    });
  return c;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const Device device = common_device("linear", {&x, &weight, &bias});
  if (x.ndim() != 2 || weight.ndim() != 2 || x.shape()[1] != weight.shape()[1])
    fail("linear", "input is " + x.shape().str() + ", weight is " + weight.shape().str() +
                       " (expects input (N, in) and weight (out, in))");
  if (bias.defined() && (bias.ndim() != 1 || bias.shape()[0] != weight.shape()[0]))
    fail("linear", "bias is " + bias.shape().str() + ", expected (" +
                       std::to_string(weight.shape()[0]) + ")");
  const int64_t n = x.shape()[0], in = x.shape()[1], out = weight.shape()[0];
  Tensor y = Tensor::empty(Shape{n, out}, device);
  if (bias.defined()) {
    // y = bias repeated over the rows (bias + 0), then y += x W^T in the same GEMM (beta = 1).
    const Tensor zero = Tensor::scalar(0.0f, device);
    const kern::Broadcast4 rows{{1, 1, n, out}, {0, 0, 0, 1}, {0, 0, 0, 0}};
    CTE_RUN(device, binary, kern::BinaryOp::add, bias.data(), zero.data(), y.data(), rows);
  }
  run_gemm(device, false, true, MatmulDims{1, n, out, in, true}, x.data(), weight.data(), y.data(),
           bias.defined() ? 1.0f : 0.0f);
  if (should_record({&x, &weight, &bias}))
    record("linear", {x, weight, bias}, y, [x, weight, bias](const Tensor& g) {
      if (x.requires_grad()) accumulate_grad(x, matmul(g, weight));               // (N,out)(out,in)
      if (weight.requires_grad()) accumulate_grad(weight, matmul(g, x, true, false));  // (out,N)(N,in)
      if (bias.defined() && bias.requires_grad()) accumulate_grad(bias, sum_to_shape(g, bias.shape()));
    });
  return y;
}

}  // namespace cte::ops
