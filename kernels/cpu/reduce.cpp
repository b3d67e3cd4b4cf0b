// CPU twins of reduce_sum: y[o, i] = scale * sum_r x[o, r, i], and of
// reduce_sum_abs: y = scale * sum |x|. One kernel covers a sum over one axis,
// over everything (outer = inner = 1) and the reduction of a broadcast gradient
// back to its operand's shape. Accumulates in double so long sums (a mean over
// a whole batch) lose no precision.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/kernels.h"

namespace cte::kern {

namespace {

// One row's sum (kAbs: of magnitudes) in double, as eight partial sums
// combined in a fixed order: a single running sum waits on each add's latency
// (4 cycles an element), eight independent ones fill one vector register.
template <bool kAbs = false>
double row_sum(const float* row, int64_t n) {
  const auto term = [](float v) { return double(kAbs ? std::fabs(v) : v); };
  double lane[8] = {};
  int64_t r = 0;
  for (; r + 8 <= n; r += 8)
#pragma omp simd
    for (int k = 0; k < 8; ++k) lane[k] += term(row[r + k]);
  double sum = 0.0;
  for (int k = 0; k < 8; ++k) sum += lane[k];
  for (; r < n; ++r) sum += term(row[r]);
  return sum;
}

// A sum over a whole tensor (the L1 term, the step's finiteness probe over all
// gradients: hundreds of thousands of floats) is cut into fixed blocks, summed
// in parallel and combined in block order: the same result for any thread count.
constexpr int64_t kSumBlock = int64_t(1) << 14;

template <bool kAbs>
float whole_sum(const float* x, int64_t n, float scale) {
  if (n <= 2 * kSumBlock) return float(row_sum<kAbs>(x, n) * scale);
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  thread_local std::vector<double> partial;
  partial.resize(size_t(blocks));
  double* sums = partial.data();
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) sums[b] = row_sum<kAbs>(x + b * kSumBlock, std::min(kSumBlock, n - b * kSumBlock));
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b) sum += sums[b];
  return float(sum * scale);
}

}  // namespace

void reduce_sum_cpu(const float* x, float* y, int64_t outer, int64_t reduce, int64_t inner,
                    float scale) {
  if (inner == 1 && outer == 1) {
    y[0] = whole_sum<false>(x, reduce, scale);
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

void reduce_sum_abs_cpu(const float* x, float* y, int64_t n, float scale) { y[0] = whole_sum<true>(x, n, scale); }

}  // namespace cte::kern
