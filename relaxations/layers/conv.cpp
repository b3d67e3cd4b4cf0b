// Conv2d layer, bounded: Box c' = conv(c) + b, r' = conv_|W|(r); the
// backsubstitution applies the transposed convolution to A (fused
// backsub_conv, never a dense matrix); sound mode |W| v + |b| over dot
// products of C kh kw terms; LP rows from the weights, one per output.
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

Tensor radius_image(const Layer& layer, const Tensor& r) {
  return ops::conv2d(r, ops::abs(layer.weight), Tensor(), layer.stride, layer.padding);
}

CentreRadiusPair box_step(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch) {
  return affine_box_step(layer, c, r, batch, radius_image);
}

void backsub_step(const BacksubContext& ctx, size_t index, LinearForm& f) {
  const Layer& layer = ctx.net->layers()[index];
  const bool track_bias = ctx.mode != BacksubMode::generator_norm && !f.bias_below_folded;
  const BacksubAffineResult r = backsub_conv(f.coeffs, ctx.weight[index], ctx.bias[index], layer.stride,
                                             layer.padding, layer.in_shape, layer.out_shape, track_bias);
  f.coeffs = r.coeffs;
  f.bias = add_defined(f.bias, r.bias_term);
  f.bias_below_folded = false;
}

Tensor output_bias(const BacksubContext& ctx, size_t index) {
  const Tensor& bias = ctx.bias[index];
  return bias.defined() ? conv_bias_per_neuron(bias, ctx.net->layers()[index].out_shape) : Tensor();
}

int64_t dot_terms(const Layer& layer) {
  const Shape w = layer.weight.shape();
  return w[1] * w[2] * w[3];
}

int64_t backsub_terms(const Layer& layer) {
  const Shape w = layer.weight.shape();
  const int64_t s = layer.stride;
  return w[0] * ((w[2] + s - 1) / s) * ((w[3] + s - 1) / s);
}

Tensor abs_image(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias) {
  const Tensor bias = with_bias && layer.bias.defined() ? ops::abs(layer.bias) : Tensor();
  const Shape& in = layer.in_shape;
  const Tensor y = ops::conv2d(ops::reshape(v, Shape{batch, in[0], in[1], in[2]}), ops::abs(layer.weight), bias,
                               layer.stride, layer.padding);
  return ops::reshape(y, Shape{batch, layer.out_shape.numel()});
}

LpAffineMap lp_rows(const Layer& layer) {
  LpAffineMap map;
  const std::vector<double> w = lp_values_of(layer.weight);
  const Shape& in = layer.in_shape;
  const kern::ConvGeometry g = ops::conv_geometry(Shape{1, in[0], in[1], in[2]}, layer.weight.shape(), layer.stride,
                                                  layer.padding, "lp");
  const std::vector<double> b = layer.bias.defined() ? lp_values_of(layer.bias) : std::vector<double>(size_t(g.c_out), 0.0);
  for (int64_t o = 0; o < g.c_out; ++o)
    for (int64_t oy = 0; oy < g.h_out; ++oy)
      for (int64_t ox = 0; ox < g.w_out; ++ox) {
        LpTerms row;
        for (int64_t c = 0; c < g.c_in; ++c)
          for (int64_t ky = 0; ky < g.kh; ++ky)
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t iy = oy * g.stride - g.padding + ky;
              const int64_t ix = ox * g.stride - g.padding + kx;
              const double coef = w[size_t(((o * g.c_in + c) * g.kh + ky) * g.kw + kx)];
              if (iy < 0 || iy >= g.h_in || ix < 0 || ix >= g.w_in || coef == 0.0) continue;
              row.emplace_back(int((c * g.h_in + iy) * g.w_in + ix), coef);
            }
        map.rows.push_back(std::move(row));
        map.constant.push_back(b[size_t(o)]);
      }
  return map;
}

}  // namespace

const BoundRules kBoundRules_conv{LayerRole::affine, false,     box_step, backsub_step, hbox_box_step,
                                  dot_terms,         backsub_terms, abs_image, lp_rows, nullptr, output_bias};

}  // namespace cte::relax
