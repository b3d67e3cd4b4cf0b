// Box (interval bound propagation) as a centre-radius forward pass: each
// layer's box_step (relaxations/layers/<kind>.cpp): affine layers
// c' = W c + b, r' = |W| r; ReLU the fused box_relu op. The output box is
// [c - r, c + r]. With a
// specification and last-layer elision, C is folded into the last linear
// layer (W' = C W per sample, b' = C b); otherwise the logits' box is mapped
// through C by interval arithmetic. The same pass gives CROWN-IBP its
// intermediate bounds (box_forward).
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

// (N, n) x (N, K, n) per sample: out[s, k] = sum_j coeffs[s, k, j] x[s, j].
Tensor per_sample_apply(const Tensor& coeffs, const Tensor& x) {
  const int64_t batch = coeffs.size(0), rows = coeffs.size(1), n = coeffs.size(2);
  return ops::reshape(ops::matmul(coeffs, ops::reshape(x, Shape{batch, n, 1})), Shape{batch, rows});
}

}  // namespace

CentreRadiusPair box_of(const Tensor& lower0, const Tensor& upper0, bool sound) {
  const Tensor centre = ops::scale(ops::add(upper0, lower0), 0.5f);
  const Tensor radius = ops::scale(ops::sub(upper0, lower0), 0.5f);
  if (!sound) return {centre, radius};
  // [c - r, c + r] must contain [lower0, upper0] although c and r are rounded.
  return {centre, ops::add(radius, roundoff(ops::add(ops::abs(centre), radius), 4.0f))};
}

// SABR's shrinking box at an activation's input: u -> u (1 - shrink / 2)
// where l < 0 < u, then back to centre and radius (differentiable in c and r).
static CentreRadiusPair shrink_crossing_upper(const Tensor& c, const Tensor& r, float shrink) {
  const Tensor lower = ops::sub(c, r), upper = ops::add(c, r);
  const Tensor zero = Tensor::zeros(c.shape(), c.device());
  const Tensor crossing = ops::mul(ops::compare(lower, zero, kern::BinaryOp::lt),
                                   ops::compare(upper, zero, kern::BinaryOp::gt));
  const Tensor shrunk = ops::select(crossing, ops::scale(upper, 1.0f - 0.5f * shrink), upper);
  return {ops::scale(ops::add(shrunk, lower), 0.5f), ops::scale(ops::sub(shrunk, lower), 0.5f)};
}

CentreRadiusPair box_forward(const Network& net, const Tensor& centre0, const Tensor& radius0, size_t end,
                             std::vector<Tensor>* relu_lower, std::vector<Tensor>* relu_upper, bool sound,
                             size_t begin, float shrink) {
  const std::vector<Layer>& layers = net.layers();
  const int64_t batch = centre0.size(0);
  Tensor c = centre0, r = radius0;
  if (begin > 0 && begin < end) {  // a flat (N, n) box at level `begin`: the shape layers[begin] takes
    std::vector<int64_t> dims{batch};
    for (int64_t d : layers[begin].in_shape.dims()) dims.push_back(d);
    c = ops::reshape(c, Shape(dims));
    r = ops::reshape(r, Shape(dims));
  }
  for (size_t i = begin; i < end; ++i) {
    const Layer& layer = layers[i];
    const BoundRules& rules = bound_rules(layer);
    const bool activation = rules.role == LayerRole::activation;
    // Sound mode: the slack of this layer for inputs |a| <= |c| + r (computed before c and r move on).
    Tensor slack;
    if (sound && rules.role != LayerRole::reshape) {
      const Shape flat{batch, layer.in_shape.numel()};
      const Tensor magnitude = ops::reshape(ops::add(ops::abs(c), r), flat);
      slack = activation ? roundoff(magnitude, 8.0f) : affine_slack(layer, magnitude, batch, 0, AffineRoundings::box_step);
    }
    if (activation && relu_lower && relu_upper) {  // its input's bounds, for the relaxation that asked
      const Shape flat{batch, layer.in_shape.numel()};
      const Tensor cf = ops::reshape(c, flat), rf = ops::reshape(r, flat);
      (*relu_lower)[i] = ops::sub(cf, rf);
      (*relu_upper)[i] = ops::add(cf, rf);
      if (sound) {  // the rounding of c -+ r
        const Tensor rounding = roundoff(ops::add(ops::abs(cf), rf), 4.0f);
        (*relu_lower)[i] = ops::sub((*relu_lower)[i], rounding);
        (*relu_upper)[i] = ops::add((*relu_upper)[i], rounding);
      }
    }
    if (activation && shrink > 0.0f) {
      const CentreRadiusPair shrunk = shrink_crossing_upper(c, r, shrink);
      c = shrunk.centre;
      r = shrunk.radius;
    }
    const CentreRadiusPair out = rules.box_step(layer, c, r, batch);
    c = out.centre;
    r = out.radius;
    if (slack.defined()) r = ops::add(r, ops::reshape(slack, r.shape()));
  }
  const Shape flat{batch, end == 0 ? net.input_shape().numel() : layers[end - 1].out_shape.numel()};
  return {ops::reshape(c, flat), ops::reshape(r, flat)};
}

