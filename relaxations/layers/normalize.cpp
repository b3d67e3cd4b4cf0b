// Normalize layer y = (x - mean) * inv_std per channel, bounded as the
// elementwise affine map y = scale x + shift over its flattened input
// (expand_normalize, the one place the channel statistics are spread over
// the neurons): Box c' = layer(c), r' = r * inv_std (inv_std > 0, checked by
// make_normalize); backsubstitution q += A shift, A = A * scale; sound mode
// one rounding per neuron; LP rows one diagonal entry each.
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

// The channel of flat neuron j of the layer's input.
size_t channel_of(const Layer& layer, size_t channels, int64_t j) {
  const int64_t n = layer.in_shape.numel();
  const int64_t plane = layer.in_shape.ndim() == 3 ? layer.in_shape[1] * layer.in_shape[2] : n;
  return channels == 1 ? 0 : size_t(j / plane);
}

Tensor radius_image(const Layer& layer, const Tensor& r) { return ops::mul(r, layer.inv_std); }

CentreRadiusPair box_step(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch) {
  return affine_box_step(layer, c, r, batch, radius_image);
}

int64_t dot_terms(const Layer&) { return 1; }

// A backsubstitution scales each coefficient: one rounding, no sum.
int64_t one_backsub_term(const Layer&) { return 1; }

Tensor abs_image(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias) {
  const NormalizeExpansion e = expand_normalize(layer, v.device());
  const Tensor scaled = ops::mul(ops::reshape(v, Shape{batch, layer.in_shape.numel()}), e.scale);
  return with_bias ? ops::add(scaled, ops::abs(e.shift)) : scaled;
}

LpAffineMap lp_rows(const Layer& layer) {
  LpAffineMap map;
  const std::vector<double> mean = lp_values_of(layer.mean), inv_std = lp_values_of(layer.inv_std);
  for (int64_t j = 0; j < layer.in_shape.numel(); ++j) {
    const size_t c = channel_of(layer, mean.size(), j);
    map.rows.push_back(LpTerms{{int(j), inv_std[c]}});
    map.constant.push_back(-mean[c] * inv_std[c]);
  }
  map.diagonal = true;
  return map;
}

}  // namespace

NormalizeExpansion expand_normalize(const Layer& layer, Device device) {
  // Constants (the statistics are not trained), spread to every neuron on the
  // device itself: a training step must not copy them through the host. The
  // values are channel_of's: scale_j = inv_std[c], shift_j = -mean[c] * inv_std[c].
  if (layer.mean.device() != device || layer.inv_std.device() != device)
    fail("normalize", std::string("the statistics live on ") + device_name(layer.mean.device()) + ", the bounds on " +
                          device_name(device));
  const int64_t n = layer.in_shape.numel(), channels = layer.mean.numel();
  const bool per_channel = channels > 1 && layer.in_shape.ndim() == 3;
  const int64_t groups = per_channel ? channels : 1, plane = n / groups;
  auto spread = [&](const Tensor& per_group) {  // (groups) -> (n), each value over its plane
    const Tensor column = ops::reshape(per_group, Shape{groups, 1});
    return ops::reshape(ops::mul(Tensor::full(Shape{groups, plane}, 1.0f, device), column), Shape{n});
  };
  // channel_of sends every neuron to channel 0 unless the input is (C, H, W) with C statistics.
  const Tensor mean = per_channel ? layer.mean : ops::slice_batch(ops::reshape(layer.mean, Shape{channels}), 0, 1);
  const Tensor inv_std =
      per_channel ? layer.inv_std : ops::slice_batch(ops::reshape(layer.inv_std, Shape{channels}), 0, 1);
  return {spread(inv_std), spread(ops::mul(ops::neg(mean), inv_std))};
}

const BoundRules kBoundRules_normalize{LayerRole::elementwise, false,     box_step, elementwise_backsub_step, hbox_box_step,
                                       dot_terms,              one_backsub_term, abs_image, lp_rows, expand_normalize, nullptr};

}  // namespace cte::relax
