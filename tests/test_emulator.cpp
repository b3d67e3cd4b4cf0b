// Doctest cases for the SIMT emulator (kernels/emu/): thread/block indexing,
// barriers, warp intrinsics, atomics, dynamic shared memory, early-exiting
// threads, launch validation and misuse reports (kernels in
// tests/emu_test_kernels.cu and a few emulator-only ones below), the CUDA
// runtime stand-ins, and the cuBLAS/cuDNN stand-ins against brute-force
// formulas written independently here. Two skipped cases run deliberately
// broken kernels for tests/expect_sanitizer_failure.sh. Emulator builds only
// (the file is empty without CTE_EMULATOR).
#ifdef CTE_EMULATOR

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/emu/emu_cuda.h"
#include "tests/emu_test_kernels.h"

namespace {

namespace et = cte::emu_test;

void use_emulated_device() { emu::set_device_visible(true); }

// Restores the default launch mode when a test forced lockstep.
struct AlwaysLockstep {
  AlwaysLockstep() { emu::set_always_lockstep(true); }
  ~AlwaysLockstep() { emu::set_always_lockstep(false); }
};

// A cudaMalloc'd copy of a host vector.
template <class T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& host) : n_(host.size()) {
    REQUIRE(cudaMalloc(&ptr_, n_ * sizeof(T)) == cudaSuccess);
    REQUIRE(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  ~DeviceVector() { cudaFree(ptr_); }
  T* get() const { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> host(n_);
    REQUIRE(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return host;
  }

 private:
  size_t n_;
  T* ptr_ = nullptr;
};

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Small integers, so every float sum below is exact whatever the order.
std::vector<float> small_integers(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(int(i % 7) - 3);
  return v;
}

std::vector<float> expected_block_sums(const std::vector<float>& x, unsigned block) {
  std::vector<float> sums((x.size() + block - 1) / block, 0.0f);
  for (size_t i = 0; i < x.size(); ++i) sums[i / block] += x[i];
  return sums;
}

bool close(double actual, double expected, double tolerance = 1e-5) {
  return std::fabs(actual - expected) <= tolerance * (1.0 + std::fabs(expected));
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// Emulator-only kernels (they throw, or inspect their own by-value arguments).
struct Triple {
  int a, b, c;
};

void noop_kernel(int*) {}

void no_argument_kernel() {}

void launching_kernel(int* out) {
  emu::launch("nested", dim3(1), dim3(1), 0, noop_kernel, out);  // dynamic parallelism: unsupported
}

void by_value_kernel(int base, Triple triple, int* out) {
  base += int(threadIdx.x);  // changes this thread's copy only
  triple.a += 1000;
  out[threadIdx.x] = base + triple.a + triple.b + triple.c;
}

void throwing_kernel(int* out) {
  if (blockIdx.x == 1 && threadIdx.x == 3) throw std::runtime_error("boom");
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
  __syncthreads();
}

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("emulator: device count is 0 until set_device_visible(true)") {
  emu::set_device_visible(false);
  int count = -1;
  CHECK(cudaGetDeviceCount(&count) == cudaErrorNoDevice);
  CHECK(count == 0);
  void* ptr = reinterpret_cast<void*>(1);
  CHECK(cudaMalloc(&ptr, 16) == cudaErrorNoDevice);
  CHECK(ptr == nullptr);
  CHECK(cudaGetLastError() == cudaErrorNoDevice);
  CHECK(cudaGetLastError() == cudaSuccess);  // reading clears it
  cublasHandle_t blas = nullptr;
  CHECK(cublasCreate(&blas) == CUBLAS_STATUS_NOT_INITIALIZED);
  cudnnHandle_t dnn = nullptr;
  CHECK(cudnnCreate(&dnn) == CUDNN_STATUS_NOT_INITIALIZED);
  int* nothing = nullptr;
  CHECK_THROWS_WITH_AS(emu::launch("noop", dim3(1), dim3(1), 0, noop_kernel, nothing),
                       doctest::Contains("no device is visible"), std::runtime_error);
  int driver = -1;
  CHECK(cudaDriverGetVersion(&driver) == cudaSuccess);
  CHECK(driver == 0);

  emu::set_device_visible(true);
  CHECK(cudaGetDeviceCount(&count) == cudaSuccess);
  CHECK(count == 1);
  CHECK(cudaSetDevice(0) == cudaSuccess);
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
  cudaGetLastError();
  cudaDeviceProp prop;
  REQUIRE(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  CHECK(std::string(prop.name) == "SIMT emulator");
  CHECK(prop.major == 8);
  CHECK(prop.minor == 0);
  CHECK(prop.totalGlobalMem > 0);
  CHECK(prop.multiProcessorCount == 1);
  int runtime = 0;
  CHECK(cudaRuntimeGetVersion(&runtime) == cudaSuccess);
  CHECK(runtime >= 12000);
  CHECK(cudaDriverGetVersion(&driver) == cudaSuccess);
  CHECK(driver >= 12000);
  CHECK(cudnnGetVersion() >= 90000);
  REQUIRE(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS);
  int blas_version = 0;
  CHECK(cublasGetVersion(blas, &blas_version) == CUBLAS_STATUS_SUCCESS);
  CHECK(blas_version >= 120000);
  CHECK(cublasDestroy(blas) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudnnCreate(&dnn) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroy(dnn) == CUDNN_STATUS_SUCCESS);
}

TEST_CASE("emulator: thread and block indices cover 1-D 2-D and 3-D launches exactly once") {
  use_emulated_device();
  struct Case {
    et::Dims grid, block, extent;
  };
  const Case cases[] = {
      {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}},
      {{5, 1, 1}, {64, 1, 1}, {300, 1, 1}},        // last block partly idle
      {{1000, 1, 1}, {256, 1, 1}, {255900, 1, 1}},  // many blocks
      {{3, 4, 1}, {16, 8, 1}, {45, 30, 1}},
      {{2, 3, 4}, {8, 4, 2}, {13, 11, 7}},
      {{1, 1, 3}, {1, 1, 64}, {1, 1, 190}},
      {{7, 5, 3}, {1, 1, 1}, {7, 5, 3}},
      {{2, 2, 2}, {32, 32, 1}, {60, 64, 2}},  // 1024 threads per block
  };
  for (const Case& c : cases) {
    CAPTURE(c.grid.x);
    CAPTURE(c.block.x);
    CAPTURE(c.extent.x);
    const std::vector<int> hits = et::count_index_hits(c.grid, c.block, c.extent);
    REQUIRE(hits.size() == size_t(c.extent.x) * c.extent.y * c.extent.z);
    size_t wrong = 0;
    for (int h : hits) wrong += h != 1;
    CHECK(wrong == 0);
  }
}

TEST_CASE("emulator: grid-stride loops reach every element once") {
  use_emulated_device();
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(257), int64_t(4096) * 256 + 1000}) {
    CAPTURE(n);
    const std::vector<float> out = et::iota_grid_stride(n);
    size_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += out[size_t(i)] != float(i);
    CHECK(wrong == 0);
  }
}

TEST_CASE("emulator: shared-memory tree reduction with __syncthreads gives exact block sums") {
  use_emulated_device();
  struct Case {
    size_t n;
    unsigned block;
  };
  for (const Case c : {Case{1000, 256}, Case{1024, 1024}, Case{1000, 96}, Case{1, 32}, Case{32 * 256, 256}}) {
    CAPTURE(c.n);
    CAPTURE(c.block);
    const std::vector<float> x = small_integers(c.n);
    CHECK(et::block_sums_shared_tree(x, c.block) == expected_block_sums(x, c.block));
  }
}

TEST_CASE("emulator: warp-shuffle reduction gives exact block sums") {
  use_emulated_device();
  struct Case {
    size_t n;
    unsigned block;
  };
  for (const Case c : {Case{1000, 256}, Case{32, 32}, Case{2100, 1024}, Case{16 * 128 + 5, 128}}) {
    CAPTURE(c.n);
    CAPTURE(c.block);
    const std::vector<float> x = small_integers(c.n);
    CHECK(et::block_sums_warp_shuffle(x, c.block) == expected_block_sums(x, c.block));
  }
}

TEST_CASE("emulator: threads that return early do not deadlock the barriers of the others") {
  use_emulated_device();
  struct Case {
    size_t n;
    unsigned block;
  };
  for (const Case c : {Case{300, 256}, Case{1, 1024}, Case{5, 64}, Case{12 * 100 + 1, 100}}) {
    CAPTURE(c.n);
    CAPTURE(c.block);
    const std::vector<float> x = small_integers(c.n);
    CHECK(et::block_sums_after_early_exit(x, c.block) == expected_block_sums(x, c.block));
  }
}

TEST_CASE("emulator: dynamic shared memory is per launch and sized as requested") {
  use_emulated_device();
  const unsigned block = 128;
  const std::vector<float> x = random_floats(10 * block, 7);
  const std::vector<float> y = et::reverse_chunks_dynamic_shared(x, block);
  size_t wrong = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t chunk = i / block, t = i % block;
    wrong += y[i] != x[chunk * block + (block - 1 - t)];
  }
  CHECK(wrong == 0);
}

