// CPU twin of the gemm kernel: row-major, batched, on OpenBLAS's sgemm.
// The CUDA twin (kernels/cuda/gemm.cu) calls cuBLAS with the same semantics.
#include <cblas.h>

#include <cmath>

#include "kernels/kernels.h"

namespace cte::kern {

void gemm_cpu(GemmShape s, float alpha, const float* a, const float* b, float beta, float* c) {
  const bool trans_a = s.trans_a, trans_b = s.trans_b;
  const int64_t m = s.m, n = s.n, k = s.k, lda = s.lda, ldb = s.ldb, ldc = s.ldc;
  const int64_t stride_a = s.stride_a, stride_b = s.stride_b, stride_c = s.stride_c, batch = s.batch;
  if (m == 0 || n == 0 || batch == 0) return;
  for (int64_t i = 0; i < batch; ++i) {
    float* ci = c + i * stride_c;
    if (k == 0) {  // BLAS leaves C untouched in some builds; define it: C = beta * C
      for (int64_t r = 0; r < m; ++r)
        for (int64_t col = 0; col < n; ++col)
          ci[r * ldc + col] = beta == 0.0f ? 0.0f : beta * ci[r * ldc + col];
      continue;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha,
                a + i * stride_a, int(lda), b + i * stride_b, int(ldb), beta, ci, int(ldc));
  }
}

}  // namespace cte::kern
