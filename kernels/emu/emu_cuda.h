// The SIMT emulator's shim: what kernels/cuda/cuda_common.cuh includes instead of
// <cuda_runtime.h>, <cublas_v2.h> and <cudnn.h> when built with -DCTE_EMULATOR,
// so that g++ compiles our .cu files as C++ and CI runs the real kernels on the
// CPU. It provides the CUDA qualifiers, dim3 and the built-in index variables,
// the warp and block intrinsics, atomics, the launch entry point emu::launch,
// and declarations of the CUDA runtime, cuBLAS and cuDNN stand-ins (defined in
// emu_runtime.cpp, emu_cublas.cpp and emu_cudnn.cpp). Each CUDA thread of a
// block is a real OS thread, so AddressSanitizer and ThreadSanitizer see the
// kernels' memory accesses and races as they would happen on a GPU.
#pragma once

#ifdef __CUDACC__
#error "emu_cuda.h is the CPU emulator's shim; nvcc must use the real CUDA headers"
#endif

#include <math.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------
// Qualifiers. One block runs at a time, so a function-local static is exactly
// "this block's shared memory"; see the README for the consequences.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__
#define __align__(n) __attribute__((aligned(n)))
// __noinline__ is left alone: libstdc++ spells __attribute__((__noinline__)).
// __restrict__ is already a g++ keyword. __CUDA_ARCH__ and __CUDACC__ stay
// undefined: the emulator is host code.

// ---------------------------------------------------------------------------
// Geometry and the built-in variables.
struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// Set by the emulator on each of its worker threads before every block.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
inline constexpr int warpSize = 32;

struct CUstream_st;
using cudaStream_t = CUstream_st*;

// ---------------------------------------------------------------------------
// The emulator's own interface.
namespace emu {

// The emulated device stays invisible (cudaGetDeviceCount reports 0 and every
// device call fails with cudaErrorNoDevice) until this is called with true, so
// a production binary on a machine without a GPU never silently runs here.
void set_device_visible(bool visible);
bool device_visible();

// Force a barrier between every pair of blocks even for kernels whose first
// block used no barrier or warp primitive (the default lets such kernels run
// their remaining blocks without inter-block barriers; see README). Also
// enabled by the environment variable CTE_EMU_LOCKSTEP=1.
void set_always_lockstep(bool on);

// Counters for tests and for the curious.
struct Stats {
  uint64_t launches = 0;              // successful and failed kernel launches
  uint64_t lockstep_blocks = 0;       // blocks run with a barrier after them
  uint64_t free_running_blocks = 0;   // blocks run without inter-block barriers
  uint64_t live_allocations = 0;      // cudaMalloc'd buffers not yet freed
  uint64_t live_bytes = 0;
  unsigned worker_threads = 0;        // OS threads kept for kernels
};
Stats stats();

// Dynamic shared memory of the running launch (CTE_DYNAMIC_SHARED). Its size
// is exactly the launch's shared_bytes, so AddressSanitizer reports overflows.
void* dynamic_shared_memory();

namespace detail {

// The type-erased kernel: call(ctx) runs kernel(args...) once on the calling
// worker thread with that thread's threadIdx/blockIdx already set.
struct KernelBody {
  void (*call)(const void* ctx);
  const void* ctx;
};
void run_launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, KernelBody body);

// Intrinsics' engines (emu_runtime.cpp). Values travel as raw 8-byte words.
void sync_block();
void sync_warp(unsigned mask);
uint64_t warp_shuffle(unsigned mask, uint64_t bits, unsigned source_lane);
// Ballot over the warp's live lanes; *live receives the mask of those lanes.
unsigned warp_vote(unsigned mask, bool predicate, unsigned* live);
unsigned active_lanes();
[[noreturn]] void intrinsic_misuse(const char* intrinsic, const char* why);

// Whether [ptr, ptr + bytes) lies inside one live cudaMalloc allocation. The
// cuBLAS and cuDNN stand-ins check their operands with it, as a GPU would
// fault on a host pointer or an overrun.
bool is_device_range(const void* ptr, size_t bytes);
// Says why a range is not device memory, for error messages.
std::string describe_range_problem(const void* ptr, size_t bytes);

// Serialises all "device" work (launches, copies, library calls) as CUDA's
// legacy default stream does; held for the duration of each.
struct DeviceWorkLock {
  DeviceWorkLock();
  ~DeviceWorkLock();
  DeviceWorkLock(const DeviceWorkLock&) = delete;
  DeviceWorkLock& operator=(const DeviceWorkLock&) = delete;
};

// Stream capture (CUDA graphs). While a stream captures, the device work
// queued on it (launches, asynchronous copies and sets, cuBLAS and cuDNN calls)
// is recorded instead of run, and cudaGraphLaunch runs the recording in order.
// As on a GPU, work that makes the host wait (a synchronous copy, a
// synchronize, cudaFree) or work queued on another stream invalidates the
// capture and fails. submit() runs `work` now or records it; it returns false
// (the capture invalidated) when `stream` is not the capturing one.
bool capturing();
bool submit(cudaStream_t stream, std::function<void()> work);
// For synchronous calls: true (and the capture invalidated) while capturing.
bool refuse_while_capturing();

template <class F>
void invoke_body(const void* ctx) {
  (*static_cast<const F*>(ctx))();
}

template <class T>
inline constexpr bool kShuffleable =
    std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t) && !std::is_pointer_v<T>;

