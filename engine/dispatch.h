// The one place that picks a kernel twin: CTE_RUN(device, stem, args...)
// calls kern::stem_cpu on the CPU and kern::stem_cuda on CUDA. Private to
// engine/ and relaxations/ (kernels never see it).
#pragma once
#include <string>

#include "engine/tensor.h"
#include "kernels/kernels.h"

#define CTE_RUN(device, stem, ...)                                   \
  do {                                                               \
    if ((device) == ::cte::Device::cpu) ::cte::kern::stem##_cpu(__VA_ARGS__); \
    else ::cte::kern::stem##_cuda(__VA_ARGS__);                      \
  } while (0)

namespace cte {

// Throws "[op] inputs are on different devices: ..." unless all defined inputs share one.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);

// Copies `count` floats between two tensors' storage at element offsets (any devices).
void copy_elements(Tensor& dst, int64_t dst_offset, const Tensor& src, int64_t src_offset,
                   int64_t count);

}  // namespace cte
