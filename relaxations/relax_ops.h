// The fused differentiable ops of the relaxations and the building blocks
// that relaxations/{box,hbox,backsub}.cpp share.
//
// Fused ops (relax_ops.cpp): each has its shape checks, the forward kernel
// call and the backward rule side by side, and dispatches to the twins of
// kernels/relax_kernels.h (the affine steps to the GEMM and convolution
// twins of kernels/kernels.h). CTE_RELAXATION_OPS lists them in the format of
// engine/op_table.h, X(name, "kernel stems", differentiable), and
// tests/test_relaxation_fused.cpp walks it: every op must have a
// fused-vs-generic-ops check of values and gradients on every device.
//
// Building blocks: the Box forward pass (used by crown_ibp for its
// intermediate bounds) and the backsubstitution walker (used by every
// backsubstitution relaxation, and by hBox for the L1 norms of its symbolic
// rows). They are internal to relaxations/; the public API is relaxations.h.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/tensor.h"
#include "kernels/common/relu_relaxation.h"
#include "relaxations/relaxations.h"

// X(name, "kernel stems", differentiable)
#define CTE_RELAXATION_OPS(X)                                                        \
  X(box_relu, "box_relu_forward box_relu_backward", true)                            \
  X(hbox_relu, "hbox_relu_forward hbox_relu_backward", true)                         \
  X(backsub_relu, "backsub_relu_forward backsub_relu_backward reduce_sum", true)     \
  X(backsub_relu_live, "backsub_relu_live", false)                                   \
  X(backsub_linear, "gemm backsub_linear_live_forward backsub_linear_live_grad backsub_linear_live_weight_grad", true) \
  X(backsub_conv, "conv2d_backward_data conv2d_forward conv2d_backward_filter gemm binary fill reduce_sum", true) \
  X(backsub_input, "backsub_input_forward backsub_input_backward", true)

