// Backsubstitution (paper section 2, appendix A): DeepZ, CROWN, CROWN-0 (both variants),
// hbox-fresh and CROWN-IBP, plus the walker hBox uses for its symbolic part.
//
// K linear functions of the neurons at one level are held as coefficients A
// ((K, n) shared by every sample, or (N, K, n)) and biases. Walking down:
// linear  q += A b, A = A W (fused op backsub_linear);  conv  q += A b_full,
// A = the transposed convolution of A (backsub_conv, never a dense matrix);
// normalize  q += A (-mean * inv_std), A = A * inv_std;  flatten  nothing
// (the layout is flat throughout); ReLU  the fused backsub_relu op. At the
// input, lower = q + A c0 - |A| r0 (upper: + |A| r0), with c0 and r0 the
// centre and radius of the input box (backsub_input). A leading normalize is
// folded into that box (it maps a box onto a box exactly).
//
// Symmetric rules (deepz, hbox_fresh) keep one A and two intercept sums;
// CROWN and CROWN-0 stack [C; -C] and read the upper bounds as -lower(-C).
// Until the first ReLU is crossed A does not depend on the sample, so it
// starts as the weight rows of the layer below (no identity) and stays
// shared; the first affine layer's own bounds (no ReLU below) are computed
// forward, W c0 + b -+ |W| r0, which is the same number without forming A.
// Intermediate bounds are computed in chunks of neurons sized to
// memory_cap_bytes. A layer's whole workspace goes on the tape while the
// tape budget (memory_cap_bytes per compute_bounds call) lasts, saving the
// recomputation; beyond it every chunk is gradient-checkpointed, so the tape
// keeps only the chunk's bounds and peak memory stays near the cap.
#include <algorithm>
#include <initializer_list>
#include <string>

#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relax_ops.h"

