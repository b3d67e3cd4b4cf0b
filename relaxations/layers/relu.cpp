// ReLU layer, bounded from its input's bounds [l, u] (the walkers compute
// them first: role activation): Box the fused box_relu; backsubstitution the
// fused backsub_relu with the relaxation's per-neuron rule (ctx.rule,
// kernels/common/relu_relaxation.h), folding in the bias of an affine layer
// right below (its table's output_bias; not in sound mode); hBox the fused
// hbox_relu (unstable neurons: centre = box = u/2, symbolic row dropped); sound mode no rounding
// of its own in a forward pass (the walkers add relu_slack for its lines).
// Its LP rows (Triangle, Parallelogram) are the LP relaxation's own rule.
#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

CentreRadiusPair box_step(const Layer&, const Tensor& c, const Tensor& r, int64_t) { return box_relu(c, r); }

void backsub_step(const BacksubContext& ctx, size_t index, LinearForm& f) {
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  const bool want_upper = ctx.mode == BacksubMode::bounds_symmetric;
  const bool lower_shift = index < ctx.lower_slope_shift.size() && ctx.lower_slope_shift[index].defined();
  const bool upper_shift = index < ctx.upper_slope_shift.size() && ctx.upper_slope_shift[index].defined();
  // The bias of the affine layer right below folds into this step's
  // intercepts (not in sound mode, whose slack counts the layer's own rounding).
  Tensor bias_below;
  if (track_bias && !ctx.sound && index > ctx.input_level) {
    const BoundRules& below = bound_rules(ctx.net->layers()[index - 1]);
    if (below.output_bias) bias_below = below.output_bias(ctx, index - 1);
  }
  BacksubReluResult r = backsub_relu(ctx.rule, f.coeffs, ctx.relu_lower[index], ctx.relu_upper[index], track_bias,
                                     want_upper, bias_below);
  f.bias_below_folded = bias_below.defined();
  // The slope shifts' extra coefficients owe the folded bias their share too
  // (zero for zero shifts: alpha-crown from CROWN's slopes stays CROWN exactly).
  auto add_extra = [&](const Tensor& extra) {
    r.coeffs = ops::add(r.coeffs, extra);
    if (!bias_below.defined()) return;
    const Tensor term = ops::sum_axis(ops::mul(extra, bias_below), 2);
    r.bias_lower = add_defined(r.bias_lower, term);
    if (r.bias_upper.defined()) r.bias_upper = ops::add(r.bias_upper, term);
  };
  if (lower_shift)  // alpha-crown's slopes
    add_extra(ops::mul(ops::relu(f.coeffs), ctx.lower_slope_shift[index]));
  if (upper_shift) {  // parallelogram's upper line
    const Tensor negative = ops::neg(ops::relu(ops::neg(f.coeffs)));
    add_extra(ops::mul(negative, ctx.upper_slope_shift[index]));
    r.bias_lower = add_defined(r.bias_lower, ops::sum_axis(ops::mul(negative, ctx.upper_intercept_shift[index]), 2));
  }
  f.coeffs = r.coeffs;
  // The linear step right below computes its coefficients' gradient only where
  // this step reads it (not where the slope shifts add coefficients of their own).
  const bool live = backsub_live_columns() && !lower_shift && !upper_shift && !f.shared() && index > 0 &&
                    bound_rules(ctx.net->layers()[index - 1]).takes_live_columns;
  f.live_columns = live ? backsub_relu_live(ctx.rule, ctx.relu_lower[index], ctx.relu_upper[index]) : Tensor();
  f.live_columns_of = live ? f.coeffs : Tensor();
  f.relu_lower = add_defined(f.relu_lower, r.bias_lower);
  f.relu_upper = add_defined(f.relu_upper, r.bias_upper);
}

// From l = c - g - b, u = c + g + b with g the symbolic rows' L1 norms (the
// hbox_symbolic walker below this layer) and b the box radius.
HboxState hbox_step(BacksubContext& ctx, size_t index, const HboxState& in) {
  const Layer& layer = ctx.net->layers()[index];
  const Shape shape = in.centre.shape(), flat{ctx.batch, layer.in_shape.numel()};
  const Tensor c = ops::reshape(in.centre, flat);
  const Tensor box = in.box.defined() ? ops::reshape(in.box, flat) : Tensor::zeros(flat, c.device());
  // Sparse path (hbox.cpp): only the neurons the Box pass leaves unstable get
  // a generator norm; the others take 0, and their outcome below.
  const bool sparse_path = !ctx.cheap_lower.empty();
  SparseRows sparse;
  if (sparse_path) {
    sparse = unstable_under(ctx.cheap_lower[index], ctx.cheap_upper[index]);
    sparse.fallback.g_norm = Tensor::zeros(flat, c.device());
  }
  const BacksubResult walked = backsub_all_neurons(ctx, index, sparse_path ? &sparse : nullptr);
  Tensor g_norm = walked.g_norm;
  if (ctx.sound)  // the rounding of l, u = c -+ (g + b) and of u / 2, carried by g
    g_norm = ops::add(g_norm, roundoff(ops::add(ops::add(ops::abs(c), g_norm), box), 8.0f));
  HboxReluResult r = hbox_relu(c, g_norm, box);
  if (sparse_path) {
    // Neurons stable under the Box bounds: active ones pass c and b on (their
    // row kept), dead ones give 0; their Box bounds stand as their bounds
    // (later walks read only their case). Sound mode's magnitudes read the
    // upper bound too: an active one's also covers c + b as hBox rounds it
    // (r.upper, from the zero norm plus roundoff).
    std::vector<float> needed(sparse.needed.begin(), sparse.needed.end());
    const Tensor unstable = Tensor::from_vector(needed, flat, c.device());
    const Tensor zero = Tensor::zeros(flat, c.device());
    const Tensor active = ops::compare(sparse.fallback.lower, zero, kern::BinaryOp::ge);
    r.centre = ops::select(unstable, r.centre, ops::select(active, c, zero));
    r.box = ops::select(unstable, r.box, ops::select(active, box, zero));
    r.lower = ops::select(unstable, r.lower, sparse.fallback.lower);
    r.upper = ops::select(unstable, r.upper,
                          ops::select(active, ops::maximum(sparse.fallback.upper, r.upper), sparse.fallback.upper));
  }
  ctx.relu_lower[index] = r.lower;  // the keep masks of later backsubstitutions
  ctx.relu_upper[index] = r.upper;
  // GPU bounds are counted on the device: an hbox training step there makes no host round trip.
  record_relu_layer(index, BacksubResult{r.lower, r.upper, Tensor(), walked.backsubstituted});
  extend_magnitudes(ctx);
  return {ops::reshape(r.centre, shape), ops::reshape(r.box, shape)};
}

Tensor abs_image(const Layer& layer, const Tensor& v, int64_t batch, bool) {
  return ops::reshape(v, Shape{batch, layer.out_shape.numel()});
}

}  // namespace

const BoundRules kBoundRules_relu{LayerRole::activation, false,     box_step,  backsub_step, hbox_step,
                                  no_dot_terms,          no_dot_terms, abs_image, no_lp_rows, nullptr, nullptr};

}  // namespace cte::relax
