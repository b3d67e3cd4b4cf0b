// Reductions: sums and means over everything or over one axis, and
// sum_to_shape, which folds a broadcast gradient back onto its operand.
#include <algorithm>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::ops {
namespace {

// Views x as (outer, reduce, inner) around the axes [first, last] and sums the
// middle: one pass for adjacent axes (a conv bias gradient's H and W).
Tensor reduce_axes(const Tensor& x, int first, int last, float scale_factor, bool keepdim) {
  const Shape& s = x.shape();
  int64_t outer = 1, reduce = 1, inner = 1;
  for (int d = 0; d < first; ++d) outer *= s[d];
  for (int d = first; d <= last; ++d) reduce *= s[d];
  for (int d = last + 1; d < s.ndim(); ++d) inner *= s[d];
  std::vector<int64_t> dims = s.dims();
  if (keepdim) std::fill(dims.begin() + first, dims.begin() + last + 1, int64_t(1));
  else dims.erase(dims.begin() + first, dims.begin() + last + 1);
  Tensor y = Tensor::empty(Shape(dims), x.device());
  CTE_RUN(x.device(), reduce_sum, x.data(), y.data(), outer, reduce, inner, scale_factor);
  return y;
}

int resolve_axis(const char* op, const Tensor& x, int axis) {
  const int resolved = axis < 0 ? axis + x.ndim() : axis;
  if (resolved < 0 || resolved >= x.ndim())
    fail(op, "axis " + std::to_string(axis) + " out of range for shape " + x.shape().str());
  return resolved;
}

// Gradient of a (scaled) reduction: broadcast g back over the reduced axis.
Tensor expand_over_axis(const Tensor& g, const Shape& input, int axis, float factor) {
  std::vector<int64_t> kept = input.dims();
  kept[size_t(axis)] = 1;
  const Tensor g_kept = alias_with_shape(g, Shape(kept));
  return mul(g_kept, Tensor::full(input, factor, g.device()));
}

Tensor total(const char* op, const Tensor& x, float factor) {
  Tensor y = Tensor::empty(Shape{}, x.device());
  CTE_RUN(x.device(), reduce_sum, x.data(), y.data(), 1, x.numel(), 1, factor);
  if (should_record({&x}))
    record(op, {x}, y, [x, factor](const Tensor& g) {
      // d sum / dx = factor everywhere: scale a tensor of ones by g.
      Tensor ones = Tensor::full(x.shape(), factor, x.device());
      accumulate_grad(x, mul(ones, g));
    });
  return y;
}

Tensor along_axis(const char* op, const Tensor& x, int axis, bool keepdim, bool average) {
  const int a = resolve_axis(op, x, axis);
  const int64_t extent = x.shape()[a];
  const float factor = average ? (extent > 0 ? 1.0f / float(extent) : 0.0f) : 1.0f;
  Tensor y = reduce_axes(x, a, a, factor, keepdim);
  if (should_record({&x}))
    record(op, {x}, y, [x, a, factor](const Tensor& g) {
      accumulate_grad(x, expand_over_axis(g, x.shape(), a, factor));
    });
  return y;
}

}  // namespace

Tensor sum(const Tensor& x) { return total("sum", x, 1.0f); }
Tensor mean(const Tensor& x) {
  if (x.numel() == 0) fail("mean", "mean of an empty tensor " + x.shape().str());
  return total("mean", x, 1.0f / float(x.numel()));
}
Tensor sum_axis(const Tensor& x, int axis, bool keepdim) { return along_axis("sum_axis", x, axis, keepdim, false); }
Tensor mean_axis(const Tensor& x, int axis, bool keepdim) { return along_axis("mean_axis", x, axis, keepdim, true); }

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  // Align on the right; sum every axis where the target has extent 1 (or is missing).
  const int lead = x.ndim() - shape.ndim();
  if (lead < 0) fail("sum_to_shape", "cannot reduce " + x.shape().str() + " to " + shape.str());
  // Each run of adjacent axes to sum is one pass: (N, C, H, W) -> (C, 1, 1) sums H and W
  // together, then N (each pass a float result, so a run summed at once rounds once).
  auto target = [&](int d) { return d < lead ? int64_t(1) : shape[d - lead]; };
  Tensor current = x;
  for (int d = x.ndim() - 1; d >= 0; --d) {
    if (current.shape()[d] == target(d)) continue;
    if (target(d) != 1) fail("sum_to_shape", "cannot reduce " + x.shape().str() + " to " + shape.str());
    int first = d;
    while (first > 0 && target(first - 1) == 1) --first;
    current = reduce_axes(current, first, d, 1.0f, /*keepdim=*/true);
    d = first;
  }
  return alias_with_shape(current, shape);
}

}  // namespace cte::ops
