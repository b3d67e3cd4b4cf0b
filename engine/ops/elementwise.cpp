// Element-wise ops: forward kernel call, tape record and backward rule side by
// side. Binary ops broadcast like numpy; gradients of broadcast operands are
// summed back to their shapes with sum_to_shape.
#include <algorithm>
#include <cstring>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"

namespace cte {

Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!first) first = t;
    else if (t->device() != first->device())
      fail(op, std::string("inputs are on different devices: ") + device_name(first->device()) +
                   " and " + device_name(t->device()) + " (copy one with .to())");
  }
  if (!first) fail(op, "no defined input tensor");
  return first->device();
}

void copy_elements(Tensor& dst, int64_t dst_offset, const Tensor& src, int64_t src_offset,
                   int64_t count) {
  if (count <= 0) return;
  float* to = dst.data() + dst_offset;
  const float* from = src.data() + src_offset;
  const size_t bytes = size_t(count) * sizeof(float);
  const Device a = src.device(), b = dst.device();
  if (a == Device::cpu && b == Device::cpu) std::memcpy(to, from, bytes);
  else if (a == Device::cpu) gpu::copy_host_to_device(to, from, bytes);
  else if (b == Device::cpu) gpu::copy_device_to_host(to, from, bytes);
  else gpu::copy_device_to_device(to, from, bytes);
}

