// Backsubstitution (paper section 2, appendix A): DeepZ, CROWN, CROWN-0 (both variants),
// hbox-fresh and CROWN-IBP, plus the walker hBox uses for its symbolic part.
//
// K linear functions of the neurons at one level are held as coefficients A
// ((K, n) shared by every sample, or (N, K, n)) and biases (LinearForm).
// Walking down, each layer's backsub_step (relaxations/layers/<kind>.cpp):
// linear  q += A b, A = A W (fused op backsub_linear);  conv  q += A b_full,
// A = the transposed convolution of A (backsub_conv, never a dense matrix);
// normalize  q += A (-mean * inv_std), A = A * inv_std;  flatten  nothing
// (the layout is flat throughout); ReLU  the fused backsub_relu op, which
// also takes the q += A b of an affine layer right under it by folding b into
// its intercepts (the table's output_bias; that layer then adds none), since a
// separate pass over A for A b, and two more in the backward, cost a CONV
// net's CROWN or DeepZ step about a sixth of its time (not in sound mode). At the
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
// memory_cap_bytes. Chunks go on the tape whole while the tape budget
// (memory_cap_bytes per compute_bounds call) lasts, saving their
// recomputation; beyond it each chunk is gradient-checkpointed, so the tape
// keeps only the chunk's bounds and peak memory stays near the cap.
// The outputs of a conv layer with only conv, ReLU, conv, ... under it (and
// elementwise layers, BatchNorm and normalize, anywhere between) go by the
// patches path instead where that is cheaper (backsub_patches.cpp): each
// neuron's row is nonzero only on its receptive field, carried as windows.
#include <algorithm>
#include <initializer_list>
#include <string>

#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

// Bytes of workspace per coefficient element: the coefficients, their gradient
// and one temporary (|A|, a transposed-convolution buffer) at a time.
constexpr size_t kWorkspaceFactor = 3;

int64_t level_width(const Network& net, size_t level) {
  return level == 0 ? net.input_shape().numel() : net.layers()[level - 1].out_shape.numel();
}

Tensor identity_rows(int64_t rows, int64_t n, int64_t first, Device device) {
  const std::string key = "identity rows " + std::to_string(first) + "+" + std::to_string(rows) + " of " +
                          std::to_string(n);
  return constant_tensor(key, Shape{rows, n}, [&](std::vector<float>& values) {
    for (int64_t k = 0; k < rows; ++k) values[size_t(k * n + first + k)] = 1.0f;
  }, device);
}

// [T; -T] along the rows: T (K, n) or (K) shared, stacked along axis 0.
Tensor stack_negated_shared(const Tensor& t) { return ops::concat_batch({t, ops::neg(t)}); }