TEST_CASE("emulator: shuffles ballots and votes follow CUDA lane rules") {
  use_emulated_device();
  SUBCASE("two full warps") {
    const et::WarpIntrinsicResults r = et::warp_intrinsics(64);
    for (int t = 0; t < 64; ++t) {
      CAPTURE(t);
      const int lane = t % 32, warp = t / 32;
      CHECK(r.xor_total[t] == 31 * 32 / 2);
      CHECK(r.inclusive_scan[t] == (lane + 1) * (lane + 2) / 2);
      CHECK(r.broadcast[t] == 100 * warp + 3);
      CHECK(r.group_of_8_max[t] == (lane / 8) * 8 + 7);
      CHECK(r.ballot[t] == 0xaaaaaaaau);
      CHECK(r.all_below_64[t] == 1);
    }
  }
  SUBCASE("a partial last warp") {
    const et::WarpIntrinsicResults r = et::warp_intrinsics(72);  // warp 2 has lanes 0..7
    for (int t = 64; t < 72; ++t) {
      CAPTURE(t);
      const int lane = t % 32;
      CHECK(r.inclusive_scan[t] == (lane + 1) * (lane + 2) / 2);
      CHECK(r.broadcast[t] == 200 + 3);
      CHECK(r.group_of_8_max[t] == 7);
      CHECK(r.ballot[t] == 0xaau);  // only existing lanes vote
      CHECK(r.all_below_64[t] == 0);
    }
    CHECK(r.all_below_64[0] == 1);
  }
  SUBCASE("lanes that exited drop out of later shuffles") { CHECK(et::half_warp_sum_after_exit() == 120); }
}

