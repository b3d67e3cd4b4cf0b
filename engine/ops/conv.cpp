// Convolutions: conv2d and its adjoint conv2d_transpose, on the CPU's
// direct lanes or im2col+GEMM / cuDNN through the conv2d_* kernel twins (kernels/cpu/conv.cpp,
// kernels/cuda/conv.cu), and the geometry check they share.
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::ops {

kern::ConvGeometry conv_geometry(const Shape& x, const Shape& w, int stride, int padding,
                                 const char* op) {
  if (x.ndim() != 4 || w.ndim() != 4)
    fail(op, "input is " + x.str() + " and weight " + w.str() + "; both must be 4-D (NCHW, OIHW)");
  if (x[1] != w[1])
    fail(op, "input is " + x.str() + ", weight expects " + std::to_string(w[1]) + " channel" +
                 (w[1] == 1 ? "" : "s"));
  if (stride < 1 || padding < 0)
    fail(op, "stride " + std::to_string(stride) + " and padding " + std::to_string(padding) +
                 " (need stride >= 1, padding >= 0)");
  kern::ConvGeometry g{};
  g.n = int(x[0]), g.c_in = int(x[1]), g.h_in = int(x[2]), g.w_in = int(x[3]);
  g.c_out = int(w[0]), g.kh = int(w[2]), g.kw = int(w[3]);
  g.stride = stride, g.padding = padding;
  g.h_out = kern::conv_output_extent(g.h_in, g.kh, stride, padding);
  g.w_out = kern::conv_output_extent(g.w_in, g.kw, stride, padding);
  if (g.h_out < 0 || g.w_out < 0)
    fail(op, "kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
                 " is larger than the padded input " + x.str());
  return g;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding) {
  const Device device = common_device("conv2d", {&x, &weight, &bias});
  const kern::ConvGeometry g = conv_geometry(x.shape(), weight.shape(), stride, padding, "conv2d");
  if (bias.defined() && (bias.ndim() != 1 || bias.shape()[0] != g.c_out))
    fail("conv2d", "bias is " + bias.shape().str() + ", expected (" + std::to_string(g.c_out) + ")");
  Tensor y = Tensor::empty(Shape{g.n, g.c_out, g.h_out, g.w_out}, device);
  // The bias goes into the kernel (the CPU's sums start from it), not into a pass of its own.
  CTE_RUN(device, conv2d_forward, x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, y.data(), g);
  if (should_record({&x, &weight, &bias}))
    record("conv2d", {x, weight, bias}, y, [x, weight, bias, g](const Tensor& dy) {
      if (x.requires_grad()) {
        Tensor dx = Tensor::empty(x.shape(), x.device());
        CTE_RUN(x.device(), conv2d_backward_data, dy.data(), weight.data(), dx.data(), g);
        accumulate_grad(x, dx);
      }
      if (weight.requires_grad()) {
        Tensor dw = Tensor::empty(weight.shape(), weight.device());
        CTE_RUN(x.device(), conv2d_backward_filter, x.data(), dy.data(), dw.data(), g);
        accumulate_grad(weight, dw);
      }
      if (bias.defined() && bias.requires_grad())  // (N, C, H, W) -> (C, 1, 1): H and W in one pass, then N
        accumulate_grad(bias, alias_with_shape(sum_to_shape(dy, Shape{g.c_out, 1, 1}), bias.shape()));
    });
  return y;
}

Tensor conv2d_transpose(const Tensor& dy, const Tensor& weight, int stride, int padding,
                        int h_in, int w_in) {
  const Device device = common_device("conv2d_transpose", {&dy, &weight});
  if (dy.ndim() != 4 || weight.ndim() != 4 || dy.shape()[1] != weight.shape()[0])
    fail("conv2d_transpose", "input is " + dy.shape().str() + ", weight " + weight.shape().str() +
                                 " (expects input (N, O, h, w) with O = weight's first extent)");
  const Shape x_shape{dy.shape()[0], weight.shape()[1], h_in, w_in};
  const kern::ConvGeometry g = conv_geometry(x_shape, weight.shape(), stride, padding, "conv2d_transpose");
  if (g.h_out != dy.shape()[2] || g.w_out != dy.shape()[3])
    fail("conv2d_transpose", "input " + dy.shape().str() + " does not match a convolution of " +
                                 x_shape.str() + " (which gives " + std::to_string(g.h_out) + "x" +
                                 std::to_string(g.w_out) + ")");
  Tensor dx = Tensor::empty(x_shape, device);
  CTE_RUN(device, conv2d_backward_data, dy.data(), weight.data(), dx.data(), g);
  if (should_record({&dy, &weight}))
    record("conv2d_transpose", {dy, weight}, dx, [dy, weight, g](const Tensor& grad) {
      // dx = T(w) dy is linear in dy and in w; its adjoints are the forward
      // convolution (for dy) and the filter gradient with grad as the input.
      if (dy.requires_grad()) {
        Tensor d_dy = Tensor::empty(dy.shape(), dy.device());
        CTE_RUN(dy.device(), conv2d_forward, grad.data(), weight.data(), nullptr, d_dy.data(), g);
        accumulate_grad(dy, d_dy);
      }
      if (weight.requires_grad()) {
        Tensor dw = Tensor::empty(weight.shape(), weight.device());
        CTE_RUN(dy.device(), conv2d_backward_filter, grad.data(), dy.data(), dw.data(), g);
        accumulate_grad(weight, dw);
      }
    });
  return dx;
}

}  // namespace cte::ops
