// The SIMT emulator's engine: the launch machinery behind emu::launch (a pool
// of OS threads, one per CUDA thread of a block, running the grid's blocks one
// after another), the barriers and warp exchanges behind __syncthreads, the
// shuffles and ballots, the registry of "device" allocations, and the CUDA
// runtime stand-ins (cudaMalloc, cudaMemcpy, device queries, ...). See
// kernels/emu/emu_cuda.h for the interface and the project README for the
// execution model and its limits.
#include "kernels/emu/emu_cuda.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <semaphore>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

struct CUstream_st {
  int unused = 0;
};

namespace emu {
namespace {

// ---------------------------------------------------------------------------
// Global switches and counters.
std::atomic<bool> g_device_visible{false};
std::atomic<bool> g_always_lockstep{false};
std::atomic<uint64_t> g_launches{0};
std::atomic<uint64_t> g_lockstep_blocks{0};
std::atomic<uint64_t> g_free_running_blocks{0};
std::atomic<unsigned> g_worker_threads{0};

bool lockstep_requested_by_environment() {
  static const bool requested = [] {
    const char* value = std::getenv("CTE_EMU_LOCKSTEP");
    return value != nullptr && value[0] == '1';
  }();
  return requested;
}

// Device work (launches, copies, library calls) is serialised like CUDA's
// legacy default stream; this is the one lock for it.
std::mutex& device_work_mutex() {
  static std::mutex mutex;
  return mutex;
}

constexpr size_t kMaxDynamicSharedBytes = 48 * 1024;  // without CUDA's opt-in
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kFullWarp = 0xffffffffu;
constexpr uint64_t kInactiveLaneBits = ~uint64_t(0);  // NaN as float/double, -1 as integer

size_t emulated_global_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return size_t(8) << 30;
  return size_t(pages) * size_t(page_size);
}

// ---------------------------------------------------------------------------
// A reusable barrier whose participants can drop out for the rest of the
// current round (a thread that returns from the kernel no longer holds up
// __syncthreads, as on a GPU) and which is re-armed for every block. An
// optional completion runs on the last arriving thread before any waiter is
// released. std::barrier cannot re-admit dropped participants, hence this.
// Built on acquire/release atomics and C++20 atomic wait, which
// ThreadSanitizer understands.
class PhaseBarrier {
 public:
  using Completion = void (*)(void* context);

  void arm(int participants, Completion completion = nullptr, void* context = nullptr) {
    participants_.store(participants, std::memory_order_relaxed);
    pending_.store(participants, std::memory_order_relaxed);
    completion_ = completion;
    completion_context_ = context;
  }

  // Called only by threads that have not dropped out.
  void arrive_and_wait() { arrive(/*drop=*/false); }
  // Counts as this thread's arrival now and removes it from later phases.
  void arrive_and_drop() { arrive(/*drop=*/true); }

 private:
  void arrive(bool drop) {
    // This thread's arrival is needed for the phase to end, so the phase
    // cannot move before this load.
    const uint32_t phase = phase_.load(std::memory_order_acquire);
    if (drop) participants_.fetch_sub(1, std::memory_order_relaxed);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      if (completion_ != nullptr) completion_(completion_context_);
      pending_.store(participants_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);
      phase_.notify_all();
      return;
    }
    if (drop) return;
    while (phase_.load(std::memory_order_acquire) == phase) phase_.wait(phase, std::memory_order_acquire);
  }

  std::atomic<int> pending_{0};
  std::atomic<int> participants_{0};
  std::atomic<uint32_t> phase_{0};
  Completion completion_ = nullptr;
  void* completion_context_ = nullptr;
};

// One warp of the running block: its barrier, its lanes' exchange slots
// (double-buffered, so one barrier per shuffle suffices: a lane can only
// overwrite buffer k % 2 after every lane has passed exchange k + 1, i.e.
// after everyone has read exchange k), and who has exited.
struct WarpState {
  PhaseBarrier barrier;
  uint32_t member_lanes = 0;                // lanes that exist (a last warp may be partial)
  std::atomic<uint32_t> exited_lanes{0};    // lanes that returned from the kernel this block
  uint32_t live_lanes_at_last_phase = 0;    // snapshot taken when the last phase completed
  uint64_t slots[2][32] = {};

