// CUDA twin of transpose: y[b, c, r] = x[b, r, c] for a batch of row-major
// matrices. A block moves one 32x32 tile at a time through shared memory, so
// both the reads of x and the writes of y are coalesced; the tile is padded to
// 33 columns so the column-wise reads hit 32 different banks.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

constexpr int kTile = 32;
constexpr int kTilePitch = kTile + 1;  // the padding column that avoids bank conflicts
constexpr int kTileRowsPerPass = 8;    // blockDim = (kTile, kTileRowsPerPass)
// Grid caps per dimension (the kernel strides over the rest); gridDim.y/z must stay <= 65535.
constexpr int64_t kMaxTileBlocks = 128, kMaxBatchBlocks = 64;

// x: [batch, rows, cols], y: [batch, cols, rows]. blockDim = (32, 8); dynamic
// shared memory: kTile * kTilePitch floats. Block (bx, by, bz) strides over
// column tiles, row tiles and matrices; the loop bounds are uniform across the
// block, so every thread reaches every __syncthreads.
__global__ void transpose_kernel(const float* x, float* y, int64_t batch, int64_t rows,
                                 int64_t cols) {
  CTE_DYNAMIC_SHARED(float, tile);
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const float* xb = x + b * rows * cols;
    float* yb = y + b * rows * cols;
    for (int64_t row_tile = blockIdx.y; row_tile < row_tiles; row_tile += gridDim.y) {
      for (int64_t col_tile = blockIdx.x; col_tile < col_tiles; col_tile += gridDim.x) {
        const int64_t row0 = row_tile * kTile, col0 = col_tile * kTile;
        // Read a tile row by row: consecutive threads read consecutive columns of x.
        for (int r = ty; r < kTile; r += kTileRowsPerPass) {
          const int64_t row = row0 + r, col = col0 + tx;
          if (row < rows && col < cols) tile[r * kTilePitch + tx] = xb[row * cols + col];
        }
        __syncthreads();
        // Write it column by column: consecutive threads write consecutive columns of y.
        for (int c = ty; c < kTile; c += kTileRowsPerPass) {
          const int64_t col = col0 + c, row = row0 + tx;
          if (row < rows && col < cols) yb[col * rows + row] = tile[tx * kTilePitch + c];
        }
        __syncthreads();  // the tile is refilled on the next pass
      }
    }
  }
}

unsigned capped(int64_t count, int64_t cap) { return unsigned(count < cap ? count : cap); }

}  // namespace

void transpose_cuda(const float* x, float* y, int64_t batch, int64_t rows, int64_t cols) {
  if (batch <= 0 || rows <= 0 || cols <= 0) return;
  const dim3 grid(capped((cols + kTile - 1) / kTile, kMaxTileBlocks),
                  capped((rows + kTile - 1) / kTile, kMaxTileBlocks),
                  capped(batch, kMaxBatchBlocks));
  gpu::launch("transpose", grid, dim3(kTile, kTileRowsPerPass),
              size_t(kTile) * kTilePitch * sizeof(float), transpose_kernel, x, y, batch, rows,
              cols);
}

}  // namespace cte::kern