Bounds interval_spec(const Tensor& centre, const Tensor& radius, const Tensor& spec) {
  const Tensor c = per_sample_apply(spec, centre);
  const Tensor r = per_sample_apply(ops::abs(spec), radius);
  return Bounds{ops::sub(c, r), ops::add(c, r)};
}

size_t box_end(const Network& net, const Tensor& spec, const BoundOptions& options) {
  const std::vector<Layer>& layers = net.layers();
  const bool elide = spec.defined() && options.elide_last_layer && !layers.empty() &&
                     bound_rules(layers.back()).dense_rows;
  return elide ? layers.size() - 1 : layers.size();
}

Bounds box_output_bounds(const Network& net, const CentreRadiusPair& h, const Tensor& spec, const BoundOptions& options) {
  const std::vector<Layer>& layers = net.layers();
  const Tensor magnitude = options.sound ? ops::add(ops::abs(h.centre), h.radius) : Tensor();  // (N, n)
  if (box_end(net, spec, options) == layers.size()) {
    if (!spec.defined()) {
      const Bounds b{ops::sub(h.centre, h.radius), ops::add(h.centre, h.radius)};
      return options.sound ? widen(b, roundoff(magnitude, 4.0f)) : b;
    }
    const Bounds b = interval_spec(h.centre, h.radius, spec);
    if (!options.sound) return b;
    const float gamma = rounding_gamma(spec.size(2));  // C c and |C| r: dot products over the logits
    return widen(b, ops::scale(abs_coeffs_times(spec, magnitude), 2.0f * gamma));
  }
  const Layer& last = layers.back();
  const Tensor folded = ops::matmul(spec, last.weight);  // C W: (N, K, n_in)
  Tensor c = per_sample_apply(folded, h.centre);
  if (last.bias.defined()) {  // + C b
    const Tensor cb = ops::matmul(spec, ops::reshape(last.bias, Shape{last.bias.numel(), 1}));
    c = ops::add(c, ops::reshape(cb, c.shape()));
  }
  const Tensor r = per_sample_apply(ops::abs(folded), h.radius);
  const Bounds b{ops::sub(c, r), ops::add(c, r)};
  if (!options.sound) return b;
  // The last layer's slack with C folded into it, and the rounding of c -+ r.
  const Tensor last_slack = affine_slack(last, magnitude, h.centre.size(0), spec.size(1));
  return widen(b, ops::add(abs_coeffs_times(spec, last_slack), roundoff(ops::add(ops::abs(c), r), 8.0f)));
}

Bounds box_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                  const BoundOptions& options) {
  const CentreRadiusPair box0 = box_of(lower0, upper0, options.sound);
  const CentreRadiusPair h = box_forward(net, box0.centre, box0.radius, box_end(net, spec, options), nullptr, nullptr,
                                         options.sound, 0, options.box_shrink);
  return box_output_bounds(net, h, spec, options);
}

}  // namespace cte::relax
