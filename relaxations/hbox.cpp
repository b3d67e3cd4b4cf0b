// hBox: DiffAI's hybrid zonotope, as the paper measured it. Each neuron is
// c + G e + [-b, b], with e in [-1, 1]^n0 the input's error terms. The centre
// c and the box radius b pass forward like Box's (linear c' = W c + bias,
// b' = |W| b; conv likewise; normalize scales both); the symbolic part is
// G = A diag(r0), where A maps the input to the neuron through every layer
// with each ReLU replaced by its "keep" mask (1 where l >= 0: the row
// survives; 0 where the ReLU is dead or unstable: the row is dropped). Only
// ||G_row||_1 = |A| r0 is ever needed, and it is exactly what a
// backsubstitution with the hbox_symbolic rule computes (generator_norm mode),
// so A is built from the top with transposed convolutions instead of pushing
// the (N, n, n0) generator matrix forward through every layer: the same
// numbers at a fraction of the memory and time on convolutional networks.
// The fused hbox_relu op then gives, from l = c - |G|1 - b, u = c + |G|1 + b:
// l >= 0 unchanged; u <= 0 all zero; unstable c = b = u/2 with the row dropped.
// Output bounds are c -+ (||G||_1 + b), with C folded into the last linear
// layer (elision) or applied to the logits' bounds by interval arithmetic.
#include "engine/ops.h"
#include "relaxations/relax_ops.h"

namespace cte::relax {

Bounds hbox_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                   const BoundOptions& options) {
  const std::vector<Layer>& layers = net.layers();
  BacksubContext ctx = make_backsub_context(net, lower0, upper0, ReluRule::hbox_symbolic,
                                            BacksubMode::generator_norm, options.memory_cap_bytes, options.sound);
  const int64_t batch = ctx.batch;
  const size_t end = box_end(net, spec, options);  // the last layer's input with elision
  Tensor c = ops::scale(ops::add(upper0, lower0), 0.5f);  // (ctx.centre0 may be the normalized box)
  Tensor b;  // the box radius; undefined (zero) until a ReLU is unstable
  for (size_t i = 0; i < end; ++i) {
    const Layer& layer = layers[i];
    // Sound mode: the rounding of this affine layer (forward pass, c' and b')
    // goes into the box radius; ctx.magnitude bounds its input (from hBox's
    // own widened ReLU bounds). The rounding of the input box itself is in
    // the generator norms (the walker's input slack).
    const Tensor slack = options.sound ? affine_slack(layer, ctx.magnitude[i], batch) : Tensor();
    switch (layer.kind) {
      case LayerKind::linear:
        c = ops::linear(c, layer.weight, layer.bias);
        if (b.defined()) b = ops::matmul(b, ops::abs(layer.weight), false, true);
        break;
      case LayerKind::conv:
        c = ops::conv2d(c, layer.weight, layer.bias, layer.stride, layer.padding);
        if (b.defined()) b = ops::conv2d(b, ops::abs(layer.weight), Tensor(), layer.stride, layer.padding);
        break;
      case LayerKind::normalize:
        c = ops::mul(ops::sub(c, layer.mean), layer.inv_std);
        if (b.defined()) b = ops::mul(b, layer.inv_std);
        break;
      case LayerKind::flatten:
        c = ops::flatten(c);
        if (b.defined()) b = ops::flatten(b);
        break;
      case LayerKind::relu: {
        const Shape shape = c.shape(), flat{batch, layer.in_shape.numel()};
        Tensor g_norm = backsub_all_neurons(ctx, i).g_norm;
        const Tensor box = b.defined() ? ops::reshape(b, flat) : Tensor::zeros(flat, c.device());
        if (options.sound)  // the rounding of l, u = c -+ (g + b) and of u / 2, carried by g
          g_norm = ops::add(g_norm, roundoff(ops::add(ops::add(ops::abs(ops::reshape(c, flat)), g_norm), box), 8.0f));
        const HboxReluResult r = hbox_relu(ops::reshape(c, flat), g_norm, box);
        ctx.relu_lower[i] = r.lower;  // the keep masks of later backsubstitutions
        ctx.relu_upper[i] = r.upper;
        extend_magnitudes(ctx);
        c = ops::reshape(r.centre, shape);
        b = ops::reshape(r.box, shape);
        break;
      }
      default: fail("bounds", layer_label(net, i) + ": not supported by hbox");
    }
    if (slack.defined()) {
      const Tensor widening = ops::reshape(slack, c.shape());
      b = b.defined() ? ops::add(b, widening) : widening;
    }
  }
  // The box part c -+ b goes through Box's own last step (C folded into the
  // last layer, or applied to the logits' box); the symbolic part adds its
  // generator norm ||G||_1, of C z with elision, else of the logits.
  const Shape flat{batch, end == 0 ? net.input_shape().numel() : layers[end - 1].out_shape.numel()};
  const Tensor centre = ops::reshape(c, flat);
  Tensor radius = b.defined() ? ops::reshape(b, flat) : Tensor::zeros(flat, centre.device());
  if (end == layers.size()) {
    radius = ops::add(radius, backsub_all_neurons(ctx, layers.size()).g_norm);
    return box_output_bounds(net, {centre, radius}, spec, options);
  }
  const Bounds box = box_output_bounds(net, {centre, radius}, spec, options);
  const Tensor g_norm = backsub_spec(ctx, spec, true).g_norm;
  return Bounds{ops::sub(box.lower, g_norm), ops::add(box.upper, g_norm)};
}

}  // namespace cte::relax