namespace cte::relax {
namespace {

// Bytes of workspace per coefficient element: the coefficients, their gradient
// and one temporary (|A|, a transposed-convolution buffer) at a time.
constexpr size_t kWorkspaceFactor = 3;

// K linear functions of the neurons at one level:
//   lower = A x + bias + relu_lower,  upper = A x + bias + relu_upper
// (relu_upper only in symmetric mode). Undefined biases are zero.
struct LinearForm {
  Tensor coeffs;                  // (K, n) shared, or (N, K, n)
  Tensor bias;                    // (K) or (N, K): the affine layers' share
  Tensor relu_lower, relu_upper;  // (N, K): the ReLU intercepts' share
  Tensor slack;                   // (N, K), sound mode: sum over the steps so far of |A_k| s_k
  bool shared() const { return coeffs.ndim() == 2; }
};

Tensor add_defined(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return ops::add(a, b);
}

int64_t level_width(const Network& net, size_t level) {
  return level == 0 ? net.input_shape().numel() : net.layers()[level - 1].out_shape.numel();
}

// coeffs (K, n) or (N, K, n) times a vector v (n): (K) or (N, K).
Tensor times_vector(const Tensor& coeffs, const Tensor& v) {
  const int64_t n = v.numel();
  const Tensor product = ops::matmul(coeffs, ops::reshape(v, Shape{n, 1}));
  return coeffs.ndim() == 2 ? ops::reshape(product, Shape{coeffs.size(0)})
                            : ops::reshape(product, Shape{coeffs.size(0), coeffs.size(1)});
}

Tensor identity_rows(int64_t rows, int64_t n, int64_t first, Device device) {
  std::vector<float> values(size_t(rows * n), 0.0f);
  for (int64_t k = 0; k < rows; ++k) values[size_t(k * n + first + k)] = 1.0f;
  return Tensor::from_vector(values, Shape{rows, n}, device);
}

// [T; -T] along the rows: T (K, n) or (K) shared, stacked along axis 0.
Tensor stack_negated_shared(const Tensor& t) { return ops::concat_batch({t, ops::neg(t)}); }

// [C; -C] along axis 1 of a per-sample spec (N, K, L): (N, 2K, L).
Tensor stack_negated_spec(const Tensor& spec) {
  const int64_t rows = spec.size(1);
  std::vector<float> signs(size_t(rows * 2 * rows), 0.0f);  // [I, -I]: (K, 2K)
  for (int64_t k = 0; k < rows; ++k) {
    signs[size_t(k * 2 * rows + k)] = 1.0f;
    signs[size_t(k * 2 * rows + rows + k)] = -1.0f;
  }
  const Tensor stacker = Tensor::from_vector(signs, Shape{rows, 2 * rows}, spec.device());
  return ops::transpose(ops::matmul(ops::transpose(spec), stacker));  // (N, L, K)(K, 2K) -> (N, 2K, L)
}

// Sound mode: f.slack += |A| s for a slack vector s (N, n) over f's level.
void add_slack(LinearForm& f, const Tensor& s) {
  if (s.defined()) f.slack = add_defined(f.slack, abs_coeffs_times(f.coeffs, s));
}

const Tensor& magnitude_at(const BacksubContext& ctx, size_t level) {
  if (!ctx.magnitude[level].defined())
    fail("bounds", "sound mode: no magnitude bound at level " + std::to_string(level) +
                       " (its ReLU bounds are not known yet)");
  return ctx.magnitude[level];
}

// Sound mode: the slack of stepping down through layers[index], over its output (N, n_out).
Tensor step_slack(const BacksubContext& ctx, size_t index) {
  const Layer& layer = ctx.net->layers()[index];
  if (layer.kind == LayerKind::relu) return relu_slack(ctx.relu_lower[index], ctx.relu_upper[index]);
  if (layer.kind == LayerKind::flatten) return Tensor();
  return affine_slack(layer, magnitude_at(ctx, index), ctx.batch);
}

// Sound mode: the slack of the input step (rounded box, A c0 and |A| r0), (N, n0).
Tensor input_slack(const BacksubContext& ctx) {
  Tensor m = ops::add(ops::abs(ctx.centre0), ctx.radius0);
  if (ctx.input_level == 1) m = ops::add(m, ops::abs(ctx.norm_shift[0]));
  return ops::scale(m, 2.0f * rounding_gamma(ctx.centre0.size(1)));
}

// Columns [first, first + count) of a slack (N, n), twice side by side when stacked ([C; -C] rows).
Tensor slack_columns(const Tensor& s, int64_t first, int64_t count, bool stacked) {
  const Tensor rows = ops::slice_batch(ops::transpose(s), first, first + count);  // (count, N)
  return ops::transpose(stacked ? ops::concat_batch({rows, rows}) : rows);
}

// One step down through layers[index]: f describes functions of its output
// and afterwards of its input.
void step_down(const BacksubContext& ctx, size_t index, LinearForm& f) {
  const Layer& layer = ctx.net->layers()[index];
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  if (ctx.sound) add_slack(f, step_slack(ctx, index));
  switch (layer.kind) {
    case LayerKind::linear: {
      const BacksubAffineResult r = backsub_linear(f.coeffs, ctx.weight[index], ctx.bias[index], track_bias);
      f.coeffs = r.coeffs;
      f.bias = add_defined(f.bias, r.bias_term);
      return;
    }
    case LayerKind::conv: {
      const BacksubAffineResult r = backsub_conv(f.coeffs, ctx.weight[index], ctx.bias[index], layer.stride,
                                                 layer.padding, layer.in_shape, layer.out_shape, track_bias);
      f.coeffs = r.coeffs;
      f.bias = add_defined(f.bias, r.bias_term);
      return;
    }
    case LayerKind::normalize: {
      if (track_bias) f.bias = add_defined(f.bias, times_vector(f.coeffs, ctx.norm_shift[index]));
      f.coeffs = ops::mul(f.coeffs, ctx.norm_scale[index]);
      return;
    }
    case LayerKind::flatten: return;  // coefficients are flat at every level
    case LayerKind::relu: {
      const bool want_upper = ctx.mode == BacksubMode::bounds_symmetric;
      BacksubReluResult r = backsub_relu(ctx.rule, f.coeffs, ctx.relu_lower[index], ctx.relu_upper[index],
                                         track_bias, want_upper);
      if (index < ctx.lower_slope_shift.size() && ctx.lower_slope_shift[index].defined())  // alpha-crown's slopes
        r.coeffs = ops::add(r.coeffs, ops::mul(ops::relu(f.coeffs), ctx.lower_slope_shift[index]));
      f.coeffs = r.coeffs;
      f.relu_lower = add_defined(f.relu_lower, r.bias_lower);
      f.relu_upper = add_defined(f.relu_upper, r.bias_upper);
      return;
    }
  }
  fail("bounds", layer_label(*ctx.net, index) + ": not supported by backsubstitution");
}

// The input step: lower = q + A c0 - |A| r0 and upper = q + A c0 + |A| r0
// (mode bounds_*), or the generator norm |A| r0 (mode generator_norm).
BacksubResult finish_at_input(const BacksubContext& ctx, const LinearForm& f) {
  Tensor centre_term, spread;
  if (f.shared()) {  // (N, n0)(K, n0)^T: plain GEMMs serve every sample at once
    spread = ops::matmul(ctx.radius0, ops::abs(f.coeffs), false, true);
    if (ctx.mode != BacksubMode::generator_norm) centre_term = ops::matmul(ctx.centre0, f.coeffs, false, true);
  } else {
    const BacksubInputResult r = backsub_input(f.coeffs, ctx.centre0, ctx.radius0);
    centre_term = r.centre_term;
    spread = r.spread;
  }
  BacksubResult result;
  Tensor slack;  // sound mode: the steps' slack, the input step's, and the rounding of the sums below
  if (ctx.sound) {
    slack = add_defined(f.slack, abs_coeffs_times(f.coeffs, input_slack(ctx)));
    Tensor terms = spread;
    for (const Tensor* t : std::initializer_list<const Tensor*>{&centre_term, &f.bias, &f.relu_lower, &f.relu_upper})
      if (t->defined()) terms = ops::add(terms, ops::abs(*t));
    slack = ops::add(slack, roundoff(terms, 8.0f));
  }
  if (ctx.mode == BacksubMode::generator_norm) {
    result.g_norm = ctx.sound ? widen(Bounds{Tensor(), spread}, slack).upper : spread;
    return result;
  }
  const Tensor centre = add_defined(centre_term, f.bias);
  result.lower = ops::sub(add_defined(centre, f.relu_lower), spread);
  if (ctx.mode == BacksubMode::bounds_symmetric) result.upper = ops::add(add_defined(centre, f.relu_upper), spread);
  if (ctx.sound) {
    const Bounds widened = widen(Bounds{result.lower, result.upper}, slack);
    result.lower = widened.lower;
    result.upper = widened.upper;
  }
  return result;
}

// Columns [0, K) and [K, 2K) of (N, 2K), each transposed: (K, N).
std::pair<Tensor, Tensor> split_rows_transposed(const Tensor& stacked) {
  const int64_t rows = stacked.size(1) / 2;
  const Tensor t = ops::transpose(stacked);
  return {ops::slice_batch(t, 0, rows), ops::slice_batch(t, rows, 2 * rows)};
}

// Bounds of neurons [first, first + count) at level `top`, transposed to (count, N).
std::vector<Tensor> chunk_bounds_transposed(const BacksubContext& ctx, size_t top, int64_t first, int64_t count) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  LinearForm f;
  size_t level = top;
  if (top >= 1 && layers[top - 1].kind == LayerKind::linear) {
    // Start from the weight rows: A = W[first:first+count], q = b[first:first+count].
    f.coeffs = ops::slice_batch(ctx.weight[top - 1], first, first + count);
    if (track_bias && ctx.bias[top - 1].defined()) f.bias = ops::slice_batch(ctx.bias[top - 1], first, first + count);
    level = top - 1;
    if (ctx.sound)  // the skipped step's slack: that of the top layer's own rows
      f.slack = slack_columns(affine_slack(layers[top - 1], magnitude_at(ctx, top - 1), ctx.batch), first, count,
                              ctx.mode == BacksubMode::bounds_stacked);
  } else {
    f.coeffs = identity_rows(count, level_width(*ctx.net, top), first, ctx.centre0.device());
  }
  if (ctx.mode == BacksubMode::bounds_stacked) {
    f.coeffs = stack_negated_shared(f.coeffs);
    if (f.bias.defined()) f.bias = stack_negated_shared(f.bias);
  }
  for (size_t i = level; i-- > ctx.input_level;) step_down(ctx, i, f);
  const BacksubResult r = finish_at_input(ctx, f);
  switch (ctx.mode) {
    case BacksubMode::generator_norm: return {ops::transpose(r.g_norm)};
    case BacksubMode::bounds_symmetric: return {ops::transpose(r.lower), ops::transpose(r.upper)};
    case BacksubMode::bounds_stacked: {
      auto [lower, negated_upper] = split_rows_transposed(r.lower);
      return {lower, ops::neg(negated_upper)};
    }
  }
  return {};
}

// The tensors of ctx that gradients may flow into, in a fixed order, and the
// inverse: a copy of ctx reading them from `packed` (checkpointing's stand-ins).
std::vector<Tensor> pack(const BacksubContext& ctx) {
  std::vector<Tensor> packed;
  auto add = [&packed](const Tensor& t) {
    if (t.defined()) packed.push_back(t);
  };
  for (size_t i = 0; i < ctx.weight.size(); ++i) {
    add(ctx.weight[i]);
    add(ctx.bias[i]);
    add(ctx.relu_lower[i]);
    add(ctx.relu_upper[i]);
  }
  add(ctx.centre0);
  add(ctx.radius0);
  return packed;
}

BacksubContext unpack(const BacksubContext& like, const std::vector<Tensor>& packed) {
  BacksubContext ctx = like;
  size_t next = 0;
  auto take = [&packed, &next](Tensor& t) {
    if (t.defined()) t = packed[next++];
  };
  for (size_t i = 0; i < ctx.weight.size(); ++i) {
    take(ctx.weight[i]);
    take(ctx.bias[i]);
    take(ctx.relu_lower[i]);
    take(ctx.relu_upper[i]);
  }
  take(ctx.centre0);
  take(ctx.radius0);
  return ctx;
}

// Sum of the widths at which the coefficients of a backsubstitution from
// `top` are per-sample: every level at and below the highest ReLU under top.
int64_t per_sample_widths(const Network& net, size_t top) {
  const std::vector<Layer>& layers = net.layers();
  int64_t sum = 0;
  bool crossed = false;
  for (size_t i = top; i-- > 0;) {
    crossed = crossed || layers[i].kind == LayerKind::relu;
    if (crossed) sum += layers[i].in_shape.numel();
  }
  return sum;
}

thread_local BacksubChunkStats g_chunk_stats;

// True when between the (possibly normalized) input box and level `top` lie
// only flatten layers and at most one linear or conv layer: the bounds are
// then those of one affine map over a box, W c + b -+ |W| r, which a forward
// pass computes without forming any coefficient matrix (for a conv layer the
// backsubstitution would start from an identity over all its outputs).
bool single_affine_layer(const BacksubContext& ctx, size_t top) {
  int affine = 0;
  for (size_t i = ctx.input_level; i < top; ++i) {
    const LayerKind kind = ctx.net->layers()[i].kind;
    if (kind == LayerKind::linear || kind == LayerKind::conv) ++affine;
    else if (kind != LayerKind::flatten) return false;
  }
  return affine <= 1;
}

BacksubResult single_affine_bounds(const BacksubContext& ctx, size_t top) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  Tensor c = ctx.centre0, r = ctx.radius0;  // (N, n) at the current level, reshaped per layer
  for (size_t i = ctx.input_level; i < top; ++i) {
    const Layer& layer = layers[i];
    if (layer.kind == LayerKind::linear) {
      if (track_bias) c = ops::linear(c, ctx.weight[i], ctx.bias[i]);
      r = ops::matmul(r, ops::abs(ctx.weight[i]), false, true);
    } else if (layer.kind == LayerKind::conv) {
      const Shape in = layer.in_shape;
      const Shape image{ctx.batch, in[0], in[1], in[2]};
      if (track_bias) c = ops::conv2d(ops::reshape(c, image), ctx.weight[i], ctx.bias[i], layer.stride, layer.padding);
      r = ops::conv2d(ops::reshape(r, image), ops::abs(ctx.weight[i]), Tensor(), layer.stride, layer.padding);
    }
  }
  const Shape flat{ctx.batch, level_width(*ctx.net, top)};
  r = ops::reshape(r, flat);
  Tensor slack;  // sound mode: the input step's slack carried up by |W|, each layer's own, the final sums
  if (ctx.sound) {
    slack = input_slack(ctx);
    for (size_t i = ctx.input_level; i < top; ++i) {
      slack = abs_layer_image(layers[i], slack, ctx.batch, false);
      const Tensor own = step_slack(ctx, i);
      if (own.defined()) slack = ops::add(slack, own);
    }
  }
  BacksubResult result;
  if (!track_bias) {
    result.g_norm = ctx.sound ? widen(Bounds{Tensor(), r}, ops::add(slack, roundoff(r, 8.0f))).upper : r;
    return result;
  }
  c = ops::reshape(c, flat);
  result.lower = ops::sub(c, r);
  result.upper = ops::add(c, r);
  if (ctx.sound) {
    const Bounds widened = widen(Bounds{result.lower, result.upper},
                                 ops::add(slack, roundoff(ops::add(ops::abs(c), r), 8.0f)));
    result.lower = widened.lower;
    result.upper = widened.upper;
  }
  return result;
}

}  // namespace

