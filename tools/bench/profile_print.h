// --profile's lines under a benchmark line (bench_bounds, bench_train): the
// kernels taking at least 1% of the profiled time, and the time outside every
// kernel (tape, allocator, host code). `steps`: how many steps the profile
// covered; the seconds printed are per step.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "engine/dispatch.h"

namespace cte::bench {

inline void print_kernel_profile(const std::vector<KernelProfile::Entry>& kernels, double profiled_s,
                                 int64_t steps = 1) {
  const double per = 1.0 / double(std::max<int64_t>(steps, 1));
  double in_kernels = 0;
  for (const KernelProfile::Entry& e : kernels) in_kernels += e.seconds;
  const double step = std::max(profiled_s, 1e-12);
  std::printf("    profiled step %.4f s%s; kernel (CTE_RUN stem)      calls   seconds  share\n", profiled_s * per,
              steps > 1 ? " (mean of the profiled steps)" : "");
  for (const KernelProfile::Entry& e : kernels)
    if (e.seconds >= 0.01 * step)
      std::printf("    %-44s %6.0f %9.4f %5.1f%%\n", e.stem.c_str(), double(e.calls) * per, e.seconds * per,
                  100.0 * e.seconds / step);
  const double outside = std::max(0.0, profiled_s - in_kernels);
  std::printf("    %-44s %6s %9.4f %5.1f%%\n", "(outside kernels: tape, allocator, host)", "", outside * per,
              100.0 * outside / step);
}

}  // namespace cte::bench
