// The engine's only door to a GPU: device discovery, raw memory and copies.
// Implemented in kernels/cuda/runtime.cu, which is compiled either by nvcc
// (a real GPU) or by the host compiler with the SIMT emulator's shim
// (kernels/emu/), in which case the "device" is emulated on the CPU and only
// becomes visible after enable_emulator() (tests) or CTE_EMULATE_CUDA=1.
// Nothing here knows about tensors; engine/ builds its caching allocator on it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cte::gpu {

enum class Backend { real_cuda, emulator };
Backend compiled_backend();  // what this binary's CUDA kernels were compiled for

// Number of usable CUDA devices (0 on a machine without a GPU; for the
// emulator, 1 once enabled). Never throws.
int device_count();
// Emulator builds only: make the emulated device visible. No-op on real CUDA.
void enable_emulator();
// One line for the start-up banner: GPU name, compute capability, CUDA,
// cuBLAS and cuDNN versions (or "SIMT emulator on the CPU").
std::string describe_device();

void* malloc_raw(size_t bytes);  // cudaMalloc; throws std::runtime_error naming the size on failure
void free_raw(void* ptr);        // cudaFree
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void synchronize();  // cudaDeviceSynchronize, checked

// Asynchronous uploads (issue 19: a training step without host round trips).
// A host-to-device copy from page-locked memory is queued on the engine's
// stream and returns at once; the source must stay untouched until an event
// recorded after the copy has completed (engine/staging.h keeps that rule).
void* malloc_pinned(size_t bytes);  // cudaMallocHost; throws naming the size on failure
void free_pinned(void* ptr);        // cudaFreeHost
void copy_host_to_device_async(void* dst, const void* pinned_src, size_t bytes);
// The other way: queued behind the work already in the stream, the values land
// in page-locked memory once an event recorded after the copy has completed.
void copy_device_to_host_async(void* pinned_dst, const void* src, size_t bytes);
// An event marks a point in the engine's stream.
void* event_create();          // cudaEventCreateWithFlags(cudaEventDisableTiming)
void event_destroy(void* event);
void event_record(void* event);  // after everything queued so far
void event_wait(void* event);    // the host waits until the device has reached it

// CUDA graphs (issue 19: a training step replayed with one launch). The device
// work queued between capture_begin and capture_end is recorded, not run;
// graph_launch replays it. Host code in between runs once, at capture: the
// kernel arguments, pointers and sizes it computed are frozen into the graph,
// so a replay reads its inputs from and writes its outputs to the same device
// buffers. A call that makes the host wait during a capture (a synchronous
// copy, a synchronize, cudaFree) fails, and so does the capture; after a
// failure, capture_abandon ends it. One capture at a time.
void capture_begin();
void* capture_end();  // the instantiated graph (cudaGraphExec_t)
void capture_abandon();
bool capturing();
void graph_launch(void* graph);
void graph_destroy(void* graph);

// Counts of raw cudaMalloc / cudaFree calls since start (tests assert that a
// steady-state training step makes none).
struct RawAllocCounters { uint64_t mallocs = 0, frees = 0; };
RawAllocCounters raw_alloc_counters();

// Counts of the calls that make the host wait for the device since start:
// synchronous copies each way (cudaMemcpy; a host-to-device copy from
// pageable memory blocks too) and cudaDeviceSynchronize. A training step
// without host round trips (issue 19) makes none; bench_train reports them.
// Waits on an event (event_wait) are counted apart: they only hold the host
// back when it has queued work more than a staging ring ahead of the device.
// Page-locked allocations and frees (cudaMallocHost, cudaFreeHost) are counted
// too: cudaFreeHost waits for the whole device, so a step that builds its
// staging buffers afresh each time syncs through them.
struct HostSyncCounters {
  uint64_t device_to_host = 0, host_to_device = 0, synchronizes = 0, event_waits = 0, pinned_allocations = 0,
           pinned_frees = 0;
};
HostSyncCounters host_sync_counters();

}  // namespace cte::gpu