TEST_CASE("emulator: atomics from every thread give exact totals") {
  use_emulated_device();
  const unsigned blocks = 64, block = 256, threads = blocks * block;
  const et::AtomicResults r = et::hammer_atomics(blocks, block);
  CHECK(r.float_total == float(threads));
  CHECK(r.double_total == 0.5 * threads);
  CHECK(r.int_total == 2 * int(threads));
  CHECK(r.unsigned_total == threads);
  CHECK(r.ull_total == 3ull * threads);
  CHECK(r.max_index == int(threads) - 1);
  CHECK(r.min_index == 0);
  CHECK(r.cas_increments == int(threads));
  CHECK(r.exchanged_flags == 1);
  CHECK(r.countdown == -int(threads));
  CHECK(r.max_twice_index == 2 * (threads - 1));
}

TEST_CASE("emulator: kernel arguments are copied by value into every thread") {
  use_emulated_device();
  std::vector<int> zeros(64, 0);
  DeviceVector<int> out(zeros);
  const int base = 5;
  emu::launch("by_value", dim3(1), dim3(64), 0, by_value_kernel, base, Triple{1, 2, 3}, out.get());
  const std::vector<int> got = out.to_host();
  for (int t = 0; t < 64; ++t) CHECK(got[size_t(t)] == 5 + t + 1001 + 2 + 3);
}

TEST_CASE("emulator: launch configurations are validated like CUDA") {
  use_emulated_device();
  int* nothing = nullptr;
  CHECK_THROWS_WITH_AS(emu::launch("empty_block", dim3(1), dim3(0), 0, noop_kernel, nothing),
                       doctest::Contains("empty_block"), std::runtime_error);
  CHECK_THROWS_WITH_AS(emu::launch("too_wide", dim3(1), dim3(1025), 0, noop_kernel, nothing),
                       doctest::Contains("1024"), std::runtime_error);
  CHECK_THROWS_WITH_AS(emu::launch("too_many", dim3(1), dim3(64, 32), 0, noop_kernel, nothing),
                       doctest::Contains("more than 1024 threads"), std::runtime_error);
  CHECK_THROWS_WITH_AS(emu::launch("too_deep", dim3(1), dim3(1, 1, 65), 0, noop_kernel, nothing),
                       doctest::Contains("too_deep"), std::runtime_error);
  CHECK_THROWS_WITH_AS(emu::launch("empty_grid", dim3(0), dim3(32), 0, noop_kernel, nothing),
                       doctest::Contains("grid dimension is 0"), std::runtime_error);
  CHECK_THROWS_WITH_AS(emu::launch("big_shared", dim3(1), dim3(32), 48 * 1024 + 1, noop_kernel, nothing),
                       doctest::Contains("48 KiB"), std::runtime_error);
  CHECK_NOTHROW(emu::launch("max_shared", dim3(1), dim3(1024), 48 * 1024, noop_kernel, nothing));
  CHECK_NOTHROW(emu::launch("no_arguments", dim3(3), dim3(5), 0, no_argument_kernel));
}

TEST_CASE("emulator: exceptions and misused intrinsics become launch errors and never hang") {
  use_emulated_device();
  SUBCASE("a thread throws while the others wait at __syncthreads") {
    std::vector<int> zeros(4 * 32, 0);
    DeviceVector<int> out(zeros);
    CHECK_THROWS_WITH_AS(emu::launch("thrower", dim3(4), dim3(32), 0, throwing_kernel, out.get()),
                         doctest::Contains("block (1,0,0), thread (3,0,0): boom"), std::runtime_error);
    const std::vector<int> got = out.to_host();
    CHECK(got[0] == 1);    // block 0 ran
    CHECK(got[32] == 1);   // the rest of block 1 finished
    CHECK(got[64] == 0);   // no block after the failure
  }
  SUBCASE("invalid shuffle width") {
    CHECK_THROWS_WITH_AS(et::shuffle_with_invalid_width(), doctest::Contains("power of two"), std::runtime_error);
  }
  SUBCASE("partial-warp masks while other lanes are elsewhere") {
    CHECK_THROWS_WITH_AS(et::partial_mask_while_lanes_elsewhere(), doctest::Contains("partial-warp"),
                         std::runtime_error);
  }
  SUBCASE("a kernel launching a kernel") {
    int* nothing = nullptr;
    CHECK_THROWS_WITH_AS(emu::launch("outer", dim3(1), dim3(2), 0, launching_kernel, nothing),
                         doctest::Contains("launched from inside a kernel"), std::runtime_error);
  }
  SUBCASE("intrinsics outside a kernel") {
    CHECK_THROWS_AS(__syncthreads(), std::logic_error);
    CHECK_THROWS_AS(emu::dynamic_shared_memory(), std::logic_error);
  }
  SUBCASE("a barrier only after a sync-free first block is reported, and works in lockstep") {
    CHECK_THROWS_WITH_AS(et::sync_only_after_first_block(4), doctest::Contains("set_always_lockstep"),
                         std::runtime_error);
    AlwaysLockstep lockstep;
    CHECK(et::sync_only_after_first_block(4) == std::vector<int>(4, 2016));
  }
  // The emulator is still usable afterwards.
  const std::vector<float> x = small_integers(600);
  CHECK(et::block_sums_shared_tree(x, 256) == expected_block_sums(x, 256));
}

