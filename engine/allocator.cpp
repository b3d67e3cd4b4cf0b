// The caching allocator behind every tensor (see allocator.h for the policy).
#include "engine/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/mman.h>

#include "kernels/gpu_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CTE_ASAN 1
#endif

namespace cte {
namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kHugePageBytes = size_t(2) << 20;

// Sizes round up to 512 bytes below 1 MiB and to 64 KiB above, so slightly
// different batch sizes (the last batch of an epoch) still share blocks.
size_t rounded_size(size_t bytes) {
  const size_t granule = bytes < (size_t(1) << 20) ? 512 : (size_t(1) << 16);
  return bytes == 0 ? granule : (bytes + granule - 1) / granule * granule;
}

#ifdef CTE_ASAN
// Poisoning is only meaningful where "device" memory is host memory.
bool host_addressable(Device device) {
  return device == Device::cpu || gpu::compiled_backend() == gpu::Backend::emulator;
}
#endif

void poison(Device device, void* ptr, size_t bytes) {
#ifdef CTE_ASAN
  if (host_addressable(device)) ASAN_POISON_MEMORY_REGION(ptr, bytes);
#else
  (void)device, (void)ptr, (void)bytes;
#endif
}
void unpoison(Device device, void* ptr, size_t bytes) {
#ifdef CTE_ASAN
  if (host_addressable(device)) ASAN_UNPOISON_MEMORY_REGION(ptr, bytes);
#else
  (void)device, (void)ptr, (void)bytes;
#endif
}

// Free blocks by size, read in order by best_fit.
using FreeLists = std::map<size_t, std::vector<void*>>;

// The smallest block of `lists` of at least `wanted` bytes and at most twice
// that (a larger one would waste more than the request), or end().
FreeLists::iterator best_fit(FreeLists& lists, size_t wanted) {
  const auto fit = lists.lower_bound(wanted);
  return fit != lists.end() && fit->first / 2 <= wanted ? fit : lists.end();
}
// Takes the block `fit` points at out of `lists`; returns it and its size.
std::pair<void*, size_t> take_block(FreeLists& lists, FreeLists::iterator fit) {
  const std::pair<void*, size_t> block{fit->second.back(), fit->first};
  fit->second.pop_back();
  if (fit->second.empty()) lists.erase(fit);
  return block;
}

}  // namespace

struct GraphMemoryPool::State {
  FreeLists free_lists;
  std::vector<void*> blocks;                        // every block it owns
  std::vector<std::pair<void*, size_t>> held_back;  // outside blocks freed during its capture
  size_t bytes = 0;
};

namespace {

class CachingAllocator {
 public:
  explicit CachingAllocator(Device device) : device_(device) {}

  void* allocate(size_t bytes) {
    const size_t wanted = rounded_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    size_t size = wanted;  // the block's own size, >= wanted when a larger cached block fits
    FreeLists::iterator pool_fit;
    if (active_pool_ != nullptr &&
        (pool_fit = best_fit(active_pool_->free_lists, wanted)) != active_pool_->free_lists.end()) {
      std::tie(ptr, size) = take_block(active_pool_->free_lists, pool_fit);
      stats_.bytes_cached -= size;
    } else {
      // A capture takes a free block of the shared cache before a fresh one (a
      // retired pool's blocks are reused, so captures do not add up), and keeps it.
      if (auto fit = best_fit(free_lists_, wanted); fit != free_lists_.end()) {
        std::tie(ptr, size) = take_block(free_lists_, fit);
        stats_.bytes_cached -= size;
        shared_cached_bytes_ -= size;
      } else {
        // Only the shared cache counts (graph pools keep their blocks).
        if (active_pool_ == nullptr && shared_cached_bytes_ > cache_limit()) release_cached_blocks();
        ptr = raw_allocate(size);
        ++stats_.raw_allocations;
      }
      if (active_pool_ != nullptr) {
        active_pool_->blocks.push_back(ptr);
        active_pool_->bytes += size;
        pool_of_.emplace(ptr, active_pool_);
      }
    }
    block_size_[ptr] = size;
    stats_.bytes_in_use += size;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
      stats_.peak_bytes_in_use = stats_.bytes_in_use;
    stats_.high_water_bytes_in_use = std::max(stats_.high_water_bytes_in_use, stats_.bytes_in_use);
    // A pool block stays addressable whole: a replay may write an earlier, larger tensor there.
    const bool pool_block = active_pool_ != nullptr || (!pool_of_.empty() && pool_of_.count(ptr) != 0);
    unpoison(device_, ptr, pool_block ? size : bytes);
    if (!pool_block) poison(device_, static_cast<char*>(ptr) + bytes, size - bytes);
    return ptr;
  }

  void release(void* ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = block_size_.find(ptr);
    if (found == block_size_.end())
      fail("allocator", "freeing a block of " + std::to_string(bytes) + " bytes that it did not hand out");
    const size_t size = found->second;
    block_size_.erase(found);
    stats_.bytes_in_use -= size;
    stats_.bytes_cached += size;
    // A graph's blocks stay addressable: its replays still use them.
    if (!pool_of_.empty()) {
      if (auto it = pool_of_.find(ptr); it != pool_of_.end()) {
        unpoison(device_, ptr, size);
        it->second->free_lists[size].push_back(ptr);
        return;
      }
    }
    if (active_pool_ != nullptr) {
      unpoison(device_, ptr, size);
      active_pool_->held_back.emplace_back(ptr, size);
      return;
    }
    poison(device_, ptr, size);
    free_lists_[size].push_back(ptr);
    shared_cached_bytes_ += size;
  }