  static void snapshot_live_lanes(void* self) {
    auto* warp = static_cast<WarpState*>(self);
    warp->live_lanes_at_last_phase =
        warp->member_lanes & ~warp->exited_lanes.load(std::memory_order_relaxed);
  }
  void arm_for_block() {
    exited_lanes.store(0, std::memory_order_relaxed);
    live_lanes_at_last_phase = member_lanes;
    barrier.arm(std::popcount(member_lanes), &WarpState::snapshot_live_lanes, this);
  }
};

// Everything one launch shares between its threads. Fields without atomics
// are written only before the threads start or inside a barrier completion
// (while every other thread waits), and read after that barrier.
struct Launch {
  const char* name = "";
  dim3 grid, block;
  size_t shared_bytes = 0;
  detail::KernelBody body{};
  unsigned threads = 0;
  unsigned warps = 0;
  uint64_t blocks = 0;
  bool always_lockstep = false;

  PhaseBarrier block_sync;  // __syncthreads
  PhaseBarrier block_end;   // between blocks in lockstep mode; nobody drops from it
  std::unique_ptr<WarpState[]> warp_states;
  std::unique_ptr<unsigned char[]> dynamic_shared;

  std::atomic<bool> used_sync{false};  // some thread used a barrier or warp collective
  std::atomic<bool> failed{false};
  bool free_running = false;  // after a sync-free first block: no inter-block barriers
  bool stop = false;          // lockstep: a thread failed, run no further block
  uint64_t lockstep_blocks_done = 0;
  uint64_t free_running_blocks = 0;  // counted by thread 0

  std::mutex error_mutex;
  std::string error;  // the first failure, fully described
};

struct ThreadContext {
  Launch* launch = nullptr;
  WarpState* warp = nullptr;
  unsigned linear = 0;
  unsigned lane = 0;
  unsigned exchanges = 0;  // shuffles/ballots this block, picks the slot buffer
};
thread_local ThreadContext t_context;

std::string dims(dim3 d) {
  std::ostringstream out;
  out << '(' << d.x << ',' << d.y << ',' << d.z << ')';
  return out.str();
}

std::string describe_launch(const Launch& launch) {
  return "kernel '" + std::string(launch.name) + "' (grid " + dims(launch.grid) + ", block " +
         dims(launch.block) + ", " + std::to_string(launch.shared_bytes) + " bytes dynamic shared memory)";
}

void record_failure(Launch& launch, const std::string& what) {
  std::lock_guard<std::mutex> lock(launch.error_mutex);
  if (launch.error.empty()) {
    launch.error = "emu: " + describe_launch(launch) + " failed in block " + dims(uint3(blockIdx)) +
                   ", thread " + dims(uint3(threadIdx)) + ": " + what;
  }
  launch.failed.store(true, std::memory_order_relaxed);
}

// Runs in the block_end barrier's completion: every thread of the block has
// finished it and is waiting, so plain fields may be updated.
void prepare_next_block(void* self) {
  auto& launch = *static_cast<Launch*>(self);
  ++launch.lockstep_blocks_done;
  if (launch.failed.load(std::memory_order_relaxed)) launch.stop = true;
  if (launch.lockstep_blocks_done == 1 && !launch.always_lockstep &&
      !launch.used_sync.load(std::memory_order_relaxed)) {
    launch.free_running = true;
  }
  launch.block_sync.arm(int(launch.threads));
  for (unsigned w = 0; w < launch.warps; ++w) launch.warp_states[w].arm_for_block();
  // Shared memory holds garbage at the start of a block on a GPU; make it
  // conspicuous garbage (NaN floats) here.
  if (launch.shared_bytes > 0) std::memset(launch.dynamic_shared.get(), 0xff, launch.shared_bytes);
}

