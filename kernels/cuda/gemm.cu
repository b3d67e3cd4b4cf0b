// CUDA twin of gemm: row-major, optionally batched C = alpha op(A) op(B) + beta C
// on cuBLAS (plain FP32 math, see handles.cuh). cuBLAS is column-major, and a
// row-major matrix with leading dimension ld is the column-major view of its
// transpose, so row-major C = op(A) op(B) is computed as column-major
// C^T = op(B)^T op(A)^T: the operands swap places and m and n swap roles.
#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/handles.cuh"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// c: [batch] matrices [m, n] with row stride ldc, batch stride stride_c.
// C = beta * C, where beta == 0 writes zeros without reading C (BLAS semantics).
// This is gemm with k == 0, which cuBLAS's argument checks do not all accept.
__global__ void gemm_scale_c_kernel(float* c, int64_t m, int64_t n, int64_t ldc,
                                    int64_t stride_c, int64_t batch, float beta) {
  CTE_GRID_STRIDE_LOOP(i, batch * m * n) {
    const int64_t matrix = i / (m * n), row = i / n % m, col = i % n;
    float& element = c[matrix * stride_c + row * ldc + col];
    element = beta == 0.0f ? 0.0f : beta * element;
  }
}

int checked_int(int64_t value, const char* what) {
  if (value < 0 || value > INT_MAX)
    throw std::runtime_error(std::string("gemm_cuda: ") + what + " = " + std::to_string(value) +
                             " is outside cuBLAS's int range");
  return int(value);
}

}  // namespace

void gemm_cuda(GemmShape s, float alpha, const float* a, const float* b, float beta, float* c) {
  const bool trans_a = s.trans_a, trans_b = s.trans_b;
  const int64_t m = s.m, n = s.n, k = s.k, lda = s.lda, ldb = s.ldb, ldc = s.ldc;
  const int64_t stride_a = s.stride_a, stride_b = s.stride_b, stride_c = s.stride_c, batch = s.batch;
  if (m <= 0 || n <= 0 || batch <= 0) return;
  if (k == 0) {
    gpu::launch_1d("gemm_scale_c", batch * m * n, gemm_scale_c_kernel, c, m, n, ldc, stride_c,
                   batch, beta);
    return;
  }
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m32 = checked_int(m, "m"), n32 = checked_int(n, "n"), k32 = checked_int(k, "k");
  const int lda32 = checked_int(lda, "lda"), ldb32 = checked_int(ldb, "ldb");
  const int ldc32 = checked_int(ldc, "ldc");
  cublasHandle_t handle = gpu::cublas_handle();
  if (batch == 1) {
    CTE_CUDA_CHECK(cublasSgemm(handle, op_b, op_a, n32, m32, k32, &alpha, b, ldb32, a, lda32,
                               &beta, c, ldc32));
  } else {
    CTE_CUDA_CHECK(cublasSgemmStridedBatched(
        handle, op_b, op_a, n32, m32, k32, &alpha, b, ldb32, (long long)stride_b, a, lda32,
        (long long)stride_a, &beta, c, ldc32, (long long)stride_c, checked_int(batch, "batch")));
  }
}

}  // namespace cte::kern