TEST_CASE("emulator: sync-free kernels run their later blocks without inter-block barriers") {
  use_emulated_device();
  const emu::Stats before = emu::stats();
  CHECK(et::iota_grid_stride(100 * 256).back() == float(100 * 256 - 1));
  const emu::Stats after_free = emu::stats();
  CHECK(after_free.free_running_blocks - before.free_running_blocks == 99);
  const std::vector<float> x = small_integers(10 * 256);
  CHECK(et::block_sums_shared_tree(x, 256) == expected_block_sums(x, 256));
  const emu::Stats after_lockstep = emu::stats();
  CHECK(after_lockstep.lockstep_blocks - after_free.lockstep_blocks == 10);
  CHECK(after_lockstep.free_running_blocks == after_free.free_running_blocks);
  AlwaysLockstep lockstep;
  CHECK(et::iota_grid_stride(20 * 256).back() == float(20 * 256 - 1));
  CHECK(emu::stats().lockstep_blocks - after_lockstep.lockstep_blocks == 20);
}

TEST_CASE("emulator: cudaMalloc cudaMemcpy and cudaMemset behave like CUDA and check ranges") {
  use_emulated_device();
  const uint64_t live_before = emu::stats().live_allocations;
  void* empty = reinterpret_cast<void*>(1);
  CHECK(cudaMalloc(&empty, 0) == cudaSuccess);
  CHECK(empty == nullptr);
  CHECK(cudaFree(nullptr) == cudaSuccess);

  float* a = nullptr;
  float* b = nullptr;
  REQUIRE(cudaMalloc(&a, 8 * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(&b, 8 * sizeof(float)) == cudaSuccess);
  CHECK(emu::stats().live_allocations == live_before + 2);
  std::vector<float> host(8);
  REQUIRE(cudaMemcpy(host.data(), a, sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(std::isnan(host[0]));  // fresh device memory is NaN garbage

  const std::vector<float> values = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK(cudaMemcpy(a, values.data(), 8 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpyAsync(b, a, 8 * sizeof(float), cudaMemcpyDeviceToDevice, nullptr) == cudaSuccess);
  CHECK(cudaStreamSynchronize(nullptr) == cudaSuccess);
  CHECK(cudaMemcpy(host.data(), b, 8 * sizeof(float), cudaMemcpyDefault) == cudaSuccess);
  CHECK(host == values);
  CHECK(cudaMemset(b + 4, 0, 4 * sizeof(float)) == cudaSuccess);
  CHECK(cudaMemcpy(host.data(), b, 8 * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(host == std::vector<float>{1, 2, 3, 4, 0, 0, 0, 0});

  // Ranges and directions are checked before any byte moves.
  CHECK(cudaMemcpy(a + 1, values.data(), 8 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), a, 9 * sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), values.data(), 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(a, b, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemset(a + 7, 0, 2 * sizeof(float)) == cudaErrorInvalidValue);
  CHECK(cudaFree(a + 1) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaSuccess);

  size_t free_bytes = 0, total_bytes = 0;
  CHECK(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  CHECK(free_bytes <= total_bytes);
  void* huge = nullptr;
  CHECK(cudaMalloc(&huge, std::numeric_limits<size_t>::max() / 2) == cudaErrorMemoryAllocation);
  cudaGetLastError();

  cudaStream_t stream = nullptr;
  CHECK(cudaStreamCreate(&stream) == cudaSuccess);
  CHECK(stream != nullptr);
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);

  CHECK(cudaFree(a) == cudaSuccess);
  CHECK(cudaFree(b) == cudaSuccess);
  CHECK(cudaFree(a) == cudaErrorInvalidValue);  // double free is reported, not performed
  cudaGetLastError();
  CHECK(emu::stats().live_allocations == live_before);
}

// ---------------------------------------------------------------------------
// cuBLAS against a column-major triple loop.
namespace {

// op(X)[r][c] of a column-major X with leading dimension ld.
float op_element(const std::vector<float>& x, bool transposed, int ld, int r, int c) {
  return transposed ? x[size_t(c) + size_t(r) * ld] : x[size_t(r) + size_t(c) * ld];
}

std::vector<float> reference_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& A,
                                  int lda, const std::vector<float>& B, int ldb, float beta, std::vector<float> C,
                                  int ldc) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double sum = 0;
      for (int l = 0; l < k; ++l) sum += double(op_element(A, ta, lda, i, l)) * op_element(B, tb, ldb, l, j);
      float& c = C[size_t(i) + size_t(j) * ldc];
      c = float(alpha * sum + (beta == 0.0f ? 0.0 : double(beta) * c));
    }
  return C;
}

struct BlasHandle {
  cublasHandle_t handle = nullptr;
  BlasHandle() { REQUIRE(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS); }
  ~BlasHandle() { cublasDestroy(handle); }
};

}  // namespace

TEST_CASE("emulator: stream capture records work instead of running it and fails on host waits, like CUDA") {
  use_emulated_device();
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  float* d = nullptr;
  REQUIRE(cudaMalloc(&d, 4 * sizeof(float)) == cudaSuccess);
  std::vector<float> source{1, 2, 3, 4}, out(4, -1.0f);
  REQUIRE(cudaMemset(d, 0, 4 * sizeof(float)) == cudaSuccess);

  CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeRelaxed) == cudaErrorStreamCaptureUnsupported);
  (void)cudaGetLastError();
  REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed) == cudaErrorIllegalState);
  CHECK(cudaMemcpyAsync(d, source.data(), 4 * sizeof(float), cudaMemcpyHostToDevice, stream) == cudaSuccess);
  CHECK(cudaMemcpyAsync(out.data(), d, 4 * sizeof(float), cudaMemcpyDeviceToHost, stream) == cudaSuccess);
  CHECK(out == std::vector<float>(4, -1.0f));  // recorded, not run
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CHECK(cudaStreamIsCapturing(stream, &status) == cudaSuccess);
  CHECK(status == cudaStreamCaptureStatusActive);
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(stream, &graph) == cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  for (float scale : {1.0f, 10.0f}) {  // the source is read at each replay
    for (int i = 0; i < 4; ++i) source[size_t(i)] = scale * float(i + 1);
    REQUIRE(cudaGraphLaunch(exec, stream) == cudaSuccess);
    CHECK(out == std::vector<float>{scale, 2 * scale, 3 * scale, 4 * scale});
  }

  // A synchronous copy, a synchronize, or a launch on another stream invalidates the capture.
  REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  CHECK(cudaMemcpy(out.data(), d, sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorStreamCaptureImplicit);
  cudaGraph_t broken = nullptr;
  CHECK(cudaStreamEndCapture(stream, &broken) == cudaErrorStreamCaptureInvalidated);
  CHECK(broken == nullptr);
  REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaErrorStreamCaptureUnsupported);
  CHECK(cudaStreamEndCapture(stream, &broken) == cudaErrorStreamCaptureInvalidated);
  REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  int* nothing = nullptr;
  CHECK_THROWS_WITH_AS(emu::launch("elsewhere", dim3(1), dim3(1), 0, noop_kernel, nothing),
                       doctest::Contains("other than the capturing one"), std::runtime_error);
  CHECK(cudaStreamEndCapture(stream, &broken) == cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();

  CHECK(cudaGraphExecDestroy(exec) == cudaSuccess);
  CHECK(cudaGraphDestroy(graph) == cudaSuccess);
  CHECK(cudaFree(d) == cudaSuccess);
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("emulator: cublasSgemm matches a column-major triple loop") {
  use_emulated_device();
  BlasHandle blas;
  CHECK(cublasSetMathMode(blas.handle, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasSetStream(blas.handle, nullptr) == CUBLAS_STATUS_SUCCESS);
  struct Shape {
    int m, n, k;
  };
  struct Scalars {
    float alpha, beta;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  unsigned seed = 1;
  for (const Shape s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{17, 4, 9}, Shape{6, 6, 1}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int pad : {0, 3})
          for (const Scalars sc : {Scalars{1.0f, 0.0f}, Scalars{0.5f, -2.0f}, Scalars{-1.5f, 1.0f}}) {
            CAPTURE(s.m);
            CAPTURE(s.n);
            CAPTURE(s.k);
            CAPTURE(ta);
            CAPTURE(tb);
            CAPTURE(pad);
            CAPTURE(sc.beta);
            const int a_rows = ta ? s.k : s.m, a_cols = ta ? s.m : s.k;
            const int b_rows = tb ? s.n : s.k, b_cols = tb ? s.k : s.n;
            const int lda = a_rows + pad, ldb = b_rows + pad, ldc = s.m + pad;
            const std::vector<float> A = random_floats(size_t(lda) * a_cols, seed++);
            const std::vector<float> B = random_floats(size_t(ldb) * b_cols, seed++);
            std::vector<float> C = random_floats(size_t(ldc) * s.n, seed++);
            if (sc.beta == 0.0f) C.assign(C.size(), nan);  // must not be read
            const std::vector<float> expected =
                reference_gemm(ta, tb, s.m, s.n, s.k, sc.alpha, A, lda, B, ldb, sc.beta, C, ldc);
            DeviceVector<float> dA(A), dB(B), dC(C);
            REQUIRE(cublasSgemm(blas.handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, s.m,
                                s.n, s.k, &sc.alpha, dA.get(), lda, dB.get(), ldb, &sc.beta, dC.get(),
                                ldc) == CUBLAS_STATUS_SUCCESS);
            const std::vector<float> got = dC.to_host();
            size_t wrong = 0;
            for (int j = 0; j < s.n; ++j)
              for (int i = 0; i < s.m; ++i) {
                const size_t at = size_t(i) + size_t(j) * ldc;
                wrong += !close(got[at], expected[at]);
              }
            // Padding rows between columns are untouched.
            for (int j = 0; j < s.n; ++j)
              for (int i = s.m; i < ldc; ++i) {
                const size_t at = size_t(i) + size_t(j) * ldc;
                wrong += !(std::isnan(got[at]) ? std::isnan(C[at]) : got[at] == C[at]);
              }
            CHECK(wrong == 0);
          }
}

TEST_CASE("emulator: cublasSgemmStridedBatched matches per-batch triple loops") {
  use_emulated_device();
  BlasHandle blas;
  const int m = 5, n = 3, k = 4, batch = 3, lda = 6, ldb = 4, ldc = 7;  // A transposed: stored k x m
  const long long stride_a = 0;                                         // one A for every batch
  const long long stride_b = ldb * n + 2, stride_c = ldc * n + 1;
  const std::vector<float> A = random_floats(size_t(lda) * m, 11);
  const std::vector<float> B = random_floats(size_t(stride_b) * batch, 12);
  const std::vector<float> C = random_floats(size_t(stride_c) * batch, 13);
  const float alpha = 0.75f, beta = 0.25f;
  DeviceVector<float> dA(A), dB(B), dC(C);
  REQUIRE(cublasSgemmStridedBatched(blas.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA.get(), lda,
                                    stride_a, dB.get(), ldb, stride_b, &beta, dC.get(), ldc, stride_c,
                                    batch) == CUBLAS_STATUS_SUCCESS);
  const std::vector<float> got = dC.to_host();
  for (int b = 0; b < batch; ++b) {
    const std::vector<float> Bb(B.begin() + b * stride_b, B.begin() + b * stride_b + ldb * n);
    const std::vector<float> Cb(C.begin() + b * stride_c, C.begin() + b * stride_c + ldc * n);
    const std::vector<float> expected = reference_gemm(true, false, m, n, k, alpha, A, lda, Bb, ldb, beta, Cb, ldc);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const size_t at = size_t(i) + size_t(j) * ldc;
        CHECK(close(got[size_t(b * stride_c) + at], expected[at]));
      }
  }
}

TEST_CASE("emulator: cuBLAS argument validation") {
  use_emulated_device();
  BlasHandle blas;
  const std::vector<float> data(64, 1.0f);
  DeviceVector<float> A(data), B(data), C(data);
  const float one = 1.0f, zero = 0.0f;
  auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
    return cublasSgemm(blas.handle, ta, tb, m, n, k, &one, A.get(), lda, B.get(), ldb, &zero, C.get(), ldc);
  };
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, 4, 4, 4) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, 3, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  CHECK(gemm(CUBLAS_OP_T, CUBLAS_OP_N, 4, 4, 2, 1, 2, 4) == CUBLAS_STATUS_INVALID_VALUE);  // lda < k for A^T
  CHECK(gemm(CUBLAS_OP_T, CUBLAS_OP_N, 4, 4, 2, 2, 2, 4) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, 4, 3, 4) == CUBLAS_STATUS_INVALID_VALUE);  // ldb < k
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_T, 4, 4, 2, 4, 3, 4) == CUBLAS_STATUS_INVALID_VALUE);  // ldb < n for B^T
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, 4, 4, 3) == CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, -1, 4, 4, 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, -1, 4, 4, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 0, 0, 0, 1, 1, 1) == CUBLAS_STATUS_SUCCESS);  // nothing to do
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, 8, 8, 8) == CUBLAS_STATUS_SUCCESS);
  CHECK(gemm(CUBLAS_OP_N, CUBLAS_OP_N, 8, 9, 8, 8, 8, 8) == CUBLAS_STATUS_EXECUTION_FAILED);  // B, C overrun
  CHECK(cublasSgemm(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, A.get(), 1, B.get(), 1, &zero, C.get(), 1) ==
        CUBLAS_STATUS_NOT_INITIALIZED);
  std::vector<float> host_matrix(16, 1.0f);
  CHECK(cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, host_matrix.data(), 4, B.get(), 4, &zero,
                    C.get(), 4) == CUBLAS_STATUS_EXECUTION_FAILED);
  CHECK(cublasSgemmStridedBatched(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, A.get(), 2, 4, B.get(), 2,
                                  4, &zero, C.get(), 2, 4, -1) == CUBLAS_STATUS_INVALID_VALUE);
  // alpha == 0 reads neither A nor B: C = beta * C.
  const float half = 0.5f;
  CHECK(cublasSgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &zero, nullptr, 4, nullptr, 4, &half, C.get(),
                    4) == CUBLAS_STATUS_SUCCESS);
  const std::vector<float> c = C.to_host();
  CHECK(c[0] == doctest::Approx(0.5f * 8.0f));  // the 8x8 all-ones product left 8
  CHECK(std::string(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE)) == "CUBLAS_STATUS_INVALID_VALUE");
}

