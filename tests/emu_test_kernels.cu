// Small CUDA kernels that exist only to test the SIMT emulator, and the host
// functions (declared in tests/emu_test_kernels.h) that run them. Compiled
// like kernels/cuda/*.cu: by g++ with -DCTE_EMULATOR for the emulator tests,
// and by nvcc to check that they are valid CUDA. Most kernels are correct
// and their results have exact expected values; a few misuse the emulator on
// purpose, and two are deliberately broken (an out-of-bounds write and a
// missing __syncthreads) so that the sanitizer builds can prove they catch
// such bugs.
#include "tests/emu_test_kernels.h"

#include <climits>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"

namespace cte::emu_test {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// An owning device buffer of n elements, filled from the host or left as is.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { CTE_CUDA_CHECK(cudaMalloc(&ptr_, n * sizeof(T))); }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    CTE_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }

  T* get() const { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> host(n_);
    CTE_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  T first_to_host() const { return to_host().at(0); }

 private:
  size_t n_;
  T* ptr_ = nullptr;
};

unsigned blocks_covering(size_t n, unsigned block) { return unsigned((n + block - 1) / block); }

// ---------------------------------------------------------------------------
__global__ void count_hits_kernel(int* hits, unsigned extent_x, unsigned extent_y, unsigned extent_z) {
  const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
  const unsigned z = blockIdx.z * blockDim.z + threadIdx.z;
  if (x < extent_x && y < extent_y && z < extent_z) atomicAdd(&hits[(z * extent_y + y) * extent_x + x], 1);
}

__global__ void iota_kernel(float* out, int64_t n) {
  CTE_GRID_STRIDE_LOOP(i, n) { out[i] = float(i); }
}

// Pairwise tree over the whole block (any block size up to 1024).
__global__ void shared_tree_sum_kernel(const float* x, float* sums, int64_t n) {
  __shared__ float partial[1024];
  const unsigned t = threadIdx.x;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + t;
  partial[t] = i < n ? x[i] : 0.0f;
  __syncthreads();
  for (unsigned stride = 1; stride < blockDim.x; stride *= 2) {
    if (t % (2 * stride) == 0 && t + stride < blockDim.x) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t == 0) sums[blockIdx.x] = partial[0];
}

__device__ float warp_sum(float v) {
  for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

// Block size must be a multiple of 32 (shuffles from missing lanes are undefined).
__global__ void warp_shuffle_sum_kernel(const float* x, float* sums, int64_t n) {
  __shared__ float warp_partials[32];
  const unsigned t = threadIdx.x, lane = t % warpSize, warp = t / warpSize;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + t;
  float v = warp_sum(i < n ? x[i] : 0.0f);
  if (lane == 0) warp_partials[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const unsigned warps = (blockDim.x + warpSize - 1) / warpSize;
    v = warp_sum(lane < warps ? warp_partials[lane] : 0.0f);
    if (lane == 0) sums[blockIdx.x] = v;
  }
}

// Threads past the end leave at once; the others still meet at every barrier.
__global__ void early_exit_sum_kernel(const float* x, float* sums, int64_t n) {
  __shared__ float partial[1024];
  const unsigned t = threadIdx.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x;
  const int64_t i = first + t;
  if (i >= n) return;
  const unsigned live = n - first < int64_t(blockDim.x) ? unsigned(n - first) : blockDim.x;
  partial[t] = x[i];
  __syncthreads();
  for (unsigned stride = 1; stride < live; stride *= 2) {
    if (t % (2 * stride) == 0 && t + stride < live) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t == 0) sums[blockIdx.x] = partial[0];
}

__global__ void reverse_chunks_kernel(const float* x, float* y) {
  CTE_DYNAMIC_SHARED(float, chunk);
  const unsigned t = threadIdx.x;
  const size_t base = size_t(blockIdx.x) * blockDim.x;
  chunk[t] = x[base + t];
  __syncthreads();
  y[base + t] = chunk[blockDim.x - 1 - t];
}

__global__ void warp_intrinsics_kernel(int* xor_total, int* inclusive_scan, int* broadcast, int* group_of_8_max,
                                       unsigned* ballot, int* all_below_64) {
  const int t = int(threadIdx.x), lane = t % warpSize, warp = t / warpSize;
  int total = lane;
  for (int m = warpSize / 2; m > 0; m /= 2) total += __shfl_xor_sync(kFullMask, total, m);
  xor_total[t] = total;
  int scan = lane + 1;
  for (unsigned d = 1; d < unsigned(warpSize); d *= 2) {
    const int below = __shfl_up_sync(kFullMask, scan, d);
    if (unsigned(lane) >= d) scan += below;
  }
  inclusive_scan[t] = scan;
  broadcast[t] = __shfl_sync(kFullMask, 100 * warp + lane, 3);
  int group_max = lane;
  for (int m = 4; m > 0; m /= 2) group_max = max(group_max, __shfl_xor_sync(kFullMask, group_max, m, 8));
  group_of_8_max[t] = group_max;
  ballot[t] = __ballot_sync(kFullMask, lane % 2 == 1);
  all_below_64[t] = __all_sync(kFullMask, t < 64);
}

__global__ void atomics_kernel(float* f, double* d, int* i, unsigned* u, unsigned long long* ull, int* max_index,
                               int* min_index, int* cas_counter, int* flag, int* flag_winners, int* countdown,
                               unsigned* max_unsigned) {
  const int gid = int(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(f, 1.0f);
  atomicAdd(d, 0.5);
  atomicAdd(i, 2);
  atomicAdd(u, 1u);
  atomicAdd(ull, 3ull);
  atomicMax(max_index, gid);
  atomicMin(min_index, gid);
  int old = atomicAdd(cas_counter, 0);  // an atomic read
  int assumed;
  do {
    assumed = old;
    old = atomicCAS(cas_counter, assumed, assumed + 1);
  } while (old != assumed);
  if (atomicExch(flag, 1) == 0) atomicAdd(flag_winners, 1);
  atomicSub(countdown, 1);
  __threadfence();
  atomicMax(max_unsigned, unsigned(gid) * 2u);
}

__global__ void half_warp_sum_kernel(int* out) {
  const int lane = int(threadIdx.x % warpSize);
  if (lane >= 16) return;
  int v = lane;
  for (int d = 8; d > 0; d /= 2) v += __shfl_down_sync(0x0000ffffu, v, d);
  if (lane == 0) *out = v;
}

// Valid CUDA: the barrier is uniform within each block, but block 0 has none.
__global__ void sync_after_first_block_kernel(int* sums) {
  __shared__ int values[64];
  const int t = int(threadIdx.x);
  if (blockIdx.x == 0) {
    if (t == 0) sums[0] = 63 * 64 / 2;
    return;
  }
  values[t] = t;
  __syncthreads();
  if (t == 0) {
    int s = 0;
    for (unsigned k = 0; k < blockDim.x; ++k) s += values[k];
    sums[blockIdx.x] = s;
  }
}

__global__ void invalid_width_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(kFullMask, int(threadIdx.x), 0, 3);
}

// Legal on a GPU (disjoint masks), unsupported by the emulator.
__global__ void partial_mask_kernel(int* out) {
  const int lane = int(threadIdx.x);
  int v = lane;
  if (lane < 16) v = __shfl_down_sync(0x0000ffffu, v, 1);
  else __syncwarp(0xffff0000u);
  out[lane] = v;
}

// Deliberately broken: thread 0 also writes one element past the end.
__global__ void write_one_past_the_end_kernel(float* out, int n) {
  const int t = int(threadIdx.x);
  if (t < n) out[t] = 1.0f;
  if (t == 0) out[n] = 1.0f;
}

// Deliberately broken: the __syncthreads between the stores to `partial` and
// the first reads of other threads' elements is missing.
__global__ void racy_sum_kernel(const float* x, float* out, int n) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = int(t) < n ? x[t] : 0.0f;
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t == 0) *out = partial[0];
}

