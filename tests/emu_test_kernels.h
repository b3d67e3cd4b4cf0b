// Host entry points of tests/emu_test_kernels.cu: small CUDA kernels that
// exist only to test the SIMT emulator (and, compiled by nvcc, to prove they
// are valid CUDA). Each function allocates device buffers, copies its inputs
// in, launches through cte::gpu::launch and copies the results out. Plain
// C++ types only, so tests/test_emulator.cpp needs no CUDA header for them.
// Two functions are deliberately broken; they are only called from test
// cases that normal runs skip.
#pragma once
#include <cstdint>
#include <vector>

namespace cte::emu_test {

struct Dims {
  unsigned x = 1, y = 1, z = 1;
};

// Launches grid x block; every thread whose global (x, y, z) index lies inside
// `extent` atomically increments hits[(z * extent.y + y) * extent.x + x].
std::vector<int> count_index_hits(Dims grid, Dims block, Dims extent);

// out[i] = i for i < n through cte::gpu::launch_1d and a grid-stride loop.
std::vector<float> iota_grid_stride(int64_t n);

// One sum per block of `block` consecutive elements (the last block may be
// partial), by a shared-memory tree reduction with __syncthreads.
std::vector<float> block_sums_shared_tree(const std::vector<float>& x, unsigned block);

// The same sums by warp shuffles (__shfl_down_sync) and a shared array of
// per-warp partials.
std::vector<float> block_sums_warp_shuffle(const std::vector<float>& x, unsigned block);

// The same sums by a kernel whose threads past the end return at once
// (if (i >= n) return;) while the rest go on through several __syncthreads.
std::vector<float> block_sums_after_early_exit(const std::vector<float>& x, unsigned block);

// Reverses each block-sized chunk through dynamic shared memory
// (CTE_DYNAMIC_SHARED); x.size() must be a multiple of block.
std::vector<float> reverse_chunks_dynamic_shared(const std::vector<float>& x, unsigned block);

// The other warp intrinsics over one block of `block` threads; per thread t
// (lane = t % 32, warp = t / 32):
struct WarpIntrinsicResults {
  std::vector<int> xor_total;       // __shfl_xor_sync butterfly sum of lane numbers over the warp
  std::vector<int> inclusive_scan;  // __shfl_up_sync scan of (lane + 1) over the warp
  std::vector<int> broadcast;       // __shfl_sync of lane 3's value (100 * warp + lane) to all
  std::vector<int> group_of_8_max;  // __shfl_xor_sync max of lane numbers within width-8 groups
  std::vector<unsigned> ballot;     // __ballot_sync(lane is odd)
  std::vector<int> all_below_64;    // __all_sync(thread index < 64)
};
WarpIntrinsicResults warp_intrinsics(unsigned block);

// Results of every thread of a grid hammering one counter of each kind.
struct AtomicResults {
  float float_total = 0;          // atomicAdd(float) of 1.0f per thread
  double double_total = 0;        // atomicAdd(double) of 0.5 per thread
  int int_total = 0;              // atomicAdd(int) of 2 per thread
  unsigned unsigned_total = 0;    // atomicAdd(unsigned) of 1 per thread
  unsigned long long ull_total = 0;  // atomicAdd(unsigned long long) of 3 per thread
  int max_index = 0;              // atomicMax of global thread indices
  int min_index = 0;              // atomicMin of global thread indices
  int cas_increments = 0;         // counter incremented by an atomicCAS loop per thread
  int exchanged_flags = 0;        // threads whose atomicExch(flag, 1) returned 0 (exactly one)
  int countdown = 0;              // atomicSub(int) of 1 per thread from 0
  unsigned max_twice_index = 0;   // atomicMax(unsigned) of 2 * global thread index (after a __threadfence)
};
AtomicResults hammer_atomics(unsigned blocks, unsigned block);

// A correct kernel whose threads of warp 0 lanes >= 16 return and whose lanes
// < 16 then shuffle with mask 0x0000ffff: returns lane 0's sum of lanes 0..15.
int half_warp_sum_after_exit();

// Valid CUDA that only synchronises in blocks other than block 0; the emulator
// reports it unless emu::set_always_lockstep(true). Returns per-block sums of
// thread indices (blocks x 64 threads).
std::vector<int> sync_only_after_first_block(unsigned blocks);

// Misuses the emulator must report as a launch failure.
void shuffle_with_invalid_width();          // __shfl_sync(..., width = 3)
void partial_mask_while_lanes_elsewhere();  // lanes 0-15 shuffle with mask 0xffff while 16-31 __syncwarp

// Deliberately broken kernels for the sanitizer tests:
// writes out[n] of an n-element cudaMalloc'd buffer (heap-buffer-overflow);
void write_one_past_the_end(int n);
// a shared-memory reduction with the __syncthreads after the stores removed
// (a data race between the threads of the block).
float racy_block_sum(const std::vector<float>& x);

}  // namespace cte::emu_test