// ---------------------------------------------------------------------------
// cuDNN against direct formulas.
namespace {

struct Conv {
  int n, c, h, w, k, r, s, pad_h, pad_w, stride_h, stride_w, dil_h = 1, dil_w = 1;
  int oh() const { return (h + 2 * pad_h - (dil_h * (r - 1) + 1)) / stride_h + 1; }
  int ow() const { return (w + 2 * pad_w - (dil_w * (s - 1) + 1)) / stride_w + 1; }
  size_t x_size() const { return size_t(n) * c * h * w; }
  size_t w_size() const { return size_t(k) * c * r * s; }
  size_t y_size() const { return size_t(n) * k * oh() * ow(); }
  size_t xi(int a, int b, int y, int x) const { return ((size_t(a) * c + b) * h + y) * w + x; }
  size_t wi(int a, int b, int y, int x) const { return ((size_t(a) * c + b) * r + y) * s + x; }
  size_t yi(int a, int b, int y, int x) const { return ((size_t(a) * k + b) * oh() + y) * ow() + x; }
  // Visits every (input element, weight, output element) triple that the
  // cross-correlation multiplies together.
  template <class F>
  void for_each_product(F f) const {
    for (int ni = 0; ni < n; ++ni)
      for (int ki = 0; ki < k; ++ki)
        for (int oy = 0; oy < oh(); ++oy)
          for (int ox = 0; ox < ow(); ++ox)
            for (int ci = 0; ci < c; ++ci)
              for (int ry = 0; ry < r; ++ry)
                for (int sx = 0; sx < s; ++sx) {
                  const int iy = oy * stride_h - pad_h + ry * dil_h, ix = ox * stride_w - pad_w + sx * dil_w;
                  if (iy >= 0 && iy < h && ix >= 0 && ix < w) f(xi(ni, ci, iy, ix), wi(ki, ci, ry, sx), yi(ni, ki, oy, ox));
                }
  }
};

struct CudnnSetup {
  cudnnHandle_t handle = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit CudnnSetup(const Conv& g) {
    REQUIRE(cudnnCreate(&handle) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&x) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&y) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateFilterDescriptor(&w) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateConvolutionDescriptor(&conv) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.c, g.h, g.w) ==
            CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.k, g.c, g.r, g.s) ==
            CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolution2dDescriptor(conv, g.pad_h, g.pad_w, g.stride_h, g.stride_w, g.dil_h, g.dil_w,
                                            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH) == CUDNN_STATUS_SUCCESS);
    int n = 0, c = 0, h = 0, wd = 0;
    REQUIRE(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd) == CUDNN_STATUS_SUCCESS);
    CHECK(n == g.n);
    CHECK(c == g.k);
    CHECK(h == g.oh());
    CHECK(wd == g.ow());
    REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, wd) == CUDNN_STATUS_SUCCESS);
  }
  ~CudnnSetup() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroy(handle);
  }
};

