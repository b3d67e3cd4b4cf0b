// CUDA twins of reduce_sum: y[o, i] = scale * sum_r x[o, r, i] over x viewed as
// [outer, reduce, inner], and of reduce_sum_abs: y = scale * sum |x|. Few
// outputs with long sums get one block per output (a block reduction); many
// outputs get one thread per output, whose loads are coalesced along `inner`.
// Either way the summation order depends only on the shape, so results are
// deterministic. reduce_sum_abs is always one block (the block kernel with
// one output), for any n: a single SM for a whole parameter's gradient, which
// the training step's probe and L1 term can afford; for n < 32 its order
// differs from reduce_sum's thread-per-output one (the last bits may too).
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// Below this many outputs a thread per output would leave the GPU mostly idle.
constexpr int64_t kFewOutputs = 65536;
// Sums shorter than this are not worth a block reduction.
constexpr int64_t kLongSum = 32;

// x: [outer, reduce, inner], y: [outer, inner]; one block per output (grid-stride).
// kAbs: sums |x| instead.
template <bool kAbs>
__global__ void reduce_sum_block_per_output_kernel(const float* x, float* y, int64_t outer,
                                                   int64_t reduce, int64_t inner, float scale) {
  CTE_DYNAMIC_SHARED(float, shared);
  const int64_t outputs = outer * inner;
  for (int64_t out = blockIdx.x; out < outputs; out += gridDim.x) {
    const int64_t o = out / inner, i = out % inner;
    const float* column = x + o * reduce * inner + i;
    float partial = 0.0f;
    for (int64_t r = threadIdx.x; r < reduce; r += blockDim.x) partial += kAbs ? fabsf(column[r * inner]) : column[r * inner];
    const float total = gpu::block_reduce(partial, shared, gpu::SumOp{});
    if (threadIdx.x == 0) y[out] = total * scale;
  }
}

// x: [outer, reduce, inner], y: [outer, inner]; one thread per output.
__global__ void reduce_sum_thread_per_output_kernel(const float* x, float* y, int64_t outer,
                                                    int64_t reduce, int64_t inner, float scale) {
  CTE_GRID_STRIDE_LOOP(out, outer * inner) {
    const int64_t o = out / inner, i = out % inner;
    const float* column = x + o * reduce * inner + i;
    float sum = 0.0f;
    for (int64_t r = 0; r < reduce; ++r) sum += column[r * inner];
    y[out] = sum * scale;
  }
}

}  // namespace

void reduce_sum_cuda(const float* x, float* y, int64_t outer, int64_t reduce, int64_t inner,
                     float scale) {
  const int64_t outputs = outer * inner;
  if (outputs <= 0) return;
  if (reduce >= kLongSum && (inner == 1 || outputs < kFewOutputs)) {
    const unsigned blocks = unsigned(outputs < gpu::kMaxBlocks ? outputs : gpu::kMaxBlocks);
    const int threads = gpu::block_threads_for(reduce);
    gpu::launch("reduce_sum", dim3(blocks), dim3(unsigned(threads)),
                gpu::block_reduce_shared_bytes(threads), reduce_sum_block_per_output_kernel<false>, x, y,
                outer, reduce, inner, scale);
  } else {
    gpu::launch_1d("reduce_sum", outputs, reduce_sum_thread_per_output_kernel, x, y, outer,
                   reduce, inner, scale);
  }
}

void reduce_sum_abs_cuda(const float* x, float* y, int64_t n, float scale) {
  const int threads = gpu::block_threads_for(n);
  gpu::launch("reduce_sum_abs", dim3(1), dim3(unsigned(threads)), gpu::block_reduce_shared_bytes(threads),
              reduce_sum_block_per_output_kernel<true>, x, y, int64_t(1), n, int64_t(1), scale);
}

}  // namespace cte::kern
