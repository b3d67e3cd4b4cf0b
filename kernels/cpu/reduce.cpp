// CPU twin of reduce_sum: y[o, i] = scale * sum_r x[o, r, i]. One kernel covers
// a sum over one axis, over everything (outer = inner = 1) and the reduction
// of a broadcast gradient back to its operand's shape. Accumulates in double
// so long sums (a mean over a whole batch) lose no precision.
#include <cstddef>
#include <vector>

#include "kernels/kernels.h"

namespace cte::kern {

void reduce_sum_cpu(const float* x, float* y, int64_t outer, int64_t reduce, int64_t inner,
                    float scale) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * reduce > 32768)
    for (int64_t o = 0; o < outer; ++o) {
      double sum = 0.0;
      const float* row = x + o * reduce;
      for (int64_t r = 0; r < reduce; ++r) sum += row[r];
      y[o] = float(sum * scale);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (outer * reduce * inner > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    std::vector<double> sums(size_t(inner), 0.0);
    for (int64_t r = 0; r < reduce; ++r) {
      const float* row = x + (o * reduce + r) * inner;
      for (int64_t i = 0; i < inner; ++i) sums[size_t(i)] += row[i];
    }
    for (int64_t i = 0; i < inner; ++i) y[o * inner + i] = float(sums[size_t(i)] * scale);
  }
}

}  // namespace cte::kern
