// The kernel log of CTE_RUN (engine/dispatch.h).
#include "engine/dispatch.h"

#include "engine/tensor.h"

namespace cte {

thread_local KernelLog* detail::open_kernel_log = nullptr;

KernelLog::KernelLog() {
  if (detail::open_kernel_log) fail("KernelLog", "a kernel log is already open on this thread (logs do not nest)");
  detail::open_kernel_log = this;
}

KernelLog::~KernelLog() { detail::open_kernel_log = nullptr; }

}  // namespace cte