void run_kernel_once(Launch& launch) {
  try {
    launch.body.call(launch.body.ctx);
  } catch (const std::exception& e) {
    record_failure(launch, e.what());
  } catch (...) {
    record_failure(launch, "unknown exception");
  }
}

// A thread that returns from the kernel drops out of its block's barriers, so
// threads still inside do not wait for it (GPU semantics for exited threads).
void leave_block(ThreadContext& context) {
  Launch& launch = *context.launch;
  context.warp->exited_lanes.fetch_or(1u << context.lane, std::memory_order_relaxed);
  context.warp->barrier.arrive_and_drop();
  launch.block_sync.arrive_and_drop();
}

// The life of CUDA thread `linear` (within a block) across the whole grid.
void run_cuda_thread(Launch& launch, unsigned linear) {
  ThreadContext& context = t_context;
  context = ThreadContext{&launch, &launch.warp_states[linear / warpSize], linear,
                          linear % unsigned(warpSize), 0};
  blockDim = launch.block;
  gridDim = launch.grid;
  threadIdx = uint3{linear % launch.block.x, (linear / launch.block.x) % launch.block.y,
                    linear / (launch.block.x * launch.block.y)};
  const uint64_t grid_xy = uint64_t(launch.grid.x) * launch.grid.y;
  for (uint64_t b = 0; b < launch.blocks; ++b) {
    const bool lockstep = !launch.free_running;
    if (lockstep ? launch.stop : launch.failed.load(std::memory_order_relaxed)) break;
    blockIdx = uint3{unsigned(b % launch.grid.x), unsigned((b / launch.grid.x) % launch.grid.y),
                     unsigned(b / grid_xy)};
    context.exchanges = 0;
    run_kernel_once(launch);
    if (lockstep) {
      leave_block(context);
      if (b + 1 < launch.blocks) launch.block_end.arrive_and_wait();
    } else if (linear == 0) {
      ++launch.free_running_blocks;
    }
  }
  context = ThreadContext{};
}

// ---------------------------------------------------------------------------
// OS threads kept across launches (creating hundreds of threads per launch
// costs milliseconds, and far more under ThreadSanitizer). Worker i plays CUDA
// thread i of every block of every launch that has more than i threads.
class WorkerPool {
 public:
  ~WorkerPool() {
    shutting_down_ = true;
    for (auto& worker : workers_) worker->go.release();
    for (auto& worker : workers_) worker->thread.join();
  }

  // Called with the device work lock held.
  void run(Launch& launch) {
    while (workers_.size() < launch.threads) {
      auto worker = std::make_unique<Worker>();
      Worker* self = worker.get();
      const unsigned index = unsigned(workers_.size());
      worker->thread = std::thread([this, self, index] { worker_main(*self, index); });
      workers_.push_back(std::move(worker));
      g_worker_threads.store(unsigned(workers_.size()), std::memory_order_relaxed);
    }
    current_ = &launch;
    unfinished_.store(int(launch.threads), std::memory_order_relaxed);
    for (unsigned i = 0; i < launch.threads; ++i) workers_[i]->go.release();
    for (int left = unfinished_.load(std::memory_order_acquire); left != 0;
         left = unfinished_.load(std::memory_order_acquire)) {
      unfinished_.wait(left, std::memory_order_acquire);
    }
    current_ = nullptr;
  }

 private:
  struct Worker {
    std::binary_semaphore go{0};
    std::thread thread;
  };

