// Internal to kernels/cuda/: deterministic block-wide reductions (sum, max) for
// the row-wise kernels (reduce.cu, softmax.cu): a warp shuffle butterfly, then
// the per-warp partials through shared memory. Every thread gets the total, and
// every thread combines the partials in the same order, so the result is
// bit-identical across threads and across runs.
#pragma once
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/common/elementwise_ops.h"

namespace cte::gpu {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarpMask = 0xffffffffu;

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
// NaN-propagating, so a NaN in a row is never hidden by the max.
struct MaxOp {
  __device__ float operator()(float a, float b) const { return kern::nan_propagating_max(a, b); }
};

// Threads for a block that reduces `length` items: whole warps, at most kBlock,
// and no more than the items (a row of 10 logits gets one warp, not 256 threads).
inline int block_threads_for(int64_t length) {
  const int64_t max_warps = kBlock / kWarpSize;
  int64_t warps = (length + kWarpSize - 1) / kWarpSize;
  warps = warps < 1 ? 1 : (warps > max_warps ? max_warps : warps);
  return int(warps) * kWarpSize;
}

// Shared memory a block of `threads` threads needs for block_reduce.
inline size_t block_reduce_shared_bytes(int threads) {
  return size_t(threads / kWarpSize) * sizeof(float);
}

// Every lane of a warp gets the warp's total: a shuffle butterfly, combining
// in the same order in every lane. Every lane of the warp must call it.
template <typename Op>
__device__ float warp_reduce(float value, Op op) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(kFullWarpMask, value, offset));
  return value;
}

// Requires blockDim.x to be a multiple of 32 and every thread of the block to
// call it (the full-mask shuffles and __syncthreads need the whole warp and
// block); `shared` holds at least blockDim.x / 32 floats. Safe to call
// repeatedly with the same `shared`.
template <typename Op>
__device__ float block_reduce(float value, float* shared, Op op) {
  value = warp_reduce(value, op);
  const int lane = int(threadIdx.x) % kWarpSize;
  const int warp = int(threadIdx.x) / kWarpSize;
  const int warps = int(blockDim.x) / kWarpSize;
  __syncthreads();  // the previous call's readers are done with `shared`
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  float total = shared[0];
  for (int w = 1; w < warps; ++w) total = op(total, shared[w]);
  return total;
}

// Launch shape of kernels that run one block per row (grid-striding over
// rows) and reduce each row's `cols` items with block_reduce.
struct RowLaunch {
  dim3 grid, block;
  size_t shared_bytes;
};
inline RowLaunch row_launch(int64_t rows, int64_t cols) {
  const int threads = block_threads_for(cols);
  return {dim3(unsigned(rows < kMaxBlocks ? rows : kMaxBlocks)), dim3(unsigned(threads)),
          block_reduce_shared_bytes(threads)};
}

// Launch shape of kernels that give each row one warp (CTE_WARP_ROW_LOOP;
// rows of a few hundred items, where a block per row would spend most of its
// threads' time in the reduction's barriers): up to kBlock / 32 rows per
// block, no shared memory, grid-striding.
inline RowLaunch warp_row_launch(int64_t rows) {
  const int64_t per_block = kBlock / kWarpSize;
  const int64_t warps = rows < 1 ? 1 : (rows < per_block ? rows : per_block);
  const int64_t blocks = (rows + per_block - 1) / per_block;
  return {dim3(unsigned(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks))),
          dim3(unsigned(warps * kWarpSize)), 0};
}

}  // namespace cte::gpu

// Row `row` of `rows` for this thread's warp (every lane of a warp walks the
// same rows), grid-striding in whole warps; `lane` is the thread's place in it.
#define CTE_WARP_ROW_LOOP(row, lane, rows)                                                           \
  for (int64_t row = int64_t(blockIdx.x) * (blockDim.x / ::cte::gpu::kWarpSize) +                    \
                     threadIdx.x / ::cte::gpu::kWarpSize,                                            \
               lane = threadIdx.x % ::cte::gpu::kWarpSize;                                           \
       row < (rows); row += int64_t(gridDim.x) * (blockDim.x / ::cte::gpu::kWarpSize))