size_t count_mismatches(const std::vector<float>& got, const std::vector<double>& expected) {
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += !close(got[i], expected[i]);
  return wrong;
}

}  // namespace

TEST_CASE("emulator: cuDNN convolutions match direct formulas and are adjoint") {
  use_emulated_device();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Conv cases[] = {
      {1, 1, 5, 5, 1, 3, 3, 0, 0, 1, 1},
      {2, 3, 7, 6, 4, 3, 2, 1, 0, 1, 1},
      {2, 3, 8, 9, 2, 3, 3, 1, 2, 2, 2},
      {1, 2, 6, 5, 3, 1, 1, 2, 1, 2, 1},
      {2, 2, 9, 7, 2, 5, 3, 2, 2, 2, 1},
      {1, 2, 9, 9, 2, 3, 3, 2, 1, 1, 2, 2, 1},  // dilation 2 vertically
  };
  unsigned seed = 100;
  for (const Conv& g : cases) {
    CAPTURE(g.h);
    CAPTURE(g.w);
    CAPTURE(g.r);
    CAPTURE(g.s);
    CAPTURE(g.pad_h);
    CAPTURE(g.pad_w);
    CAPTURE(g.stride_h);
    CAPTURE(g.stride_w);
    CudnnSetup dnn(g);
    const std::vector<float> x = random_floats(g.x_size(), seed++);
    const std::vector<float> w = random_floats(g.w_size(), seed++);
    const std::vector<float> dy = random_floats(g.y_size(), seed++);
    std::vector<double> y_ref(g.y_size(), 0.0), dx_ref(g.x_size(), 0.0), dw_ref(g.w_size(), 0.0);
    g.for_each_product([&](size_t xi, size_t wi, size_t yi) {
      y_ref[yi] += double(x[xi]) * w[wi];
      dx_ref[xi] += double(dy[yi]) * w[wi];
      dw_ref[wi] += double(dy[yi]) * x[xi];
    });
    size_t workspace = 1;
    CHECK(cudnnGetConvolutionForwardWorkspaceSize(dnn.handle, dnn.x, dnn.w, dnn.conv, dnn.y,
                                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                  &workspace) == CUDNN_STATUS_SUCCESS);
    CHECK(workspace == 0);
    CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(dnn.handle, dnn.w, dnn.y, dnn.conv, dnn.x,
                                                       CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                       &workspace) == CUDNN_STATUS_SUCCESS);
    CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(dnn.handle, dnn.x, dnn.y, dnn.conv, dnn.w,
                                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
                                                         &workspace) == CUDNN_STATUS_SUCCESS);

    DeviceVector<float> dx_in(x), dw_in(w), ddy(dy);
    DeviceVector<float> y_out(std::vector<float>(g.y_size(), nan));  // beta == 0: never read
    DeviceVector<float> dx_out(std::vector<float>(g.x_size(), nan));
    DeviceVector<float> dw_out(std::vector<float>(g.w_size(), nan));
    const float one = 1.0f, zero = 0.0f;
    REQUIRE(cudnnConvolutionForward(dnn.handle, &one, dnn.x, dx_in.get(), dnn.w, dw_in.get(), dnn.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, dnn.y,
                                    y_out.get()) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnConvolutionBackwardData(dnn.handle, &one, dnn.w, dw_in.get(), dnn.y, ddy.get(), dnn.conv,
                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &zero, dnn.x,
                                         dx_out.get()) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnConvolutionBackwardFilter(dnn.handle, &one, dnn.x, dx_in.get(), dnn.y, ddy.get(), dnn.conv,
                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, nullptr, 0, &zero, dnn.w,
                                           dw_out.get()) == CUDNN_STATUS_SUCCESS);
    const std::vector<float> y = y_out.to_host(), dx = dx_out.to_host(), dw = dw_out.to_host();
    CHECK(count_mismatches(y, y_ref) == 0);
    CHECK(count_mismatches(dx, dx_ref) == 0);
    CHECK(count_mismatches(dw, dw_ref) == 0);

    // <conv(x), dy> = <x, backward_data(dy)> = <w, backward_filter(x, dy)>.
    const double forward_side = dot(y, dy);
    CHECK(close(dot(x, dx), forward_side, 1e-4));
    CHECK(close(dot(w, dw), forward_side, 1e-4));

    // alpha and beta blend: out = alpha * result + beta * out.
    const float alpha = 2.0f, beta = -0.5f;
    REQUIRE(cudnnConvolutionForward(dnn.handle, &alpha, dnn.x, dx_in.get(), dnn.w, dw_in.get(), dnn.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_GEMM, nullptr, 0, &beta, dnn.y,
                                    y_out.get()) == CUDNN_STATUS_SUCCESS);
    std::vector<double> blended(g.y_size());
    for (size_t i = 0; i < blended.size(); ++i) blended[i] = alpha * y_ref[i] + beta * double(y[i]);
    CHECK(count_mismatches(y_out.to_host(), blended) == 0);
  }
}

