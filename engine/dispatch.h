// The one place that picks a kernel twin: CTE_RUN(device, stem, args...)
// calls kern::stem_cpu on the CPU and kern::stem_cuda on CUDA (the twins of
// kernels/kernels.h and kernels/relax_kernels.h alike). Private to engine/
// and relaxations/ (kernels never see it). While a KernelLog is open on the
// thread (tests only), CTE_RUN also notes the stem it launched, so a test can
// compare what each op runs with the op table; otherwise the note is one
// thread-local pointer test.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "kernels/kernels.h"

#define CTE_RUN(device, stem, ...)                                            \
  do {                                                                        \
    ::cte::note_kernel(#stem);                                                \
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

namespace detail {
extern thread_local KernelLog* open_kernel_log;
}
inline void note_kernel(const char* stem) {
  if (detail::open_kernel_log) detail::open_kernel_log->stems_.push_back(stem);
}

// Throws "[op] inputs are on different devices: ..." unless all defined inputs share one.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);

// Copies `count` floats between two tensors' storage at element offsets (any devices).
void copy_elements(Tensor& dst, int64_t dst_offset, const Tensor& src, int64_t src_offset,
                   int64_t count);

}  // namespace cte
