// Device selection and the start-up banner. Without a GPU the CPU backend is
// the default; asking for CUDA where there is none is an error, never a
// silent CPU run.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace cte {

// "cpu", "cuda" or "auto" (CUDA when a device is present, else CPU).
// Throws "[device] ..." for an unknown name or a CUDA request without a GPU.
Device parse_device(const std::string& name);
bool cuda_available();
void require_device(Device device);  // throws unless usable
// One line naming the backend and device: GPU name, compute capability and
// CUDA/cuBLAS/cuDNN versions, or the CPU model, thread count and BLAS.
std::string device_banner(Device device);
// --threads of every binary: OpenMP and OpenBLAS threads (0: leave the
// defaults). Throws "[<flag>] ..." for a negative count.
void set_thread_count(int threads, const std::string& flag = "--threads");

}  // namespace cte
