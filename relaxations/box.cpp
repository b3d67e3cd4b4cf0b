// Box (interval bound propagation) as a centre-radius forward pass: linear
// c' = W c + b, r' = |W| r; conv likewise with |W| and no bias on r;
// normalize c' = (c - mean) * inv_std, r' = r * inv_std; flatten reshapes;
// ReLU is the fused box_relu op. The output box is [c - r, c + r]. With a
// specification and last-layer elision, C is folded into the last linear
// layer (W' = C W per sample, b' = C b); otherwise the logits' box is mapped
// through C by interval arithmetic. The same pass gives CROWN-IBP its
// intermediate bounds (box_forward).
#include "engine/ops.h"
#include "relaxations/relax_ops.h"

namespace cte::relax {
namespace {

// (N, n) x (N, K, n) per sample: out[s, k] = sum_j coeffs[s, k, j] x[s, j].
Tensor per_sample_apply(const Tensor& coeffs, const Tensor& x) {
  const int64_t batch = coeffs.size(0), rows = coeffs.size(1), n = coeffs.size(2);
  return ops::reshape(ops::matmul(coeffs, ops::reshape(x, Shape{batch, n, 1})), Shape{batch, rows});
}

}  // namespace

CentreRadiusPair box_forward(const Network& net, const Tensor& centre0, const Tensor& radius0, size_t end,
                             std::vector<Tensor>* relu_lower, std::vector<Tensor>* relu_upper) {
  const std::vector<Layer>& layers = net.layers();
  const int64_t batch = centre0.size(0);
  Tensor c = centre0, r = radius0;
  for (size_t i = 0; i < end; ++i) {
    const Layer& layer = layers[i];
    switch (layer.kind) {
      case LayerKind::linear:
        c = ops::linear(c, layer.weight, layer.bias);
        r = ops::matmul(r, ops::abs(layer.weight), false, true);
        break;
      case LayerKind::conv:
        c = ops::conv2d(c, layer.weight, layer.bias, layer.stride, layer.padding);
        r = ops::conv2d(r, ops::abs(layer.weight), Tensor(), layer.stride, layer.padding);
        break;
      case LayerKind::normalize:
        // inv_std > 0 (make_normalize checks std > 0), so |inv_std| = inv_std.
        c = ops::mul(ops::sub(c, layer.mean), layer.inv_std);
        r = ops::mul(r, layer.inv_std);
        break;
      case LayerKind::flatten:
        c = ops::flatten(c);
        r = ops::flatten(r);
        break;
      case LayerKind::relu: {
        if (relu_lower && relu_upper) {
          const Shape flat{batch, layer.in_shape.numel()};
          const Tensor cf = ops::reshape(c, flat), rf = ops::reshape(r, flat);
          (*relu_lower)[i] = ops::sub(cf, rf);
          (*relu_upper)[i] = ops::add(cf, rf);
        }
        const CentreRadiusPair out = box_relu(c, r);
        c = out.centre;
        r = out.radius;
        break;
      }
      default: fail("bounds", layer_label(net, i) + ": not supported by box");
    }
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
                     layers.back().kind == LayerKind::linear;
  return elide ? layers.size() - 1 : layers.size();
}

Bounds box_output_bounds(const Network& net, const CentreRadiusPair& h, const Tensor& spec, const BoundOptions& options) {
  const std::vector<Layer>& layers = net.layers();
  if (box_end(net, spec, options) == layers.size()) {
    if (spec.defined()) return interval_spec(h.centre, h.radius, spec);
    return Bounds{ops::sub(h.centre, h.radius), ops::add(h.centre, h.radius)};
  }
  const Layer& last = layers.back();
  const Tensor folded = ops::matmul(spec, last.weight);  // C W: (N, K, n_in)
  Tensor c = per_sample_apply(folded, h.centre);
  if (last.bias.defined()) {  // + C b
    const Tensor cb = ops::matmul(spec, ops::reshape(last.bias, Shape{last.bias.numel(), 1}));
    c = ops::add(c, ops::reshape(cb, c.shape()));
  }
  const Tensor r = per_sample_apply(ops::abs(folded), h.radius);
  return Bounds{ops::sub(c, r), ops::add(c, r)};
}

Bounds box_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                  const BoundOptions& options) {
  const Tensor centre0 = ops::scale(ops::add(upper0, lower0), 0.5f);
  const Tensor radius0 = ops::scale(ops::sub(upper0, lower0), 0.5f);
  const CentreRadiusPair h = box_forward(net, centre0, radius0, box_end(net, spec, options), nullptr, nullptr);
  return box_output_bounds(net, h, spec, options);
}

}  // namespace cte::relax
