// Internal to kernels/cuda/: the process-wide cuBLAS and cuDNN handles and the
// one grow-only device workspace that cuDNN convolutions borrow. All are
// created lazily on first use and live until the process exits. Defined in
// kernels/cuda/runtime.cu.
#pragma once
#include <cstddef>

#include "kernels/cuda/cuda_common.cuh"

namespace cte::gpu {

// cuBLAS handle on work_stream(), in plain FP32 math (no TF32).
cublasHandle_t cublas_handle();
// cuDNN handle on work_stream().
cudnnHandle_t cudnn_handle();
// Device scratch of at least `bytes` (nullptr for 0). Grows, never shrinks, so a
// steady-state training step makes no cudaMalloc. The pointer stays valid until
// the next call that asks for more; users run on work_stream(), in order.
void* workspace(size_t bytes);

}  // namespace cte::gpu