NormalizeExpansion expand_normalize(const Layer& layer, Device device) {
  // Constants (the statistics are not trained): expanded to every neuron.
  const std::vector<float> mean = layer.mean.to_vector(), inv_std = layer.inv_std.to_vector();
  const int64_t n = layer.in_shape.numel();
  const int64_t plane = layer.in_shape.ndim() == 3 ? layer.in_shape[1] * layer.in_shape[2] : n;
  std::vector<float> scale(static_cast<size_t>(n)), shift(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const size_t c = mean.size() == 1 ? 0 : size_t(j / plane);
    scale[size_t(j)] = inv_std[c];
    shift[size_t(j)] = -mean[c] * inv_std[c];
  }
  return {Tensor::from_vector(scale, Shape{n}, device), Tensor::from_vector(shift, Shape{n}, device)};
}

BacksubChunkStats backsub_chunk_stats() { return g_chunk_stats; }
void reset_backsub_chunk_stats() { g_chunk_stats = BacksubChunkStats{}; }

BacksubContext make_backsub_context(const Network& net, const Tensor& lower0, const Tensor& upper0, ReluRule rule,
                                    BacksubMode mode, size_t memory_cap_bytes, bool sound) {
  BacksubContext ctx;
  ctx.net = &net;
  ctx.sound = sound;
  ctx.rule = rule;
  ctx.mode = mode;
  ctx.memory_cap_bytes = memory_cap_bytes;
  ctx.tape_budget_bytes = memory_cap_bytes;
  ctx.batch = lower0.size(0);
  const Shape flat{ctx.batch, net.input_shape().numel()};
  ctx.centre0 = ops::reshape(ops::scale(ops::add(upper0, lower0), 0.5f), flat);
  ctx.radius0 = ops::reshape(ops::scale(ops::sub(upper0, lower0), 0.5f), flat);
  const std::vector<Layer>& layers = net.layers();
  const size_t count = layers.size();
  ctx.weight.resize(count);
  ctx.bias.resize(count);
  ctx.relu_lower.resize(count);
  ctx.relu_upper.resize(count);
  ctx.norm_scale.resize(count);
  ctx.norm_shift.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const Layer& layer = layers[i];
    if (layer.kind == LayerKind::linear || layer.kind == LayerKind::conv) {
      ctx.weight[i] = layer.weight;
      ctx.bias[i] = layer.bias;
    }
    if (layer.kind == LayerKind::normalize) {
      const NormalizeExpansion e = expand_normalize(layer, lower0.device());
      ctx.norm_scale[i] = e.scale;
      ctx.norm_shift[i] = e.shift;
    }
  }
  if (count > 0 && layers[0].kind == LayerKind::normalize) {
    // A leading normalize maps the input box onto a box exactly (inv_std > 0):
    // start from the normalized box and let every walk stop above it.
    ctx.centre0 = ops::add(ops::mul(ctx.centre0, ctx.norm_scale[0]), ctx.norm_shift[0]);
    ctx.radius0 = ops::mul(ctx.radius0, ctx.norm_scale[0]);
    ctx.input_level = 1;
  }
  if (sound) {
    ctx.magnitude.resize(count + 1);
    ctx.magnitude[0] = ops::reshape(ops::maximum(ops::abs(lower0), ops::abs(upper0)), flat);  // exact
    extend_magnitudes(ctx);
  }
  return ctx;
}

