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
//
// triangle and parallelogram (paper section 5.2, appendix K.1) are LPs over
// every neuron whose intermediate bounds are themselves LP optima (the
// multi-level problem of equation 5). By LP duality, a bound of the Triangle
// LP with given intermediate bounds is the best backsubstitution bound over
// lower slopes in [0, 1] per row and neuron, the upper line being the chord
// (a dual multiplier splits between y >= 0 and y >= x); for Parallelogram the
// upper multiplier splits between y <= u and y <= x - l as well, so its upper
// line is beta (x - l) + (1 - beta) u with beta in [0, 1] per row and neuron.
// Every bound is computed so: each ReLU layer's neurons that are unstable
// under the interval image of the previous ReLU's output box (the LP's own
// starting bounds) get their own slopes, optimised as the output rows'; the
// rest keep those interval bounds, as the LP does, and an optimised bound is
// intersected with them, as the LP tightens its column bounds. Any slopes
// give a sound bound, so a finite optimisation is only ever looser than the
// LP (tests/test_optimised_slopes.cpp measures by how much).
#include <algorithm>
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

// The chord's slope u / (u - l) on unstable neurons, 0 elsewhere, (N, 1, n),
// differentiable in l and u.
Tensor chord_slope(const Tensor& lower, const Tensor& upper, const CrownSlopes& crown) {
  const Shape rows{lower.size(0), 1, lower.size(1)};
  const Tensor l = ops::reshape(lower, rows), u = ops::reshape(upper, rows);
  const Tensor width = ops::select(crown.unstable, ops::sub(u, l), ops::add_scalar(Tensor::zeros(rows, l.device()), 1.0f));
  return ops::mul(ops::div(u, width), crown.unstable);
}

// Parallelogram: the shifts that turn CROWN's upper line (the chord: slope
// lambda, intercept -lambda l) into beta (x - l) + (1 - beta) u on unstable
// neurons, from ctx's own l and u (so the recorded walk differentiates them).
void set_upper_shifts(BacksubContext& ctx, const std::vector<Tensor>& beta, const std::vector<CrownSlopes>& crown) {
  ctx.upper_slope_shift.assign(beta.size(), Tensor());
  ctx.upper_intercept_shift.assign(beta.size(), Tensor());
  for (size_t i = 0; i < beta.size(); ++i) {
    if (!beta[i].defined()) continue;
    const Shape rows{ctx.relu_lower[i].size(0), 1, ctx.relu_lower[i].size(1)};
    const Tensor l = ops::reshape(ctx.relu_lower[i], rows), u = ops::reshape(ctx.relu_upper[i], rows);
    const Tensor lambda = chord_slope(ctx.relu_lower[i], ctx.relu_upper[i], crown[i]);
    ctx.upper_slope_shift[i] = ops::mul(ops::sub(beta[i], lambda), crown[i].unstable);
    // (1 - beta) u - beta l + lambda l = u - beta (u + l) + lambda l
    const Tensor intercept = ops::add(ops::sub(u, ops::mul(beta[i], ops::add(u, l))), ops::mul(lambda, l));
    ctx.upper_intercept_shift[i] = ops::mul(intercept, crown[i].unstable);
  }
}

void set_shifts(BacksubContext& ctx, const std::vector<Tensor>& alpha, const std::vector<Tensor>& beta,
                const std::vector<CrownSlopes>& crown, bool upper_lines) {
  ctx.lower_slope_shift = slope_shifts(alpha, crown);
  if (upper_lines) set_upper_shifts(ctx, beta, crown);
}