// [C; -C] along axis 1 of a per-sample spec (N, K, L): (N, 2K, L).
Tensor stack_negated_spec(const Tensor& spec) {
  const int64_t rows = spec.size(1);
  const Tensor stacker = constant_tensor(  // [I, -I]: (K, 2K)
      "stacker " + std::to_string(rows), Shape{rows, 2 * rows},
      [&](std::vector<float>& signs) {
        for (int64_t k = 0; k < rows; ++k) {
          signs[size_t(k * 2 * rows + k)] = 1.0f;
          signs[size_t(k * 2 * rows + rows + k)] = -1.0f;
        }
      },
      spec.device());
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

// Sound mode: the roundings an affine step's slack covers. hBox's generator norms
// (mode generator_norm) leave the float32 pass's own error to hBox's box part.
AffineRoundings affine_roundings(const BacksubContext& ctx) {
  return ctx.mode == BacksubMode::generator_norm ? AffineRoundings::generator_norm : AffineRoundings::backsubstitution;
}

// Sound mode: the slack of the walk's affine step through layers[index] (N, n_out),
// with up to extra_terms rows of C folded into it. A generator-norm walk (hBox)
// bounds its residuals over the symbolic parts alone, which carry no bias.
Tensor walk_affine_slack(const BacksubContext& ctx, size_t index, int64_t extra_terms = 0) {
  const bool generator = ctx.mode == BacksubMode::generator_norm;
  const Tensor& magnitude = generator ? ctx.symbolic_magnitude[index] : magnitude_at(ctx, index);
  if (!magnitude.defined())
    fail("bounds", "sound mode: no symbolic magnitude bound at level " + std::to_string(index) +
                       " (its ReLU is not bounded yet)");
  return affine_slack(ctx.net->layers()[index], magnitude, ctx.batch, extra_terms, affine_roundings(ctx),
                      /*with_bias=*/!generator);
}

// Sound mode: the slack of stepping down through layers[index], over its output (N, n_out).
Tensor step_slack(const BacksubContext& ctx, size_t index) {
  const Layer& layer = ctx.net->layers()[index];
  switch (bound_rules(layer).role) {
    case LayerRole::activation:
      return kern::relu_rule_exact(ctx.rule) ? Tensor() : relu_slack(ctx.relu_lower[index], ctx.relu_upper[index]);
    case LayerRole::reshape: return Tensor();
    case LayerRole::affine:
    case LayerRole::elementwise: break;
  }
  return walk_affine_slack(ctx, index);
}

// Sound mode: the slack of the input step (rounded box, A c0 and |A| r0), (N, n0).
// A generator-norm walk (hBox) has no A c0: r0's rounding, |A| r0's and the
// centre's (sound.cpp, item 4).
Tensor input_slack(const BacksubContext& ctx) {
  if (ctx.mode == BacksubMode::generator_norm)
    return ops::add(ops::scale(ctx.radius0, 2.0f * rounding_gamma(ctx.centre0.size(1))),
                    roundoff(ops::abs(ctx.centre0), 4.0f));
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
  if (ctx.sound) add_slack(f, step_slack(ctx, index));
  bound_rules(ctx.net->layers()[index]).backsub_step(ctx, index, f);
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

// Which neurons of level `top` one chunk bounds: [first, first + count) of
// every sample (the dense path), or `count` listed ones (the sparse path):
// the same for every sample, or per sample with -1 as padding (a zero row).
struct NeuronRows {
  int64_t first = 0, count = 0;
  std::vector<int64_t> shared;      // (count)
  std::vector<int64_t> per_sample;  // (N, count)
  bool listed() const { return !shared.empty() || !per_sample.empty(); }
};

// One-hot rows picking rows' neurons among n: (count, n) shared or (N, count, n)
// per sample; with `negated_copy`, [S; -S] along the rows (the stacked rules' [C; -C]).
Tensor selection_rows(const NeuronRows& rows, int64_t n, int64_t batch, bool negated_copy, Device device) {
  const bool per_sample = !rows.per_sample.empty();
  const int64_t k = rows.count, copies = negated_copy ? 2 : 1, samples = per_sample ? batch : 1;
  std::vector<float> values(size_t(samples * copies * k * n), 0.0f);
  for (int64_t s = 0; s < samples; ++s)
    for (int64_t row = 0; row < k; ++row) {
      const int64_t j = per_sample ? rows.per_sample[size_t(s * k + row)] : rows.shared[size_t(row)];
      if (j < 0) continue;
      for (int64_t c = 0; c < copies; ++c) values[size_t(((s * copies + c) * k + row) * n + j)] = c == 0 ? 1.0f : -1.0f;
    }
  return Tensor::from_vector(values, per_sample ? Shape{batch, copies * k, n} : Shape{copies * k, n}, device);
}

// The listed rows' results (N, count) put at their neurons' places in (N, n), zero elsewhere.
Tensor scatter_rows(const Tensor& results, const NeuronRows& rows, int64_t n, Device device) {
  const Tensor selection = selection_rows(rows, n, results.size(0), false, device);
  if (selection.ndim() == 2) return ops::matmul(results, selection);  // (N, count)(count, n)
  const int64_t batch = results.size(0), k = results.size(1);
  return ops::reshape(ops::matmul(ops::reshape(results, Shape{batch, 1, k}), selection), Shape{batch, n});
}

// Bounds of the neurons `rows` names at level `top`: a range transposed to
// (count, N), listed rows scattered into (N, n_top) (zero elsewhere).
std::vector<Tensor> chunk_bounds_transposed(const BacksubContext& ctx, size_t top, const NeuronRows& rows) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  const int64_t first = rows.first, count = rows.count;
  LinearForm f;
  size_t level = top;
  if (rows.listed()) {
    // Selection rows over level `top`: the walk's first step (through layers[top - 1]) makes them
    // the weight rows, bias and slack the dense start takes directly, with the same values.
    f.coeffs = selection_rows(rows, level_width(*ctx.net, top), ctx.batch,
                              ctx.mode == BacksubMode::bounds_stacked, ctx.centre0.device());
  } else if (top >= 1 && bound_rules(layers[top - 1]).dense_rows) {
    // Start from the weight rows: A = W[first:first+count], q = b[first:first+count].
    f.coeffs = ops::slice_batch(ctx.weight[top - 1], first, first + count);
    if (track_bias && ctx.bias[top - 1].defined()) f.bias = ops::slice_batch(ctx.bias[top - 1], first, first + count);
    level = top - 1;
    if (ctx.sound)  // the skipped step's slack: that of the top layer's own rows
      f.slack = slack_columns(walk_affine_slack(ctx, top - 1), first, count,
                              ctx.mode == BacksubMode::bounds_stacked);
  } else {
    f.coeffs = identity_rows(count, level_width(*ctx.net, top), first, ctx.centre0.device());
  }
  if (ctx.mode == BacksubMode::bounds_stacked && !rows.listed()) {
    f.coeffs = stack_negated_shared(f.coeffs);
    if (f.bias.defined()) f.bias = stack_negated_shared(f.bias);
  }
  for (size_t i = level; i-- > ctx.input_level;) step_down(ctx, i, f);
  const BacksubResult r = finish_at_input(ctx, f);
  if (rows.listed()) {
    const int64_t n = level_width(*ctx.net, top);
    const Device device = ctx.centre0.device();
    switch (ctx.mode) {
      case BacksubMode::generator_norm: return {scatter_rows(r.g_norm, rows, n, device)};
      case BacksubMode::bounds_symmetric:
        return {scatter_rows(r.lower, rows, n, device), scatter_rows(r.upper, rows, n, device)};
      case BacksubMode::bounds_stacked: {
        auto [lower, negated_upper] = split_rows_transposed(r.lower);
        return {scatter_rows(ops::transpose(lower), rows, n, device),
                scatter_rows(ops::neg(ops::transpose(negated_upper)), rows, n, device)};
      }
    }
  }
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
    crossed = crossed || bound_rules(layers[i]).role == LayerRole::activation;
    if (crossed) sum += layers[i].in_shape.numel();
  }
  return sum;
}

// Sum of the widths at which the coefficients of a backsubstitution from
// `top` are shared in the dense path: level `top` and the levels above the
// highest ReLU under it (per-sample selection rows make them per-sample too).
int64_t shared_widths(const Network& net, size_t top) {
  const std::vector<Layer>& layers = net.layers();
  int64_t sum = level_width(net, top);
  for (size_t i = top; i-- > 0 && bound_rules(layers[i]).role != LayerRole::activation;) sum += layers[i].in_shape.numel();
  return sum;
}

