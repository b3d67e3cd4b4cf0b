// alpha-crown (alpha-CROWN, Xu et al., ICLR 2021): CROWN's intermediate
// bounds, then the output backsubstitution with the lower slope of every
// unstable ReLU a free parameter alpha in [0, 1], one per (sample, spec row,
// neuron). Any alpha in [0, 1] gives a valid lower line y >= alpha x, so every
// iterate is a sound bound; projected Adam ascent on the bound tightens it,
// starting from CROWN's own slopes (so step 0 is CROWN's bound exactly), and
// each row keeps the slopes of its best iterate.
//
// The slopes enter through BacksubContext::lower_slope_shift: CROWN's fused
// ReLU step (backsub_relu) followed by coeffs += relu(A) * (alpha - s_crown)
// on unstable neurons, composed from engine ops, so the tape differentiates
// the bound in alpha (and in the weights) on CPU and CUDA alike.
//
// The optimisation runs on a private tape (TapeScope) over a copy of the
// context without gradient history, so it never touches the caller's tape or
// the parameters' gradients. The returned bound is one more walk of the
// caller's context with the chosen slopes held fixed: recorded when the
// caller records (training: by the envelope theorem its gradient in the
// weights is that of the optimised bound at an optimum), and through the
// sound walker when BoundOptions::sound is set.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/tape.h"
#include "relaxations/relax_ops.h"

namespace cte::relax {
namespace {

// ctx without gradient history and without the sound slack (the optimisation
// reads the fast bound; the returned one is recomputed from ctx itself).
BacksubContext detached_context(const BacksubContext& ctx) {
  BacksubContext d = ctx;
  for (std::vector<Tensor>* list : {&d.weight, &d.bias, &d.relu_lower, &d.relu_upper})
    for (Tensor& t : *list)
      if (t.defined()) t = t.detach();
  d.centre0 = d.centre0.detach();
  d.radius0 = d.radius0.detach();
  d.sound = false;
  d.magnitude.clear();
  return d;
}

// CROWN's lower slope s (0 or 1) and the unstable mask of one ReLU layer from
// its input bounds (N, n), each (N, 1, n) to broadcast over the spec rows.
struct CrownSlopes {
  Tensor slope, unstable;
};
CrownSlopes crown_slopes(const Tensor& lower, const Tensor& upper, int tie_slope) {
  NoGrad no_grad;
  const Tensor l = lower.detach(), u = upper.detach();
  const Tensor zero = Tensor::zeros(l.shape(), l.device());
  const Shape rows{l.size(0), 1, l.size(1)};
  const Tensor unstable = ops::mul(ops::compare(l, zero, kern::BinaryOp::lt), ops::compare(u, zero, kern::BinaryOp::gt));
  // kern::ReluRule::crown: slope 1 when u > -l (tie 1: u >= -l), else 0.
  const Tensor slope = ops::compare(u, ops::neg(l), tie_slope == 1 ? kern::BinaryOp::ge : kern::BinaryOp::gt);
  return {ops::reshape(slope, rows), ops::reshape(unstable, rows)};
}

// The shifts alpha - s_crown on unstable neurons, 0 elsewhere, per ReLU layer.
std::vector<Tensor> slope_shifts(const std::vector<Tensor>& alpha, const std::vector<CrownSlopes>& crown) {
  std::vector<Tensor> shift(alpha.size());
  for (size_t i = 0; i < alpha.size(); ++i)
    if (alpha[i].defined()) shift[i] = ops::mul(ops::sub(alpha[i], crown[i].slope), crown[i].unstable);
  return shift;
}

// The bound of each walked row as the walk maximises it, (N, K') on the host:
// lower(C) for [C; -C]'s first half, -upper(C) = lower(-C) for the rest (or
// for every row when only the upper bounds are wanted).
std::vector<float> row_values(const BacksubResult& r, bool need_lower) {
  const std::vector<float> upper = r.upper.to_vector();
  const int64_t batch = r.upper.size(0), rows = r.upper.size(1);
  const std::vector<float> lower = need_lower ? r.lower.to_vector() : std::vector<float>();
  const int64_t walked = need_lower ? 2 * rows : rows;
  std::vector<float> values(size_t(batch * walked));
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t k = 0; k < rows; ++k) {
      if (need_lower) values[size_t(s * walked + k)] = lower[size_t(s * rows + k)];
      values[size_t(s * walked + walked - rows + k)] = -upper[size_t(s * rows + k)];
    }
  return values;
}

// The per-sample identity spec (N, L, L): the logits' own bounds.
Tensor identity_spec(int64_t batch, int64_t logits, Device device) {
  std::vector<float> values(size_t(batch * logits * logits), 0.0f);
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t k = 0; k < logits; ++k) values[size_t((s * logits + k) * logits + k)] = 1.0f;
  return Tensor::from_vector(values, Shape{batch, logits, logits}, device);
}

}  // namespace