template <class T>
uint64_t to_bits(T v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <class T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

inline unsigned lane_id() {
  const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return linear % unsigned(warpSize);
}

inline unsigned check_width(int width, const char* intrinsic) {
  if (width < 1 || width > warpSize || (width & (width - 1)) != 0)
    intrinsic_misuse(intrinsic, "width must be a power of two between 1 and 32");
  return unsigned(width);
}

}  // namespace detail

// Launches kernel over grid x block on the CPU and returns when it has
// finished. The arguments are converted to the kernel's parameter types and
// copied once, and every thread receives its own by-value copy, as in CUDA.
// Throws std::runtime_error naming the kernel for an invalid configuration, a
// kernel that throws, or misuse of a barrier or warp intrinsic.
// launch_on queues it on `stream`: while that stream captures a graph, the
// launch (with its arguments as converted now) is recorded and runs at each
// replay; a launch on another stream then fails the capture.
template <class... KArgs, class... Args>
void launch_on(cudaStream_t stream, const char* name, dim3 grid, dim3 block, size_t shared_bytes,
               void (*kernel)(KArgs...), Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "emu::launch: wrong number of kernel arguments");
  std::tuple<std::decay_t<KArgs>...> frozen_args{std::forward<Args>(args)...};
  auto run = [name, grid, block, shared_bytes, kernel, frozen_args]() {
    auto run_once = [&frozen_args, kernel]() { std::apply(kernel, frozen_args); };
    detail::run_launch(name, grid, block, shared_bytes,
                       detail::KernelBody{&detail::invoke_body<decltype(run_once)>, &run_once});
  };
  if (!detail::capturing()) {
    run();
    return;
  }
  if (!detail::submit(stream, std::move(run)))
    throw std::runtime_error(std::string("emu: kernel ") + (name != nullptr ? name : "(unnamed)") +
                             " launched on a stream other than the capturing one (the capture is invalidated)");
}
template <class... KArgs, class... Args>
void launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, void (*kernel)(KArgs...),
            Args&&... args) {
  launch_on(nullptr, name, grid, block, shared_bytes, kernel, std::forward<Args>(args)...);
}

}  // namespace emu

// ---------------------------------------------------------------------------
// Barriers, warp intrinsics. The mask names the lanes taking part; the
// emulator requires it to cover every lane of the warp that has not exited
// (partial-warp collectives are not supported and are reported as misuse).
inline void __syncthreads() { emu::detail::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::detail::sync_warp(mask); }
namespace emu::detail {
// ThreadSanitizer does not model standalone fences (and g++ -fsanitize=thread
// rejects them under -Werror); a seq_cst read-modify-write of one shared word
// is a fence it understands (it orders more than a GPU fence would).
inline std::atomic<unsigned> fence_word{0};
inline void full_fence() {
#if defined(__SANITIZE_THREAD__)
  fence_word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
}  // namespace emu::detail
inline void __threadfence() { emu::detail::full_fence(); }
inline void __threadfence_block() { emu::detail::full_fence(); }

template <class T>
  requires emu::detail::kShuffleable<T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  const unsigned w = emu::detail::check_width(width, "__shfl_sync");
  const unsigned lane = emu::detail::lane_id();
  const unsigned source = (lane & ~(w - 1)) + (unsigned(src_lane) & (w - 1));
  return emu::detail::from_bits<T>(emu::detail::warp_shuffle(mask, emu::detail::to_bits(var), source));
}