// How the sparse path batches the needed (sample, neuron) pairs into rows:
// the union over the batch, shared by every sample (the first steps stay
// shared, as in the dense path), or each sample's own list padded with -1 to
// the longest (per-sample from the top, so the shared steps cost N times
// more): whichever moves fewer coefficients. The CPU's live-column products
// (kernels/cpu/relax.cpp) skip a sample's padding rows, so there a per-sample
// plan costs its mean list, not the longest; the GPU's dense products do not.
struct RowPlan {
  NeuronRows all;
  bool per_sample = false;
  int64_t count = 0;  // rows (per sample when per_sample)
  int64_t needed = 0;  // (sample, neuron) pairs listed, padding not counted (per_sample only)
};

thread_local RowPlanChoice g_row_plan_choice = RowPlanChoice::by_cost;

// Each sample's needed neurons (flags (N, n)) as its own list, padded with -1
// to the longest: the per-sample plan.
RowPlan per_sample_plan(const std::vector<uint8_t>& needed, int64_t n, int64_t batch) {
  std::vector<std::vector<int64_t>> lists(static_cast<size_t>(batch));
  RowPlan plan;
  plan.per_sample = true;
  for (int64_t s = 0; s < batch; ++s) {
    for (int64_t j = 0; j < n; ++j)
      if (needed[size_t(s * n + j)]) lists[size_t(s)].push_back(j);
    plan.count = std::max<int64_t>(plan.count, int64_t(lists[size_t(s)].size()));
    plan.needed += int64_t(lists[size_t(s)].size());
  }
  plan.all.per_sample.assign(size_t(batch * plan.count), -1);
  for (int64_t s = 0; s < batch; ++s)
    std::copy(lists[size_t(s)].begin(), lists[size_t(s)].end(), plan.all.per_sample.begin() + s * plan.count);
  return plan;
}

RowPlan plan_rows(const Network& net, size_t top, const std::vector<uint8_t>& needed, int64_t batch, Device device) {
  const int64_t n = level_width(net, top);
  if (int64_t(needed.size()) != batch * n)
    fail("bounds", "sparse rows: " + std::to_string(needed.size()) + " flags for " + std::to_string(batch) + " x " +
                       std::to_string(n) + " neurons");
  RowPlan per_sample = per_sample_plan(needed, n, batch), shared;
  for (int64_t j = 0; j < n; ++j)
    for (int64_t s = 0; s < batch; ++s)
      if (needed[size_t(s * n + j)]) {
        shared.all.shared.push_back(j);
        break;
      }
  shared.count = int64_t(shared.all.shared.size());
  const int64_t per_sample_width = per_sample_widths(net, top);
  // Rows a per-sample plan computes per sample: the longest list, or on the CPU (padding
  // skipped) the mean one, compared as totals over the batch.
  const int64_t per_sample_rows = device == Device::cpu ? per_sample.needed : per_sample.count * batch;
  const bool take_per_sample =
      g_row_plan_choice == RowPlanChoice::by_cost
          ? per_sample_rows * (per_sample_width + shared_widths(net, top)) < shared.count * batch * per_sample_width
          : g_row_plan_choice == RowPlanChoice::per_sample;
  return take_per_sample ? per_sample : shared;
}

// Rows [first, first + count) of a plan (of every sample's list when per sample).
NeuronRows chunk_of(const RowPlan& plan, int64_t first, int64_t count, int64_t batch) {
  NeuronRows rows;
  rows.count = count;
  if (!plan.per_sample) {
    rows.shared.assign(plan.all.shared.begin() + first, plan.all.shared.begin() + first + count);
    return rows;
  }
  for (int64_t s = 0; s < batch; ++s) {
    const auto begin = plan.all.per_sample.begin() + s * plan.count + first;
    rows.per_sample.insert(rows.per_sample.end(), begin, begin + count);
  }
  return rows;
}

thread_local BacksubChunkStats g_chunk_stats;

// True when between the (possibly normalized) input box and level `top` lie
// only flatten and elementwise layers and at most one linear or conv layer:
// the bounds are then those of one affine map over a box, W c + b -+ |W| r,
// which a forward pass computes without forming any coefficient matrix (for
// a conv layer the backsubstitution would start from an identity over all
// its outputs). An elementwise layer y = s x + t keeps this exact: it maps a
// box onto a box (c' = s c + t, r' = |s| r), before the affine layer or after
// it (|s W| = |s| |W| row by row), so conv + BatchNorm goes this way too.
bool single_affine_layer(const BacksubContext& ctx, size_t top) {
  int affine = 0;
  for (size_t i = ctx.input_level; i < top; ++i) {
    const LayerRole role = bound_rules(ctx.net->layers()[i]).role;
    if (role == LayerRole::affine) ++affine;
    else if (role != LayerRole::reshape && role != LayerRole::elementwise) return false;
  }
  return affine <= 1;
}