std::vector<float> per_block_sums(void (*kernel)(const float*, float*, int64_t), const char* name,
                                  const std::vector<float>& x, unsigned block) {
  const unsigned blocks = blocks_covering(x.size(), block);
  DeviceArray<float> input(x), sums(blocks);
  gpu::launch(name, dim3(blocks), dim3(block), 0, kernel, input.get(), sums.get(), int64_t(x.size()));
  return sums.to_host();
}

}  // namespace

std::vector<int> count_index_hits(Dims grid, Dims block, Dims extent) {
  DeviceArray<int> hits(std::vector<int>(size_t(extent.x) * extent.y * extent.z, 0));
  gpu::launch("count_hits", dim3(grid.x, grid.y, grid.z), dim3(block.x, block.y, block.z), 0, count_hits_kernel,
              hits.get(), extent.x, extent.y, extent.z);
  return hits.to_host();
}

std::vector<float> iota_grid_stride(int64_t n) {
  DeviceArray<float> out{size_t(n)};
  gpu::launch_1d("iota", n, iota_kernel, out.get(), n);
  return out.to_host();
}

std::vector<float> block_sums_shared_tree(const std::vector<float>& x, unsigned block) {
  return per_block_sums(shared_tree_sum_kernel, "shared_tree_sum", x, block);
}