void extend_magnitudes(BacksubContext& ctx) {
  if (!ctx.sound) return;
  const std::vector<Layer>& layers = ctx.net->layers();
  std::vector<Tensor>& magnitude = ctx.magnitude;
  if (!magnitude[ctx.input_level].defined()) {
    // The box itself, plus the rounding of folding a leading normalize into
    // it and of the float32 pass's normalize.
    const Tensor box = ops::add(ops::abs(ctx.centre0), ctx.radius0);
    const Tensor folded = ctx.input_level == 1 ? ops::add(box, ops::abs(ctx.norm_shift[0])) : box;
    magnitude[ctx.input_level] = ops::add(box, roundoff(folded, 16.0f));
  }
  for (size_t level = ctx.input_level + 1; level <= layers.size(); ++level) {
    if (magnitude[level].defined()) continue;
    const Layer& below = layers[level - 1];
    if (below.kind == LayerKind::relu) {
      if (!ctx.relu_upper[level - 1].defined()) return;  // known once that ReLU is bounded
      magnitude[level] = ops::relu(ctx.relu_upper[level - 1]);
    } else {
      magnitude[level] = magnitude_after(below, magnitude[level - 1], ctx.batch);
    }
  }
}

BacksubResult backsub_all_neurons(BacksubContext& ctx, size_t top) {
  const Network& net = *ctx.net;
  if (single_affine_layer(ctx, top)) return single_affine_bounds(ctx, top);
  const int64_t neurons = level_width(net, top);
  const int64_t batch = ctx.batch;
  const size_t rows_per_neuron = ctx.mode == BacksubMode::bounds_stacked ? 2 : 1;
  // Workspace per neuron: per-sample coefficients at every level under the
  // top ReLU, or (all shared) the shared ones plus the (N, n) results.
  int64_t widths = per_sample_widths(net, top) * batch;
  if (widths == 0)
    for (size_t i = 0; i <= top; ++i) widths += level_width(net, i) + batch;
  const size_t bytes_per_neuron = std::max<size_t>(1, size_t(widths) * sizeof(float) * rows_per_neuron * kWorkspaceFactor);
  const int64_t chunk = std::clamp<int64_t>(int64_t(ctx.memory_cap_bytes / bytes_per_neuron), 1, std::max<int64_t>(neurons, 1));
  const std::vector<Tensor> packed = pack(ctx);
  const bool recording = should_record(packed);
  const size_t total_bytes = bytes_per_neuron * size_t(neurons);
  const bool on_tape = !recording || total_bytes <= ctx.tape_budget_bytes;
  if (recording && on_tape) ctx.tape_budget_bytes -= total_bytes;

  std::vector<std::vector<Tensor>> pieces;  // per output, the chunks' (count, N) blocks
  for (int64_t first = 0; first < neurons; first += chunk) {
    const int64_t count = std::min(chunk, neurons - first);
    std::vector<Tensor> outputs;
    ++g_chunk_stats.chunks;
    if (on_tape) {
      outputs = chunk_bounds_transposed(ctx, top, first, count);
    } else {
      ++g_chunk_stats.checkpointed_chunks;
      const BacksubContext like = ctx;
      outputs = checkpointed("backsub_chunk", packed, [like, top, first, count](const std::vector<Tensor>& in) {
        return chunk_bounds_transposed(unpack(like, in), top, first, count);
      });
    }
    pieces.resize(outputs.size());
    for (size_t k = 0; k < outputs.size(); ++k) pieces[k].push_back(outputs[k]);
  }
  auto assemble = [&](size_t k) {
    const Tensor all = pieces[k].size() == 1 ? pieces[k][0] : ops::concat_batch(pieces[k]);
    return ops::transpose(all);  // (n, N) -> (N, n)
  };
  BacksubResult result;
  if (neurons == 0) {  // nothing to bound: empty results of the right shape
    const Tensor empty = Tensor::zeros(Shape{batch, 0}, ctx.centre0.device());
    result.lower = result.upper = result.g_norm = empty;
    return result;
  }
  if (ctx.mode == BacksubMode::generator_norm) {
    result.g_norm = assemble(0);
  } else {
    result.lower = assemble(0);
    result.upper = assemble(1);
  }
  return result;
}

