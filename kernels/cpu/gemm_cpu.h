// The CPU GEMM's two paths (kernels/cpu/gemm.cpp), exposed for the banner, the
// tests and the benchmarks. gemm_cpu (kernels/kernels.h) picks one per call.
#pragma once
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

// For the banner: which GEMM runs, e.g. "own AVX-512 GEMM, OpenBLAS sgemm
// (Haswell kernels) for small shapes".
std::string gemm_cpu_description();

}  // namespace cte::kern