template <class T>
  requires emu::detail::kShuffleable<T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  const unsigned w = emu::detail::check_width(width, "__shfl_up_sync");
  const unsigned lane = emu::detail::lane_id();
  const unsigned source = (lane & (w - 1)) >= delta ? lane - delta : lane;
  return emu::detail::from_bits<T>(emu::detail::warp_shuffle(mask, emu::detail::to_bits(var), source));
}

template <class T>
  requires emu::detail::kShuffleable<T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  const unsigned w = emu::detail::check_width(width, "__shfl_down_sync");
  const unsigned lane = emu::detail::lane_id();
  const unsigned source = uint64_t(lane & (w - 1)) + delta < w ? lane + delta : lane;
  return emu::detail::from_bits<T>(emu::detail::warp_shuffle(mask, emu::detail::to_bits(var), source));
}

// Lanes may read from earlier width-groups but get their own value when the
// partner lies in a later group (CUDA's documented rule).
template <class T>
  requires emu::detail::kShuffleable<T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  const unsigned w = emu::detail::check_width(width, "__shfl_xor_sync");
  const unsigned lane = emu::detail::lane_id();
  const unsigned partner = lane ^ unsigned(lane_mask);
  const unsigned group_end = (lane & ~(w - 1)) + w;
  const unsigned source = partner < group_end ? partner : lane;
  return emu::detail::from_bits<T>(emu::detail::warp_shuffle(mask, emu::detail::to_bits(var), source));
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  unsigned live = 0;
  return emu::detail::warp_vote(mask, predicate != 0, &live) & mask;
}
inline int __any_sync(unsigned mask, int predicate) {
  unsigned live = 0;
  return (emu::detail::warp_vote(mask, predicate != 0, &live) & mask) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  unsigned live = 0;
  const unsigned votes = emu::detail::warp_vote(mask, predicate != 0, &live);
  return (votes & mask & live) == (mask & live);
}
inline unsigned __activemask() { return emu::detail::active_lanes(); }

// ---------------------------------------------------------------------------
// Atomics: real atomics through std::atomic_ref, so ThreadSanitizer knows them.
namespace emu::detail {
template <class T>
T atomic_fetch_add(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value, std::memory_order_relaxed);
}
template <class T, class Pick>
T atomic_update(T* address, T value, Pick pick) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, pick(old, value), std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
T atomic_cas(T* address, T compare, T value) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, value, std::memory_order_relaxed);
  return compare;  // the old value either way
}
template <class T>
T atomic_exchange(T* address, T value) {
  return std::atomic_ref<T>(*address).exchange(value, std::memory_order_relaxed);
}
}  // namespace emu::detail

inline float atomicAdd(float* address, float value) { return emu::detail::atomic_fetch_add(address, value); }
inline double atomicAdd(double* address, double value) { return emu::detail::atomic_fetch_add(address, value); }
inline int atomicAdd(int* address, int value) { return emu::detail::atomic_fetch_add(address, value); }
inline unsigned atomicAdd(unsigned* address, unsigned value) { return emu::detail::atomic_fetch_add(address, value); }
inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  return emu::detail::atomic_fetch_add(address, value);
}
inline int atomicSub(int* address, int value) { return emu::detail::atomic_fetch_add(address, -value); }
inline unsigned atomicSub(unsigned* address, unsigned value) {
  return emu::detail::atomic_fetch_add(address, 0u - value);
}
namespace emu::detail {
template <class T>
T atomic_max(T* address, T value) {
  return atomic_update(address, value, [](T a, T b) { return a > b ? a : b; });
}
template <class T>
T atomic_min(T* address, T value) {
  return atomic_update(address, value, [](T a, T b) { return a < b ? a : b; });
}
}  // namespace emu::detail
inline int atomicMax(int* address, int value) { return emu::detail::atomic_max(address, value); }
inline unsigned atomicMax(unsigned* address, unsigned value) { return emu::detail::atomic_max(address, value); }
inline unsigned long long atomicMax(unsigned long long* address, unsigned long long value) {
  return emu::detail::atomic_max(address, value);
}
inline int atomicMin(int* address, int value) { return emu::detail::atomic_min(address, value); }
inline unsigned atomicMin(unsigned* address, unsigned value) { return emu::detail::atomic_min(address, value); }
inline unsigned long long atomicMin(unsigned long long* address, unsigned long long value) {
  return emu::detail::atomic_min(address, value);
}
inline int atomicCAS(int* address, int compare, int value) { return emu::detail::atomic_cas(address, compare, value); }
inline unsigned atomicCAS(unsigned* address, unsigned compare, unsigned value) {
  return emu::detail::atomic_cas(address, compare, value);
}
inline unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare,
                                    unsigned long long value) {
  return emu::detail::atomic_cas(address, compare, value);
}
inline float atomicExch(float* address, float value) { return emu::detail::atomic_exchange(address, value); }
inline int atomicExch(int* address, int value) { return emu::detail::atomic_exchange(address, value); }
inline unsigned atomicExch(unsigned* address, unsigned value) { return emu::detail::atomic_exchange(address, value); }
inline unsigned long long atomicExch(unsigned long long* address, unsigned long long value) {
  return emu::detail::atomic_exchange(address, value);
}

