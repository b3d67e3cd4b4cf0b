// Linear layer y = W x + b, bounded: Box c' = W c + b, r' = |W| r;
// backsubstitution A -> A W, q += A b (fused backsub_linear); sound mode
// |W| v + |b| over dot products of n_in terms; LP rows W, b.
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

Tensor radius_image(const Layer& layer, const Tensor& r) { return ops::matmul(r, ops::abs(layer.weight), false, true); }

CentreRadiusPair box_step(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch) {
  return affine_box_step(layer, c, r, batch, radius_image);
}

void backsub_step(const BacksubContext& ctx, size_t index, LinearForm& f) {
  const bool track_bias = ctx.mode != BacksubMode::generator_norm && !f.bias_below_folded;
  const BacksubAffineResult r =
      backsub_linear(f.coeffs, ctx.weight[index], ctx.bias[index], track_bias, f.live_columns_for_coeffs());
  f.coeffs = r.coeffs;
  f.bias = add_defined(f.bias, r.bias_term);
  f.bias_below_folded = false;
  f.live_columns = f.live_columns_of = Tensor();  // a NoGrad walk need not keep the ReLU's output alive
}

Tensor output_bias(const BacksubContext& ctx, size_t index) { return ctx.bias[index]; }

int64_t dot_terms(const Layer& layer) { return layer.in_shape.numel(); }
int64_t backsub_terms(const Layer& layer) { return layer.out_shape.numel(); }

Tensor abs_image(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias) {
  const Tensor bias = with_bias && layer.bias.defined() ? ops::abs(layer.bias) : Tensor();
  return ops::linear(ops::reshape(v, Shape{batch, layer.in_shape.numel()}), ops::abs(layer.weight), bias);
}

LpAffineMap lp_rows(const Layer& layer) {
  LpAffineMap map;
  const std::vector<double> w = lp_values_of(layer.weight);
  const int64_t out = layer.weight.size(0), in = layer.weight.size(1);
  const std::vector<double> b = layer.bias.defined() ? lp_values_of(layer.bias) : std::vector<double>(size_t(out), 0.0);
  for (int64_t k = 0; k < out; ++k) {
    LpTerms row;
    for (int64_t j = 0; j < in; ++j)
      if (w[size_t(k * in + j)] != 0.0) row.emplace_back(int(j), w[size_t(k * in + j)]);
    map.rows.push_back(std::move(row));
    map.constant.push_back(b[size_t(k)]);
  }
  return map;
}

}  // namespace

const BoundRules kBoundRules_linear{LayerRole::affine, true,      box_step, backsub_step, hbox_box_step,
                                    dot_terms,         backsub_terms, abs_image, lp_rows, nullptr, output_bias,
                                    /*takes_live_columns=*/true};

}  // namespace cte::relax