  void worker_main(Worker& self, unsigned index) {
    for (;;) {
      self.go.acquire();
      if (shutting_down_) return;
      run_cuda_thread(*current_, index);
      // The launch may be gone once the count reaches zero: touch only the pool.
      if (unfinished_.fetch_sub(1, std::memory_order_acq_rel) == 1) unfinished_.notify_all();
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  Launch* current_ = nullptr;  // written before the workers are released
  std::atomic<int> unfinished_{0};
  bool shutting_down_ = false;
};

WorkerPool& worker_pool() {
  static WorkerPool pool;
  return pool;
}

std::string validate_launch(dim3 grid, dim3 block, size_t shared_bytes) {
  if (block.x == 0 || block.y == 0 || block.z == 0) return "a block dimension is 0";
  if (block.x > 1024 || block.y > 1024 || block.z > 64)
    return "block dimensions exceed (1024, 1024, 64)";
  if (uint64_t(block.x) * block.y * block.z > kMaxThreadsPerBlock)
    return "more than 1024 threads per block";
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return "a grid dimension is 0";
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return "grid dimensions exceed (2^31-1, 65535, 65535)";
  if (shared_bytes > kMaxDynamicSharedBytes)
    return "dynamic shared memory exceeds 48 KiB (the emulator does not implement the opt-in)";
  return {};
}

// ---------------------------------------------------------------------------
// Intrinsics' common checks.
ThreadContext& current_thread(const char* intrinsic) {
  if (t_context.launch == nullptr) detail::intrinsic_misuse(intrinsic, "called outside a kernel launched by emu::launch");
  return t_context;
}

// A collective in a block after a sync-free first block: the emulator no
// longer keeps blocks apart, so it cannot honour the barrier.
Launch& collective_launch(const char* intrinsic) {
  ThreadContext& context = current_thread(intrinsic);
  Launch& launch = *context.launch;
  launch.used_sync.store(true, std::memory_order_relaxed);
  if (launch.free_running) {
    detail::intrinsic_misuse(intrinsic,
                             "used in a later block although no thread of block (0,0,0) used a barrier or "
                             "warp collective, so the emulator stopped separating blocks; run with "
                             "emu::set_always_lockstep(true) or CTE_EMU_LOCKSTEP=1");
  }
  return launch;
}

void check_mask_covers_live_lanes(const ThreadContext& context, unsigned mask, unsigned live, const char* intrinsic) {
  if ((mask >> context.lane & 1u) == 0) detail::intrinsic_misuse(intrinsic, "the calling lane is not in the mask");
  if ((mask & live) != live) {
    char why[160];
    std::snprintf(why, sizeof why,
                  "mask 0x%08x omits live lanes 0x%08x; partial-warp collectives are not supported",
                  mask, live & ~mask);
    detail::intrinsic_misuse(intrinsic, why);
  }
}

// ---------------------------------------------------------------------------
// The allocation registry: device pointer -> size.
struct Allocations {
  std::mutex mutex;
  std::map<uintptr_t, size_t> sizes;
  uint64_t live_bytes = 0;
};
Allocations& allocations() {
  static Allocations registry;
  return registry;
}

// The allocation containing ptr (start, size); size 0 when none.
std::pair<uintptr_t, size_t> find_allocation(const void* ptr) {
  Allocations& registry = allocations();
  std::lock_guard<std::mutex> lock(registry.mutex);
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  auto it = registry.sizes.upper_bound(address);
  if (it == registry.sizes.begin()) return {0, 0};
  --it;
  if (address >= it->first + it->second) return {0, 0};
  return {it->first, it->second};
}

bool points_into_device(const void* ptr) { return find_allocation(ptr).second != 0; }

thread_local cudaError_t t_last_error = cudaSuccess;
cudaError_t note(cudaError_t status) {
  if (status != cudaSuccess) t_last_error = status;
  return status;
}

// Whether the copy's operands are of the kinds `kind` names (cudaSuccess) or why not.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return note(cudaErrorInvalidValue);
  const bool dst_in_device = detail::is_device_range(dst, bytes);
  const bool src_in_device = detail::is_device_range(src, bytes);
  bool ok = false;
  switch (kind) {
    case cudaMemcpyHostToHost: ok = !points_into_device(dst) && !points_into_device(src); break;
    case cudaMemcpyHostToDevice: ok = dst_in_device && !points_into_device(src); break;
    case cudaMemcpyDeviceToHost: ok = src_in_device && !points_into_device(dst); break;
    case cudaMemcpyDeviceToDevice: ok = dst_in_device && src_in_device; break;
    case cudaMemcpyDefault:
      ok = (dst_in_device || !points_into_device(dst)) && (src_in_device || !points_into_device(src));
      break;
  }
  return ok ? cudaSuccess : note(cudaErrorInvalidValue);
}

cudaError_t copy_checked(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (const cudaError_t status = check_copy(dst, src, bytes, kind); status != cudaSuccess || bytes == 0)
    return status;
  detail::DeviceWorkLock lock;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public emulator interface.
void set_device_visible(bool visible) { g_device_visible.store(visible); }
bool device_visible() { return g_device_visible.load(); }
void set_always_lockstep(bool on) { g_always_lockstep.store(on); }

Stats stats() {
  Stats s;
  s.launches = g_launches.load();
  s.lockstep_blocks = g_lockstep_blocks.load();
  s.free_running_blocks = g_free_running_blocks.load();
  {
    Allocations& registry = allocations();
    std::lock_guard<std::mutex> lock(registry.mutex);
    s.live_allocations = registry.sizes.size();
    s.live_bytes = registry.live_bytes;
  }
  s.worker_threads = g_worker_threads.load();
  return s;
}

void* dynamic_shared_memory() {
  return current_thread("dynamic_shared_memory").launch->dynamic_shared.get();
}

namespace detail {

DeviceWorkLock::DeviceWorkLock() {
  // The launching thread holds the lock while kernels run: a kernel calling
  // the runtime would wait for itself.
  if (t_context.launch != nullptr)
    throw std::logic_error("emu: CUDA runtime or library call from inside a kernel (not supported)");
  device_work_mutex().lock();
}
DeviceWorkLock::~DeviceWorkLock() { device_work_mutex().unlock(); }

void intrinsic_misuse(const char* intrinsic, const char* why) {
  throw std::logic_error(std::string(intrinsic) + ": " + why);
}

void run_launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, KernelBody body) {
  g_launches.fetch_add(1);
  Launch launch;
  launch.name = name != nullptr ? name : "(unnamed)";
  launch.grid = grid;
  launch.block = block;
  launch.shared_bytes = shared_bytes;
  if (t_context.launch != nullptr)
    throw std::runtime_error("emu: " + describe_launch(launch) + " launched from inside a kernel (not supported)");
  if (!device_visible())
    throw std::runtime_error("emu: " + describe_launch(launch) +
                             " launched while no device is visible (call emu::set_device_visible(true), "
                             "e.g. via cte::gpu::enable_emulator() or CTE_EMULATE_CUDA=1)");
  if (const std::string problem = validate_launch(grid, block, shared_bytes); !problem.empty())
    throw std::runtime_error("emu: invalid launch of " + describe_launch(launch) + ": " + problem);

  launch.body = body;
  launch.threads = block.x * block.y * block.z;
  launch.warps = (launch.threads + warpSize - 1) / warpSize;
  launch.blocks = uint64_t(grid.x) * grid.y * grid.z;
  launch.always_lockstep = g_always_lockstep.load() || lockstep_requested_by_environment();
  launch.warp_states = std::make_unique<WarpState[]>(launch.warps);
  for (unsigned w = 0; w < launch.warps; ++w) {
    const unsigned lanes = std::min(unsigned(warpSize), launch.threads - w * warpSize);
    launch.warp_states[w].member_lanes = lanes == 32 ? kFullWarp : (1u << lanes) - 1;
    launch.warp_states[w].arm_for_block();
  }
  launch.block_sync.arm(int(launch.threads));
  launch.block_end.arm(int(launch.threads), &prepare_next_block, &launch);
  launch.dynamic_shared.reset(new unsigned char[shared_bytes]);
  if (shared_bytes > 0) std::memset(launch.dynamic_shared.get(), 0xff, shared_bytes);

  {
    DeviceWorkLock lock;
    worker_pool().run(launch);
  }
  const uint64_t lockstep_blocks = launch.free_running ? 1 : std::min(launch.blocks, launch.lockstep_blocks_done + 1);
  g_lockstep_blocks.fetch_add(lockstep_blocks);
  g_free_running_blocks.fetch_add(launch.free_running_blocks);
  if (launch.failed.load()) throw std::runtime_error(launch.error);
}

void sync_block() {
  Launch& launch = collective_launch("__syncthreads");
  launch.block_sync.arrive_and_wait();
}

void sync_warp(unsigned mask) {
  collective_launch("__syncwarp");
  ThreadContext& context = t_context;
  context.warp->barrier.arrive_and_wait();
  check_mask_covers_live_lanes(context, mask, context.warp->live_lanes_at_last_phase, "__syncwarp");
}

uint64_t warp_shuffle(unsigned mask, uint64_t bits, unsigned source_lane) {
  collective_launch("warp shuffle");
  ThreadContext& context = t_context;
  WarpState& warp = *context.warp;
  const unsigned buffer = context.exchanges++ & 1u;
  warp.slots[buffer][context.lane] = bits;
  warp.barrier.arrive_and_wait();
  const unsigned live = warp.live_lanes_at_last_phase;
  check_mask_covers_live_lanes(context, mask, live, "warp shuffle");
  // Reading a lane that has exited or does not exist is undefined on a GPU;
  // here it yields all-one bits so that the mistake shows.
  if (source_lane >= 32 || (live >> source_lane & 1u) == 0) return kInactiveLaneBits;
  return warp.slots[buffer][source_lane];
}

unsigned warp_vote(unsigned mask, bool predicate, unsigned* live_out) {
  collective_launch("warp vote");
  ThreadContext& context = t_context;
  WarpState& warp = *context.warp;
  const unsigned buffer = context.exchanges++ & 1u;
  warp.slots[buffer][context.lane] = predicate ? 1 : 0;
  warp.barrier.arrive_and_wait();
  const unsigned live = warp.live_lanes_at_last_phase;
  check_mask_covers_live_lanes(context, mask, live, "warp vote");
  unsigned votes = 0;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if ((live >> lane & 1u) != 0 && warp.slots[buffer][lane] != 0) votes |= 1u << lane;
  }
  *live_out = live;
  return votes;
}

unsigned active_lanes() {
  ThreadContext& context = current_thread("__activemask");
  return context.warp->member_lanes & ~context.warp->exited_lanes.load(std::memory_order_relaxed);
}

bool is_device_range(const void* ptr, size_t bytes) {
  if (bytes == 0) return true;
  const auto [start, size] = find_allocation(ptr);
  if (size == 0) return false;
  const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
  return bytes <= start + size - address;
}

std::string describe_range_problem(const void* ptr, size_t bytes) {
  std::ostringstream out;
  out << "[" << ptr << ", +" << bytes << " bytes) ";
  const auto [start, size] = find_allocation(ptr);
  if (size == 0) {
    out << "is not inside any live cudaMalloc allocation (a host or freed pointer?)";
  } else {
    const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
    out << "overruns the allocation [" << reinterpret_cast<const void*>(start) << ", +" << size
        << " bytes) by " << (address + bytes - (start + size)) << " bytes";
  }
  return out.str();
}

// The one capture (CUDA allows one per stream; the engine captures one stream).
struct Capture {
  std::mutex mutex;
  std::atomic<bool> active{false};
  bool invalidated = false;
  cudaStream_t stream = nullptr;
  std::vector<std::function<void()>> work;
};
Capture& capture() {
  static Capture c;
  return c;
}

bool capturing() { return capture().active.load(); }

bool submit(cudaStream_t stream, std::function<void()> work) {
  Capture& c = capture();
  if (c.active.load()) {
    std::unique_lock<std::mutex> lock(c.mutex);
    if (c.active.load()) {  // checked again under the lock: the capture may have ended meanwhile
      if (stream != c.stream) {
        c.invalidated = true;
        return false;
      }
      c.work.push_back(std::move(work));
      return true;
    }
  }
  work();
  return true;
}

bool refuse_while_capturing() {
  Capture& c = capture();
  if (!c.active.load()) return false;
  std::lock_guard<std::mutex> lock(c.mutex);
  c.invalidated = true;
  return true;
}

}  // namespace detail
}  // namespace emu