BacksubResult optimised_walk(BacksubContext& ctx, const Tensor& spec, bool need_lower, const BoundOptions& options) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const int64_t batch = ctx.batch, walked = need_lower ? 2 * spec.size(1) : spec.size(1);
  const Device device = ctx.centre0.device();
  std::vector<CrownSlopes> crown(layers.size());
  std::vector<Tensor> alpha(layers.size()), best(layers.size()), params;
  {
    NoGrad no_grad;
    for (size_t i = ctx.input_level; i < layers.size(); ++i) {
      if (layers[i].kind != LayerKind::relu) continue;
      crown[i] = crown_slopes(ctx.relu_lower[i], ctx.relu_upper[i], options.crown_tie_slope);
      const Shape shape{batch, walked, layers[i].in_shape.numel()};
      alpha[i] = ops::add(Tensor::zeros(shape, device), crown[i].slope);  // warm start: CROWN's slopes
      best[i] = alpha[i].clone();
      alpha[i].set_requires_grad(true);
      params.push_back(alpha[i]);
    }
  }
  if (!params.empty() && options.alpha.steps > 0) {
    BacksubContext opt = detached_context(ctx);
    Adam adam(params, options.alpha.lr);
    std::vector<float> best_value(size_t(batch * walked), -std::numeric_limits<float>::infinity());
    int stale = 0;
    TapeScope scope;  // a private tape: the caller's stays as it is
    for (int step = 0;; ++step) {
      opt.lower_slope_shift = slope_shifts(alpha, crown);
      const BacksubResult r = backsub_spec(opt, spec, true, need_lower);
      const std::vector<float> values = row_values(r, need_lower);
      std::vector<float> improved(values.size(), 0.0f);
      bool progress = false;
      for (size_t k = 0; k < values.size(); ++k) {
        if (!(values[k] > best_value[k])) continue;  // NaN never improves
        progress = progress || !(values[k] - best_value[k] <= 1e-6f * (1.0f + std::fabs(values[k])));
        improved[k] = 1.0f;
        best_value[k] = values[k];
      }
      {
        NoGrad no_grad;
        const Tensor mask = Tensor::from_vector(improved, Shape{batch, walked, 1}, device);
        for (size_t i = 0; i < alpha.size(); ++i)
          if (alpha[i].defined())
            best[i] = ops::select(ops::add(mask, Tensor::zeros(alpha[i].shape(), device)), alpha[i].detach(), best[i]);
      }
      stale = progress ? 0 : stale + 1;
      if (step == options.alpha.steps || (options.alpha.patience > 0 && stale >= options.alpha.patience)) {
        tape_reset();
        break;
      }
      // Ascent on every row's bound at once (rows share no slopes): minimise sum(upper) - sum(lower).
      Tensor loss = ops::sum(r.upper);
      if (need_lower) loss = ops::sub(loss, ops::sum(r.lower));
      adam.zero_grad();
      backward(loss);
      adam.step();
      NoGrad no_grad;
      for (Tensor& a : alpha)
        if (a.defined()) a.copy_from(ops::clamp(a.detach(), 0.0f, 1.0f));  // the projection onto [0, 1]
    }
  }
  {
    NoGrad no_grad;
    ctx.lower_slope_shift = slope_shifts(best, crown);
  }
  BacksubResult r = backsub_spec(ctx, spec, true, need_lower);
  ctx.lower_slope_shift.clear();
  return r;
}

Bounds alpha_crown_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                          const BoundOptions& options) {
  const ReluRule rule = options.crown_tie_slope == 1 ? ReluRule::crown_tie1 : ReluRule::crown;
  BacksubContext ctx = make_backsub_context(net, lower0, upper0, rule, BacksubMode::bounds_stacked,
                                            options.memory_cap_bytes, options.sound);
  const std::vector<Layer>& layers = net.layers();
  for (size_t i = 0; i < layers.size(); ++i) {  // CROWN's intermediate bounds
    if (layers[i].kind != LayerKind::relu) continue;
    const BacksubResult r = backsub_all_neurons(ctx, i);
    ctx.relu_lower[i] = r.lower;
    ctx.relu_upper[i] = r.upper;
    extend_magnitudes(ctx);
  }
  const int64_t logits = net.output_shape().numel();
  if (spec.defined() && options.elide_last_layer) {
    const BacksubResult r = optimised_walk(ctx, spec, options.need_lower, options);
    return Bounds{r.lower, r.upper};
  }
  // The logits' own bounds (rows of the identity), optimised per logit.
  const BacksubResult r =
      optimised_walk(ctx, identity_spec(ctx.batch, logits, lower0.device()), true, options);
  if (!spec.defined()) return Bounds{r.lower, r.upper};
  // Without elision C is applied to the logits' box by interval arithmetic, as backsub_bounds does.
  const Tensor centre = ops::scale(ops::add(r.upper, r.lower), 0.5f);
  Tensor radius = ops::scale(ops::sub(r.upper, r.lower), 0.5f);
  if (options.sound) radius = ops::add(radius, roundoff(ops::add(ops::abs(centre), radius), 4.0f));
  return box_output_bounds(net, {centre, radius}, spec, options);
}

}  // namespace cte::relax