void clear_shifts(BacksubContext& ctx) {
  ctx.lower_slope_shift.clear();
  ctx.upper_slope_shift.clear();
  ctx.upper_intercept_shift.clear();
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

// Optimises the slopes of the walk of `spec` (folded into layer top - 1) and
// returns that walk of ctx with the best slopes found held fixed. upper_lines:
// parallelogram's upper lines are optimised too.
BacksubResult optimised_walk_at(BacksubContext& ctx, const Tensor& spec, bool need_lower, const BoundOptions& options,
                                size_t top, bool upper_lines) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const int64_t batch = ctx.batch, walked = need_lower ? 2 * spec.size(1) : spec.size(1);
  const Device device = ctx.centre0.device();
  std::vector<CrownSlopes> crown(layers.size());
  std::vector<Tensor> alpha(layers.size()), beta(layers.size()), best_alpha(layers.size()), best_beta(layers.size());
  std::vector<Tensor> params;
  {
    NoGrad no_grad;
    for (size_t i = ctx.input_level; i < top; ++i) {
      if (layers[i].kind != LayerKind::relu) continue;
      crown[i] = crown_slopes(ctx.relu_lower[i], ctx.relu_upper[i], options.crown_tie_slope);
      const Tensor zeros = Tensor::zeros(Shape{batch, walked, layers[i].in_shape.numel()}, device);
      alpha[i] = ops::add(zeros, crown[i].slope);  // warm start: CROWN's slopes
      best_alpha[i] = alpha[i].clone();
      alpha[i].set_requires_grad(true);
      params.push_back(alpha[i]);
      if (!upper_lines) continue;
      beta[i] = ops::add(zeros, chord_slope(ctx.relu_lower[i].detach(), ctx.relu_upper[i].detach(), crown[i]));
      best_beta[i] = beta[i].clone();
      beta[i].set_requires_grad(true);
      params.push_back(beta[i]);
    }
  }
  if (!params.empty() && options.alpha.steps > 0) {
    BacksubContext opt = detached_context(ctx);
    Adam adam(params, options.alpha.lr);
    std::vector<float> best_value(size_t(batch * walked), -std::numeric_limits<float>::infinity());
    int stale = 0;
    TapeScope scope;  // a private tape: the caller's stays as it is
    for (int step = 0;; ++step) {
      set_shifts(opt, alpha, beta, crown, upper_lines);
      const BacksubResult r = backsub_spec(opt, spec, true, need_lower, top);
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
        for (size_t i = 0; i < alpha.size(); ++i) {
          if (!alpha[i].defined()) continue;
          const Tensor wide_mask = ops::add(mask, Tensor::zeros(alpha[i].shape(), device));
          best_alpha[i] = ops::select(wide_mask, alpha[i].detach(), best_alpha[i]);
          if (beta[i].defined()) best_beta[i] = ops::select(wide_mask, beta[i].detach(), best_beta[i]);
        }
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
      for (Tensor& a : params) a.copy_from(ops::clamp(a.detach(), 0.0f, 1.0f));  // the projection onto [0, 1]
    }
  }
  {
    NoGrad no_grad;
    ctx.lower_slope_shift = slope_shifts(best_alpha, crown);
  }
  if (upper_lines) set_upper_shifts(ctx, best_beta, crown);  // recorded: l and u carry gradients
  BacksubResult r = backsub_spec(ctx, spec, true, need_lower, top);
  clear_shifts(ctx);
  return r;
}

// Bytes one row of an optimised walk from level `top` holds per sample: its
// coefficients at every level below, and per ReLU the slopes, their best
// copy, Adam's two moments, gradients and temporaries (times two with the
// upper lines), with [C; -C] doubling every row.
size_t walk_bytes_per_row(const BacksubContext& ctx, size_t top, bool upper_lines) {
  const std::vector<Layer>& layers = ctx.net->layers();
  size_t floats = 0;
  for (size_t i = ctx.input_level; i < top; ++i) {
    const size_t width = size_t(layers[i].in_shape.numel());
    floats += 3 * width;
    if (layers[i].kind == LayerKind::relu) floats += (upper_lines ? 2 : 1) * 6 * width;
  }
  return std::max<size_t>(1, 2 * floats * sizeof(float) * size_t(ctx.batch));
}

