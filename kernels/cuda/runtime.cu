// The CUDA runtime layer of the engine (kernels/gpu_runtime.h): device
// discovery and the start-up banner, raw device memory with cudaMalloc/cudaFree
// counters, checked copies, the CUDA/cuBLAS/cuDNN error reporting behind
// CTE_CUDA_CHECK, and the lazily created library handles and grow-only
// workspace of kernels/cuda/handles.cuh. Compiled by nvcc for a real GPU, or
// as C++ with CTE_EMULATOR against the SIMT emulator, whose device stays
// invisible until enable_emulator() or CTE_EMULATE_CUDA=1.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/handles.cuh"
#include "kernels/gpu_runtime.h"

namespace cte::gpu {

[[noreturn]] void fail(const char* statement, const char* file, int line, const char* what) {
  throw std::runtime_error(std::string("CUDA error: ") + what + " in `" + statement + "` at " +
                           file + ":" + std::to_string(line));
}

const char* status_string(cublasStatus_t s) { return cublasGetStatusString(s); }

Backend compiled_backend() {
#ifdef CTE_EMULATOR
  return Backend::emulator;
#else
  return Backend::real_cuda;
#endif
}

void enable_emulator() {
#ifdef CTE_EMULATOR
  ::emu::set_device_visible(true);
#endif
}

int device_count() {
#ifdef CTE_EMULATOR
  static std::once_flag env_checked;
  std::call_once(env_checked, [] {
    const char* flag = std::getenv("CTE_EMULATE_CUDA");
    if (flag != nullptr && std::strcmp(flag, "1") == 0) ::emu::set_device_visible(true);
  });
#endif
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: clear the error, report none
    return 0;
  }
  return count;
}

std::string describe_device() {
#ifdef CTE_EMULATOR
  return "CUDA backend: SIMT emulator on the CPU (no GPU)";
#else
  if (device_count() == 0) return "CUDA backend: no CUDA device found";
  cudaDeviceProp prop{};
  CTE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int runtime_version = 0, driver_version = 0;
  CTE_CUDA_CHECK(cudaRuntimeGetVersion(&runtime_version));
  CTE_CUDA_CHECK(cudaDriverGetVersion(&driver_version));
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  CTE_CUDA_CHECK(cublasGetProperty(MAJOR_VERSION, &cublas_major));
  CTE_CUDA_CHECK(cublasGetProperty(MINOR_VERSION, &cublas_minor));
  CTE_CUDA_CHECK(cublasGetProperty(PATCH_LEVEL, &cublas_patch));
  int cudnn_major = 0, cudnn_minor = 0, cudnn_patch = 0;
  CTE_CUDA_CHECK(cudnnGetProperty(MAJOR_VERSION, &cudnn_major));
  CTE_CUDA_CHECK(cudnnGetProperty(MINOR_VERSION, &cudnn_minor));
  CTE_CUDA_CHECK(cudnnGetProperty(PATCH_LEVEL, &cudnn_patch));
  char line[512];
  std::snprintf(line, sizeof line,
                "CUDA device 0: %s, compute capability %d.%d, %d SMs, %.1f GiB; CUDA runtime "
                "%d.%d, driver %d.%d, cuBLAS %d.%d.%d, cuDNN %d.%d.%d",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / double(1ull << 30), runtime_version / 1000,
                runtime_version % 1000 / 10, driver_version / 1000, driver_version % 1000 / 10,
                cublas_major, cublas_minor, cublas_patch, cudnn_major, cudnn_minor, cudnn_patch);
  return line;
#endif
}

namespace {
std::atomic<uint64_t> raw_mallocs{0}, raw_frees{0};
std::atomic<uint64_t> copies_to_host{0}, copies_to_device{0}, device_synchronizes{0}, event_waits{0},
    pinned_allocations{0}, pinned_frees{0};
}

void* malloc_raw(size_t bytes) {
  if (bytes == 0) return nullptr;  // nothing to allocate; free_raw(nullptr) is a no-op
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  raw_mallocs.fetch_add(1, std::memory_order_relaxed);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // an out-of-memory error is not sticky; leave the device usable
    throw std::runtime_error("CUDA error: cudaMalloc of " + std::to_string(bytes) + " bytes (" +
                             std::to_string(bytes >> 20) + " MiB) failed: " +
                             cudaGetErrorString(status));
  }
  return ptr;
}

void free_raw(void* ptr) {
  if (ptr == nullptr) return;
  raw_frees.fetch_add(1, std::memory_order_relaxed);
  CTE_CUDA_CHECK(cudaFree(ptr));
}

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  copies_to_device.fetch_add(1, std::memory_order_relaxed);
  CTE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  copies_to_host.fetch_add(1, std::memory_order_relaxed);
  CTE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // Queued, not waited for (a device-to-device cudaMemcpy does not wait either), so it can be captured.
  CTE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, work_stream()));
}

void synchronize() {
  device_synchronizes.fetch_add(1, std::memory_order_relaxed);
  CTE_CUDA_CHECK(cudaDeviceSynchronize());
}

void* malloc_pinned(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  pinned_allocations.fetch_add(1, std::memory_order_relaxed);
  const cudaError_t status = cudaMallocHost(&ptr, bytes);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error("CUDA error: cudaMallocHost of " + std::to_string(bytes) +
                             " bytes of page-locked host memory failed: " + cudaGetErrorString(status));
  }
  return ptr;
}

void free_pinned(void* ptr) {
  if (ptr == nullptr) return;
  pinned_frees.fetch_add(1, std::memory_order_relaxed);
  CTE_CUDA_CHECK(cudaFreeHost(ptr));
}

