// CPU twin of reduce_sum: y[o, i] = scale * sum_r x[o, r, i]. One kernel covers
// a sum over one axis, over everything (outer = inner = 1) and the reduction
// of a broadcast gradient back to its operand's shape. Accumulates in double
// so long sums (a mean over a whole batch) lose no precision.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/kernels.h"

namespace cte::kern {

namespace {

// One row's sum in double, as eight partial sums combined in a fixed order: a
// single running sum waits on each add's latency (4 cycles an element), eight
// independent ones fill one vector register.
double row_sum(const float* row, int64_t n) {
  double lane[8] = {};
  int64_t r = 0;
  for (; r + 8 <= n; r += 8)
#pragma omp simd
    for (int k = 0; k < 8; ++k) lane[k] += double(row[r + k]);
  double sum = 0.0;
  for (int k = 0; k < 8; ++k) sum += lane[k];
  for (; r < n; ++r) sum += double(row[r]);
  return sum;
}

// A sum over a whole tensor (the L1 term, the step's finiteness probe over all
// gradients: hundreds of thousands of floats) is cut into fixed blocks, summed
// in parallel and combined in block order: the same result for any thread count.
constexpr int64_t kSumBlock = int64_t(1) << 14;

}  // namespace

void reduce_sum_cpu(const float* x, float* y, int64_t outer, int64_t reduce, int64_t inner,
                    float scale) {
  if (inner == 1 && outer == 1 && reduce > 2 * kSumBlock) {
    const int64_t blocks = (reduce + kSumBlock - 1) / kSumBlock;
    thread_local std::vector<double> partial;
    partial.resize(size_t(blocks));
    double* sums = partial.data();
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b)
      sums[b] = row_sum(x + b * kSumBlock, std::min(kSumBlock, reduce - b * kSumBlock));
    double sum = 0.0;
    for (int64_t b = 0; b < blocks; ++b) sum += sums[b];
    y[0] = float(sum * scale);
    return;
  }
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * reduce > 32768)
    for (int64_t o = 0; o < outer; ++o) y[o] = float(row_sum(x + o * reduce, reduce) * scale);
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
