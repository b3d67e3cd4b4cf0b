// The CPU GEMM's two paths (kernels/cpu/gemm.cpp), exposed for the banner, the
// tests and the benchmarks. gemm_cpu (kernels/kernels.h) picks one per call.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/kernels.h"

namespace cte::kern {

// True where our blocked AVX-512 kernel is compiled in and the CPU has
// AVX-512F, and CTE_GEMM_OPENBLAS is not set in the environment (that variable
// sends every product to OpenBLAS, for side-by-side timings).
bool gemm_blocked_available();

// Whether gemm_cpu hands this shape to the blocked kernel: where it is
// available and the product is large enough on every side (below that,
// packing costs more than it saves and OpenBLAS wins).
bool gemm_cpu_takes_blocked(const GemmShape& s);

// The blocked kernel itself, whatever the shape (gemm_blocked_available() must
// hold): C[i] = alpha op(A[i]) op(B[i]) + beta C[i], as gemm_cpu. Results do not
// depend on the OpenMP thread count.
void gemm_blocked_cpu(GemmShape s, float alpha, const float* a, const float* b, float beta, float* c);

// Products with a list of B's rows, read where they lie (kernels/cpu/gemm_selected_rows.cpp):
// B's row p of the product is b + b_rows[p] * ldb (b + p * ldb where b_rows is null).
struct SelectedRowsShape {
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  const int64_t* b_rows;  // [k] for gemm_selected_rows, [n] for gemm_selected_rows_t; or null
};
// C [m, n] = A [m, k] times the k selected rows of B (n floats each).
void gemm_selected_rows_cpu(const SelectedRowsShape& s, const float* a, const float* b, float* c);
// C [m, n] = A [m, k] times the n selected rows of B (k floats each), transposed.
void gemm_selected_rows_t_cpu(const SelectedRowsShape& s, const float* a, const float* b, float* c);
// Whether they run the AVX-512 kernels (else, or with CTE_GEMM_OPENBLAS set: the rows gathered
// for gemm_cpu).
bool gemm_selected_rows_vectorized();
// The AVX-512 kernels' portable twins: the same sums in the same order, so the same bits, on any
// CPU (the tests' reference; too slow to serve).
void gemm_selected_rows_portable(const SelectedRowsShape& s, const float* a, const float* b, float* c);
void gemm_selected_rows_t_portable(const SelectedRowsShape& s, const float* a, const float* b, float* c);

// For the banner: which GEMM runs, e.g. "own AVX-512 GEMM, OpenBLAS sgemm
// (Haswell kernels) for small shapes".
std::string gemm_cpu_description();

}  // namespace cte::kern