BacksubResult single_affine_bounds(const BacksubContext& ctx, size_t top) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  // Box's centre/radius walk (the centre only when biases count), reshaped per layer.
  Tensor c = track_bias ? ctx.centre0 : Tensor(), r = ctx.radius0;
  for (size_t i = ctx.input_level; i < top; ++i) {
    const CentreRadiusPair out = bound_rules(layers[i]).box_step(layers[i], c, r, ctx.batch);
    c = out.centre;
    r = out.radius;
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

BacksubChunkStats BacksubChunkStats::combined(const BacksubChunkStats& other, int sign) const {
  static_assert(sizeof(BacksubChunkStats) == 5 * sizeof(uint64_t), "a new count must be combined here too");
  // Unsigned wrap-around makes the difference of two counts exact as long as it is >= 0 (a delta).
  auto mix = [sign](uint64_t a, uint64_t b) { return sign > 0 ? a + b : a - b; };
  BacksubChunkStats r;
  r.chunks = mix(chunks, other.chunks);
  r.checkpointed_chunks = mix(checkpointed_chunks, other.checkpointed_chunks);
  r.sparse_shared_chunks = mix(sparse_shared_chunks, other.sparse_shared_chunks);
  r.sparse_per_sample_chunks = mix(sparse_per_sample_chunks, other.sparse_per_sample_chunks);
  r.patch_chunks = mix(patch_chunks, other.patch_chunks);
  return r;
}

BacksubChunkStats backsub_chunk_stats() { return g_chunk_stats; }
void set_row_plan_choice(RowPlanChoice choice) { g_row_plan_choice = choice; }
void reset_backsub_chunk_stats() { g_chunk_stats = BacksubChunkStats{}; }
void set_backsub_chunk_stats(const BacksubChunkStats& stats) { g_chunk_stats = stats; }

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
    switch (bound_rules(layer).role) {
      case LayerRole::affine:
        ctx.weight[i] = layer.weight;
        ctx.bias[i] = layer.bias;
        break;
      case LayerRole::elementwise: {
        const NormalizeExpansion e = bound_rules(layer).scale_shift(layer, lower0.device());
        ctx.norm_scale[i] = e.scale;
        ctx.norm_shift[i] = e.shift;
        break;
      }
      case LayerRole::reshape:
      case LayerRole::activation: break;
    }
  }
  if (count > 0 && bound_rules(layers[0]).role == LayerRole::elementwise) {
    // A leading elementwise layer maps the input box onto a box exactly
    // (radius times |scale|: a BatchNorm's gamma may be negative): start from
    // the mapped box and let every walk stop above it.
    ctx.centre0 = ops::add(ops::mul(ctx.centre0, ctx.norm_scale[0]), ctx.norm_shift[0]);
    ctx.radius0 = ops::mul(ctx.radius0, ops::abs(ctx.norm_scale[0]));
    ctx.input_level = 1;
  }
  if (sound) {
    ctx.magnitude.resize(count + 1);
    ctx.magnitude[0] = ops::reshape(ops::maximum(ops::abs(lower0), ops::abs(upper0)), flat);  // exact
    if (mode == BacksubMode::generator_norm) ctx.symbolic_magnitude.resize(count + 1);
    extend_magnitudes(ctx);
  }
  return ctx;
}

namespace {

// Sound mode, generator_norm walks: BacksubContext::symbolic_magnitude upwards
// from the input radius, as far as the known ReLU bounds allow.
void extend_symbolic_magnitudes(BacksubContext& ctx) {
  std::vector<Tensor>& symbolic = ctx.symbolic_magnitude;
  if (symbolic.empty()) return;
  const std::vector<Layer>& layers = ctx.net->layers();
  // The exact radius is within the float one's rounding (16 ulps to spare).
  if (!symbolic[ctx.input_level].defined())
    symbolic[ctx.input_level] = ops::add(ctx.radius0, roundoff(ctx.radius0, 16.0f));
  for (size_t level = ctx.input_level + 1; level <= layers.size(); ++level) {
    if (symbolic[level].defined()) continue;
    const Layer& below = layers[level - 1];
    if (bound_rules(below).role == LayerRole::activation) {
      const Tensor& lower = ctx.relu_lower[level - 1];
      if (!lower.defined()) return;  // known once that ReLU is bounded
      // hbox_symbolic keeps a neuron's symbolic part where l >= 0 (relu_case:
      // identity) and drops it (times 0) elsewhere, NaN included.
      const Tensor kept = ops::compare(lower, Tensor::zeros(lower.shape(), lower.device()), kern::BinaryOp::ge);
      symbolic[level] = ops::mul(kept, symbolic[level - 1]);
    } else {
      symbolic[level] = magnitude_after(below, symbolic[level - 1], ctx.batch, /*with_bias=*/false);
    }
  }
}

}  // namespace

void extend_magnitudes(BacksubContext& ctx) {
  if (!ctx.sound) return;
  extend_symbolic_magnitudes(ctx);
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
    if (bound_rules(below).role == LayerRole::activation) {
      if (!ctx.relu_upper[level - 1].defined()) return;  // known once that ReLU is bounded
      magnitude[level] = ops::relu(ctx.relu_upper[level - 1]);
    } else {
      magnitude[level] = magnitude_after(below, magnitude[level - 1], ctx.batch);
    }
  }
}