struct CUgraph_st {
  std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> work;
};

// ---------------------------------------------------------------------------
// CUDA runtime stand-ins.
using emu::device_visible;
using emu::note;

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
  }
  return "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
  }
  return "cudaErrorUnknown";
}

cudaError_t cudaGetLastError() {
  const cudaError_t error = emu::t_last_error;
  emu::t_last_error = cudaSuccess;
  return error;
}

cudaError_t cudaPeekAtLastError() { return emu::t_last_error; }

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return note(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (bytes == 0) return cudaSuccess;
  // Refuse sizes the machine cannot hold before asking the allocator (under
  // AddressSanitizer an absurd request aborts instead of failing).
  if (bytes > emu::emulated_global_memory_bytes()) return note(cudaErrorMemoryAllocation);
  unsigned char* memory = new (std::nothrow) unsigned char[bytes];
  if (memory == nullptr) return note(cudaErrorMemoryAllocation);
  // Fresh device memory is garbage on a GPU; make it NaN here, so an output a
  // kernel forgot to write shows up.
  std::memset(memory, 0xff, bytes);
  emu::Allocations& registry = emu::allocations();
  {
    std::lock_guard<std::mutex> lock(registry.mutex);
    registry.sizes.emplace(reinterpret_cast<uintptr_t>(memory), bytes);
    registry.live_bytes += bytes;
  }
  *ptr = memory;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureUnsupported);
  emu::Allocations& registry = emu::allocations();
  {
    std::lock_guard<std::mutex> lock(registry.mutex);
    auto it = registry.sizes.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == registry.sizes.end()) return note(cudaErrorInvalidValue);
    registry.live_bytes -= it->second;
    registry.sizes.erase(it);
  }
  emu::detail::DeviceWorkLock lock;  // not while a kernel may still use it
  delete[] static_cast<unsigned char*>(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureImplicit);
  return emu::copy_checked(dst, src, bytes, kind);
}

