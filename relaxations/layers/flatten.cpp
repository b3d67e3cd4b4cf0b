// Flatten layer, bounded: no arithmetic anywhere (the walkers keep every
// level flat already), so every step passes its input on.
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

CentreRadiusPair box_step(const Layer&, const Tensor& c, const Tensor& r, int64_t) {
  return {c.defined() ? ops::flatten(c) : Tensor(), r.defined() ? ops::flatten(r) : Tensor()};
}

void backsub_step(const BacksubContext&, size_t, LinearForm&) {}  // coefficients are flat at every level

Tensor abs_image(const Layer& layer, const Tensor& v, int64_t batch, bool) {
  return ops::reshape(v, Shape{batch, layer.out_shape.numel()});
}

}  // namespace

const BoundRules kBoundRules_flatten{LayerRole::reshape, false,     box_step,  backsub_step, hbox_box_step,
                                     no_dot_terms,       no_dot_terms, abs_image, no_lp_rows, nullptr, nullptr};

}  // namespace cte::relax
