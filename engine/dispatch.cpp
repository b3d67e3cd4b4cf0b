// The kernel log and profile of CTE_RUN (engine/dispatch.h).
#include "engine/dispatch.h"

#include <algorithm>
#include <chrono>

#include "engine/tensor.h"
#include "kernels/gpu_runtime.h"

namespace cte {

thread_local KernelLog* detail::open_kernel_log = nullptr;

KernelLog::KernelLog() {
  if (detail::open_kernel_log) fail("KernelLog", "a kernel log is already open on this thread (logs do not nest)");
  detail::open_kernel_log = this;
}

KernelLog::~KernelLog() { detail::open_kernel_log = nullptr; }

thread_local KernelProfile* detail::open_kernel_profile = nullptr;
thread_local bool KernelTimer::timing_ = false;

KernelProfile::KernelProfile() {
  if (detail::open_kernel_profile)
    fail("KernelProfile", "a kernel profile is already open on this thread (profiles do not nest)");
  detail::open_kernel_profile = this;
}

KernelProfile::~KernelProfile() { detail::open_kernel_profile = nullptr; }

std::vector<KernelProfile::Entry> KernelProfile::entries() const {
  std::vector<Entry> sorted = by_stem_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return sorted;
}

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void KernelTimer::start(const char* stem, Device device) {
  if (device != Device::cpu) gpu::synchronize();  // the launches queued before are not this kernel's
  stem_ = stem;
  device_ = device;
  timing_ = true;
  start_ns_ = now_ns();
}

void KernelTimer::stop() {
  if (device_ != Device::cpu) gpu::synchronize();
  const double seconds = double(now_ns() - start_ns_) * 1e-9;
  timing_ = false;
  KernelProfile* profile = detail::open_kernel_profile;
  if (!profile) return;  // closed while the kernel ran (it threw through the profile's scope)
  for (KernelProfile::Entry& e : profile->by_stem_)
    if (e.stem == stem_) {
      ++e.calls;
      e.seconds += seconds;
      return;
    }
  profile->by_stem_.push_back(KernelProfile::Entry{stem_, 1, seconds});
}

}  // namespace cte
