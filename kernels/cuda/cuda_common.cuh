// Shared by every .cu file: the CUDA headers (or the SIMT emulator's shim),
// the one CHECK macro for CUDA, cuBLAS and cuDNN status codes, and the one
// launch helper. No kernel is launched with <<<...>>> anywhere else, so the
// emulator can run every kernel on the CPU and every launch is checked.
#pragma once

#ifdef CTE_EMULATOR
#include "kernels/emu/emu_cuda.h"
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#endif

#include <cstdint>
#include <utility>

#include "kernels/common/hd.h"

namespace cte::gpu {

[[noreturn]] void fail(const char* statement, const char* file, int line, const char* what);

inline bool status_ok(cudaError_t s) { return s == cudaSuccess; }
inline bool status_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool status_ok(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }
inline const char* status_string(cudaError_t s) { return cudaGetErrorString(s); }
const char* status_string(cublasStatus_t s);
inline const char* status_string(cudnnStatus_t s) { return cudnnGetErrorString(s); }

// Kernels use grid-stride loops; 1-D launches cap the grid here (enough blocks
// to fill any current GPU, few enough for the emulator).
constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 4096;
inline unsigned blocks_for(int64_t n, int block = kBlock) {
  int64_t blocks = (n + block - 1) / block;
  return unsigned(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

}  // namespace cte::gpu

// One CHECK for the three libraries: names the statement, file and line.
#define CTE_CUDA_CHECK(stmt)                                                           \
  do {                                                                                 \
    auto cte_status_ = (stmt);                                                         \
    if (!::cte::gpu::status_ok(cte_status_))                                           \
      ::cte::gpu::fail(#stmt, __FILE__, __LINE__, ::cte::gpu::status_string(cte_status_)); \
  } while (0)

// Dynamic shared memory: `extern __shared__` under nvcc, a per-block buffer
// under the emulator.
#ifdef CTE_EMULATOR
#define CTE_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::emu::dynamic_shared_memory())
#else
#define CTE_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace cte::gpu {

// The stream all of the engine's device work is queued on: launches, async
// copies, events, cuBLAS and cuDNN. A stream of its own (not the legacy default
// stream, which cannot be captured into a CUDA graph), created blocking so that
// the synchronous copies and NCCL on the legacy stream stay ordered with it.
// Defined in kernels/cuda/runtime.cu.
cudaStream_t work_stream();

// The one launch helper. An empty grid launches nothing (CUDA rejects it).
template <typename... KernelArgs, typename... Args>
void launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes,
            void (*kernel)(KernelArgs...), Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
#ifdef CTE_EMULATOR
  ::emu::launch_on(work_stream(), name, grid, block, shared_bytes, kernel, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, shared_bytes, work_stream()>>>(std::forward<Args>(args)...);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) fail(name, __FILE__, __LINE__, cudaGetErrorString(status));
#endif
}

// Convenience for element-wise kernels over n items: grid-stride, kBlock threads.
template <typename... KernelArgs, typename... Args>
void launch_1d(const char* name, int64_t n, void (*kernel)(KernelArgs...), Args&&... args) {
  if (n <= 0) return;
  launch(name, dim3(blocks_for(n)), dim3(kBlock), 0, kernel, std::forward<Args>(args)...);
}

}  // namespace cte::gpu

// Index of this thread in a 1-D grid-stride loop.
#define CTE_GRID_STRIDE_LOOP(i, n)                                                    \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);            \
       i += int64_t(blockDim.x) * gridDim.x)
