// Shi et al.'s warm-up regularisers (see bound_reg.h).
#include "train/bound_reg.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relax_ops.h"

namespace cte::train {
namespace {

// relu(reference - ratio) / reference for ratio = min(a, b) / max(a, b), where a, b >= 0 with
// values known on the host (the division is built the way round that keeps it <= 1, so its
// gradient is finite, unlike a / b with b = 0).
Tensor balance_term(const Tensor& a, const Tensor& b, float a_value, float b_value, float reference) {
  const Tensor ratio = a_value <= b_value ? ops::div(a, b) : ops::div(b, a);
  return ops::scale(ops::relu(ops::add_scalar(ops::neg(ratio), reference)), 1.0f / reference);
}

}  // namespace

Tensor bound_regulariser(const Network& net, const Tensor& lower0, const Tensor& upper0, float reference) {
  const std::vector<Layer>& layers = net.layers();
  const relax::CentreRadiusPair input = relax::box_of(lower0, upper0, /*sound=*/false);
  size_t first = 0;  // the first layer after the input normalisation
  while (first < layers.size() && layers[first].kind == LayerKind::normalize) ++first;
  const Tensor input_radius = ops::mean(relax::box_forward(net, input.centre, input.radius, first, nullptr, nullptr).radius);
  std::vector<Tensor> lower(layers.size()), upper(layers.size());
  relax::box_forward(net, input.centre, input.radius, layers.size(), &lower, &upper);
  const Device device = lower0.device();
  const Tensor zero = Tensor::zeros(Shape{1}, device);
  Tensor total;  // scalar
  auto accumulate = [&total](const Tensor& term) { total = total.defined() ? ops::add(total, term) : term; };
  int relu_layers = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!lower[i].defined()) continue;
    ++relu_layers;
    const Tensor& l = lower[i];
    const Tensor& u = upper[i];
    const Tensor centre = ops::scale(ops::add(u, l), 0.5f);
    const Tensor radius = ops::mean(ops::scale(ops::sub(u, l), 0.5f));
    const Tensor tightness =
        ops::relu(ops::add_scalar(ops::neg(ops::div(input_radius, ops::clamp(radius, 1e-12f, std::numeric_limits<float>::infinity()))), reference));
    accumulate(ops::scale(tightness, 1.0f / reference));
    Tensor active, inactive;
    {
      NoGrad no_grad;
      active = ops::compare(l, zero, kern::BinaryOp::gt);
      inactive = ops::compare(u, zero, kern::BinaryOp::lt);
    }
    const Tensor mean_active = ops::mean(ops::mul(centre, active));
    const Tensor mean_inactive = ops::neg(ops::mean(ops::mul(centre, inactive)));
    const Tensor spread = ops::sub(centre, ops::mean(centre));
    const Tensor deviation = ops::mul(spread, spread);
    const Tensor var_active = ops::sum(ops::mul(deviation, active));
    const Tensor var_inactive = ops::sum(ops::mul(deviation, inactive));
    const float ma = mean_active.item(), mi = mean_inactive.item(), va = var_active.item(), vi = var_inactive.item();
    // 0/0 (no active and no inactive neuron, or no spread among them) is NaN in the official code,
    // which then drops the layer's relu term.
    if (!(std::max(ma, mi) > 0.0f && std::max(va, vi) > 0.0f) || !std::isfinite(ma + mi + va + vi)) continue;
    accumulate(ops::add(balance_term(mean_active, mean_inactive, ma, mi, reference),
                        balance_term(var_active, var_inactive, va, vi, reference)));
  }
  if (relu_layers == 0) return ops::sum(zero);
  return ops::scale(total, 1.0f / float(relu_layers));
}

}  // namespace cte::train