// Checked when queued (as a GPU checks the pointers' kinds), copied when run.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!emu::detail::capturing()) return emu::copy_checked(dst, src, bytes, kind);
  if (const cudaError_t status = emu::check_copy(dst, src, bytes, kind); status != cudaSuccess) return status;
  const bool queued = emu::detail::submit(stream, [=] {
    if (emu::copy_checked(dst, src, bytes, kind) != cudaSuccess)
      throw std::runtime_error("emu: a captured cudaMemcpyAsync of " + std::to_string(bytes) +
                               " bytes found its operands invalid at replay");
  });
  return queued ? cudaSuccess : note(cudaErrorStreamCaptureImplicit);
}

namespace {
cudaError_t memset_checked(void* ptr, int value, size_t bytes) {
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (bytes == 0) return cudaSuccess;
  if (!emu::detail::is_device_range(ptr, bytes)) return note(cudaErrorInvalidValue);
  emu::detail::DeviceWorkLock lock;
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureImplicit);
  return memset_checked(ptr, value, bytes);
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (!emu::detail::capturing()) return memset_checked(ptr, value, bytes);
  if (bytes > 0 && !emu::detail::is_device_range(ptr, bytes)) return note(cudaErrorInvalidValue);
  const bool queued = emu::detail::submit(stream, [=] {
    if (memset_checked(ptr, value, bytes) != cudaSuccess)
      throw std::runtime_error("emu: a captured cudaMemsetAsync found its range freed at replay");
  });
  return queued ? cudaSuccess : note(cudaErrorStreamCaptureImplicit);
}

