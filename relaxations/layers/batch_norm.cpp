// BatchNorm layer, bounded as the elementwise affine map y = scale x + shift
// of engine's batch_norm_affine: in evaluation mode from the running
// averages; in training mode (certified training) from the clean batch's
// statistics, the ones its forward pass just normalised with, as
// eth-sri/SABR propagates a box through BatchNorm (README "BatchNorm").
// scale = gamma / sqrt(var + eps) may be negative: Box r' = r |scale|;
// backsubstitution q += A shift, A = A scale; sound mode |scale| v (+ |shift|);
// LP rows one diagonal entry each.
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

// The per-channel affine map shaped to broadcast over (N, in_shape...): (C, 1, 1) or (C).
ChannelAffine broadcastable(const Layer& layer) {
  const ChannelAffine a = batch_norm_affine(layer);
  if (layer.in_shape.ndim() != 3) return a;
  const Shape s{layer.in_shape[0], 1, 1};
  return {ops::reshape(a.scale, s), ops::reshape(a.shift, s)};
}

Shape batched_in(const Layer& layer, int64_t batch) {
  std::vector<int64_t> dims{batch};
  for (int64_t d : layer.in_shape.dims()) dims.push_back(d);
  return Shape(dims);
}

CentreRadiusPair box_step(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch) {
  const ChannelAffine a = broadcastable(layer);
  const Shape in = batched_in(layer, batch);
  CentreRadiusPair out;
  if (c.defined()) out.centre = ops::add(ops::mul(c.shape() == in ? c : ops::reshape(c, in), a.scale), a.shift);
  if (r.defined()) out.radius = ops::mul(r.shape() == in ? r : ops::reshape(r, in), ops::abs(a.scale));
  return out;
}

NormalizeExpansion scale_shift(const Layer& layer, Device device) {
  const ChannelAffine a = broadcastable(layer);
  const int64_t n = layer.in_shape.numel();
  // Spread over the neurons (C, H, W) -> (n) on the tape, so the training-mode statistics keep their gradient.
  const Tensor ones = Tensor::full(layer.in_shape, 1.0f, a.scale.device());
  NormalizeExpansion e{ops::reshape(ops::mul(ones, a.scale), Shape{n}), ops::reshape(ops::mul(ones, a.shift), Shape{n})};
  if (device != a.scale.device()) e = {e.scale.to(device), e.shift.to(device)};
  return e;
}

// (x - mean) inv_std gamma + beta: a few roundings per output, no sum.
int64_t dot_terms(const Layer&) { return 4; }

// A backsubstitution scales each coefficient: one rounding, no sum.
int64_t one_backsub_term(const Layer&) { return 1; }

Tensor abs_image(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias) {
  const NormalizeExpansion e = scale_shift(layer, v.device());
  const Tensor scaled = ops::mul(ops::reshape(v, Shape{batch, layer.in_shape.numel()}), ops::abs(e.scale));
  return with_bias ? ops::add(scaled, ops::abs(e.shift)) : scaled;
}

LpAffineMap lp_rows(const Layer& layer) {
  LpAffineMap map;
  const NormalizeExpansion e = scale_shift(layer, Device::cpu);
  const std::vector<double> scale = lp_values_of(e.scale), shift = lp_values_of(e.shift);
  for (size_t j = 0; j < scale.size(); ++j) {
    map.rows.push_back(LpTerms{{int(j), scale[j]}});
    map.constant.push_back(shift[j]);
  }
  map.diagonal = true;
  return map;
}

}  // namespace

const BoundRules kBoundRules_batch_norm{LayerRole::elementwise, false,     box_step, elementwise_backsub_step, hbox_box_step,
                                        dot_terms,              one_backsub_term, abs_image, lp_rows, scale_shift, nullptr};

}  // namespace cte::relax