  size_t pool_bytes(const GraphMemoryPool::State* pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    return pool->bytes;
  }

  void set_active_pool(GraphMemoryPool::State* pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pool != nullptr && active_pool_ != nullptr)
      fail("allocator", "a graph memory pool is already active (one capture at a time)");
    active_pool_ = pool;
  }

  // The pool's blocks, free or held back, join the shared cache; its live
  // blocks do when they are freed.
  void retire_pool(GraphMemoryPool::State* pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (active_pool_ == pool) active_pool_ = nullptr;
    for (void* block : pool->blocks) pool_of_.erase(block);
    for (auto& [size, bin] : pool->free_lists)
      for (void* block : bin) {
        poison(device_, block, size);
        free_lists_[size].push_back(block);
        shared_cached_bytes_ += size;
      }
    for (const auto& [block, size] : pool->held_back) {
      poison(device_, block, size);
      free_lists_[size].push_back(block);
      shared_cached_bytes_ += size;
    }
    pool->free_lists.clear();
    pool->held_back.clear();
    pool->blocks.clear();
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_blocks();
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

 private:
  // The cache may hold twice the most live memory ever seen (at least
  // kCacheFloor): memory held stays within about three times the peak when
  // sizes do not repeat. Once the limit was the peak itself, and a CROWN step
  // on CONV+ (its backsubstitution chunks 50 to 180 MB, a peak of 1.2 GB)
  // emptied the cache once a step and faulted its 2 GB in again.
  size_t cache_limit() const { return std::max(2 * stats_.high_water_bytes_in_use, kCacheFloor); }
  void release_cached_blocks() {  // graph pools keep theirs
    // Out of the lists first: a raw_free that throws leaks the rest, never frees one twice.
    FreeLists blocks;
    blocks.swap(free_lists_);
    for (auto& [size, bin] : blocks)
      for (void* ptr : bin) {
        stats_.bytes_cached -= size;
        shared_cached_bytes_ -= size;
        unpoison(device_, ptr, size);
        raw_free(ptr);
        ++stats_.raw_frees;
      }
  }

  void* raw_allocate(size_t size) {
    if (device_ == Device::cuda) return gpu::malloc_raw(size);
    // A large block is aligned to a 2 MiB huge page and asks for transparent
    // huge pages: its first touch then faults once per 2 MiB, not once per 4 KiB
    // (backsubstitution chunks of hundreds of MB spent a third of a CROWN step
    // in the kernel's page faults).
    const bool huge = size >= kHugePageBytes;
    // posix_memalign: aligned_alloc wants the size a multiple of the alignment
    // (AddressSanitizer enforces it), and sizes here round to 64 KiB.
    void* ptr = nullptr;
    if (posix_memalign(&ptr, huge ? kHugePageBytes : kAlignment, size) != 0) ptr = nullptr;
    if (!ptr) fail("allocator", "out of host memory allocating " + std::to_string(size) + " bytes");
#ifdef MADV_HUGEPAGE
    if (huge) madvise(ptr, size / kHugePageBytes * kHugePageBytes, MADV_HUGEPAGE);  // advice: failure is harmless
#endif
    return ptr;
  }
  void raw_free(void* ptr) {
    if (device_ == Device::cuda) gpu::free_raw(ptr);
    else std::free(ptr);
  }

  Device device_;
  std::mutex mutex_;
  static constexpr size_t kCacheFloor = size_t(256) << 20;
  FreeLists free_lists_;            // the shared cache
  size_t shared_cached_bytes_ = 0;  // its bytes (stats_.bytes_cached adds the graph pools' free blocks)
  std::unordered_map<void*, size_t> block_size_;      // every live block's size (a best fit may exceed the request)
  GraphMemoryPool::State* active_pool_ = nullptr;                 // capturing: allocations come from here
  std::unordered_map<void*, GraphMemoryPool::State*> pool_of_;  // the owner of each pool block
  AllocatorStats stats_;
};

// Intentionally leaked: tensors destroyed during static destruction (globals
// in tests and tools) must still find their allocator alive.
CachingAllocator& allocator_for(Device device) {
  static CachingAllocator* cpu = new CachingAllocator(Device::cpu);
  static CachingAllocator* cuda = new CachingAllocator(Device::cuda);
  return device == Device::cpu ? *cpu : *cuda;
}

}  // namespace

void* device_allocate(Device device, size_t bytes) { return allocator_for(device).allocate(bytes); }
void device_free(Device device, void* ptr, size_t bytes) { allocator_for(device).release(ptr, bytes); }
AllocatorStats allocator_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_bytes(Device device) { allocator_for(device).reset_peak(); }
void empty_cache(Device device) { allocator_for(device).empty_cache(); }

GraphMemoryPool::GraphMemoryPool() : state_(std::make_unique<State>()) {}
GraphMemoryPool::~GraphMemoryPool() { allocator_for(Device::cuda).retire_pool(state_.get()); }
void GraphMemoryPool::begin() { allocator_for(Device::cuda).set_active_pool(state_.get()); }
void GraphMemoryPool::end() { allocator_for(Device::cuda).set_active_pool(nullptr); }
size_t GraphMemoryPool::bytes() const { return allocator_for(Device::cuda).pool_bytes(state_.get()); }

Buffer::Buffer(Device device_, size_t bytes_) : bytes(bytes_), device(device_) {
  ptr = static_cast<float*>(device_allocate(device, bytes));
}
Buffer::~Buffer() { device_free(device, ptr, bytes); }

}  // namespace cte
