// Convex relaxations of ReLU networks as differentiable layers (paper section
// 2, appendix A). Given a network, an input box [lower0, upper0] per sample
// and optionally a specification matrix C per sample, compute_bounds returns
// lower and upper bounds of C z (z: the logits) as tensors on the tape, so
// the loss of the worst-case logits backpropagates through the relaxation
// into the weights (through the intermediate bounds l, u as well; the choice
// of case - stable or unstable, CROWN's adaptive slope - has no gradient).
// The relaxations are the rows of CTE_RELAXATIONS below. Stable ReLUs in every
// backsubstitution but crown0: u <= 0 gives 0, l >= 0 the identity (the
// identity wins when l = u = 0).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/tensor.h"
#include "kernels/common/relu_relaxation.h"

namespace cte {

// Who computes a relaxation's bounds (compute_bounds dispatches on it).
enum class BoundsEngine {
  box,      // relaxations/box.cpp: a centre-radius forward pass
  hbox,     // relaxations/hbox.cpp: the hybrid zonotope forward pass
  backsub,  // relaxations/backsub.cpp: linear forms backsubstituted to the input
  lp,       // relaxations/lp.cpp: GLPK, sound through the dual; no gradient
  optimised_slopes,  // relaxations/alpha_crown.cpp: backsubstitution whose slopes are optimised per spec row
};

// Where the bounds l, u of the ReLUs' inputs come from.
enum class IntermediateBounds {
  box_pass,      // interval arithmetic (the Box pass)
  hbox_pass,     // the hybrid zonotope pass itself
  backsub_pass,  // a backsubstitution of every neuron with the same rule, layer by layer
  lp_pass,       // each neuron's own LP over everything before it
  optimised_pass,  // each unstable neuron's backsubstitution with its own optimised slopes (the LP's value, by its dual)
};

// The relaxation table: everything that differs between two relaxations is a
// column here; parsing, names, --help lists, dispatch, gradient availability
// and the README's relaxation table all read it (a test checks the README).
// Adding a relaxation: one row here plus its per-neuron rule in
// kernels/common/relu_relaxation.h (README, "Extending").
//   X(id, name, aliases (comma-separated), engine, backsub rule (kern::ReluRule,
//     read when the engine is backsub or hbox), LP rule (kern::LpReluRule, read
//     when the engine is lp), the per-neuron rule as a reader finds it in
//     relu_relaxation.h, intermediate bounds, summary)
#define CTE_RELAXATIONS(X)                                                                                            \
  X(box, "box", "ibp", box, crown, triangle, "box_relu", box_pass,                                                   \
    "interval arithmetic as a centre-radius forward pass (IBP)")                                                     \
  X(hbox, "hbox", "", hbox, hbox_symbolic, triangle, "hbox_relu + relu_linear_bounds(hbox_symbolic)", hbox_pass,     \
    "DiffAI's hybrid zonotope: input error terms kept symbolic, an unstable ReLU becomes centre u/2, box radius u/2") \
  X(hbox_fresh, "hbox-fresh", "hbox_fresh", backsub, hbox_fresh, triangle, "relu_linear_bounds(hbox_fresh)",         \
    backsub_pass, "backsubstitution where an unstable ReLU is a fresh variable in [0, u]")                            \
  X(deepz, "deepz", "", backsub, deepz, triangle, "relu_linear_bounds(deepz)", backsub_pass,                          \
    "backsubstitution, unstable ReLU: lambda x <= y <= lambda x - lambda l, lambda = u / (u - l)")                    \
  X(crown, "crown", "", backsub, crown, triangle, "relu_linear_bounds(crown)", backsub_pass,                          \
    "as deepz but the lower slope is 0 when -l >= u, else 1 (--crown-tie 1: 0 only when -l > u)")                                                         \
  X(crown0, "crown0", "", backsub, crown0, triangle, "relu_linear_bounds(crown0)", backsub_pass,                      \
    "CROWN-0 of the paper (appendix K.4): the lower bound y >= 0 on every ReLU, stable active ones included")          \
  X(crown0_unstable, "crown0-unstable", "crown0_unstable", backsub, crown0_unstable, triangle,                        \
    "relu_linear_bounds(crown0_unstable)", backsub_pass,                                                              \
    "lower slope 0 on unstable ReLUs only, stable ReLUs exact (the authors' code option '0')")                        \
  X(crown_ibp, "crown-ibp", "crown_ibp,crown-ibp-r", backsub, crown, triangle, "relu_linear_bounds(crown)", box_pass, \
    "Box intermediate bounds, CROWN backsubstitution for the output")                                                 \
  X(alpha_crown, "alpha-crown", "alpha_crown", optimised_slopes, crown, triangle,                                    \
    "relu_linear_bounds(crown), lower slope optimised", backsub_pass,                                                 \
    "CROWN's intermediate bounds; the output walk's lower slopes in [0, 1] optimised per spec row by Adam on the "     \
    "bound (alpha-CROWN; --alpha-steps, --alpha-lr, --alpha-patience)")                                               \
  X(triangle, "triangle", "", optimised_slopes, crown, triangle, "relu_linear_bounds(crown), lower slope optimised",  \
    optimised_pass,                                                                                                   \
    "section 5.2's Triangle (the convex hull of each ReLU) as its LP's dual: every bound, intermediate ones "         \
    "included, by lower slopes in [0, 1] optimised per row (upper line: the chord)")                                 \
  X(parallelogram, "parallelogram", "", optimised_slopes, crown, parallelogram,                                       \
    "relu_linear_bounds(crown), both lines optimised", optimised_pass,                                                \
    "section 5.2's Parallelogram (y >= 0, y >= x, y <= u, y <= x - l) as its LP's dual: lower slope in [0, 1] and "  \
    "upper line beta (x - l) + (1 - beta) u, beta in [0, 1], optimised per row, intermediate bounds included")       \
  X(triangle_lp, "triangle-lp", "triangle_lp", lp, crown, triangle, "lp_relu_half_planes(triangle)", lp_pass,         \
    "Triangle as an LP solved by GLPK, the exact reference (certification only)")                                    \
  X(parallelogram_lp, "parallelogram-lp", "parallelogram_lp", lp, crown, parallelogram,                               \
    "lp_relu_half_planes(parallelogram)", lp_pass, "Parallelogram as an LP solved by GLPK, the exact reference "      \
    "(certification only)")

#define CTE_RELAXATION_ENUM(id, ...) id,
enum class Relaxation { CTE_RELAXATIONS(CTE_RELAXATION_ENUM) };
#undef CTE_RELAXATION_ENUM

struct RelaxationInfo {
  Relaxation id;
  const char* name;     // the canonical spelling (flags, JSON, tables)
  const char* aliases;  // other accepted spellings, comma-separated
  BoundsEngine engine;
  kern::ReluRule relu_rule;   // backsub and hbox engines: the linear bounds of an unstable ReLU
  kern::LpReluRule lp_rule;   // lp engine: the half-planes of an unstable ReLU
  const char* neuron_rule;    // where the per-neuron rule lives in kernels/common/relu_relaxation.h
  IntermediateBounds intermediate;
  const char* summary;
  // Differentiable (trainable): every engine but the LP.
  constexpr bool has_gradient() const { return engine != BoundsEngine::lp; }
};

#define CTE_RELAXATION_ROW(id, name, aliases, engine, relu_rule, lp_rule, neuron_rule, intermediate, summary)          \
  RelaxationInfo{Relaxation::id,     name,                      aliases, BoundsEngine::engine, kern::ReluRule::relu_rule, \
                 kern::LpReluRule::lp_rule, neuron_rule, IntermediateBounds::intermediate, summary},
inline constexpr RelaxationInfo kRelaxationTable[] = {CTE_RELAXATIONS(CTE_RELAXATION_ROW)};
#undef CTE_RELAXATION_ROW

// The row of r (rows are in enum order, checked at compile time in relaxations.cpp).
const RelaxationInfo& relaxation_info(Relaxation r);
// Accepts each row's name and aliases; throws "[relaxation] unknown ..." listing the valid names.
Relaxation parse_relaxation(const std::string& name);
const char* relaxation_name(Relaxation r);  // the row's name: "box", "hbox-fresh", "crown-ibp", ...
// The differentiable relaxations with a fixed per-neuron rule, in table order:
// neither the LPs nor alpha-crown, whose slopes an optimisation chooses (the
// double reference of tests/reference_bounds.cpp covers exactly these).
std::vector<Relaxation> all_relaxations();
// "box, hbox, ..., parallelogram": every name, for --help texts and messages.
std::string relaxation_names_list(bool differentiable_only = false);
// The README's relaxation table (Markdown), generated from the rows.
std::string relaxation_table_markdown();

// alpha-crown: Adam steps on the lower slopes (0: CROWN's slopes), Adam's
// learning rate, and the early stop: after `patience` steps in a row in which
// no spec row's bound improved by more than 1e-6 relative (0: every step
// runs). Every iterate is a sound bound; each row keeps its best.
// triangle and parallelogram (optimised_pass) read the same options for
// every bound, and optimise an intermediate layer's neurons in chunks whose
// slopes, Adam state and backsubstitution workspace fit memory_cap_bytes
// (rows share no slopes, so chunking changes only the time).
struct AlphaCrownOptions {
  int steps = 20;
  float lr = 0.1f;
  int patience = 5;
  size_t memory_cap_bytes = size_t(256) << 20;
};

struct BoundOptions {
  // Fold C into the last linear layer (last-layer elision, the paper's
  // default). Without it, every relaxation bounds the logits first and
  // applies C by interval arithmetic: [l_y' - u_y, u_y' - l_y] for a margin.
  //
  // Without it the backsubstitution relaxations bound the logits too and
  // apply C to that box by interval arithmetic: the authors' `--C eye`
  // (what table 6 trains the FC DeepZ rows at eps 0.2/0.3 with).
  bool elide_last_layer = true;
  // Budget for one chunk of backsubstitution workspace (bytes). Intermediate
  // bounds of wide layers are computed this many neurons at a time, each
  // chunk gradient-checkpointed, so peak memory stays near the cap.
  size_t memory_cap_bytes = size_t(1) << 30;
  // False: compute only the upper bounds of C z, all that certification and
  // the certified loss read (both use upper(z_y' - z_y) < 0); Bounds::lower
  // is then left undefined. CROWN-style rules bound the output through
  // [C; -C], so this halves their output backsubstitution.
  bool need_lower = true;
  // crown_ibp only: return beta * CROWN-IBP + (1 - beta) * Box, Zhang et
  // al.'s combined bound (the crown-ibp training method), sharing the Box pass
  // that gives CROWN-IBP its intermediate bounds. In [0, 1]; 0 is Box alone.
  float crown_ibp_beta = 1.0f;
  // CROWN's lower slope for an unstable ReLU with -l = u exactly (crown and
  // crown-ibp; the other rules have no tie): 0, the paper's section 2 (slope
  // 0 when -l >= u), or 1, the authors' code (slope 0 only when -l > u).
  int crown_tie_slope = 0;
  // Sound mode (certification): the bounds hold for the real-valued network
  // on the input box AND for the engine's float32 forward pass, every
  // rounding of both and of the relaxation's own float32 arithmetic
  // accounted for (relaxations/sound.cpp states the argument). Costs about
  // one extra coefficient-times-vector product per layer; no gradients are
  // recorded for the slack terms. Training keeps the fast bounds (false).
  bool sound = false;
  // Backsubstitution relaxations with backsubstituted intermediate bounds
  // (crown, crown0, deepz, hbox-fresh) and hbox's generator norms: classify
  // each ReLU's neurons by cheap interval bounds first and backsubstitute
  // only the rows of the ones that are unstable under them
  // (relaxations/backsub.cpp says why the result is the dense one's, or
  // tighter; hbox.cpp why hbox's is the dense one's; hbox takes it on the
  // CPU only). false: every neuron (the dense path, for tests and comparison).
  bool sparse_intermediate = true;
  // crown0 on the sparse path too (off by default): its own bounds are often
  // far looser than the cheap ones (y >= 0 on every ReLU), so the sparse path
  // would relax exactly many neurons the paper's CROWN-0 relaxes by the chord:
  // tighter, sound, but no longer the paper's CROWN-0 numbers.
  bool sparse_crown0 = false;
  // The sparse path's classification, refined (fast mode, not hbox's generator
  // norms): the neurons still unstable under the interval bounds are
  // backsubstituted only down to the output of the second ReLU below them
  // (bounding over the first one's is the interval step) and bounded over its
  // box; those that this proves stable drop out, and the rest go one ReLU
  // further, and so on (relaxations/backsub.cpp, early stops).
  // Off by default: a neuron proven stable this way that the full walk leaves
  // unstable is relaxed exactly, so the bounds are no longer the paper's
  // relaxation's (on a DeepZ-trained FC, 0.5 points of certified accuracy
  // either way); train --early-stops and bench_bounds --early-stops set it.
  bool sparse_early_stops = false;
  // alpha-crown's optimisation of the lower slopes.
  AlphaCrownOptions alpha;
  // Box only, for training only: SABR's CIFAR-10 2/255 "shrinking box"
  // (eth-sri/SABR: --use_shrinking_box --shrinking_relu_state cross
  // --shrinking_method to_zero_shrinking_box --shrinking_ratio R). Before each
  // ReLU the upper bound of every crossing neuron (l < 0 < u) is scaled by
  // 1 - R/2 towards zero. The result is NOT a bound: like SABR's small box it
  // makes the training loss less regularising; compute_bounds refuses it in
  // sound mode and with any other relaxation. In [0, 1); 0: off.
  float box_shrink = 0.0f;
  // Check that every weight is finite before bounding (naming the layer that is
  // not). On a GPU that costs one device-to-host copy per call; a training step
  // turns it off, since a NaN weight makes its loss NaN, which the step flags
  // on the device (train/trainer.h) without the host waiting.
  bool check_finite_weights = true;
};

struct Bounds {
  Tensor lower, upper;  // (N, K): K = rows of C, or the number of logits without a spec
};

// Per ReLU layer, summed over the compute_bounds calls on this thread since
// the last reset (backsubstituted intermediate bounds only: crown, crown0,
// deepz, hbox, hbox-fresh): (sample, neuron) pairs, how many of them are unstable
// under the intermediate bounds used, and how many rows were backsubstituted
// (the dense path: all of them; the sparse one: the unstable ones under the
// cheap bounds, plus padding or other samples' rows where they are batched).
// GPU bounds are counted on the device and read here, by relu_layer_stats().
struct ReluLayerStats {
  size_t layer = 0;
  uint64_t pairs = 0, unstable = 0, backsubstituted = 0;
};
std::vector<ReluLayerStats> relu_layer_stats();
void reset_relu_layer_stats();
void set_relu_layer_stats(const std::vector<ReluLayerStats>& stats);  // a resumed epoch's counts so far

// lower0, upper0: (N, input_shape...) with lower0 <= upper0 (the caller clips
// to the data range). spec: (N, K, n_logits), or undefined for the logits'
// own bounds. Tensors on the network's device.
Bounds compute_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                      Relaxation relaxation, const BoundOptions& options = {});

