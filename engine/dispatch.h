// The one place that picks a kernel twin: CTE_RUN(device, stem, args...)
// calls kern::stem_cpu on the CPU and kern::stem_cuda on CUDA (the twins of
// kernels/kernels.h and kernels/relax_kernels.h alike). CTE_RUN is private
// to engine/ and relaxations/ (kernels never see it). While a KernelLog is
// open on the thread (tests only), CTE_RUN also notes the stem it launched,
// so a test can compare what each op runs with the op table; while a
// KernelProfile is open (the benchmarks' --profile) it times each launch;
// otherwise each is one thread-local pointer test.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "kernels/kernels.h"

#define CTE_RUN(device, stem, ...)                                            \
  do {                                                                        \
    ::cte::note_kernel(#stem);                                                \
    const ::cte::KernelTimer cte_kernel_timer_(#stem, (device));              \
    if ((device) == ::cte::Device::cpu) ::cte::kern::stem##_cpu(__VA_ARGS__); \
    else ::cte::kern::stem##_cuda(__VA_ARGS__);                               \
  } while (0)

namespace cte {

// The kernel stems CTE_RUN launched on this thread while the log is open (in
// launch order, repeats kept). Logs do not nest.
class KernelLog {
 public:
  KernelLog();
  ~KernelLog();
  KernelLog(const KernelLog&) = delete;
  KernelLog& operator=(const KernelLog&) = delete;
  const std::vector<std::string>& stems() const { return stems_; }
  void clear() { stems_.clear(); }

 private:
  friend void note_kernel(const char* stem);
  std::vector<std::string> stems_;
};

// Wall time per kernel stem of CTE_RUN on this thread while the profile is
// open (bench_bounds --profile): where a step's time goes,
// by the op table's names. On a GPU each timed launch synchronizes the
// device before and after, so a profiled step is slower than a real one; the
// shares are what it is for. A kernel launched from inside another's timing
// counts toward the outer one. Profiles do not nest.
class KernelProfile {
 public:
  struct Entry {
    std::string stem;
    int64_t calls = 0;
    double seconds = 0.0;
  };
  KernelProfile();
  ~KernelProfile();
  KernelProfile(const KernelProfile&) = delete;
  KernelProfile& operator=(const KernelProfile&) = delete;
  // Every stem timed so far, the costliest first.
  std::vector<Entry> entries() const;

 private:
  friend class KernelTimer;
  std::vector<Entry> by_stem_;  // few stems: a linear search beats a map
};

namespace detail {
extern thread_local KernelLog* open_kernel_log;
extern thread_local KernelProfile* open_kernel_profile;
}  // namespace detail
inline void note_kernel(const char* stem) {
  if (detail::open_kernel_log) detail::open_kernel_log->stems_.push_back(stem);
}

// Times one CTE_RUN launch into the open profile; nothing without one.
class KernelTimer {
 public:
  KernelTimer(const char* stem, Device device) {
    if (detail::open_kernel_profile && !timing_) start(stem, device);
  }
  ~KernelTimer() {
    if (stem_) stop();
  }
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  void start(const char* stem, Device device);
  void stop();
  static thread_local bool timing_;
  const char* stem_ = nullptr;
  Device device_ = Device::cpu;
  int64_t start_ns_ = 0;
};

// Throws "[op] inputs are on different devices: ..." unless all defined inputs share one.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);

// Copies `count` floats between two tensors' storage at element offsets (any devices).
void copy_elements(Tensor& dst, int64_t dst_offset, const Tensor& src, int64_t src_offset,
                   int64_t count);

}  // namespace cte