void copy_host_to_device_async(void* dst, const void* pinned_src, size_t bytes) {
  if (bytes == 0) return;
  CTE_CUDA_CHECK(cudaMemcpyAsync(dst, pinned_src, bytes, cudaMemcpyHostToDevice, work_stream()));
}

void copy_device_to_host_async(void* pinned_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CTE_CUDA_CHECK(cudaMemcpyAsync(pinned_dst, src, bytes, cudaMemcpyDeviceToHost, work_stream()));
}

void* event_create() {
  cudaEvent_t event = nullptr;
  CTE_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

void event_destroy(void* event) {
  if (event != nullptr) CTE_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void event_record(void* event) { CTE_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), work_stream())); }

void event_wait(void* event) {
  event_waits.fetch_add(1, std::memory_order_relaxed);
  CTE_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

RawAllocCounters raw_alloc_counters() {
  return {raw_mallocs.load(std::memory_order_relaxed), raw_frees.load(std::memory_order_relaxed)};
}

HostSyncCounters host_sync_counters() {
  return {copies_to_host.load(std::memory_order_relaxed), copies_to_device.load(std::memory_order_relaxed),
          device_synchronizes.load(std::memory_order_relaxed), event_waits.load(std::memory_order_relaxed),
          pinned_allocations.load(std::memory_order_relaxed), pinned_frees.load(std::memory_order_relaxed)};
}

// The stream and handles are created once and deliberately never destroyed:
// destroying them from a static destructor can run after the CUDA runtime has
// shut down.
cudaStream_t work_stream() {
  static const cudaStream_t stream = [] {
    cudaStream_t s = nullptr;
    CTE_CUDA_CHECK(cudaStreamCreate(&s));
    return s;
  }();
  return stream;
}

namespace {
std::atomic<bool> capture_active{false};
std::atomic<int64_t> live_graphs{0};  // instantiated and not yet destroyed
void free_parked_workspaces();
}

bool capturing() { return capture_active.load(); }

void capture_begin() {
  if (capture_active.load()) throw std::runtime_error("CUDA graph: capture_begin while a capture is already running");
  // Relaxed: the caching allocator may still cudaMalloc a fresh block during the capture.
  CTE_CUDA_CHECK(cudaStreamBeginCapture(work_stream(), cudaStreamCaptureModeRelaxed));
  capture_active.store(true);
}

void* capture_end() {
  if (!capture_active.load()) throw std::runtime_error("CUDA graph: capture_end without capture_begin");
  capture_active.store(false);
  cudaGraph_t graph = nullptr;
  CTE_CUDA_CHECK(cudaStreamEndCapture(work_stream(), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  CTE_CUDA_CHECK(status);
  live_graphs.fetch_add(1);
  return exec;
}

void capture_abandon() {
  if (!capture_active.load()) return;
  capture_active.store(false);
  cudaGraph_t graph = nullptr;
  (void)cudaStreamEndCapture(work_stream(), &graph);  // invalidated or not: discarded
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  (void)cudaGetLastError();
}

void graph_launch(void* graph) { CTE_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), work_stream())); }

void graph_destroy(void* graph) {
  if (graph == nullptr) return;
  CTE_CUDA_CHECK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)));
  if (live_graphs.fetch_sub(1) == 1) free_parked_workspaces();
}

cublasHandle_t cublas_handle() {
  static const cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    CTE_CUDA_CHECK(cublasCreate(&h));
    CTE_CUDA_CHECK(cublasSetStream(h, work_stream()));
    // A workspace of its own, set after the stream (which resets it): otherwise
    // cuBLAS may allocate one inside a graph capture. 32 MiB: cuBLAS's advice for Hopper.
    constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
    CTE_CUDA_CHECK(cublasSetWorkspace(h, malloc_raw(kCublasWorkspaceBytes), kCublasWorkspaceBytes));
    // Plain FP32 math: a certified bound must not depend on TF32 / reduced-
    // precision tensor-core arithmetic, whose rounding the bound does not model.
    CTE_CUDA_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    return h;
  }();
  return handle;
}

cudnnHandle_t cudnn_handle() {
  static const cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    CTE_CUDA_CHECK(cudnnCreate(&h));
    CTE_CUDA_CHECK(cudnnSetStream(h, work_stream()));
    // The FP32-only math type is set per convolution descriptor (kernels/cuda/conv.cu).
    return h;
  }();
  return handle;
}

namespace {
std::mutex workspace_mutex;
void* workspace_buffer = nullptr;
size_t workspace_capacity = 0;
std::vector<void*> parked_workspaces;  // outgrown while a graph may still use them

void free_parked_workspaces() {
  std::lock_guard<std::mutex> lock(workspace_mutex);
  for (void* buffer : parked_workspaces) free_raw(buffer);
  parked_workspaces.clear();
}
}  // namespace

void* workspace(size_t bytes) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(workspace_mutex);
  if (bytes > workspace_capacity) {
    // A captured graph keeps the old buffer's address for every replay, and
    // cudaFree would fail a capture: while either may be the case the old
    // buffer is parked until the last graph is destroyed. Otherwise cudaFree
    // synchronizes the device, so no queued kernel still reads it.
    if (capture_active.load() || live_graphs.load() > 0) {
      if (workspace_buffer != nullptr) parked_workspaces.push_back(workspace_buffer);
    } else {
      free_raw(workspace_buffer);
    }
    workspace_buffer = nullptr;
    workspace_capacity = 0;
    workspace_buffer = malloc_raw(bytes);
    workspace_capacity = bytes;
  }
  return workspace_buffer;
}

}  // namespace cte::gpu
