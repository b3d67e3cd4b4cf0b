// The SIMT emulator's cuBLAS stand-ins: handles, math mode, versions, and
// SGEMM (single and strided-batched) with cuBLAS's exact column-major
// semantics and argument validation. The arithmetic is the emulator's
// definition of GEMM: every product is formed exactly and summed in double in
// the natural k order, then alpha * sum + beta * C is rounded once to float.
// beta == 0 never reads C (it may hold NaN). Scalars are host pointers (the
// default CUBLAS_POINTER_MODE_HOST); matrices must lie in cudaMalloc memory.
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/emu/emu_cuda.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math_mode = CUBLAS_DEFAULT_MATH;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

namespace {

constexpr int kCublasVersion = 130100;  // 13.1.0, the toolkit this project builds with

bool valid_operation(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }
bool transposed(cublasOperation_t op) { return op != CUBLAS_OP_N; }
int at_least_one(int v) { return v > 1 ? v : 1; }

// Elements spanned by a column-major rows x cols matrix with leading dimension ld.
size_t matrix_span(int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return 0;
  return size_t(ld) * size_t(cols - 1) + size_t(rows);
}

bool operand_in_device(const char* function, const char* operand, const float* ptr, size_t elements) {
  const size_t bytes = elements * sizeof(float);
  if (emu::detail::is_device_range(ptr, bytes)) return true;
  std::fprintf(stderr, "emu: %s: operand %s %s\n", function, operand,
               emu::detail::describe_range_problem(ptr, bytes).c_str());
  return false;
}

struct GemmShape {
  cublasOperation_t transa, transb;
  int m, n, k, lda, ldb, ldc;
};

cublasStatus_t validate(cublasHandle_t handle, const GemmShape& s, const float* alpha, const float* beta) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_operation(s.transa) || !valid_operation(s.transb)) return CUBLAS_STATUS_INVALID_VALUE;
  if (s.m < 0 || s.n < 0 || s.k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  const int a_rows = transposed(s.transa) ? s.k : s.m;
  const int b_rows = transposed(s.transb) ? s.n : s.k;
  if (s.lda < at_least_one(a_rows) || s.ldb < at_least_one(b_rows) || s.ldc < at_least_one(s.m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

// Checks one batch entry's operands against the live allocations.
bool operands_in_device(const char* function, const GemmShape& s, bool reads_ab, const float* A,
                        const float* B, const float* C) {
  const int a_rows = transposed(s.transa) ? s.k : s.m, a_cols = transposed(s.transa) ? s.m : s.k;
  const int b_rows = transposed(s.transb) ? s.n : s.k, b_cols = transposed(s.transb) ? s.k : s.n;
  if (reads_ab && !operand_in_device(function, "A", A, matrix_span(a_rows, a_cols, s.lda))) return false;
  if (reads_ab && !operand_in_device(function, "B", B, matrix_span(b_rows, b_cols, s.ldb))) return false;
  return operand_in_device(function, "C", C, matrix_span(s.m, s.n, s.ldc));
}

// C = alpha * op(A) op(B) + beta * C for one matrix; shapes already validated.
void gemm_one(const GemmShape& s, float alpha, const float* A, const float* B, float beta, float* C,
              std::vector<double>& a_rows, std::vector<double>& b_cols) {
  const bool use_products = alpha != 0.0f && s.k > 0;
  if (use_products) {
    // op(A) row by row and op(B) column by column, so each dot product below
    // walks contiguous memory in the natural k order.
    a_rows.resize(size_t(s.m) * size_t(s.k));
    b_cols.resize(size_t(s.n) * size_t(s.k));
    for (int i = 0; i < s.m; ++i)
      for (int l = 0; l < s.k; ++l)
        a_rows[size_t(i) * s.k + l] =
            transposed(s.transa) ? A[size_t(l) + size_t(i) * s.lda] : A[size_t(i) + size_t(l) * s.lda];
    for (int j = 0; j < s.n; ++j)
      for (int l = 0; l < s.k; ++l)
        b_cols[size_t(j) * s.k + l] =
            transposed(s.transb) ? B[size_t(j) + size_t(l) * s.ldb] : B[size_t(l) + size_t(j) * s.ldb];
  }
  for (int j = 0; j < s.n; ++j) {
    for (int i = 0; i < s.m; ++i) {
      double sum = 0.0;
      if (use_products) {
        const double* a = &a_rows[size_t(i) * s.k];
        const double* b = &b_cols[size_t(j) * s.k];
        for (int l = 0; l < s.k; ++l) sum += a[l] * b[l];
      }
      float& c = C[size_t(i) + size_t(j) * s.ldc];
      double result = double(alpha) * sum;
      if (beta != 0.0f) result += double(beta) * double(c);
      c = float(result);
    }
  }
}

// Both entry points; `function` names the caller in diagnostics.
cublasStatus_t gemm_batched(const char* function, cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const float* alpha, const float* A,
                            int lda, long long strideA, const float* B, int ldb, long long strideB,
                            const float* beta, float* C, int ldc, long long strideC, int batchCount) {
  const GemmShape shape{transa, transb, m, n, k, lda, ldb, ldc};
  if (const cublasStatus_t status = validate(handle, shape, alpha, beta); status != CUBLAS_STATUS_SUCCESS)
    return status;
  if (batchCount < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  // With alpha == 0 or k == 0, A and B are not read (and may be null).
  const bool reads_ab = *alpha != 0.0f && k > 0;
  auto a_of = [&](int batch) { return reads_ab ? A + batch * strideA : nullptr; };
  auto b_of = [&](int batch) { return reads_ab ? B + batch * strideB : nullptr; };
  for (int batch = 0; batch < batchCount; ++batch) {
    if (!operands_in_device(function, shape, reads_ab, a_of(batch), b_of(batch),
                            C + batch * strideC))
      return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  // Host-side alpha and beta are read when the call is queued, as cuBLAS does (a captured graph keeps them).
  const float alpha_value = *alpha, beta_value = *beta;
  const bool queued = emu::detail::submit(handle->stream, [=] {
    emu::detail::DeviceWorkLock lock;
    std::vector<double> a_rows, b_cols;
    for (int batch = 0; batch < batchCount; ++batch)
      gemm_one(shape, alpha_value, reads_ab ? A + batch * strideA : nullptr, reads_ab ? B + batch * strideB : nullptr,
               beta_value, C + batch * strideC, a_rows, b_cols);
  });
  return queued ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = nullptr;
  if (!emu::device_visible()) return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes > 0 && !emu::detail::is_device_range(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->workspace = workspace;
  handle->workspace_bytes = bytes;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  switch (mode) {
    case CUBLAS_DEFAULT_MATH:
    case CUBLAS_TENSOR_OP_MATH:
    case CUBLAS_PEDANTIC_MATH:
    case CUBLAS_TF32_TENSOR_OP_MATH:  // accepted; the emulator computes in full precision anyway
      handle->math_mode = mode;
      return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math_mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion(cublasHandle_t handle, int* version) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (version == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *version = kCublasVersion;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
  }
  return "unknown error";
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long strideA, const float* B, int ldb,
                                         long long strideB, const float* beta, float* C, int ldc,
                                         long long strideC, int batchCount) {
  return gemm_batched("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A, lda, strideA, B,
                      ldb, strideB, beta, C, ldc, strideC, batchCount);
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                           int m, int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  return gemm_batched("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc,
                      0, 1);
}
