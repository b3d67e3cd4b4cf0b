// CUDA twins of the row-wise softmax family: log_softmax, logsumexp and the
// fused softmax cross-entropy, each with its backward. Kernels that need a
// row statistic (max, sum of exponentials, sum of gradients) run one block per
// row, grid-striding over rows, with deterministic block reductions
// (block_reduce.cuh); the rest are element-wise. Every row subtracts its maximum
// before exponentiating, so logits of 1e3 neither overflow nor lose the answer.
#include <math.h>

#include <algorithm>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/common/label_math.h"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

// A label stored as a float, as an index into [0, cols), or -1 when it is not one
// (NaN, negative, too large), so a bad label gives NaN instead of a stray read.
__device__ int64_t label_index(float label, int64_t cols) {
  return label >= 0.0f && label < float(cols) ? int64_t(label) : -1;
}

// log(sum_j exp(row[j])) of one row, computed by the whole block (every thread
// must call it and gets the result). An infinite or NaN maximum is returned as
// is: all threads see the same maximum, so they all take the same branch.
__device__ float block_row_logsumexp(const float* row, int64_t cols, float* shared) {
  float max_value = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    max_value = nan_propagating_max(max_value, row[j]);
  max_value = gpu::block_reduce(max_value, shared, gpu::MaxOp{});
  if (!isfinite(max_value)) return max_value;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += expf(row[j] - max_value);
  sum = gpu::block_reduce(sum, shared, gpu::SumOp{});
  return max_value + logf(sum);
}

// x, y: [rows, cols]; one block per row.
__global__ void log_softmax_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  CTE_DYNAMIC_SHARED(float, shared);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = x + r * cols;
    const float lse = block_row_logsumexp(row, cols, shared);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) y[r * cols + j] = row[j] - lse;
  }
}

// dy, y, dx: [rows, cols]; one block per row. dx = dy - exp(y) * sum_j dy.
__global__ void log_softmax_backward_kernel(const float* dy, const float* y, float* dx,
                                            int64_t rows, int64_t cols) {
  CTE_DYNAMIC_SHARED(float, shared);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = r * cols;
    float partial = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) partial += dy[base + j];
    const float sum = gpu::block_reduce(partial, shared, gpu::SumOp{});
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      dx[base + j] = dy[base + j] - expf(y[base + j]) * sum;
  }
}

// x: [rows, cols], y: [rows]; one block per row.
__global__ void logsumexp_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  CTE_DYNAMIC_SHARED(float, shared);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float lse = block_row_logsumexp(x + r * cols, cols, shared);
    if (threadIdx.x == 0) y[r] = lse;
  }
}

// dy: [rows], x: [rows, cols], y: [rows], dx: [rows, cols]; element-wise.
__global__ void logsumexp_backward_kernel(const float* dy, const float* x, const float* y,
                                          float* dx, int64_t rows, int64_t cols) {
  CTE_GRID_STRIDE_LOOP(i, rows * cols) {
    const int64_t r = i / cols;
    dx[i] = dy[r] * expf(x[i] - y[r]);
  }
}

// logits: [rows, cols], labels: [rows], loss: [rows], probs: [rows, cols]; one block per row.
__global__ void softmax_xent_kernel(const float* logits, const float* labels, float* loss,
                                    float* probs, int64_t rows, int64_t cols) {
  CTE_DYNAMIC_SHARED(float, shared);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = logits + r * cols;
    const float lse = block_row_logsumexp(row, cols, shared);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      probs[r * cols + j] = expf(row[j] - lse);
    if (threadIdx.x == 0) {
      const int64_t label = label_index(labels[r], cols);
      loss[r] = label < 0 ? NAN : lse - row[label];
    }
  }
}

// dloss: [rows], probs: [rows, cols], labels: [rows], dlogits: [rows, cols]; element-wise.
__global__ void softmax_xent_backward_kernel(const float* dloss, const float* probs,
                                             const float* labels, float* dlogits, int64_t rows,
                                             int64_t cols) {
  CTE_GRID_STRIDE_LOOP(i, rows * cols) {
    const int64_t r = i / cols, j = i % cols;
    const int64_t label = label_index(labels[r], cols);
    const float onehot = j == label ? 1.0f : 0.0f;
    dlogits[i] = label < 0 ? NAN : dloss[r] * (probs[i] - onehot);
  }
}

