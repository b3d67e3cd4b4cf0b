// Host/device portability for math shared by the CPU and CUDA backends.
// A function marked CTE_HD is compiled by nvcc for both sides and by the host
// compiler for the CPU (plain C++, and the SIMT emulator, where __host__ and
// __device__ mean nothing), so the CPU twin of a kernel evaluates exactly the
// formula the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define CTE_HD __host__ __device__
#else
#define CTE_HD
#endif
