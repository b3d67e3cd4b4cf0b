// Convex relaxations of ReLU networks as differentiable layers (paper section
// 2, appendix A). Given a network, an input box [lower0, upper0] per sample
// and optionally a specification matrix C per sample, compute_bounds returns
// lower and upper bounds of C z (z: the logits) as tensors on the tape, so
// the loss of the worst-case logits backpropagates through the relaxation
// into the weights (through the intermediate bounds l, u as well; the choice
// of case - stable or unstable, CROWN's adaptive slope - has no gradient).
//
//   box         interval arithmetic as a centre-radius forward pass (IBP)
//   hbox        DiffAI's hybrid zonotope: input error terms kept symbolic,
//               an unstable ReLU becomes centre u/2, box radius u/2 (what the
//               paper's numbers measured)
//   hbox_fresh  backsubstitution where an unstable ReLU is a fresh variable in [0, u]
//   deepz       backsubstitution, unstable ReLU: lambda x <= y <= lambda x - lambda l
//   crown       as deepz but the lower slope is 0 when -l >= u, else 1
//   crown0      CROWN-0 of the paper (appendix K.4): the lower bound y >= 0 on every
//               ReLU, stable active ones included (continuous in the weights)
//   crown0_unstable  lower slope 0 on unstable ReLUs only, stable ReLUs exact
//               (the authors' code option '0'; what crown0 meant before)
//   crown_ibp   Box intermediate bounds, CROWN backsubstitution for the output
// Stable ReLUs in every backsubstitution but crown0: u <= 0 gives 0, l >= 0 the
// identity (the identity wins when l = u = 0).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/tensor.h"

namespace cte {

//   triangle       the LP of the convex hull of each ReLU (section 5.2)
//   parallelogram  the LP of y >= 0, y >= x, y <= u, y <= x - l
// These two are certification-only here (relaxations/lp.h): computed on the
// CPU with GLPK and made sound through the LP dual; compute_bounds refuses
// them while gradients are recorded.
enum class Relaxation { box, hbox, hbox_fresh, deepz, crown, crown0, crown0_unstable, crown_ibp, triangle, parallelogram };
// Accepts the names above and the dashed spellings (hbox-fresh, crown-ibp,
// crown-ibp-r); throws "[relaxation] unknown ..." listing the valid names.
Relaxation parse_relaxation(const std::string& name);
const char* relaxation_name(Relaxation r);  // "box", "hbox", "hbox-fresh", "deepz", "crown", "crown0", "crown0-unstable", "crown-ibp", ...
std::vector<Relaxation> all_relaxations();  // the eight differentiable ones (not the LP relaxations)

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
};

struct Bounds {
  Tensor lower, upper;  // (N, K): K = rows of C, or the number of logits without a spec
};

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

}  // namespace cte