BacksubResult backsub_spec(BacksubContext& ctx, const Tensor& spec, bool elide, bool need_lower) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const size_t top = layers.size();
  if (!spec.defined()) return backsub_all_neurons(ctx, top);
  const bool stacked = ctx.mode == BacksubMode::bounds_stacked;
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  // Stacked rules read upper(C z) as -lower(-C z): [C; -C] for both sides, -C for the upper alone.
  Tensor rows = spec;  // (N, K', L)
  if (stacked) rows = need_lower ? stack_negated_spec(spec) : ops::neg(spec);
  LinearForm f;
  size_t level = top;
  if (elide && top >= 1 && layers[top - 1].kind == LayerKind::linear) {
    // Last-layer elision: W' = C W (N, K', n_in), b' = C b (N, K').
    if (ctx.sound)  // the last layer's slack, with C folded into it
      f.slack = abs_coeffs_times(rows, affine_slack(layers[top - 1], magnitude_at(ctx, top - 1), ctx.batch, rows.size(1)));
    const BacksubAffineResult r = backsub_linear(rows, ctx.weight[top - 1], ctx.bias[top - 1], track_bias);
    f.coeffs = r.coeffs;
    f.bias = r.bias_term;
    level = top - 1;
  } else {
    f.coeffs = rows;
  }
  for (size_t i = level; i-- > ctx.input_level;) step_down(ctx, i, f);
  BacksubResult r = finish_at_input(ctx, f);
  if (!stacked) return r;
  if (!need_lower) {
    r.upper = ops::neg(r.lower);
    r.lower = Tensor();
    return r;
  }
  auto [lower, negated_upper] = split_rows_transposed(r.lower);
  r.lower = ops::transpose(lower);
  r.upper = ops::neg(ops::transpose(negated_upper));
  return r;
}