// triangle and parallelogram's intermediate bounds: every ReLU layer's in
// turn (see the top of this file).
void optimised_intermediate_bounds(BacksubContext& ctx, const BoundOptions& options, bool upper_lines) {
  const Network& net = *ctx.net;
  const std::vector<Layer>& layers = net.layers();
  const Device device = ctx.centre0.device();
  size_t previous_relu = layers.size();  // none yet
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].kind != LayerKind::relu) continue;
    if (previous_relu == layers.size()) {  // affine layers over the box: their bounds are exact as they stand
      const BacksubResult r = backsub_all_neurons(ctx, i);
      ctx.relu_lower[i] = r.lower;
      ctx.relu_upper[i] = r.upper;
      extend_magnitudes(ctx);
      previous_relu = i;
      continue;
    }
    // The LP's starting bounds: interval arithmetic from the previous ReLU's output box.
    const CentreRadiusPair out =
        box_of(ops::relu(ctx.relu_lower[previous_relu]), ops::relu(ctx.relu_upper[previous_relu]), ctx.sound);
    std::vector<Tensor> interval_lower(i + 1), interval_upper(i + 1);
    box_forward(net, out.centre, out.radius, i + 1, &interval_lower, &interval_upper, ctx.sound, previous_relu + 1);
    const Tensor cheap_lower = interval_lower[i], cheap_upper = interval_upper[i];
    // Each sample's unstable neurons, padded to the longest list with -1.
    const int64_t batch = ctx.batch, n = layers[i].in_shape.numel();
    const std::vector<float> l = cheap_lower.to_vector(), u = cheap_upper.to_vector();
    std::vector<std::vector<int64_t>> lists(static_cast<size_t>(batch));
    size_t longest = 0;
    std::vector<float> optimised(size_t(batch * n), 0.0f);
    for (int64_t s = 0; s < batch; ++s) {
      for (int64_t j = 0; j < n; ++j)
        if (kern::relu_case(l[size_t(s * n + j)], u[size_t(s * n + j)]) == kern::ReluCase::unstable) {
          lists[size_t(s)].push_back(j);
          optimised[size_t(s * n + j)] = 1.0f;
        }
      longest = std::max(longest, lists[size_t(s)].size());
    }
    Tensor lower = cheap_lower, upper = cheap_upper;
    if (longest > 0) {
      const size_t chunk = std::clamp<size_t>(options.alpha.memory_cap_bytes / walk_bytes_per_row(ctx, i, upper_lines),
                                              1, longest);
      Tensor walked_lower, walked_upper;  // (N, n), zero where not optimised
      for (size_t first = 0; first < longest; first += chunk) {
        const size_t count = std::min(chunk, longest - first);
        std::vector<float> one_hot(size_t(batch) * count * size_t(n), 0.0f);
        for (int64_t s = 0; s < batch; ++s)
          for (size_t k = 0; k < count && first + k < lists[size_t(s)].size(); ++k)
            one_hot[(size_t(s) * count + k) * size_t(n) + size_t(lists[size_t(s)][first + k])] = 1.0f;
        const Tensor spec = Tensor::from_vector(one_hot, Shape{batch, int64_t(count), n}, device);
        const BacksubResult r = optimised_walk_at(ctx, spec, true, options, i, upper_lines);
        // Each row's bound back at its neuron: (N, 1, count)(N, count, n).
        auto scatter = [&](const Tensor& rows) {
          return ops::reshape(ops::matmul(ops::reshape(rows, Shape{batch, 1, int64_t(count)}), spec), Shape{batch, n});
        };
        walked_lower = walked_lower.defined() ? ops::add(walked_lower, scatter(r.lower)) : scatter(r.lower);
        walked_upper = walked_upper.defined() ? ops::add(walked_upper, scatter(r.upper)) : scatter(r.upper);
      }
      const Tensor mask = Tensor::from_vector(optimised, Shape{batch, n}, device);
      lower = ops::select(mask, ops::maximum(walked_lower, cheap_lower), cheap_lower);
      upper = ops::select(mask, ops::minimum(walked_upper, cheap_upper), cheap_upper);
    }
    ctx.relu_lower[i] = lower;
    ctx.relu_upper[i] = upper;
    extend_magnitudes(ctx);
    previous_relu = i;
  }
}

}  // namespace

BacksubResult optimised_walk(BacksubContext& ctx, const Tensor& spec, bool need_lower, const BoundOptions& options) {
  return optimised_walk_at(ctx, spec, need_lower, options, ctx.net->layers().size(), /*upper_lines=*/false);
}

Bounds alpha_crown_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                          Relaxation relaxation, const BoundOptions& options) {
  const RelaxationInfo& info = relaxation_info(relaxation);
  if (info.engine != BoundsEngine::optimised_slopes)
    fail("bounds", std::string(info.name) + " is not computed by optimised slopes");
  const bool upper_lines = info.lp_rule == kern::LpReluRule::parallelogram;
  const ReluRule rule = options.crown_tie_slope == 1 ? ReluRule::crown_tie1 : ReluRule::crown;
  BacksubContext ctx = make_backsub_context(net, lower0, upper0, rule, BacksubMode::bounds_stacked,
                                            options.memory_cap_bytes, options.sound);
  const std::vector<Layer>& layers = net.layers();
  if (info.intermediate == IntermediateBounds::optimised_pass) {
    optimised_intermediate_bounds(ctx, options, upper_lines);
  } else {
    for (size_t i = 0; i < layers.size(); ++i) {  // CROWN's intermediate bounds
      if (layers[i].kind != LayerKind::relu) continue;
      const BacksubResult r = backsub_all_neurons(ctx, i);
      ctx.relu_lower[i] = r.lower;
      ctx.relu_upper[i] = r.upper;
      extend_magnitudes(ctx);
    }
  }
  const int64_t logits = net.output_shape().numel();
  if (spec.defined() && options.elide_last_layer) {
    const BacksubResult r = optimised_walk_at(ctx, spec, options.need_lower, options, layers.size(), upper_lines);
    return Bounds{r.lower, r.upper};
  }
  // The logits' own bounds (rows of the identity), optimised per logit.
  const BacksubResult r = optimised_walk_at(ctx, identity_spec(ctx.batch, logits, lower0.device()), true, options,
                                         layers.size(), upper_lines);
  if (!spec.defined()) return Bounds{r.lower, r.upper};
  // Without elision C is applied to the logits' box by interval arithmetic, as backsub_bounds does.
  const Tensor centre = ops::scale(ops::add(r.upper, r.lower), 0.5f);
  Tensor radius = ops::scale(ops::sub(r.upper, r.lower), 0.5f);
  if (options.sound) radius = ops::add(radius, roundoff(ops::add(ops::abs(centre), radius), 4.0f));
  return box_output_bounds(net, {centre, radius}, spec, options);
}

}  // namespace cte::relax