template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// ---------------------------------------------------------------------------
// Math. <math.h> puts expf, logf, fabsf, fmaxf, sqrtf, ... in the global
// namespace as CUDA does; these are the CUDA-only names. The "fast"
// intrinsics are computed exactly (a GPU's are less accurate).
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 41)
#define CTE_EMU_LIBC_HAS_RSQRT 1  // C23's rsqrtf/rsqrt come with the C library
#endif
#endif
#ifndef CTE_EMU_LIBC_HAS_RSQRT
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
#endif
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(unsigned(x)); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(unsigned(x)) + 1; }

// CUDA's global min/max for mixed arithmetic operands (usual conversions;
// floating point follows fmin/fmax and ignores a NaN operand).
template <class A, class B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
  else return C(a) < C(b) ? C(a) : C(b);
}
template <class A, class B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
  else return C(a) < C(b) ? C(b) : C(a);
}

// ---------------------------------------------------------------------------
// CUDA runtime stand-ins. Device memory is ordinary heap memory of exactly the
// requested size; copies check that their device side lies inside one live
// allocation. Everything is synchronous; streams are accepted and ignored.
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalState = 401,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

struct cudaDeviceProp {
  char name[256];
  int major;
  int minor;
  size_t totalGlobalMem;
  int multiProcessorCount;
  size_t sharedMemPerBlock;
  int maxThreadsPerBlock;
  int warpSize;
};

const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
// CUDA graphs by stream capture (see emu::detail::submit). One capture at a time.
enum cudaStreamCaptureMode : int {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus : int {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
struct CUgraph_st;
using cudaGraph_t = CUgraph_st*;
struct CUgraphExec_st;
using cudaGraphExec_t = CUgraphExec_st*;
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
// Page-locked host memory and events (the trainer's asynchronous input staging).
// The emulator runs every copy and kernel to completion before returning, so
// host memory is plain heap memory and an event is complete once recorded.
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
struct CUevent_st;
using cudaEvent_t = CUevent_st*;
constexpr unsigned cudaEventDisableTiming = 0x02;
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

// ---------------------------------------------------------------------------
// cuBLAS stand-ins (emu_cublas.cpp): column-major, host-side scalars.
struct cublasContext;
using cublasHandle_t = cublasContext*;

enum cublasStatus_t : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};

enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };

// The math mode is recorded and ignored: the emulator always computes in full
// precision (double accumulation).
enum cublasMath_t : int {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,  // accepted, computed in full precision
};

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
// Checked and kept; the stand-ins need no workspace.
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
cublasStatus_t cublasGetVersion(cublasHandle_t handle, int* version);
const char* cublasGetStatusName(cublasStatus_t status);
const char* cublasGetStatusString(cublasStatus_t status);
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                           int m, int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long strideA, const float* B, int ldb,
                                         long long strideB, const float* beta, float* C, int ldc,
                                         long long strideC, int batchCount);

// ---------------------------------------------------------------------------
// cuDNN stand-ins (emu_cudnn.cpp): 2-D convolution, NCHW float,
// cross-correlation, host-side scalars. Status values follow cuDNN 9.
struct cudnnContext;
struct cudnnTensorStruct;
struct cudnnFilterStruct;
struct cudnnConvolutionStruct;
using cudnnHandle_t = cudnnContext*;
using cudnnTensorDescriptor_t = cudnnTensorStruct*;
using cudnnFilterDescriptor_t = cudnnFilterStruct*;
using cudnnConvolutionDescriptor_t = cudnnConvolutionStruct*;

