// Per-device caching allocator. Freed blocks go to a free list keyed by their
// rounded size and are handed out again, so once a training step has run
// once, later steps reuse the same blocks and make no raw allocation (no
// cudaMalloc, no page faults on the CPU). CPU blocks are 64-byte aligned (one
// AVX-512 vector, one cache line).
//
// A request takes the smallest cached block that holds it, if that block is at
// most twice its size, so steps whose sizes change (the sparse bounds allocate
// as many rows as there are unstable neurons) reuse blocks instead of caching
// one per size. When no block fits and the shared cache holds more than twice
// the most live memory ever seen (at least 256 MiB), it is returned to the
// system before the raw allocation: memory held stays within about three times
// the peak. Graph pools (below) keep their blocks and are not counted. CPU
// blocks of 2 MiB or more are aligned to 2 MiB and advised as transparent huge
// pages, so touching a fresh one faults once per 2 MiB instead of per 4 KiB.
//
// Under AddressSanitizer, cached blocks and the slack at the end of each live
// block (rounding, or a larger best fit) are poisoned, so a kernel reading one
// element past its tensor is still caught even though the block is larger.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/tensor.h"

namespace cte {

struct AllocatorStats {
  uint64_t raw_allocations = 0;  // calls to the system / cudaMalloc
  uint64_t raw_frees = 0;
  size_t bytes_in_use = 0;       // held by live tensors (their blocks' sizes: rounded, or a larger best fit)
  size_t peak_bytes_in_use = 0;
  size_t bytes_cached = 0;       // free blocks kept for reuse (graph pools' included)
  size_t high_water_bytes_in_use = 0;  // most ever in use (reset_peak_bytes leaves it): the cache's limit
};

void* device_allocate(Device device, size_t bytes);
void device_free(Device device, void* ptr, size_t bytes);
AllocatorStats allocator_stats(Device device);
void reset_peak_bytes(Device device);
void empty_cache(Device device);  // returns cached blocks to the system

// CUDA graph capture (kernels/gpu_runtime.h): a graph replays its kernels on
// the device addresses it captured, so the blocks a capture allocates must not
// be handed to anyone else while the graph lives. A GraphMemoryPool keeps them:
// between begin() and end() device allocations come from the pool's own free
// lists (else from the shared cache's, else cudaMalloc; the pool keeps them), and its blocks go back to those
// lists whenever they are freed, during the capture or later. A block from
// outside the pool freed during the capture is held back until the pool dies
// (the graph may still read it). Destroy the graph first, then its pool; the
// pool's blocks then return to the shared cache.
class GraphMemoryPool {
 public:
  GraphMemoryPool();
  ~GraphMemoryPool();
  GraphMemoryPool(const GraphMemoryPool&) = delete;
  GraphMemoryPool& operator=(const GraphMemoryPool&) = delete;
  void begin();  // throws when another pool is active
  void end();
  size_t bytes() const;  // device memory the pool has taken (its blocks' sizes)

  struct State;

 private:
  std::unique_ptr<State> state_;
};

struct Buffer {
  float* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  Buffer(Device device, size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

}  // namespace cte