cudaError_t cudaDeviceSynchronize() {
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureUnsupported);
  return device_visible() ? cudaSuccess : note(cudaErrorNoDevice);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  if (stream == nullptr) return note(cudaErrorInvalidValue);
  if (!device_visible()) return note(cudaErrorNoDevice);
  *stream = new CUstream_st;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return note(cudaErrorInvalidValue);
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureUnsupported);
  return device_visible() ? cudaSuccess : note(cudaErrorNoDevice);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (stream == nullptr) return note(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  emu::detail::Capture& c = emu::detail::capture();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.active.load()) return note(cudaErrorIllegalState);
  c.stream = stream;
  c.invalidated = false;
  c.work.clear();
  c.active.store(true);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return note(cudaErrorInvalidValue);
  *graph = nullptr;
  emu::detail::Capture& c = emu::detail::capture();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.active.load() || stream != c.stream) return note(cudaErrorIllegalState);
  c.active.store(false);
  std::vector<std::function<void()>> work = std::move(c.work);
  c.work.clear();
  if (c.invalidated) return note(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(work)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return note(cudaErrorInvalidValue);
  emu::detail::Capture& c = emu::detail::capture();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.active.load() || stream != c.stream) *status = cudaStreamCaptureStatusNone;
  else *status = c.invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (exec == nullptr || graph == nullptr) return note(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->work};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return note(cudaErrorInvalidValue);
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (emu::detail::capturing()) {  // a graph launched into a capture becomes part of it
    for (const auto& work : exec->work)
      if (!emu::detail::submit(stream, work)) return note(cudaErrorStreamCaptureImplicit);
    return cudaSuccess;
  }
  for (const auto& work : exec->work) work();
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (ptr == nullptr) return note(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (bytes == 0) return cudaSuccess;
  *ptr = std::malloc(bytes);
  return *ptr != nullptr ? cudaSuccess : note(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void* ptr) {
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureUnsupported);
  std::free(ptr);
  return cudaSuccess;
}

