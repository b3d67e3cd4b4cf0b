// CPU twins of the row-wise softmax family: log-softmax, logsumexp and the
// fused softmax cross-entropy, each with its backward. All subtract the row
// maximum first, so logits of 1e3 neither overflow nor lose the answer.
#include <cmath>

#include "kernels/common/label_math.h"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// log(sum_j exp(row[j])), stable.
float row_logsumexp(const float* row, int64_t cols) {
  float max_value = -INFINITY;
  for (int64_t j = 0; j < cols; ++j) max_value = std::fmax(max_value, row[j]);
  if (!std::isfinite(max_value)) return max_value;
  double sum = 0.0;
  for (int64_t j = 0; j < cols; ++j) sum += std::exp(double(row[j]) - max_value);
  return float(max_value + std::log(sum));
}

}  // namespace

void log_softmax_cpu(const float* x, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = row_logsumexp(x + r * cols, cols);
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = x[r * cols + j] - lse;
  }
}

void log_softmax_backward_cpu(const float* dy, const float* y, float* dx, int64_t rows,
                              int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) sum += dy[r * cols + j];
    for (int64_t j = 0; j < cols; ++j)
      dx[r * cols + j] = float(dy[r * cols + j] - std::exp(y[r * cols + j]) * sum);
  }
}

void logsumexp_cpu(const float* x, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) y[r] = row_logsumexp(x + r * cols, cols);
}

void logsumexp_backward_cpu(const float* dy, const float* x, const float* y, float* dx,
                            int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j)
      dx[r * cols + j] = dy[r] * std::exp(x[r * cols + j] - y[r]);
}

void softmax_xent_cpu(const float* logits, const float* labels, float* loss, float* probs,
                      int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * cols;
    const float lse = row_logsumexp(row, cols);
    for (int64_t j = 0; j < cols; ++j) probs[r * cols + j] = std::exp(row[j] - lse);
    // A label that is not a class index gives NaN (as the CUDA twin does), never an out-of-bounds read.
    const float label = labels[r];
    const bool valid = label >= 0.0f && label < float(cols);
    loss[r] = valid ? lse - row[int64_t(label)] : NAN;
  }
}

void softmax_xent_backward_cpu(const float* dloss, const float* probs, const float* labels,
                               float* dlogits, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const bool valid = labels[r] >= 0.0f && labels[r] < float(cols);
    const int64_t label = valid ? int64_t(labels[r]) : -1;
    for (int64_t j = 0; j < cols; ++j)
      dlogits[r * cols + j] = valid ? dloss[r] * (probs[r * cols + j] - (j == label ? 1.0f : 0.0f)) : NAN;
  }
}

void margin_spec_cpu(const float* labels, float* spec, int64_t n, int64_t classes) {
  const int64_t rows = classes - 1;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < classes; ++c)
        spec[(s * rows + r) * classes + c] = margin_spec_entry(labels[s], r, c, classes);
}

void argmax_hits_cpu(const float* logits, const float* labels, float* hits, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) hits[r] = argmax_hit(logits + r * cols, cols, labels[r]);
}

void misclassified_rows_cpu(const float* logits, const float* labels, float* flags, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) flags[r] = misclassified_row(logits + r * cols, cols, labels[r]);
}

}  // namespace cte::kern