enum cudnnStatus_t : int {
  CUDNN_STATUS_SUCCESS = 0,
  CUDNN_STATUS_NOT_INITIALIZED = 1001,
  CUDNN_STATUS_BAD_PARAM = 2000,
  CUDNN_STATUS_NOT_SUPPORTED = 3000,
  CUDNN_STATUS_INTERNAL_ERROR = 4000,
  CUDNN_STATUS_ALLOC_FAILED = 4003,
  CUDNN_STATUS_EXECUTION_FAILED = 5000,
};

enum cudnnTensorFormat_t : int { CUDNN_TENSOR_NCHW = 0, CUDNN_TENSOR_NHWC = 1 };
enum cudnnDataType_t : int { CUDNN_DATA_FLOAT = 0, CUDNN_DATA_DOUBLE = 1, CUDNN_DATA_HALF = 2 };
enum cudnnConvolutionMode_t : int { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 };
enum cudnnMathType_t : int {
  CUDNN_DEFAULT_MATH = 0,
  CUDNN_TENSOR_OP_MATH = 1,
  CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
  CUDNN_FMA_MATH = 3,
};

enum cudnnConvolutionFwdAlgo_t : int {
  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0,
  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM = 1,
  CUDNN_CONVOLUTION_FWD_ALGO_GEMM = 2,
  CUDNN_CONVOLUTION_FWD_ALGO_DIRECT = 3,
  CUDNN_CONVOLUTION_FWD_ALGO_FFT = 4,
  CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING = 5,
  CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD = 6,
  CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED = 7,
};
enum cudnnConvolutionBwdDataAlgo_t : int {
  CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 = 0,
  CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 = 1,
  CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT = 2,
  CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING = 3,
  CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD = 4,
  CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED = 5,
};
enum cudnnConvolutionBwdFilterAlgo_t : int {
  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 = 0,
  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 = 1,
  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT = 2,
  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 = 3,
  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED = 5,
  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING = 6,
};

size_t cudnnGetVersion();
const char* cudnnGetErrorString(cudnnStatus_t status);
cudnnStatus_t cudnnCreate(cudnnHandle_t* handle);
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle);
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream);

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc);
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t data_type, int n, int c, int h, int w);
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc);

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc);
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t data_type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w);
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc);

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc);
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w,
                                              int stride_h, int stride_w, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute_type);
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math);
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc);
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t conv,
                                                    cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int* n, int* c,
                                                    int* h, int* width);

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                      cudnnFilterDescriptor_t w,
                                                      cudnnConvolutionDescriptor_t conv,
                                                      cudnnTensorDescriptor_t y,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t* bytes);
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, cudnnFilterDescriptor_t w,
                                                           cudnnTensorDescriptor_t dy,
                                                           cudnnConvolutionDescriptor_t conv,
                                                           cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t algo,
                                                           size_t* bytes);
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle,
                                                             cudnnTensorDescriptor_t x,
                                                             cudnnTensorDescriptor_t dy,
                                                             cudnnConvolutionDescriptor_t conv,
                                                             cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                                             size_t* bytes);

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, cudnnTensorDescriptor_t x_desc,
                                      const void* x, cudnnFilterDescriptor_t w_desc, const void* w,
                                      cudnnConvolutionDescriptor_t conv, cudnnConvolutionFwdAlgo_t algo,
                                      void* workspace, size_t workspace_bytes, const void* beta,
                                      cudnnTensorDescriptor_t y_desc, void* y);
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           cudnnFilterDescriptor_t w_desc, const void* w,
                                           cudnnTensorDescriptor_t dy_desc, const void* dy,
                                           cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workspace,
                                           size_t workspace_bytes, const void* beta,
                                           cudnnTensorDescriptor_t dx_desc, void* dx);
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             cudnnTensorDescriptor_t x_desc, const void* x,
                                             cudnnTensorDescriptor_t dy_desc, const void* dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workspace,
                                             size_t workspace_bytes, const void* beta,
                                             cudnnFilterDescriptor_t dw_desc, void* dw);