namespace ops {
namespace {

using kern::BinaryOp;
using kern::UnaryOp;

// Result shape and per-operand strides of a numpy-style broadcast.
kern::Broadcast4 broadcast_geometry(const char* op, const Shape& a, const Shape& b, Shape* out) {
  const int ndim = std::max(a.ndim(), b.ndim());
  kern::Broadcast4 g{};
  std::vector<int64_t> out_dims(static_cast<size_t>(ndim));
  int64_t a_dims[4], b_dims[4], o_dims[4];
  for (int d = 0; d < 4; ++d) {
    const int from_right = 3 - d;  // position counted from the last axis
    a_dims[d] = from_right < a.ndim() ? a[a.ndim() - 1 - from_right] : 1;
    b_dims[d] = from_right < b.ndim() ? b[b.ndim() - 1 - from_right] : 1;
    if (a_dims[d] != b_dims[d] && a_dims[d] != 1 && b_dims[d] != 1)
      fail(op, "shapes " + a.str() + " and " + b.str() + " do not broadcast");
    o_dims[d] = (a_dims[d] == 1) ? b_dims[d] : a_dims[d];
  }
  int64_t a_stride = 1, b_stride = 1;
  for (int d = 3; d >= 0; --d) {
    g.out[d] = o_dims[d];
    g.a_stride[d] = a_dims[d] == 1 ? 0 : a_stride;
    g.b_stride[d] = b_dims[d] == 1 ? 0 : b_stride;
    a_stride *= a_dims[d];
    b_stride *= b_dims[d];
  }
  for (int i = 0; i < ndim; ++i) out_dims[size_t(i)] = o_dims[4 - ndim + i];
  *out = Shape(out_dims);
  return g;
}

Tensor binary_forward(const char* op, BinaryOp kind, const Tensor& a, const Tensor& b) {
  const Device device = common_device(op, {&a, &b});
  Shape out_shape;
  const kern::Broadcast4 g = broadcast_geometry(op, a.shape(), b.shape(), &out_shape);
  Tensor out = Tensor::empty(out_shape, device);
  CTE_RUN(device, binary, kind, a.data(), b.data(), out.data(), g);
  return out;
}

Tensor unary_forward(UnaryOp kind, const Tensor& x, float alpha = 0.0f, float beta = 0.0f) {
  Tensor y = Tensor::empty(x.shape(), x.device());
  CTE_RUN(x.device(), unary, kind, x.data(), y.data(), x.numel(), alpha, beta);
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("add", BinaryOp::add, a, b);
  if (should_record({&a, &b}))
    record("add", {a, b}, out, [a, b](const Tensor& g) {
      accumulate_grad(a, sum_to_shape(g, a.shape()));
      accumulate_grad(b, sum_to_shape(g, b.shape()));
    });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("sub", BinaryOp::sub, a, b);
  if (should_record({&a, &b}))
    record("sub", {a, b}, out, [a, b](const Tensor& g) {
      accumulate_grad(a, sum_to_shape(g, a.shape()));
      if (b.requires_grad()) accumulate_grad(b, sum_to_shape(neg(g), b.shape()));
    });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("mul", BinaryOp::mul, a, b);
  if (should_record({&a, &b}))
    record("mul", {a, b}, out, [a, b](const Tensor& g) {
      if (a.requires_grad()) accumulate_grad(a, sum_to_shape(mul(g, b), a.shape()));
      if (b.requires_grad()) accumulate_grad(b, sum_to_shape(mul(g, a), b.shape()));
    });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("div", BinaryOp::div, a, b);
  if (should_record({&a, &b}))
    record("div", {a, b}, out, [a, b, out](const Tensor& g) {
      if (a.requires_grad()) accumulate_grad(a, sum_to_shape(div(g, b), a.shape()));
      // d(a/b)/db = -(a/b)/b
      if (b.requires_grad()) accumulate_grad(b, sum_to_shape(neg(div(mul(g, out), b)), b.shape()));
    });
  return out;
}

namespace {
// min/max: the gradient goes to whichever operand was chosen (a on ties).
Tensor min_max(const char* op, BinaryOp kind, BinaryOp a_wins, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, kind, a, b);
  if (should_record({&a, &b}))
    record(op, {a, b}, out, [a, b, a_wins](const Tensor& g) {
      const Tensor a_chosen = compare(a, b, a_wins);  // already the broadcast shape of g
      Tensor zero = Tensor::zeros(g.shape(), g.device());
      if (a.requires_grad()) accumulate_grad(a, sum_to_shape(select(a_chosen, g, zero), a.shape()));
      if (b.requires_grad()) accumulate_grad(b, sum_to_shape(select(a_chosen, zero, g), b.shape()));
    });
  return out;
}
}  // namespace

Tensor minimum(const Tensor& a, const Tensor& b) { return min_max("minimum", BinaryOp::min, BinaryOp::le, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return min_max("maximum", BinaryOp::max, BinaryOp::ge, a, b); }

Tensor compare(const Tensor& a, const Tensor& b, BinaryOp op) {
  if (op != BinaryOp::gt && op != BinaryOp::ge && op != BinaryOp::lt && op != BinaryOp::le &&
      op != BinaryOp::eq)
    fail("compare", "op must be a comparison (gt, ge, lt, le, eq)");
  return binary_forward("compare", op, a, b);
}

Tensor select(const Tensor& mask, const Tensor& a, const Tensor& b) {
  const Device device = common_device("select", {&mask, &a, &b});
  if (mask.shape() != a.shape() || a.shape() != b.shape())
    fail("select", "mask " + mask.shape().str() + ", a " + a.shape().str() + " and b " +
                       b.shape().str() + " must have one shape");
  Tensor out = Tensor::empty(a.shape(), device);
  CTE_RUN(device, select, mask.data(), a.data(), b.data(), out.data(), a.numel());
  if (should_record({&a, &b}))
    record("select", {mask, a, b}, out, [mask, a, b](const Tensor& g) {
      Tensor zero = Tensor::zeros(g.shape(), g.device());
      if (a.requires_grad()) accumulate_grad(a, select(mask, g, zero));
      if (b.requires_grad()) accumulate_grad(b, select(mask, zero, g));
    });
  return out;
}

Tensor scale(const Tensor& x, float factor) {
  Tensor y = unary_forward(UnaryOp::scale, x, factor);
  if (should_record({&x}))
    record("scale", {x}, y, [x, factor](const Tensor& g) { accumulate_grad(x, scale(g, factor)); });
  return y;
}

Tensor add_scalar(const Tensor& x, float value) {
  Tensor y = unary_forward(UnaryOp::add_scalar, x, value);
  if (should_record({&x})) record("add_scalar", {x}, y, [x](const Tensor& g) { accumulate_grad(x, g); });
  return y;
}

Tensor neg(const Tensor& x) {
  Tensor y = unary_forward(UnaryOp::neg, x);
  if (should_record({&x})) record("neg", {x}, y, [x](const Tensor& g) { accumulate_grad(x, neg(g)); });
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = unary_forward(UnaryOp::abs, x);
  if (should_record({&x}))
    record("abs", {x}, y, [x](const Tensor& g) { accumulate_grad(x, binary_forward("abs", BinaryOp::mul_sign, g, x)); });
  return y;
}

// sum(abs(x)) in one pass and no temporary: the L1 penalty and the training
// step's finiteness probe over every gradient run it on each parameter.
Tensor sum_abs(const Tensor& x) {
  Tensor y = Tensor::empty(Shape{}, x.device());
  CTE_RUN(x.device(), reduce_sum_abs, x.data(), y.data(), x.numel(), 1.0f);
  if (should_record({&x}))
    record("sum_abs", {x}, y, [x](const Tensor& g) {  // g (a scalar) times sign(x), broadcast in one pass
      accumulate_grad(x, binary_forward("sum_abs", BinaryOp::mul_sign, g, x));
    });
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = unary_forward(UnaryOp::relu, x);
  if (should_record({&x}))
    record("relu", {x}, y, [x](const Tensor& g) { accumulate_grad(x, binary_forward("relu", BinaryOp::mul_positive, g, x)); });
  return y;
}

Tensor clamp(const Tensor& x, float lo, float hi) {
  if (!(lo <= hi)) fail("clamp", "lower limit " + std::to_string(lo) + " exceeds upper limit " + std::to_string(hi));
  Tensor y = unary_forward(UnaryOp::clamp, x, lo, hi);
  if (should_record({&x}))
    record("clamp", {x}, y, [x, lo, hi](const Tensor& g) {
      Tensor inside = mul(compare(x, Tensor::scalar(lo, x.device()), BinaryOp::ge),
                          compare(x, Tensor::scalar(hi, x.device()), BinaryOp::le));
      accumulate_grad(x, mul(g, inside));
    });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = unary_forward(UnaryOp::exp, x);
  if (should_record({&x})) record("exp", {x}, y, [x, y](const Tensor& g) { accumulate_grad(x, mul(g, y)); });
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = unary_forward(UnaryOp::log, x);
  if (should_record({&x})) record("log", {x}, y, [x](const Tensor& g) { accumulate_grad(x, div(g, x)); });
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = unary_forward(UnaryOp::sqrt, x);
  if (should_record({&x}))
    record("sqrt", {x}, y, [x, y](const Tensor& g) { accumulate_grad(x, scale(div(g, y), 0.5f)); });
  return y;
}

void add_into(Tensor& dst, const Tensor& src) {
  const Device device = common_device("add_into", {&dst, &src});
  if (dst.shape() != src.shape())
    fail("add_into", "shapes " + dst.shape().str() + " and " + src.shape().str() + " differ");
  Shape out_shape;
  const kern::Broadcast4 g = broadcast_geometry("add_into", dst.shape(), src.shape(), &out_shape);
  CTE_RUN(device, binary, BinaryOp::add, dst.data(), src.data(), dst.data(), g);
}

}  // namespace ops
}  // namespace cte
