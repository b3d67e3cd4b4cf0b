// Shape ops: reshape and flatten share storage; transpose, slicing and
// concatenation along the batch axis copy.
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::ops {

namespace {

// The backward of a reshape: g's buffer under x's shape. g is dropped first, so
// when the tape held the only other reference accumulate_grad adopts the
// buffer instead of copying it (1.6% of the natural CONV step was that copy).
Tensor take_as_shape(Tensor g, const Shape& shape) {
  Tensor view = alias_with_shape(g, shape);
  g = Tensor();
  return view;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  if (shape.numel() != x.numel())
    fail("reshape", "cannot reshape " + x.shape().str() + " (" + std::to_string(x.numel()) +
                        " elements) to " + shape.str());
  Tensor y = alias_with_shape(x, shape);
  if (should_record({&x}))
    record("reshape", {x}, y, [x](Tensor g) { accumulate_grad(x, take_as_shape(std::move(g), x.shape())); });
  return y;
}

Tensor flatten(const Tensor& x) {
  if (x.ndim() < 1) fail("flatten", "needs a batch axis, got shape " + x.shape().str());
  int64_t rest = 1;
  for (int d = 1; d < x.ndim(); ++d) rest *= x.shape()[d];
  Tensor y = alias_with_shape(x, Shape{x.shape()[0], rest});
  if (should_record({&x}))
    record("flatten", {x}, y, [x](Tensor g) { accumulate_grad(x, take_as_shape(std::move(g), x.shape())); });
  return y;
}

Tensor transpose(const Tensor& x) {
  if (x.ndim() < 2) fail("transpose", "needs at least 2 axes, got shape " + x.shape().str());
  const int64_t rows = x.shape()[-2], cols = x.shape()[-1];
  const int64_t batch = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  std::vector<int64_t> dims = x.shape().dims();
  std::swap(dims[dims.size() - 1], dims[dims.size() - 2]);
  Tensor y = Tensor::empty(Shape(dims), x.device());
  CTE_RUN(x.device(), transpose, x.data(), y.data(), batch, rows, cols);
  if (should_record({&x}))
    record("transpose", {x}, y, [x](const Tensor& g) { accumulate_grad(x, transpose(g)); });
  return y;
}

Tensor slice_batch(const Tensor& x, int64_t begin, int64_t end) {
  if (x.ndim() < 1) fail("slice_batch", "needs a batch axis, got shape " + x.shape().str());
  const int64_t n = x.shape()[0];
  if (begin < 0 || end < begin || end > n)
    fail("slice_batch", "rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") out of range for shape " + x.shape().str());
  const int64_t row = n == 0 ? 0 : x.numel() / n;
  std::vector<int64_t> dims = x.shape().dims();
  dims[0] = end - begin;
  Tensor y = Tensor::empty(Shape(dims), x.device());
  copy_elements(y, 0, x, begin * row, (end - begin) * row);
  if (should_record({&x}))
    record("slice_batch", {x}, y, [x, begin, row](const Tensor& g) {
      Tensor full_grad = Tensor::zeros(x.shape(), x.device());
      copy_elements(full_grad, begin * row, g, 0, g.numel());
      accumulate_grad(x, full_grad);
    });
  return y;
}

Tensor concat_batch(const std::vector<Tensor>& parts) {
  if (parts.empty()) fail("concat_batch", "no tensors to concatenate");
  const Tensor& first = parts[0];
  int64_t rows = 0;
  for (const Tensor& p : parts) {
    if (p.device() != first.device())
      fail("concat_batch", "tensors on different devices: " + std::string(device_name(first.device())) +
                               " and " + device_name(p.device()));
    if (p.ndim() != first.ndim() || p.ndim() < 1)
      fail("concat_batch", "shapes " + first.shape().str() + " and " + p.shape().str() + " differ in rank");
    for (int d = 1; d < p.ndim(); ++d)
      if (p.shape()[d] != first.shape()[d])
        fail("concat_batch", "shapes " + first.shape().str() + " and " + p.shape().str() +
                                 " differ beyond the batch axis");
    rows += p.shape()[0];
  }
  std::vector<int64_t> dims = first.shape().dims();
  dims[0] = rows;
  Tensor y = Tensor::empty(Shape(dims), first.device());
  int64_t offset = 0;
  for (const Tensor& p : parts) {
    copy_elements(y, offset, p, 0, p.numel());
    offset += p.numel();
  }
  if (should_record(parts))
    record("concat_batch", parts, y, [parts](const Tensor& g) {
      int64_t at = 0;
      for (const Tensor& p : parts) {
        if (p.requires_grad()) {
          Tensor piece = Tensor::empty(p.shape(), p.device());
          copy_elements(piece, 0, g, at, p.numel());
          accumulate_grad(p, piece);
        }
        at += p.numel();
      }
    });
  return y;
}

}  // namespace cte::ops