// labels: [n], spec: [n, classes-1, classes]; element-wise.
__global__ void margin_spec_kernel(const float* labels, float* spec, int64_t n, int64_t classes) {
  const int64_t rows = classes - 1;
  CTE_GRID_STRIDE_LOOP(i, n * rows * classes) {
    const int64_t c = i % classes, r = i / classes % rows, s = i / (classes * rows);
    spec[i] = margin_spec_entry(labels[s], r, c, classes);
  }
}

// logits: [rows, cols], labels: [rows], hits: [rows]; one thread per row (cols is a
// handful of classes).
__global__ void argmax_hits_kernel(const float* logits, const float* labels, float* hits, int64_t rows,
                                   int64_t cols) {
  CTE_GRID_STRIDE_LOOP(r, rows) { hits[r] = argmax_hit(logits + r * cols, cols, labels[r]); }
}

// logits: [rows, cols], labels: [rows], flags: [rows]; one thread per row.
__global__ void misclassified_rows_kernel(const float* logits, const float* labels, float* flags, int64_t rows,
                                          int64_t cols) {
  CTE_GRID_STRIDE_LOOP(r, rows) { flags[r] = misclassified_row(logits + r * cols, cols, labels[r]); }
}

using gpu::row_launch;
using gpu::RowLaunch;

}  // namespace

void log_softmax_cuda(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const RowLaunch shape = row_launch(rows, cols);
  gpu::launch("log_softmax", shape.grid, shape.block, shape.shared_bytes, log_softmax_kernel, x,
              y, rows, cols);
}

void log_softmax_backward_cuda(const float* dy, const float* y, float* dx, int64_t rows,
                               int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const RowLaunch shape = row_launch(rows, cols);
  gpu::launch("log_softmax_backward", shape.grid, shape.block, shape.shared_bytes,
              log_softmax_backward_kernel, dy, y, dx, rows, cols);
}

void logsumexp_cuda(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows <= 0) return;  // cols == 0 is fine: the empty sum gives -inf
  const RowLaunch shape = row_launch(rows, cols);
  gpu::launch("logsumexp", shape.grid, shape.block, shape.shared_bytes, logsumexp_kernel, x, y,
              rows, cols);
}

void logsumexp_backward_cuda(const float* dy, const float* x, const float* y, float* dx,
                             int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  gpu::launch_1d("logsumexp_backward", rows * cols, logsumexp_backward_kernel, dy, x, y, dx, rows,
                 cols);
}

void softmax_xent_cuda(const float* logits, const float* labels, float* loss, float* probs,
                       int64_t rows, int64_t cols) {
  if (rows <= 0) return;
  const RowLaunch shape = row_launch(rows, cols);
  gpu::launch("softmax_xent", shape.grid, shape.block, shape.shared_bytes, softmax_xent_kernel,
              logits, labels, loss, probs, rows, cols);
}

void softmax_xent_backward_cuda(const float* dloss, const float* probs, const float* labels,
                                float* dlogits, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  gpu::launch_1d("softmax_xent_backward", rows * cols, softmax_xent_backward_kernel, dloss, probs,
                 labels, dlogits, rows, cols);
}

void margin_spec_cuda(const float* labels, float* spec, int64_t n, int64_t classes) {
  if (n <= 0 || classes < 2) return;
  gpu::launch_1d("margin_spec", n * (classes - 1) * classes, margin_spec_kernel, labels, spec, n, classes);
}

void argmax_hits_cuda(const float* logits, const float* labels, float* hits, int64_t rows, int64_t cols) {
  if (rows <= 0) return;
  gpu::launch_1d("argmax_hits", rows, argmax_hits_kernel, logits, labels, hits, rows, cols);
}

void misclassified_rows_cuda(const float* logits, const float* labels, float* flags, int64_t rows, int64_t cols) {
  if (rows <= 0) return;
  gpu::launch_1d("misclassified_rows", rows, misclassified_rows_kernel, logits, labels, flags, rows, cols);
}

}  // namespace cte::kern
