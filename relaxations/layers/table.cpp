// The relaxations' layer table (bound_rules.h): one row per CTE_LAYER_KINDS
// entry, each defined in relaxations/layers/<kind>.cpp, and the generic steps
// the rows share.
#include <array>

#include "engine/layers/layer_rules.h"
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

// Row i is the kind whose LayerKind value is i (as engine/layers/table.cpp).
const std::array<const BoundRules*, kLayerKindCount> kTable = [] {
  std::array<const BoundRules*, kLayerKindCount> table{};
#define CTE_BOUND_RULES_ROW(kind) table[size_t(LayerKind::kind)] = &kBoundRules_##kind;
  CTE_LAYER_KINDS(CTE_BOUND_RULES_ROW)
#undef CTE_BOUND_RULES_ROW
  return table;
}();

}  // namespace

const BoundRules& bound_rules(LayerKind kind) {
  const size_t index = size_t(kind);
  if (index >= kTable.size()) fail("bounds", "layer kind " + std::to_string(index) + " is not in the layer table");
  return *kTable[index];
}

Tensor add_defined(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return ops::add(a, b);
}

CentreRadiusPair affine_box_step(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch,
                                 Tensor (*radius_image)(const Layer& layer, const Tensor& r)) {
  std::vector<int64_t> dims{batch};
  for (int64_t d : layer.in_shape.dims()) dims.push_back(d);
  const Shape in(dims);
  CentreRadiusPair out;
  if (c.defined()) out.centre = layer_rules(layer.kind).forward(layer, c.shape() == in ? c : ops::reshape(c, in));
  if (r.defined()) out.radius = radius_image(layer, r.shape() == in ? r : ops::reshape(r, in));
  return out;
}

HboxState hbox_box_step(BacksubContext& ctx, size_t index, const HboxState& in) {
  const Layer& layer = ctx.net->layers()[index];
  const CentreRadiusPair out = bound_rules(layer).box_step(layer, in.centre, in.box, ctx.batch);
  return {out.centre, out.radius};
}

namespace {

// coeffs (K, n) or (N, K, n) times a vector v (n): (K) or (N, K).
Tensor times_vector(const Tensor& coeffs, const Tensor& v) {
  const int64_t n = v.numel();
  const Tensor product = ops::matmul(coeffs, ops::reshape(v, Shape{n, 1}));
  return coeffs.ndim() == 2 ? ops::reshape(product, Shape{coeffs.size(0)})
                            : ops::reshape(product, Shape{coeffs.size(0), coeffs.size(1)});
}

}  // namespace

void elementwise_backsub_step(const BacksubContext& ctx, size_t index, LinearForm& f) {
  if (ctx.mode != BacksubMode::generator_norm)
    f.bias = add_defined(f.bias, times_vector(f.coeffs, ctx.norm_shift[index]));
  f.coeffs = ops::mul(f.coeffs, ctx.norm_scale[index]);
}

int64_t no_dot_terms(const Layer&) { return 0; }
LpAffineMap no_lp_rows(const Layer&) { return {}; }

std::vector<double> lp_values_of(const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace cte::relax