TEST_CASE("emulator: cuDNN rejects shapes and modes that do not agree") {
  use_emulated_device();
  const Conv g{2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1};
  CudnnSetup dnn(g);
  const float one = 1.0f, zero = 0.0f;
  DeviceVector<float> x(std::vector<float>(g.x_size(), 1.0f)), w(std::vector<float>(g.w_size(), 1.0f)),
      y(std::vector<float>(g.y_size(), 0.0f));
  auto forward = [&](cudnnTensorDescriptor_t x_desc, cudnnFilterDescriptor_t w_desc, cudnnTensorDescriptor_t y_desc,
                     const void* x_ptr) {
    return cudnnConvolutionForward(dnn.handle, &one, x_desc, x_ptr, w_desc, w.get(), dnn.conv,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, y_desc, y.get());
  };
  CHECK(forward(dnn.x, dnn.w, dnn.y, x.get()) == CUDNN_STATUS_SUCCESS);

  cudnnTensorDescriptor_t other = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&other) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 4, 5, 6) == CUDNN_STATUS_SUCCESS);
  CHECK(forward(dnn.x, dnn.w, other, x.get()) == CUDNN_STATUS_BAD_PARAM);  // y is 2x4x6x6
  REQUIRE(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 2, 6, 6) == CUDNN_STATUS_SUCCESS);
  CHECK(forward(other, dnn.w, dnn.y, x.get()) == CUDNN_STATUS_BAD_PARAM);  // 2 channels vs 3
  CHECK(cudnnConvolutionBackwardData(dnn.handle, &one, dnn.w, w.get(), other, y.get(), dnn.conv,
                                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &zero, dnn.x,
                                     x.get()) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnConvolutionBackwardFilter(dnn.handle, &one, dnn.x, x.get(), other, y.get(), dnn.conv,
                                       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &zero, dnn.w,
                                       w.get()) == CUDNN_STATUS_BAD_PARAM);
  cudnnTensorDescriptor_t unset = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&unset) == CUDNN_STATUS_SUCCESS);
  CHECK(forward(unset, dnn.w, dnn.y, x.get()) == CUDNN_STATUS_BAD_PARAM);

  // A filter larger than the padded input has no output.
  cudnnFilterDescriptor_t big = nullptr;
  REQUIRE(cudnnCreateFilterDescriptor(&big) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetFilter4dDescriptor(big, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, 3, 9, 3) == CUDNN_STATUS_SUCCESS);
  int n = 0, c = 0, h = 0, wd = 0;
  CHECK(cudnnGetConvolution2dForwardOutputDim(dnn.conv, dnn.x, big, &n, &c, &h, &wd) == CUDNN_STATUS_BAD_PARAM);

  // Unsupported layouts, types and modes, and bad descriptor values.
  CHECK(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 1, 1, 1) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, 1, 1, 1, 1) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 0, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  cudnnConvolutionDescriptor_t conv = nullptr;
  REQUIRE(cudnnCreateConvolutionDescriptor(&conv) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnSetConvolution2dDescriptor(conv, 0, 0, 1, 1, 1, 1, CUDNN_CONVOLUTION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(cudnnSetConvolution2dDescriptor(conv, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(conv, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);

  // Operands outside device memory fail like a faulting kernel.
  std::vector<float> host_x(g.x_size(), 1.0f);
  CHECK(forward(dnn.x, dnn.w, dnn.y, host_x.data()) == CUDNN_STATUS_EXECUTION_FAILED);
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM)) == "CUDNN_STATUS_BAD_PARAM");

  cudnnDestroyConvolutionDescriptor(conv);
  cudnnDestroyFilterDescriptor(big);
  cudnnDestroyTensorDescriptor(unset);
  cudnnDestroyTensorDescriptor(other);
}

// ---------------------------------------------------------------------------
// Deliberately broken kernels: skipped normally; tests/expect_sanitizer_failure.sh
// runs them under AddressSanitizer / ThreadSanitizer and expects a report.
TEST_CASE("emulator: deliberately out-of-bounds kernel" * doctest::skip()) {
  use_emulated_device();
  et::write_one_past_the_end(8);
}

TEST_CASE("emulator: deliberately racy kernel (missing __syncthreads)" * doctest::skip()) {
  use_emulated_device();
  const std::vector<float> x = small_integers(256);
  const float sum = et::racy_block_sum(x);
  MESSAGE("racy sum: " << sum);
}

#endif  // CTE_EMULATOR