struct CUevent_st {
  bool recorded = false;
};

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  if (event == nullptr) return note(cudaErrorInvalidValue);
  if (!device_visible()) return note(cudaErrorNoDevice);
  *event = new CUevent_st;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return note(cudaErrorInvalidValue);
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (event == nullptr) return note(cudaErrorInvalidValue);
  event->recorded = true;  // all earlier work has already run
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return note(cudaErrorInvalidValue);
  if (emu::detail::refuse_while_capturing()) return note(cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return note(cudaErrorInvalidValue);
  *count = device_visible() ? 1 : 0;
  return device_visible() ? cudaSuccess : note(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (!device_visible()) return note(cudaErrorNoDevice);
  return device == 0 ? cudaSuccess : note(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return note(cudaErrorInvalidValue);
  if (!device_visible()) return note(cudaErrorNoDevice);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return note(cudaErrorInvalidValue);
  if (!device_visible()) return note(cudaErrorNoDevice);
  if (device != 0) return note(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "%s", "SIMT emulator");
  prop->major = 8;
  prop->minor = 0;
  prop->totalGlobalMem = emu::emulated_global_memory_bytes();
  prop->multiProcessorCount = 1;  // one block at a time
  prop->sharedMemPerBlock = emu::kMaxDynamicSharedBytes;
  prop->maxThreadsPerBlock = int(emu::kMaxThreadsPerBlock);
  prop->warpSize = warpSize;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (version == nullptr) return note(cudaErrorInvalidValue);
  *version = 13000;
  return cudaSuccess;
}

// Like a machine without a driver until the device is made visible.
cudaError_t cudaDriverGetVersion(int* version) {
  if (version == nullptr) return note(cudaErrorInvalidValue);
  *version = device_visible() ? 13000 : 0;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return note(cudaErrorInvalidValue);
  if (!device_visible()) return note(cudaErrorNoDevice);
  const size_t total = emu::emulated_global_memory_bytes();
  const uint64_t used = emu::stats().live_bytes;
  *total_bytes = total;
  *free_bytes = used < total ? size_t(total - used) : 0;
  return cudaSuccess;
}