BacksubResult backsub_all_neurons(BacksubContext& ctx, size_t top, const SparseRows* sparse) {
  const Network& net = *ctx.net;
  if (single_affine_layer(ctx, top)) return single_affine_bounds(ctx, top);
  const int64_t neurons = level_width(net, top);
  const int64_t batch = ctx.batch;
  const Device device = ctx.centre0.device();
  if (neurons == 0) {  // nothing to bound: empty results of the right shape
    BacksubResult result;
    result.lower = result.upper = result.g_norm = Tensor::zeros(Shape{batch, 0}, device);
    return result;
  }
  RowPlan plan = sparse ? plan_rows(net, top, sparse->needed, batch, device) : RowPlan{{}, false, neurons};
  if (sparse && !plan.per_sample && plan.count == neurons) {  // every neuron needed: the dense path as it is
    sparse = nullptr;
    plan = RowPlan{{}, false, neurons};
  }
  const size_t rows_per_neuron = ctx.mode == BacksubMode::bounds_stacked ? 2 : 1;
  // Workspace per neuron: per-sample coefficients at every level under the
  // top ReLU, or (all shared) the shared ones plus the (N, n) results; per-sample
  // selection rows are per-sample at every level.
  int64_t widths = (per_sample_widths(net, top) + (plan.per_sample ? shared_widths(net, top) : 0)) * batch;
  if (widths == 0)
    for (size_t i = 0; i <= top; ++i) widths += level_width(net, i) + batch;
  // The patches path (backsub_patches.cpp) bounds every neuron, whole output
  // channels at a time, with windows instead of rows: taken where its
  // coefficients (every neuron's windows) are fewer than the rows' (widths).
  const int64_t window_sum = patch_window_sum(ctx, top);
  const bool patches = window_sum > 0 && (patch_choice() == PatchChoice::always ||
                                          (patch_choice() == PatchChoice::by_cost &&
                                           neurons * window_sum * batch < plan.count * widths));
  const int64_t positions = patches ? neurons / net.layers()[top - 1].out_shape[0] : 1;
  const int64_t rows = patches ? neurons / positions : plan.count;  // chunked units: channels or rows
  const int64_t unit_width = patches ? positions * window_sum * batch : widths;
  const size_t bytes_per_neuron = std::max<size_t>(1, size_t(unit_width) * sizeof(float) * rows_per_neuron * kWorkspaceFactor);
  const int64_t chunk = std::clamp<int64_t>(int64_t(ctx.memory_cap_bytes / bytes_per_neuron), 1, std::max<int64_t>(rows, 1));
  const std::vector<Tensor> packed = pack(ctx);
  const bool recording = should_record(packed);

  // Per output, the chunks' blocks: (count, N) for ranges, (N, n) scattered for listed rows.
  std::vector<std::vector<Tensor>> pieces;
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t count = std::min(chunk, rows - first);
    const NeuronRows chunk_rows =
        sparse && !patches ? chunk_of(plan, first, count, batch) : NeuronRows{first, count, {}, {}};
    std::vector<Tensor> outputs;
    ++g_chunk_stats.chunks;
    if (patches) ++g_chunk_stats.patch_chunks;
    else if (sparse) ++(plan.per_sample ? g_chunk_stats.sparse_per_sample_chunks : g_chunk_stats.sparse_shared_chunks);
    auto bounds_of = [patches, top, chunk_rows](const BacksubContext& c) {
      return patches ? patch_chunk_bounds_transposed(c, top, chunk_rows.first, chunk_rows.count)
                     : chunk_bounds_transposed(c, top, chunk_rows);
    };
    // Decided per chunk, not per layer: a layer wider than what is left of the
    // budget still keeps its first chunks (CONV+ CROWN at a 1 GiB cap: about
    // half of the work that would otherwise be recomputed in the backward pass).
    const size_t chunk_bytes = bytes_per_neuron * size_t(count);
    const bool on_tape = !recording || chunk_bytes <= ctx.tape_budget_bytes;
    if (recording && on_tape) ctx.tape_budget_bytes -= chunk_bytes;
    if (on_tape) {
      outputs = bounds_of(ctx);
    } else {
      ++g_chunk_stats.checkpointed_chunks;
      const BacksubContext like = ctx;
      outputs = checkpointed("backsub_chunk", packed, [like, bounds_of](const std::vector<Tensor>& in) {
        return bounds_of(unpack(like, in));
      });
    }
    pieces.resize(outputs.size());
    for (size_t k = 0; k < outputs.size(); ++k) pieces[k].push_back(outputs[k]);
  }
  BacksubResult result;
  result.backsubstituted = uint64_t(patches ? neurons : rows) * uint64_t(batch);
  // Dense ranges (and patches): (n, N) blocks in order; listed rows: (N, n) blocks with disjoint supports.
  auto assemble = [&](size_t k) {
    if (sparse && !patches) {
      Tensor sum = pieces[k][0];
      for (size_t c = 1; c < pieces[k].size(); ++c) sum = ops::add(sum, pieces[k][c]);
      return sum;
    }
    const Tensor all = pieces[k].size() == 1 ? pieces[k][0] : ops::concat_batch(pieces[k]);
    return ops::transpose(all);  // (n, N) -> (N, n)
  };
  if (sparse) {
    // The needed pairs take the computed values, the others the fallback's,
    // whichever rows the plan computed (a shared plan computes every sample's
    // row of a neuron some sample needs; the patches path, every neuron): a
    // sample's bounds do not depend on the plan, nor on the other samples of
    // its batch, nor on the device (whose plans differ: see plan_rows).
    const std::vector<float> computed(sparse->needed.begin(), sparse->needed.end());
    const Tensor mask = Tensor::from_vector(computed, Shape{batch, neurons}, device);
    auto assemble_sparse = [&](size_t k, const Tensor& fallback) {
      return pieces.empty() ? fallback : ops::select(mask, assemble(k), fallback);
    };
    if (ctx.mode == BacksubMode::generator_norm) {
      result.g_norm = assemble_sparse(0, sparse->fallback.g_norm);
    } else {
      result.lower = assemble_sparse(0, sparse->fallback.lower);
      result.upper = assemble_sparse(1, sparse->fallback.upper);
    }
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

BacksubResult backsub_spec(BacksubContext& ctx, const Tensor& spec, bool elide, bool need_lower, size_t top) {
  const std::vector<Layer>& layers = ctx.net->layers();
  top = std::min(top, layers.size());
  if (!spec.defined()) return backsub_all_neurons(ctx, top);
  const bool stacked = ctx.mode == BacksubMode::bounds_stacked;
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  // Stacked rules read upper(C z) as -lower(-C z): [C; -C] for both sides, -C for the upper alone.
  Tensor rows = spec;  // (N, K', L)
  if (stacked) rows = need_lower ? stack_negated_spec(spec) : ops::neg(spec);
  LinearForm f;
  size_t level = top;
  if (elide && top >= 1 && bound_rules(layers[top - 1]).dense_rows) {
    // Last-layer elision: W' = C W (N, K', n_in), b' = C b (N, K').
    if (ctx.sound)  // the last layer's slack, with C folded into it
      f.slack = abs_coeffs_times(rows, walk_affine_slack(ctx, top - 1, rows.size(1)));
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

// Sparse intermediate bounds (BoundOptions::sparse_intermediate). A stable
// ReLU (l >= 0 or u <= 0) is relaxed by constants in every backsubstitution
// rule (identity or zero; crown0's stable active y >= 0, y <= x too), so
// bounds that prove it stable decide its relaxation as well as the dense
// backsubstitution's own bounds would: the cheap interval bounds below
// classify every neuron, only the unstable ones are backsubstituted, and the
// stable ones keep the cheap bounds (only their case is ever read: no
// gradient flows into them in the dense path either, so they are computed
// without a tape). Where both classifications agree the result is the dense
// one. A neuron the cheap bounds prove stable but the dense backsubstitution
// does not (interval bounds are not always looser) is relaxed exactly here:
// tighter than dense, and as sound, since the cheap bounds are. In sound mode
// the magnitude bounds read the stable neurons' cheap upper bounds, so the
// slack (not the relaxation) may differ from dense by a few roundoffs.
// crown0 only with BoundOptions::sparse_crown0: there the cheap bounds prove
// stable so many neurons its own loose bounds do not (41% vs 2% unstable on a
// Box-trained CONV's hidden layer) that the result is another relaxation.

// The pairs of ReLU layer `relu` to backsubstitute: those unstable under the
// cheap bounds, the Box pass's [box_lower, box_upper] intersected with the
// interval image of the previous ReLU's output box [relu(l), relu(u)] (its
// final bounds, tighter than Box's where they were backsubstituted).
SparseRows unstable_rows(const BacksubContext& ctx, size_t relu, size_t previous_relu, const Tensor& box_lower,
                         const Tensor& box_upper) {
  NoGrad no_grad;
  Tensor lower = box_lower, upper = box_upper;
  if (previous_relu < relu) {
    const CentreRadiusPair out = box_of(ops::relu(ctx.relu_lower[previous_relu]),
                                        ops::relu(ctx.relu_upper[previous_relu]), ctx.sound);
    std::vector<Tensor> step_lower(relu + 1), step_upper(relu + 1);
    box_forward(*ctx.net, out.centre, out.radius, relu + 1, &step_lower, &step_upper, ctx.sound, previous_relu + 1);
    lower = ops::maximum(lower, step_lower[relu]);
    upper = ops::minimum(upper, step_upper[relu]);
  }
  return unstable_under(lower, upper);
}

// Early stops (BoundOptions::sparse_early_stops). On a certifiably trained
// net the interval bounds leave many neurons unstable that the
// backsubstitution proves stable: on the DeepZ-trained FC at eps 0.3, 61% of
// the last hidden layer's neurons per image against 4%. Backsubstituting a
// neuron only down to the output of a ReLU below and bounding the form over
// that ReLU's output box [relu(l), relu(u)] costs a fraction of the full walk
// (the widest products sit at the bottom) and is sound wherever the full
// walk's bounds are: an affine form over a box containing every value that
// level takes. On that net the first stop leaves 20% unstable, the second 5%.
// So each still-unstable neuron goes down to the second ReLU output below its
// layer (at the first, the bound is the interval step's), those proven stable drop out, the rest start again to the next stop,
// and what is left after the lowest stop takes the full walk (the caller's).
// A neuron proven stable here is relaxed by constants as under the interval
// bounds (see above); its fallback bounds are the tighter ones. A neuron still
// unstable takes the full walk's bounds, not intersected with the stops', so
// that where the classifications agree the result is the dense path's. The
// rows walked to the stops are not counted in relu_layer_stats'
// `backsubstituted` (the full walks only). No tape: no
// gradient flows into a stable neuron's bounds. Fast mode only: the sound
// mode's slack would have to be carried to each stop, and hbox's generator
// norms bound no affine form.
void refine_by_early_stops(const BacksubContext& ctx, size_t relu, SparseRows& rows) {
  if (ctx.sound || ctx.mode == BacksubMode::generator_norm) return;
  NoGrad no_grad;
  const std::vector<Layer>& layers = ctx.net->layers();
  const int64_t batch = ctx.batch, n = level_width(*ctx.net, relu);
  const Device device = ctx.centre0.device();
  std::vector<float> lower = rows.fallback.lower.to_vector(), upper = rows.fallback.upper.to_vector();
  bool refined = false;
  // Stops: the output levels of the ReLUs below `relu`, top down (level i + 1 of ReLU layer i),
  // but the first: bounding over the box right under this layer is the interval step that
  // unstable_rows already took.
  std::vector<size_t> stops;
  for (size_t i = relu; i-- > ctx.input_level;)
    if (bound_rules(layers[i]).role == LayerRole::activation) stops.push_back(i + 1);
  if (!stops.empty()) stops.erase(stops.begin());
  const bool stacked = ctx.mode == BacksubMode::bounds_stacked;
  for (const size_t stop : stops) {
    const RowPlan plan = per_sample_plan(rows.needed, n, batch);
    const int64_t longest = plan.count;
    if (longest == 0) break;
    // Chunks of each sample's list within the memory cap, as backsub_all_neurons sizes its own:
    // per row, the per-sample coefficients at every level from `relu` down to `stop`.
    int64_t widths = 0;
    for (size_t level = stop; level <= relu; ++level) widths += level_width(*ctx.net, level);
    const size_t bytes_per_row =
        std::max<size_t>(1, size_t(widths * batch * (stacked ? 2 : 1)) * sizeof(float) * kWorkspaceFactor);
    const int64_t chunk = std::clamp<int64_t>(int64_t(ctx.memory_cap_bytes / bytes_per_row), 1, longest);
    // The forms walked to level `stop` are bounded over ReLU layer stop - 1's output box.
    BacksubContext at_stop = ctx;
    const Tensor low = ops::relu(ctx.relu_lower[stop - 1]), high = ops::relu(ctx.relu_upper[stop - 1]);
    at_stop.centre0 = ops::scale(ops::add(high, low), 0.5f);
    at_stop.radius0 = ops::scale(ops::sub(high, low), 0.5f);
    for (int64_t first_row = 0; first_row < longest; first_row += chunk) {
      const NeuronRows pending = chunk_of(plan, first_row, std::min(chunk, longest - first_row), batch);
      LinearForm f;
      f.coeffs = selection_rows(pending, n, batch, stacked, device);
      for (size_t i = relu; i-- > stop;) step_down(ctx, i, f);
      const BacksubResult r = finish_at_input(at_stop, f);
      // (N, K) lower and upper of the listed rows ((N, 2K) lower of [S; -S] when stacked).
      const std::vector<float> first = r.lower.to_vector(), second = stacked ? first : r.upper.to_vector();
      const int64_t k = pending.count, width = stacked ? 2 * k : k;
      for (int64_t s = 0; s < batch; ++s)
        for (int64_t row = 0; row < k; ++row) {
          const int64_t j = pending.per_sample[size_t(s * k + row)];
          if (j < 0) continue;  // padding
          const size_t at = size_t(s * n + j);
          const float l = first[size_t(s * width + row)];
          const float u = stacked ? -second[size_t(s * width + k + row)] : second[size_t(s * width + row)];
          lower[at] = std::max(lower[at], l);
          upper[at] = std::min(upper[at], u);
          rows.needed[at] = kern::relu_case(lower[at], upper[at]) == kern::ReluCase::unstable;
        }
    }
    refined = true;
  }
  if (!refined) return;
  rows.fallback.lower = Tensor::from_vector(lower, rows.fallback.lower.shape(), device);
  rows.fallback.upper = Tensor::from_vector(upper, rows.fallback.upper.shape(), device);
}

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

void box_lower_upper(const Network& net, const Tensor& lower0, const Tensor& upper0, bool sound,
                     std::vector<Tensor>& lower, std::vector<Tensor>& upper) {
  NoGrad no_grad;
  const std::vector<Layer>& layers = net.layers();
  lower.assign(layers.size(), Tensor());
  upper.assign(layers.size(), Tensor());
  size_t end = 0;
  for (size_t i = 0; i < layers.size(); ++i)
    if (bound_rules(layers[i]).role == LayerRole::activation) end = i + 1;
  const CentreRadiusPair box0 = box_of(lower0, upper0, sound);
  box_forward(net, box0.centre, box0.radius, end, &lower, &upper, sound);
}

namespace {

// One ReLU layer's statistics on this thread. Bounds on the CPU are counted on
// the host (a read is free there). Bounds on a GPU are counted on the device,
// into two float scalars the step updates in place, so that a training step
// never waits for the device and a CUDA graph's replay adds its own counts;
// they are read only by relu_layer_stats(). The count stays exact:
//  - the count c of one call is exact: every partial sum of its 0/1 mask is an
//    integer below 2^23 (larger calls are counted on the host instead);
//  - c goes into `low`, and low's part above 2^19 moves into `high`:
//    (low + 2^43) - 2^43 is low rounded to a multiple of 2^19 or 2^20, exactly,
//    so low stays below 2^20 in magnitude and high, a sum of such multiples, is
//    exact up to 2^43 pairs.
struct ReluLayerCounts {
  ReluLayerStats host;            // pairs, backsubstituted, and the unstable pairs of CPU bounds
  Tensor device_low, device_high;  // the unstable pairs of GPU bounds (scalars; undefined: none yet)
  Tensor device_zero;             // the comparisons' 0, made with them rather than once per call
};
thread_local std::vector<ReluLayerCounts> g_relu_layer_counts;

constexpr int64_t kDeviceCountLimit = int64_t(1) << 23;
thread_local bool g_count_on_device = true;  // tests: off counts GPU bounds on the host, for comparison
constexpr float kCarryShift = 8796093022208.0f;  // 2^43

ReluLayerCounts& layer_counts(size_t layer) {
  for (ReluLayerCounts& c : g_relu_layer_counts)
    if (c.host.layer == layer) return c;
  g_relu_layer_counts.push_back(ReluLayerCounts{ReluLayerStats{layer, 0, 0, 0}, Tensor(), Tensor(), Tensor()});
  return g_relu_layer_counts.back();
}

void count_unstable_on_device(ReluLayerCounts& counts, const Tensor& lower, const Tensor& upper) {
  NoGrad no_grad;
  const Device device = lower.device();
  if (!counts.device_low.defined()) {
    // A graph would keep a capture's own blocks only as long as it lives: the
    // accumulators are made by the eager steps before any capture.
    if (gpu::capturing())
      fail("relu statistics", "layer " + std::to_string(counts.host.layer) +
                                  "'s device counters would be made during a CUDA graph capture");
    counts.device_low = Tensor::zeros(Shape{}, device);
    counts.device_high = Tensor::zeros(Shape{}, device);
    counts.device_zero = Tensor::zeros(Shape{}, device);
  }
  // Stable: l >= 0 (identity) or u <= 0 (dead), as kern::relu_case; NaN counts as unstable there too.
  const Tensor& zero = counts.device_zero;
  const Tensor stable = ops::sum(ops::maximum(ops::compare(lower, zero, kern::BinaryOp::ge),
                                              ops::compare(upper, zero, kern::BinaryOp::le)));
  // low + (pairs - stable): integers below 2^24 throughout, so exact.
  const Tensor low = ops::add_scalar(ops::sub(counts.device_low, stable), float(lower.numel()));
  const Tensor carried = ops::add_scalar(ops::add_scalar(low, kCarryShift), -kCarryShift);
  counts.device_low.copy_from(ops::sub(low, carried));
  counts.device_high.copy_from(ops::add(counts.device_high, carried));
}

}  // namespace

void record_relu_layer(size_t layer, const BacksubResult& r) {
  ReluLayerCounts& counts = layer_counts(layer);
  counts.host.pairs += uint64_t(r.lower.numel());
  counts.host.backsubstituted += r.backsubstituted;  // 0 where a forward pass gave the bounds (one affine layer)
  if (r.lower.device() == Device::cuda && r.lower.numel() < kDeviceCountLimit && g_count_on_device) {
    count_unstable_on_device(counts, r.lower, r.upper);
    return;
  }
  const std::vector<float> l = r.lower.to_vector(), u = r.upper.to_vector();
  for (size_t k = 0; k < l.size(); ++k)
    counts.host.unstable += kern::relu_case(l[k], u[k]) == kern::ReluCase::unstable;
}

void set_relu_counts_on_device(bool on) { g_count_on_device = on; }

void restore_host_bound_stats(const HostBoundStats& saved) {
  for (ReluLayerCounts& c : g_relu_layer_counts) c.host = ReluLayerStats{c.host.layer, 0, 0, 0};
  for (const ReluLayerStats& s : saved.relu) layer_counts(s.layer).host = s;
  g_chunk_stats = saved.chunks;
}

HostBoundStats host_bound_stats() {
  HostBoundStats s;
  for (const ReluLayerCounts& c : g_relu_layer_counts) s.relu.push_back(c.host);
  s.chunks = g_chunk_stats;
  return s;
}

HostBoundStats host_bound_stats_since(const HostBoundStats& before) {
  HostBoundStats delta = host_bound_stats();
  for (ReluLayerStats& d : delta.relu)
    for (const ReluLayerStats& b : before.relu)
      if (b.layer == d.layer) {
        d.pairs -= b.pairs;
        d.unstable -= b.unstable;
        d.backsubstituted -= b.backsubstituted;
      }
  delta.chunks = delta.chunks.combined(before.chunks, -1);
  return delta;
}

void add_host_bound_stats(const HostBoundStats& delta) {
  for (const ReluLayerStats& d : delta.relu) {
    ReluLayerStats& h = layer_counts(d.layer).host;
    h.pairs += d.pairs;
    h.unstable += d.unstable;
    h.backsubstituted += d.backsubstituted;
  }
  g_chunk_stats = g_chunk_stats.combined(delta.chunks, +1);
}

SparseRows unstable_under(const Tensor& lower, const Tensor& upper) {
  SparseRows rows;
  const std::vector<float> l = lower.to_vector(), u = upper.to_vector();
  rows.needed.resize(l.size());
  for (size_t k = 0; k < l.size(); ++k) rows.needed[k] = kern::relu_case(l[k], u[k]) == kern::ReluCase::unstable;
  rows.fallback.lower = lower;
  rows.fallback.upper = upper;
  return rows;
}

void backsub_intermediate_bounds(BacksubContext& ctx, const Tensor& lower0, const Tensor& upper0,
                                 const BoundOptions& options) {
  const Network& net = *ctx.net;
  const std::vector<Layer>& layers = net.layers();
  const bool sparse_path = options.sparse_intermediate && (ctx.rule != ReluRule::crown0 || options.sparse_crown0);
  std::vector<Tensor> box_lower, box_upper;  // the sparse path's cheap bounds: one Box pass
  if (sparse_path) box_lower_upper(net, lower0, upper0, options.sound, box_lower, box_upper);
  size_t previous_relu = layers.size();  // none yet
  for (size_t i = 0; i < layers.size(); ++i) {
    if (bound_rules(layers[i]).role != LayerRole::activation) continue;
    SparseRows sparse;
    if (sparse_path) {
      sparse = unstable_rows(ctx, i, previous_relu, box_lower[i], box_upper[i]);
      if (options.sparse_early_stops) refine_by_early_stops(ctx, i, sparse);
    }
    const BacksubResult r = backsub_all_neurons(ctx, i, sparse_path ? &sparse : nullptr);
    ctx.relu_lower[i] = r.lower;
    ctx.relu_upper[i] = r.upper;
    record_relu_layer(i, r);
    extend_magnitudes(ctx);
    previous_relu = i;
  }
}

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
      if (bound_rules(layers[i]).role == LayerRole::activation) end = i + 1;
    if (beta < 1.0f) end = box_end(net, spec, options);
    const CentreRadiusPair box0 = box_of(lower0, upper0, options.sound);
    box_output = box_forward(net, box0.centre, box0.radius, end, &ctx.relu_lower, &ctx.relu_upper, options.sound);
    extend_magnitudes(ctx);
  } else {
    backsub_intermediate_bounds(ctx, lower0, upper0, options);
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

namespace cte {

std::vector<ReluLayerStats> relu_layer_stats() {
  std::vector<ReluLayerStats> out;
  for (const relax::ReluLayerCounts& c : relax::g_relu_layer_counts) {
    ReluLayerStats s = c.host;
    if (c.device_low.defined())  // the one read of the device counters: both are integers, their sum exact in double
      s.unstable += uint64_t(double(c.device_low.item()) + double(c.device_high.item()));
    if (s.pairs > 0) out.push_back(s);
  }
  return out;
}

void reset_relu_layer_stats() {
  // Zeroed in place: a captured CUDA graph keeps adding to the same device counters.
  for (relax::ReluLayerCounts& c : relax::g_relu_layer_counts) {
    c.host = ReluLayerStats{c.host.layer, 0, 0, 0};
    if (c.device_low.defined()) {
      c.device_low.copy_from(c.device_zero);
      c.device_high.copy_from(c.device_zero);
    }
  }
}

void set_relu_layer_stats(const std::vector<ReluLayerStats>& stats) {
  reset_relu_layer_stats();
  for (const ReluLayerStats& s : stats) relax::layer_counts(s.layer).host = s;
}

}  // namespace cte
