// hBox: DiffAI's hybrid zonotope, as the paper measured it. Each neuron is
// c + G e + [-b, b], with e in [-1, 1]^n0 the input's error terms. The centre
// c and the box radius b pass forward like Box's (each layer's hbox_step,
// relaxations/layers/<kind>.cpp: Box's step for affine layers); the symbolic part is
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
// Sparse path (BoundOptions::sparse_intermediate, the default, on the CPU): a neuron that
// the Box pass's bounds prove stable is stable under hBox too (hBox's
// interval is inside Box's at every layer: the interval hull of W times a set
// inside a box lies inside W's hull of that box), where hBox needs no
// generator norm (active: c, b and the row kept; dead: zero). Only the rest
// are backsubstituted; the result is the dense path's (tests/test_sparse_bounds.cpp).
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {

Bounds hbox_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                   const BoundOptions& options) {
  const std::vector<Layer>& layers = net.layers();
  BacksubContext ctx = make_backsub_context(net, lower0, upper0, ReluRule::hbox_symbolic,
                                            BacksubMode::generator_norm, options.memory_cap_bytes, options.sound);
  // On a GPU the dense path: picking rows reads the Box bounds on the host,
  // which a training step there must not wait for (and its FLOPs are cheap).
  if (options.sparse_intermediate && lower0.device() == Device::cpu)
    box_lower_upper(net, lower0, upper0, options.sound, ctx.cheap_lower, ctx.cheap_upper);
  const int64_t batch = ctx.batch;
  const size_t end = box_end(net, spec, options);  // the last layer's input with elision
  HboxState h{ops::scale(ops::add(upper0, lower0), 0.5f), Tensor()};  // (ctx.centre0 may be the normalized box)
  // h.box, the box radius, stays undefined (zero) until a ReLU is unstable.
  for (size_t i = 0; i < end; ++i) {
    const Layer& layer = layers[i];
    // Sound mode: the rounding of this affine layer (forward pass, c' and b')
    // goes into the box radius; ctx.magnitude bounds its input (from hBox's
    // own widened ReLU bounds). The rounding of the input box itself is in
    // the generator norms (the walker's input slack).
    const Tensor slack =
        options.sound ? affine_slack(layer, ctx.magnitude[i], batch, 0, AffineRoundings::box_step) : Tensor();
    h = bound_rules(layer).hbox_step(ctx, i, h);
    if (slack.defined()) {
      const Tensor widening = ops::reshape(slack, h.centre.shape());
      h.box = h.box.defined() ? ops::add(h.box, widening) : widening;
    }
  }
  const Tensor& c = h.centre;
  const Tensor& b = h.box;
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