namespace cte::relax {

using kern::ReluRule;

// ---------------------------------------------------------------- fused ops

// Box ReLU on a centre-radius pair of one shape (any): l = c - r, u = c + r,
// c' = (relu(u) + relu(l)) / 2, r' = (relu(u) - relu(l)) / 2.
struct CentreRadiusPair {
  Tensor centre, radius;
};
CentreRadiusPair box_relu(const Tensor& centre, const Tensor& radius);

// hBox ReLU on centre c, L1 norm g of the symbolic row and box radius b (one
// shape, any): see kernels/common/relu_relaxation.h. centre and box are
// differentiable in all three inputs; lower = c - g - b and upper = c + g + b
// are returned without gradient (they only choose cases downstream).
struct HboxReluResult {
  Tensor centre, box, lower, upper;
};
HboxReluResult hbox_relu(const Tensor& centre, const Tensor& g_norm, const Tensor& box);

// One backsubstitution step through a ReLU whose input lies in [lower, upper]
// (N, n): coeffs (N, K, n), or (K, n) shared by every sample, become the
// coefficients (N, K, n) of the ReLU's input; bias_lower (N, K) collects the
// intercepts of the lower bound of each row, bias_upper (N, K) those of the
// upper bound (symmetric rules only; see kern::relu_rule_symmetric). Either
// bias is skipped (left undefined) when not wanted. bias_below (n), if
// defined, is the bias of the affine layer right under the ReLU, per neuron:
// it is folded into the intercepts (kern::fold_bias_below), so both biases
// carry that layer's share coeffs_out . bias_below and the layer itself must
// add none (the walk's LinearForm::bias_below_folded); differentiable in it.
struct BacksubReluResult {
  Tensor coeffs, bias_lower, bias_upper;
};
BacksubReluResult backsub_relu(ReluRule rule, const Tensor& coeffs, const Tensor& lower,
                               const Tensor& upper, bool want_bias_lower, bool want_bias_upper,
                               const Tensor& bias_below = Tensor());

// Which coefficient columns a ReLU step with input bounds [lower, upper] (N, n)
// reads the gradient of: 1 or 0 per (sample, neuron)
// (kern::backsub_relu_reads_coeff_grad), no gradient. backsub_linear takes it.
Tensor backsub_relu_live(ReluRule rule, const Tensor& lower, const Tensor& upper);

// Whether the walk hands backsub_linear the live columns of the ReLU step above
// it (relaxations/layers/relu.cpp): on by default; tests and bench_bounds turn
// it off to compare (the calling thread's setting).
void set_backsub_live_columns(bool on);
bool backsub_live_columns();

// One backsubstitution step through a linear layer x_out = W x_in + b:
// coeffs (N, K, n_out), or (K, n_out) shared, become coeffs W (N, K, n_in)
// (or (K, n_in)), and bias_term = coeffs b ((N, K) or (K)) is the bias's share
// of the bound (left undefined without a bias or when not wanted). Fused so
// that backward writes the coefficients' gradient once: dA = dA' W^T + dq b^T
// in one buffer, dW = A^T dA', db = A^T dq, all GEMMs.
// live (N, n_out), optional with per-sample coeffs: the ReLU step that produced
// coeffs reads their gradient only where live is nonzero (backsub_relu_live),
// so A W and A^T dA' sum over live columns alone (coeffs are 0 elsewhere, up to
// a NaN a zero slope made of an infinite coefficient) and dA' W^T is computed
// there alone and is 0 elsewhere (dq b^T is still added everywhere). On
// trained nets at large eps most neurons are dead (3% live in an hBox FC net's
// first layer at eps 0.3), and these products were most of an FC net's CROWN step.
// Only non-finite values see the difference: an inf or NaN in a dead column of
// coeffs or of dA' W^T (or in W's rows of dead neurons) no longer reaches the
// results through a product with 0.
struct BacksubAffineResult {
  Tensor coeffs, bias_term;
};
BacksubAffineResult backsub_linear(const Tensor& coeffs, const Tensor& weight, const Tensor& bias, bool want_bias,
                                   const Tensor& live = Tensor());

// The same through a convolution (weight (O, C, kh, kw), bias (O)) from
// per-sample shape in_shape (C, H, W) to out_shape (O, H', W'): coeffs over
// out_shape's neurons become coeffs over in_shape's by the transposed
// convolution (cuDNN's backward-data; never a dense matrix), and
// bias_term = sum over (o, y, x) of coeffs * b[o].
BacksubAffineResult backsub_conv(const Tensor& coeffs, const Tensor& weight, const Tensor& bias, int stride,
                                 int padding, const Shape& in_shape, const Shape& out_shape, bool want_bias);
// A conv's bias per output neuron: b[o] repeated over channel o's positions of
// out_shape (O, H', W'), flat (O*H'*W'); differentiable in b.
Tensor conv_bias_per_neuron(const Tensor& bias, const Shape& out_shape);

// The input step for per-sample coefficients (N, K, n0) over an input box with
// centre and radius (N, n0): centre_term = A c (N, K) and spread = |A| r (N, K).
struct BacksubInputResult {
  Tensor centre_term, spread;
};
BacksubInputResult backsub_input(const Tensor& coeffs, const Tensor& centre, const Tensor& radius);

// ---------------------------------------------------------------- sound mode (sound.cpp)
// BoundOptions::sound: every floating-point rounding of the float32 forward
// pass and of the relaxation's own arithmetic is covered by a slack term
// (the argument is written at the top of relaxations/sound.cpp). Slack
// vectors are nonnegative, per sample and flat: (N, n) at one level.

// Higham's gamma_m = m u / (1 - m u) for m + 16 terms (a little to spare for
// the few extra roundings around each step), u = 2^-24, rounded up to float.
float rounding_gamma(int64_t terms);

// A bound on |a'| for a' = layer(a) or its float32 evaluation, given |a| <= magnitude
// (N, n_in); linear, conv, normalize and flatten. Returns (N, n_out). Without
// the bias: a bound on |W a| (hBox's symbolic parts, which carry no bias).
Tensor magnitude_after(const Layer& layer, const Tensor& magnitude, int64_t batch, bool with_bias = true);

// How many roundings an affine layer's slack covers, gamma (|W| M + |b|) each
// (relaxations/sound.cpp says why each suffices):
//   backsubstitution  the float32 forward pass's own error e, the residual of the
//                     coefficients' product and a fold of C into W (last-layer elision);
//   box_step          e and a forward box step's rounding of c' = W c + b and r' = |W| r
//                     together (|c| + r <= M): Box's layers and hBox's box part;
//   generator_norm    hBox's generator norms: the residual and the fold; e is in hBox's box
//                     part, and counting it in both made sound hBox certify fewer images than
//                     sound Box (appendix C: never, in exact arithmetic).
// The two walks' kinds (backsubstitution, generator_norm) also count the layer's
// backsub_terms in their gamma (sound.cpp, item 6); box_step counts dot_terms only.
enum class AffineRoundings : int { backsubstitution, box_step, generator_norm };
constexpr int kAffineRoundingCount[] = {3, 2, 2};  // by AffineRoundings
constexpr int rounding_count(AffineRoundings kind) { return kAffineRoundingCount[static_cast<int>(kind)]; }

// The slack of one affine layer (linear, conv, normalize) for inputs |a| <= magnitude
// (N, n_in): `roundings` x gamma (|W| M + |b|), with up to extra_terms rows folded into W;
// without |b| where the walk carries no bias (hBox's generator norms).
// Returns (N, n_out); undefined for flatten and relu.
Tensor affine_slack(const Layer& layer, const Tensor& magnitude, int64_t batch, int64_t extra_terms = 0,
                    AffineRoundings roundings = AffineRoundings::backsubstitution, bool with_bias = true);

// The slack of one backsubstitution step through a ReLU whose input lies in
// [lower, upper] (N, n): the rounded slopes and intercepts of its linear
// bounds and the intercepts' dot product, gamma(n) max(|l|, |u|).
Tensor relu_slack(const Tensor& lower, const Tensor& upper);

// |W| v (+ |b| with with_bias) through one layer, v (N, n_in) flat -> (N, n_out)
// flat; normalize uses inv_std and |mean * inv_std|; ReLU and flatten pass v.
Tensor abs_layer_image(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias);

// |A| v per sample: coeffs (K, n) shared or (N, K, n), v (N, n) >= 0 -> (N, K).
Tensor abs_coeffs_times(const Tensor& coeffs, const Tensor& v);

// The unit roundoff times v: 2^-24 * v, for terms of a final sum.
Tensor roundoff(const Tensor& v, float ulps);

// lower - s and upper + s (either may be undefined), s = 1.03 slack plus the
// rounding of these subtractions themselves.
Bounds widen(const Bounds& bounds, const Tensor& slack);

// ---------------------------------------------------------------- shared building blocks

// A normalize layer as a per-neuron affine map y = scale x + shift over its
// flattened input: scale = inv_std, shift = -mean * inv_std, each (n).
struct NormalizeExpansion {
  Tensor scale, shift;
};
NormalizeExpansion expand_normalize(const Layer& layer, Device device);

// "[bounds] layer 3 (conv)" and friends, for error messages.
std::string layer_label(const Network& net, size_t index);

// Box (interval) forward pass. Returns the centre and radius of the output of
// layers [0, end), flattened per sample to (N, n); the pre-activation bounds
// of every ReLU before `end` are stored in relu_lower/relu_upper (indexed by
// layer, (N, n), undefined elsewhere) when those are non-null.
// With `sound`, the radius is widened at every layer by the slack of its
// rounding (and the stored ReLU bounds with it). begin > 0: the box given is
// that of level `begin` (flat or not) and the pass runs layers [begin, end).
// shrink > 0: BoundOptions::box_shrink (training only, not a bound).
CentreRadiusPair box_forward(const Network& net, const Tensor& centre0, const Tensor& radius0,
                             size_t end, std::vector<Tensor>* relu_lower, std::vector<Tensor>* relu_upper,
                             bool sound = false, size_t begin = 0, float shrink = 0.0f);
// The centre and radius of the input box [lower0, upper0], flattened or not
// as given; with `sound` the radius covers the rounding of both.
CentreRadiusPair box_of(const Tensor& lower0, const Tensor& upper0, bool sound);

// Bounds of the logits' linear images C z from their centre and radius by
// interval arithmetic: C c -+ |C| r. centre, radius (N, L); spec (N, K, L).
Bounds interval_spec(const Tensor& centre, const Tensor& radius, const Tensor& spec);

// What one backsubstitution computes at the input.
enum class BacksubMode {
  bounds_symmetric,  // one coefficient matrix, lower and upper intercept sums (symmetric rules)
  bounds_stacked,    // rows [C; -C]: lower bounds only, the upper ones are -lower(-C)
  generator_norm,    // |A| . radius0 only (hBox's symbolic part: no biases at all)
};

// Everything a backsubstitution reads. The tensors are handles, so the walker
// can run on stand-ins (gradient checkpointing re-runs it on leaves).
struct BacksubContext {
  const Network* net = nullptr;
  std::vector<Tensor> weight, bias;            // per layer (linear, conv), else undefined
  std::vector<Tensor> relu_lower, relu_upper;  // per ReLU layer: its input's bounds (N, n)
  std::vector<Tensor> norm_scale, norm_shift;  // per elementwise layer (normalize, batch_norm): y = scale x + shift, (n)
  Tensor centre0, radius0;                     // the box at input_level, (N, n)
  size_t input_level = 0;                      // 1 when a leading normalize is folded into the box
  int64_t batch = 0;
  ReluRule rule = ReluRule::deepz;
  BacksubMode mode = BacksubMode::bounds_symmetric;
  size_t memory_cap_bytes = size_t(1) << 30;
  size_t tape_budget_bytes = size_t(1) << 30;  // workspace still allowed on the tape unchecked
  // Sound mode: every result is widened by the slack of its rounding, and
  // magnitude[level] (N, n) bounds |activations| at each level (filled by
  // extend_magnitudes as intermediate bounds become known).
  bool sound = false;
  std::vector<Tensor> magnitude;  // per level 0..layers.size()
  // Sound mode, generator_norm walks (hBox): symbolic_magnitude[level] (N, n)
  // bounds the symbolic part G e of each neuron at the level, the vector the
  // walk's coefficients multiply: r0 at the input, |W| times the level below
  // through affine layers (the symbolic part has no bias), and through a ReLU
  // the level below where the neuron is kept (l >= 0), 0 where it is dropped.
  // The affine steps' residuals are bounded over it instead of the whole
  // activation's magnitude (relaxations/sound.cpp, item 4).
  std::vector<Tensor> symbolic_magnitude;
  // alpha-crown (alpha_crown.cpp), per ReLU layer or empty: (N, K, n) added to
  // the lower slope of CROWN's step for row k of a per-sample backsubstitution
  // (alpha - CROWN's slope on unstable ReLUs, 0 elsewhere). Only backsub_spec's
  // walk reads it; the intermediate bounds never do.
  std::vector<Tensor> lower_slope_shift;
  // parallelogram (alpha_crown.cpp), per ReLU layer or empty, (N, K, n): added
  // to the slope and the intercept of CROWN's upper line (the chord) where a
  // row's coefficient is negative, making it beta (x - l) + (1 - beta) u.
  std::vector<Tensor> upper_slope_shift, upper_intercept_shift;
  // hBox's sparse path (BoundOptions::sparse_intermediate), per ReLU layer or
  // empty (the dense path): the Box pass's bounds (N, n), which classify its
  // neurons; only the unstable ones get their generator norm backsubstituted
  // (relaxations/layers/relu.cpp, hbox_step).
  std::vector<Tensor> cheap_lower, cheap_upper;
};

BacksubContext make_backsub_context(const Network& net, const Tensor& lower0, const Tensor& upper0,
                                    ReluRule rule, BacksubMode mode, size_t memory_cap_bytes, bool sound = false);

// Sound mode: fills ctx.magnitude upwards from the input box as far as the
// known ReLU bounds allow (a ReLU's output is bounded by relu(upper)); call
// after setting ctx.relu_lower/relu_upper of a layer. No-op otherwise.
void extend_magnitudes(BacksubContext& ctx);

// Result of a backsubstitution: for bounds modes lower/upper (N, K); for
// generator_norm, g_norm (N, K).
struct BacksubResult {
  Tensor lower, upper, g_norm;
  uint64_t backsubstituted = 0;  // backsub_all_neurons: rows backsubstituted, summed over the samples
};

// The sparse path of backsub_all_neurons: needed (N * n_top flags, sample-major)
// marks the (sample, neuron) pairs to backsubstitute; every other pair takes
// fallback's value (lower and upper, or g_norm), which the caller vouches for:
// sound, and such that the neuron's relaxation does not depend on it (a ReLU
// it proves stable: every rule, crown0 included, relaxes those by constants).
struct SparseRows {
  std::vector<uint8_t> needed;
  BacksubResult fallback;
};

// The sparse path's cheap bounds: one Box pass from the input box, without a
// tape; lower[i], upper[i] (N, n) at every ReLU layer i (undefined elsewhere).
void box_lower_upper(const Network& net, const Tensor& lower0, const Tensor& upper0, bool sound,
                     std::vector<Tensor>& lower, std::vector<Tensor>& upper);
// The pairs unstable under [lower, upper] (N, n) marked needed; those bounds as the fallback.
SparseRows unstable_under(const Tensor& lower, const Tensor& upper);
// Adds ReLU layer `layer`'s final bounds r.lower, r.upper and r.backsubstituted to relu_layer_stats().
// GPU bounds are counted on the device, without a host round trip (backsub.cpp, ReluLayerCounts).
void record_relu_layer(size_t layer, const BacksubResult& r);

// Every ReLU layer's input bounds by backsubstitution under ctx.rule, bottom up,
// into ctx.relu_lower / relu_upper (what backsub_bounds does before the output
// walk): dense, or with options.sparse_intermediate only the pairs unstable under
// cheap interval bounds (refined by options.sparse_early_stops), the rest keeping
// those bounds. Each layer is added to relu_layer_stats().
void backsub_intermediate_bounds(BacksubContext& ctx, const Tensor& lower0, const Tensor& upper0,
                                 const BoundOptions& options);

// Bounds (or generator norms) of every neuron of the output of layers
// [0, top), flattened: (N, n_top). Intermediate bounds of ReLU layer `top`
// come from here. With no ReLU under `top` and one affine layer, a forward
// pass W c + b -+ |W| r gives them directly. Otherwise it works in chunks of
// neurons sized by memory_cap_bytes; chunks go on the tape while
// ctx.tape_budget_bytes lasts, and beyond that each chunk is
// gradient-checkpointed (the tape then holds only its outputs and recomputes
// it in backward). With `sparse`, only its needed pairs are backsubstituted.
BacksubResult backsub_all_neurons(BacksubContext& ctx, size_t top, const SparseRows* sparse = nullptr);

// Counts of backsub_all_neurons' chunks on this thread since the last reset
// (tests check that a small memory cap really chunks and checkpoints).
struct BacksubChunkStats {
  uint64_t chunks = 0, checkpointed_chunks = 0;
  uint64_t sparse_shared_chunks = 0, sparse_per_sample_chunks = 0;  // the sparse path's, by row plan
  uint64_t patch_chunks = 0;                                           // the patches path's
  // Field by field (host_bound_stats' deltas).
  BacksubChunkStats combined(const BacksubChunkStats& other, int sign) const;
};
BacksubChunkStats backsub_chunk_stats();
void reset_backsub_chunk_stats();
void set_backsub_chunk_stats(const BacksubChunkStats& stats);  // a resumed epoch's counts so far

// This thread's bound statistics that the host keeps (relu_layer_stats' pairs
// and backsubstituted, and the unstable pairs of CPU bounds; the chunk
// counts). A CUDA graph runs the host code once, at capture: the trainer takes
// what a capture added and adds it again at each replay, whose kernels add the
// device-side unstable counts themselves. None of these reads the device.
struct HostBoundStats {
  std::vector<ReluLayerStats> relu;
  BacksubChunkStats chunks;
};
HostBoundStats host_bound_stats();
HostBoundStats host_bound_stats_since(const HostBoundStats& before);
void add_host_bound_stats(const HostBoundStats& delta);
void restore_host_bound_stats(const HostBoundStats& saved);  // as they were (a capture that failed)
// Tests: false counts the unstable pairs of GPU bounds on the host too (default true).
void set_relu_counts_on_device(bool on);

// A constant the bounds build from host values on every call (identity rows,
// the [I, -I] stacker of a per-sample spec, the patches' identity kernel).
// `key` names the values (shape included); fill(values) writes them. On a GPU
// the first call of a thread uploads it and later calls reuse that copy, so a
// training step makes no host round trip for it and can be captured as a CUDA
// graph (up to kDeviceConstantBudget bytes per thread; past it, a constant is
// uploaded per call as before). On the CPU it is built per call. Callers must
// not write to it.
constexpr size_t kDeviceConstantBudget = size_t(256) << 20;
Tensor constant_tensor(const std::string& key, const Shape& shape,
                       const std::function<void(std::vector<float>&)>& fill, Device device);
// Tests: the constants this thread keeps on a GPU, and how many uploads there were (kept or not).
struct DeviceConstantStats {
  size_t count = 0, bytes = 0;
  uint64_t uploads = 0;
};
DeviceConstantStats device_constant_stats();
void clear_device_constants();  // tests: forget them (no captured graph may still use them)

// How the sparse path batches its rows on this thread: by its cost estimate
// (the default), or always one of the two plans (tests cover both with it).
enum class RowPlanChoice { by_cost, shared, per_sample };
void set_row_plan_choice(RowPlanChoice choice);

// The patches path of backsub_all_neurons (backsub_patches.cpp): a conv
// layer's outputs (or those of elementwise layers right above it: conv,
// BatchNorm) bounded through conv, ReLU, conv, ..., conv, with elementwise
// layers anywhere between, down to the input with per-position windows
// instead of dense rows. patch_window_sum: the sum of the window sizes
// (C kh kw) its per-(sample, position) coefficients take at each level, 0
// where it does not apply (sound mode, no ReLU under the top conv, or other
// layers under `top`). patch_chunk_bounds_transposed: output
// channels [first_channel, first_channel + channels) of level `top`, as
// chunk_bounds_transposed returns them: (channels * H' * W', N) per output.
// By cost (the default) it runs where it moves fewer coefficients than the
// dense or sparse rows would; tests force either path on this thread.
enum class PatchChoice { by_cost, never, always };
void set_patch_choice(PatchChoice choice);
PatchChoice patch_choice();
int64_t patch_window_sum(const BacksubContext& ctx, size_t top);
std::vector<Tensor> patch_chunk_bounds_transposed(const BacksubContext& ctx, size_t top, int64_t first_channel,
                                                  int64_t channels);

// Bounds (or norms) of C z with z the network's output: spec (N, K, L),
// folded into the last linear layer when `elide` (for backsubstitution this
// is the same computation: C is simply the starting coefficient matrix;
// BoundOptions::elide_last_layer false instead bounds the logits, spec
// undefined here, and applies C by interval arithmetic: backsub_bounds).
// need_lower false (bounds modes): only the upper bounds; a stacked rule then
// walks -C alone instead of [C; -C].
// top < layers.size(): spec (N, K, n_top) over the neurons of level `top`
// instead (the optimised intermediate bounds of triangle and parallelogram).
BacksubResult backsub_spec(BacksubContext& ctx, const Tensor& spec, bool elide, bool need_lower = true,
                           size_t top = size_t(-1));

// ---------------------------------------------------------------- the relaxations
// compute_bounds (relaxations.cpp) validates its arguments and dispatches here.
Bounds box_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                  const BoundOptions& options);                                        // box.cpp
// Box's last step, from the centre-radius box h of the layer box_end() says:
// the last layer's input with last-layer elision, else the network's output.
size_t box_end(const Network& net, const Tensor& spec, const BoundOptions& options);
Bounds box_output_bounds(const Network& net, const CentreRadiusPair& h, const Tensor& spec, const BoundOptions& options);
Bounds hbox_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                   const BoundOptions& options);                                       // hbox.cpp
// deepz, crown, crown0, hbox_fresh (intermediate bounds by the same
// backsubstitution) and crown_ibp (intermediate bounds by Box).      backsub.cpp
Bounds backsub_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                      Relaxation relaxation, const BoundOptions& options);
// alpha-crown's output walk on a context whose ReLU bounds are all set:
// the lower slopes of its unstable ReLUs optimised per row of `spec` (folded
// into the last layer), then that walk of ctx with the best slopes held fixed
// (recorded on the caller's tape, sound when ctx.sound). Branch and bound
// (verify/bab.cpp) bounds its subdomains with it.                   alpha_crown.cpp
BacksubResult optimised_walk(BacksubContext& ctx, const Tensor& spec, bool need_lower, const BoundOptions& options);
// alpha-crown: CROWN's intermediate bounds, then the output backsubstitution
// with lower slopes optimised per spec row; triangle and parallelogram: every
// bound so, intermediate ones included (parallelogram: the upper line too).
//                                                                     alpha_crown.cpp
Bounds alpha_crown_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                          Relaxation relaxation, const BoundOptions& options);

}  // namespace cte::relax