// The margin specification for labels y (N): rows e_{y'} - e_y for every
// y' != y, in increasing y': (N, K-1, K). A sample is certified when every
// upper bound is below 0.
Tensor margin_spec(const std::vector<int>& labels, int num_classes, Device device);

// The input box of an L-inf ball: [x - eps, x + eps], clipped to [0, 1] unless clip is false.
// round_outward: each end moved outwards past the rounding of x -+ eps, so the
// box contains the real ball (what sound certification needs).
std::pair<Tensor, Tensor> input_box(const Tensor& x, float eps, bool clip = true, bool round_outward = false);

// The margin by which a sample is certified: -max_k upper(C_k z), (N) values
// (> 0 exactly when certified; NaN bounds give NaN).
std::vector<float> certified_margins(const Bounds& margin_bounds);

// Certified: every margin bound (upper bound of z_y' - z_y) is below 0. (N) booleans.
std::vector<bool> certified(const Bounds& margin_bounds);

// Worst-case logits for the certified-training loss from margin bounds:
// (N, K) with 0 at the true class and upper(z_y' - z_y) elsewhere, so that
// softmax_cross_entropy(worst, y) is the paper's L_CE(z_hat, y) shifted by z_y.
Tensor worst_case_logits(const Bounds& margin_bounds, const std::vector<int>& labels, int num_classes);
// The same from the margin specification the bounds were computed for (N, K-1, K),
// e.g. ops::margin_spec of labels on the device: no label leaves the host.
Tensor worst_case_logits(const Bounds& margin_bounds, const Tensor& spec);

}  // namespace cte
