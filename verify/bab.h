// Complete verification of a property (verify/property.h) on a ReLU network:
// a PGD attack first (a cheap `sat`), then branch and bound over ReLU splits.
//
// Bounding. A subdomain fixes the phase of some ReLUs (x_j >= 0: active, x_j
// <= 0: inactive). It is bounded by the engine's CROWN backsubstitution
// (relaxations/backsub.cpp) in its sound mode, many subdomains as one batch:
// layer by layer the intermediate bounds of every ReLU input are computed
// and a split neuron's are clamped to [max(l, 0), u] (active) or
// [l, min(u, 0)] (inactive), which makes it stable for everything after it.
// This is the simplest sound form of the split constraints: they enter only
// through the bounds of the split neuron itself (beta-CROWN would add them to
// the backsubstitution with Lagrange multipliers, and alpha-CROWN's optimised
// slopes would tighten every unstable neuron; both drop in here once the
// optimised-slope bounds exist). A subdomain where some clamped l > u is
// empty, hence verified. The union of the two children of a split is the
// parent, so when every subdomain is verified the property holds.
//
// Branching. Among the unstable ReLUs of a subdomain (l < 0 < u after
// clamping) the split goes to the largest first-order estimate of how much
// it tightens the subdomain's worst output bound B: the gradient of B with
// respect to every ReLU's intermediate bounds (the tape gives all of them in
// one backward pass) predicts B's change when a split moves l (active) or u
// (inactive) to 0, score = max(0, g_l l) + max(0, g_u u) (in the spirit of
// BaBSR, which scores by the backsubstitution coefficients of the same
// bound); ties go to the larger triangle area -l u / (u - l).
// Subdomains are taken worst-bound first, `batch` at a time.
//
// Optimised slopes (VerifyOptions::alpha_slopes, `certify verify --alpha`).
// The output bound of a subdomain may instead be alpha-CROWN's
// (relaxations/alpha_crown.cpp): the lower slope of every ReLU still unstable
// under the subdomain's clamped bounds becomes a free alpha in [0, 1] per
// (subdomain, spec row), optimised by projected Adam from CROWN's slopes, and
// the bound is one more sound walk with the best slopes held fixed. Sound for
// the same reason as CROWN's: the split neurons are stable under their
// clamped bounds, so they keep their exact linear pieces, and any alpha in
// [0, 1] is a valid lower line of an unstable one on its [l, u]. The split
// constraints still enter only through those clamped bounds (no beta
// multipliers), the intermediate bounds stay CROWN's, and the slopes start
// afresh in every subdomain (not inherited from the parent).
//
// A subdomain with no unstable ReLU left that the bound cannot verify (its
// split constraints are not in the bound) is settled exactly: with every
// phase fixed the network is affine on it, and the LP of verify/milp.h
// (GLPK) minimises the property's violation there. Optimum > 1e-6: verified
// (this one step rests on GLPK's floating-point solution, not on the sound
// bounds); a minimiser that the float64 pass confirms: sat. On a network
// the LP cannot express (conv layers) such a subdomain stays undecided.
//
// Verdicts: unsat when every subdomain is verified; sat only with an input
// in the property's box whose float64 forward pass (forward_f64) satisfies
// a disjunct; timeout; unknown when an LP stays undecided (optimum within
// 1e-6 of 0 and no confirmed counterexample) or the domain budget runs out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "relaxations/relaxations.h"
#include "verify/property.h"

namespace cte::verify {

enum class Verdict { unsat, sat, timeout, unknown };
const char* verdict_name(Verdict verdict);  // "unsat", "sat", "timeout", "unknown"

struct VerifyOptions {
  double timeout_s = 60.0;
  int batch = 64;                 // subdomains bounded together
  int64_t max_domains = 200000;   // open subdomains before giving up (unknown)
  int pgd_steps = 50;
  int pgd_restarts = 2;           // attacks per disjunct
  uint64_t seed = 0;
  bool attack = true;             // false: branch and bound only (tests of the bounding)
  // Recompute every subdomain's intermediate bounds by backsubstitution
  // (splits then tighten the layers after them) instead of keeping its
  // parent's, clamped at the new split only (one output backsubstitution
  // per subdomain: far cheaper, looser). Either way a child's bounds are
  // intersected with its parent's.
  bool recompute_intermediate = false;
  // Bound each subdomain's output with alpha-CROWN's optimised lower slopes
  // (relax::optimised_walk) instead of CROWN's: see "Optimised slopes" above.
  bool alpha_slopes = false;
  AlphaCrownOptions alpha;  // the slopes' Adam steps, learning rate, early stop
};

struct VerifyResult {
  Verdict verdict = Verdict::unknown;
  std::vector<double> counterexample;  // sat: an input in the box that violates the property (float64)
  int64_t domains_bounded = 0;         // subdomains bounded, the root included
  int max_depth = 0;                   // most splits in one subdomain
  int64_t exact_solves = 0;            // fully split subdomains decided by their LP
  double seconds = 0.0;
  std::string note;                    // how the verdict came about, for logs
};

// PGD in the box, per disjunct, minimising the violation of the worst row.
// Returns a confirmed counterexample (empty when none was found).
std::vector<double> attack_property(const Network& net, const Property& property, const VerifyOptions& options);

// The attack, then branch and bound, both within options.timeout_s. The
// network may be on either device; it runs on a private tape (TapeScope), so
// also under the caller's NoGrad.
VerifyResult verify_property(const Network& net, const Property& property, const VerifyOptions& options = {});

}  // namespace cte::verify