namespace {

// The bounds of C z once the intermediate bounds are in ctx. With elision
// (or no spec) backsubstitution starts from C; without it the logits are
// bounded first and C is applied to their box by interval arithmetic (Box's
// own last step), as the authors' `--C eye` does.
BacksubResult output_bounds(BacksubContext& ctx, const Tensor& spec, const BoundOptions& options) {
  if (!spec.defined() || options.elide_last_layer) return backsub_spec(ctx, spec, true, options.need_lower);
  const BacksubResult logits = backsub_spec(ctx, Tensor(), false);
  const Tensor centre = ops::scale(ops::add(logits.upper, logits.lower), 0.5f);
  Tensor radius = ops::scale(ops::sub(logits.upper, logits.lower), 0.5f);
  // Sound mode: c and r are each one rounding away from (u + l) / 2 and (u - l) / 2.
  if (options.sound) radius = ops::add(radius, roundoff(ops::add(ops::abs(centre), radius), 4.0f));
  const Bounds b = box_output_bounds(*ctx.net, {centre, radius}, spec, options);
  BacksubResult r;
  if (options.need_lower) r.lower = b.lower;
  r.upper = b.upper;
  return r;
}

}  // namespace

Bounds backsub_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                      Relaxation relaxation, const BoundOptions& options) {
  const RelaxationInfo& info = relaxation_info(relaxation);
  if (info.engine != BoundsEngine::backsub)
    fail("bounds", std::string(info.name) + " is not a backsubstitution relaxation");
  // --crown-tie 1: CROWN's tie -l = u gets slope 1 (the authors' code).
  const ReluRule rule =
      info.relu_rule == ReluRule::crown && options.crown_tie_slope == 1 ? ReluRule::crown_tie1 : info.relu_rule;
  // Box intermediate bounds (CROWN-IBP): one Box pass, which can also give Box's own output bounds to mix in.
  const bool box_intermediate = info.intermediate == IntermediateBounds::box_pass;
  const BacksubMode mode = kern::relu_rule_symmetric(rule) ? BacksubMode::bounds_symmetric : BacksubMode::bounds_stacked;
  BacksubContext ctx = make_backsub_context(net, lower0, upper0, rule, mode, options.memory_cap_bytes, options.sound);
  const std::vector<Layer>& layers = net.layers();
  CentreRadiusPair box_output;  // crown_ibp with beta < 1: the Box pass's box at box_end
  const float beta = options.crown_ibp_beta;
  if (box_intermediate) {
    if (beta <= 0.0f) return box_bounds(net, lower0, upper0, spec, options);
    // One Box pass gives the intermediate bounds and, carried on to box_end, Box's own output box.
    size_t end = 0;
    for (size_t i = 0; i < layers.size(); ++i)
      if (layers[i].kind == LayerKind::relu) end = i + 1;
    if (beta < 1.0f) end = box_end(net, spec, options);
    const CentreRadiusPair box0 = box_of(lower0, upper0, options.sound);
    box_output = box_forward(net, box0.centre, box0.radius, end, &ctx.relu_lower, &ctx.relu_upper, options.sound);
    extend_magnitudes(ctx);
  } else {
    for (size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].kind != LayerKind::relu) continue;
      const BacksubResult r = backsub_all_neurons(ctx, i);
      ctx.relu_lower[i] = r.lower;
      ctx.relu_upper[i] = r.upper;
      extend_magnitudes(ctx);
    }
  }
  const BacksubResult r = output_bounds(ctx, spec, options);
  if (!box_intermediate || beta >= 1.0f) return Bounds{r.lower, r.upper};
  const Bounds box = box_output_bounds(net, box_output, spec, options);
  auto mix = [beta](const Tensor& crown, const Tensor& ibp) {
    return crown.defined() ? ops::add(ops::scale(crown, beta), ops::scale(ibp, 1.0f - beta)) : Tensor();
  };
  const Bounds mixed{mix(r.lower, box.lower), mix(r.upper, box.upper)};
  if (!options.sound) return mixed;
  // A convex combination of two sound bounds is sound; only its rounding is added.
  auto rounding = [](const Tensor& crown, const Tensor& ibp) {
    return roundoff(ops::add(ops::abs(crown), ops::abs(ibp)), 4.0f);
  };
  Bounds sound;
  if (mixed.lower.defined()) sound.lower = widen(Bounds{mixed.lower, Tensor()}, rounding(r.lower, box.lower)).lower;
  sound.upper = widen(Bounds{Tensor(), mixed.upper}, rounding(r.upper, box.upper)).upper;
  return sound;
}

}  // namespace cte::relax