std::vector<float> block_sums_warp_shuffle(const std::vector<float>& x, unsigned block) {
  return per_block_sums(warp_shuffle_sum_kernel, "warp_shuffle_sum", x, block);
}

std::vector<float> block_sums_after_early_exit(const std::vector<float>& x, unsigned block) {
  return per_block_sums(early_exit_sum_kernel, "early_exit_sum", x, block);
}

std::vector<float> reverse_chunks_dynamic_shared(const std::vector<float>& x, unsigned block) {
  DeviceArray<float> input(x), output(x.size());
  gpu::launch("reverse_chunks", dim3(blocks_covering(x.size(), block)), dim3(block), block * sizeof(float),
              reverse_chunks_kernel, input.get(), output.get());
  return output.to_host();
}

WarpIntrinsicResults warp_intrinsics(unsigned block) {
  DeviceArray<int> xor_total(block), scan(block), broadcast(block), group_max(block), all_below(block);
  DeviceArray<unsigned> ballot(block);
  gpu::launch("warp_intrinsics", dim3(1), dim3(block), 0, warp_intrinsics_kernel, xor_total.get(), scan.get(),
              broadcast.get(), group_max.get(), ballot.get(), all_below.get());
  return WarpIntrinsicResults{xor_total.to_host(), scan.to_host(), broadcast.to_host(), group_max.to_host(),
                              ballot.to_host(),    all_below.to_host()};
}

AtomicResults hammer_atomics(unsigned blocks, unsigned block) {
  DeviceArray<float> f(std::vector<float>{0.0f});
  DeviceArray<double> d(std::vector<double>{0.0});
  DeviceArray<int> i(std::vector<int>{0}), max_index(std::vector<int>{-1}), min_index(std::vector<int>{INT_MAX}),
      cas_counter(std::vector<int>{0}), flag(std::vector<int>{0}), flag_winners(std::vector<int>{0}),
      countdown(std::vector<int>{0});
  DeviceArray<unsigned> u(std::vector<unsigned>{0u}), max_unsigned(std::vector<unsigned>{0u});
  DeviceArray<unsigned long long> ull(std::vector<unsigned long long>{0ull});
  gpu::launch("atomics", dim3(blocks), dim3(block), 0, atomics_kernel, f.get(), d.get(), i.get(), u.get(), ull.get(),
              max_index.get(), min_index.get(), cas_counter.get(), flag.get(), flag_winners.get(), countdown.get(),
              max_unsigned.get());
  AtomicResults r;
  r.float_total = f.first_to_host();
  r.double_total = d.first_to_host();
  r.int_total = i.first_to_host();
  r.unsigned_total = u.first_to_host();
  r.ull_total = ull.first_to_host();
  r.max_index = max_index.first_to_host();
  r.min_index = min_index.first_to_host();
  r.cas_increments = cas_counter.first_to_host();
  r.exchanged_flags = flag_winners.first_to_host();
  r.countdown = countdown.first_to_host();
  r.max_twice_index = max_unsigned.first_to_host();
  return r;
}

int half_warp_sum_after_exit() {
  DeviceArray<int> out(std::vector<int>{-1});
  gpu::launch("half_warp_sum", dim3(1), dim3(32), 0, half_warp_sum_kernel, out.get());
  return out.first_to_host();
}

std::vector<int> sync_only_after_first_block(unsigned blocks) {
  DeviceArray<int> sums(std::vector<int>(blocks, -1));
  gpu::launch("sync_after_first_block", dim3(blocks), dim3(64), 0, sync_after_first_block_kernel, sums.get());
  return sums.to_host();
}

void shuffle_with_invalid_width() {
  DeviceArray<int> out(32);
  gpu::launch("invalid_width", dim3(1), dim3(32), 0, invalid_width_kernel, out.get());
}

void partial_mask_while_lanes_elsewhere() {
  DeviceArray<int> out(32);
  gpu::launch("partial_mask", dim3(1), dim3(32), 0, partial_mask_kernel, out.get());
}

void write_one_past_the_end(int n) {
  DeviceArray<float> out{size_t(n)};
  gpu::launch("write_one_past_the_end", dim3(1), dim3(32), 0, write_one_past_the_end_kernel, out.get(), n);
  CTE_CUDA_CHECK(cudaDeviceSynchronize());
}

float racy_block_sum(const std::vector<float>& x) {
  DeviceArray<float> input(x), out(1);
  gpu::launch("racy_sum", dim3(1), dim3(256), 0, racy_sum_kernel, input.get(), out.get(), int(x.size()));
  return out.first_to_host();
}

}  // namespace cte::emu_test
