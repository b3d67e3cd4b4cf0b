// The per-neuron ReLU relaxations, written once as CTE_HD functions and used
// verbatim by the CPU twins (kernels/cpu/relax.cpp) and the CUDA kernels
// (kernels/cuda/relax.cu), so the CPU run checks the very formula the GPU
// runs. For y = relu(x) with x in [l, u], a backsubstitution rule gives a
// lower and an upper linear bound  ls*x + li <= y <= us*x + ui  and their
// partial derivatives in l and u (the backward pass differentiates through
// lambda and the intercepts; the choice of case and CROWN's 0/1 slope have no
// gradient, as in the paper). Also here: the interval (Box) ReLU on a centre
// and radius, and DiffAI's hybrid-zonotope (hBox) ReLU, with their
// derivatives. Stable cases are tested first, l >= 0 before u <= 0, so
// l = u = 0 is the identity. Plain IEEE arithmetic only (no fast intrinsics):
// a NaN in l or u falls through to the unstable case and propagates.
// Also the LP relaxations' half-planes (relaxations/lp.cpp). The relaxation
// viewer compiles this file freestanding to WebAssembly
// (tools/viewer/relu_rules_wasm.cpp): no standard library headers here.
#pragma once
#include "kernels/common/hd.h"

namespace cte::kern {

// Which linear bounds an unstable ReLU (l < 0 < u) gets; lambda = u / (u - l).
enum class ReluRule : int {
  deepz,          // lower (lambda, 0),            upper (lambda, -lambda l)
  crown,          // lower (0 if -l >= u else 1, 0), upper (lambda, -lambda l): the
                  // tie -l = u gets slope 0 (the paper's section 2)
  crown_tie1,     // as crown but the tie gets slope 1: lower (0 if -l > u else 1, 0)
                  // (the authors' code)
  crown0,         // lower (0, 0),                 upper (lambda, -lambda l); and lower
                  // (0, 0) for a stable active ReLU too (upper: identity), so the
                  // rule is continuous in l, u (CROWN-0 of the paper, appendix K.4)
  crown0_unstable,  // lower (0, 0), upper (lambda, -lambda l); stable ReLUs exact
                    // (the authors' code option '0': identity when l >= 0)
  hbox_fresh,     // lower (0, 0),                 upper (0, u): a fresh variable in [0, u]
  hbox_symbolic,  // lower (0, 0),                 upper (0, 0): the part of an hBox neuron
                  // that stays symbolic in the input error terms (its box part
                  // is carried separately by hbox_relu_*); identity when l >= 0
};
constexpr int kNumReluRules = 7;

// True for rules whose lower and upper slopes are always equal: one
// coefficient matrix then serves the lower and the upper bound of a linear
// function, with two intercept sums (see backsub_relu_forward).
CTE_HD inline bool relu_rule_symmetric(ReluRule rule) {
  return rule == ReluRule::deepz || rule == ReluRule::hbox_fresh || rule == ReluRule::hbox_symbolic;
}

// False for rules whose four coefficients never depend on l and u
// (relu_linear_bounds_grad is zero for every case): the backward pass of a
// step under them gives l and u no gradient, and kernels may skip that sum.
CTE_HD inline bool relu_rule_has_bound_gradient(ReluRule rule) { return rule != ReluRule::hbox_symbolic; }

// True for rules whose lines are exact in float32 in every case (slopes 0 or
// 1, intercepts 0): a step under them rounds nothing, so sound mode adds no
// slack for it (relaxations/sound.cpp).
CTE_HD inline bool relu_rule_exact(ReluRule rule) { return rule == ReluRule::hbox_symbolic; }

struct ReluLinearBounds {
  float lower_slope, lower_intercept, upper_slope, upper_intercept;
};

// Partial derivatives of the four coefficients in l and in u.
struct ReluLinearBoundsGrad {
  ReluLinearBounds d_l, d_u;
};

enum class ReluCase : int { dead, identity, unstable };

// Templated so that the LP relaxations below decide in double precision.
template <class Real>
CTE_HD inline ReluCase relu_case(Real l, Real u) {
  if (l >= Real(0)) return ReluCase::identity;  // first: l = u = 0 is the identity
  if (u <= Real(0)) return ReluCase::dead;
  return ReluCase::unstable;                 // also where l or u is NaN
}

CTE_HD inline ReluLinearBounds relu_linear_bounds(ReluRule rule, float l, float u) {
  switch (relu_case(l, u)) {
    case ReluCase::identity:
      if (rule == ReluRule::crown0) return {0.0f, 0.0f, 1.0f, 0.0f};  // y >= 0 on every ReLU
      return {1.0f, 0.0f, 1.0f, 0.0f};
    case ReluCase::dead: return {0.0f, 0.0f, 0.0f, 0.0f};
    case ReluCase::unstable: break;
  }
  const float lambda = u / (u - l);
  const float chord_intercept = -lambda * l;
  switch (rule) {
    case ReluRule::deepz: return {lambda, 0.0f, lambda, chord_intercept};
    case ReluRule::crown: return {(-l >= u) ? 0.0f : 1.0f, 0.0f, lambda, chord_intercept};
    case ReluRule::crown_tie1: return {(-l > u) ? 0.0f : 1.0f, 0.0f, lambda, chord_intercept};
    case ReluRule::crown0:
    case ReluRule::crown0_unstable: return {0.0f, 0.0f, lambda, chord_intercept};
    case ReluRule::hbox_fresh: return {0.0f, 0.0f, 0.0f, u};
    case ReluRule::hbox_symbolic: return {0.0f, 0.0f, 0.0f, 0.0f};
  }
  return {0.0f, 0.0f, 0.0f, 0.0f};  // unreachable for valid rules
}

CTE_HD inline ReluLinearBoundsGrad relu_linear_bounds_grad(ReluRule rule, float l, float u) {
  ReluLinearBoundsGrad g{{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
  if (relu_case(l, u) != ReluCase::unstable) return g;  // constant coefficients
  const float width = u - l;
  const float width_sq = width * width;
  // lambda = u / (u - l): d/dl = u / (u-l)^2, d/du = -l / (u-l)^2.
  // chord intercept -lambda l = -l u / (u - l): d/dl = -u^2 / (u-l)^2, d/du = l^2 / (u-l)^2.
  const float dlambda_dl = u / width_sq, dlambda_du = -l / width_sq;
  const float dchord_dl = -(u * u) / width_sq, dchord_du = (l * l) / width_sq;
  switch (rule) {
    case ReluRule::deepz:
      g.d_l = {dlambda_dl, 0.0f, dlambda_dl, dchord_dl};
      g.d_u = {dlambda_du, 0.0f, dlambda_du, dchord_du};
      break;
    case ReluRule::crown:
    case ReluRule::crown_tie1:
    case ReluRule::crown0:
    case ReluRule::crown0_unstable:
      g.d_l = {0.0f, 0.0f, dlambda_dl, dchord_dl};
      g.d_u = {0.0f, 0.0f, dlambda_du, dchord_du};
      break;
    case ReluRule::hbox_fresh: g.d_u.upper_intercept = 1.0f; break;
    case ReluRule::hbox_symbolic: break;
  }
  return g;
}

// The affine layer under a ReLU adds its bias b to the ReLU's input: x = z + b.
// In z the bounds read  ls z + (li + ls b) <= y <= us z + (ui + us b),  so the
// bias folds into the intercepts (backsub_relu's bias_below) and the layer
// needs no pass of its own over the coefficients for A b. The derivatives in
// l and u fold likewise (b is a constant there); the one in b is the slope.
CTE_HD inline ReluLinearBounds fold_bias_below(ReluLinearBounds r, float b) {
  return {r.lower_slope, r.lower_intercept + r.lower_slope * b, r.upper_slope, r.upper_intercept + r.upper_slope * b};
}
CTE_HD inline ReluLinearBoundsGrad fold_bias_below(ReluLinearBoundsGrad g, float b) {
  return {fold_bias_below(g.d_l, b), fold_bias_below(g.d_u, b)};
}

// One element of a backsubstitution step through a ReLU (see
// backsub_relu_forward in kernels/relax_kernels.h): coefficient a of the
// neuron's output becomes a coefficient of its input, and the intercepts add
// to the lower / upper bias. The sign of a picks the side; the pick has no
// gradient.
struct BacksubElement {
  float coeff_out, bias_lower, bias_upper;
};

CTE_HD inline BacksubElement backsub_relu_element(const ReluLinearBounds b, float a) {
  const bool positive = a >= 0.0f;
  return {a * (positive ? b.lower_slope : b.upper_slope),
          a * (positive ? b.lower_intercept : b.upper_intercept),
          a * (positive ? b.upper_intercept : b.lower_intercept)};
}

// The backward of that step. The coefficient's gradient is per element; a kernel that has no
// d_bias_lower or d_bias_upper compiles its term out (kLowerBias, kUpperBias false: zero).
template <bool kLowerBias = true, bool kUpperBias = true>
CTE_HD inline float backsub_relu_element_d_coeff(const ReluLinearBounds b, float a, float d_coeff_out,
                                                 float d_bias_lower, float d_bias_upper) {
  const bool positive = a >= 0.0f;
  float d = d_coeff_out * (positive ? b.lower_slope : b.upper_slope);
  if constexpr (kLowerBias) d += d_bias_lower * (positive ? b.lower_intercept : b.upper_intercept);
  if constexpr (kUpperBias) d += d_bias_upper * (positive ? b.upper_intercept : b.lower_intercept);
  return d;
}

// The neuron's gradients (in l, u and the folded bias below) sum its rows' terms. Each term is
// a times an incoming gradient times one of the line coefficients' derivatives, and which one
// depends only on the sign of a. So a kernel sums a * d_coeff_out, a * d_bias_lower and
// a * d_bias_upper over the neuron's rows, split by that sign (add_signed), and combines the six
// sums with the derivatives once per neuron (backsub_relu_neuron_grad) instead of once per row:
// the row loop reads no derivative table and keeps its sums in registers.
struct BacksubSignSums {
  float out_pos, out_neg;      // a * d_coeff_out over the rows with a >= 0, and a < 0
  float lower_pos, lower_neg;  // a * d_bias_lower
  float upper_pos, upper_neg;  // a * d_bias_upper
};

// pos or neg += a x, by the sign of a (a NaN goes to neg, as backsub_relu_element sends it up).
CTE_HD inline void add_signed(float& pos, float& neg, float a, float x) {
  const bool positive = a >= 0.0f;
  const float t = a * x;
  pos += positive ? t : 0.0f;
  neg += positive ? 0.0f : t;
}

struct BacksubNeuronGrad {
  float d_l, d_u, d_bias_below;
};

// A row with a >= 0 reads the lower line for the lower bias and the upper line for the upper
// bias; a row with a < 0 the other way round (backsub_relu_element). The folded bias's
// derivative is the slope of the line its intercept belongs to (fold_bias_below).
CTE_HD inline float combine_sign_sums(const BacksubSignSums& s, const ReluLinearBounds d) {
  return s.out_pos * d.lower_slope + s.out_neg * d.upper_slope + s.lower_pos * d.lower_intercept +
         s.lower_neg * d.upper_intercept + s.upper_pos * d.upper_intercept + s.upper_neg * d.lower_intercept;
}

CTE_HD inline BacksubNeuronGrad backsub_relu_neuron_grad(const ReluLinearBounds b, const ReluLinearBoundsGrad g,
                                                         const BacksubSignSums s) {
  return {combine_sign_sums(s, g.d_l), combine_sign_sums(s, g.d_u),
          s.lower_pos * b.lower_slope + s.lower_neg * b.upper_slope + s.upper_pos * b.upper_slope +
              s.upper_neg * b.lower_slope};
}

// Whether a step through this neuron reads its incoming coefficients' gradient
// (d_coeff_out) at all. When both slopes are 0 and depend on neither l nor u
// (a dead ReLU under every rule; an unstable one under hbox_fresh and
// hbox_symbolic), the step's output coefficient is 0 and d_coeff_out enters
// the backward only times a zero slope or slope derivative
// (backsub_relu_element_d_coeff, combine_sign_sums): the affine step above may
// leave it uncomputed (backsub_linear's live columns). A NaN bound is
// unstable: live under the rules whose slopes follow l and u (NaN slopes), so
// the NaN still reaches the products; hBox's rules carry it in an intercept.
CTE_HD inline bool backsub_relu_reads_coeff_grad(ReluRule rule, float l, float u) {
  const ReluLinearBounds b = relu_linear_bounds(rule, l, u);
  const ReluLinearBoundsGrad g = relu_linear_bounds_grad(rule, l, u);
  return !(b.lower_slope == 0.0f && b.upper_slope == 0.0f && g.d_l.lower_slope == 0.0f &&
           g.d_l.upper_slope == 0.0f && g.d_u.lower_slope == 0.0f && g.d_u.upper_slope == 0.0f);
}

// The derivative of |a| as ops::abs defines it: sign(a), 0 at 0 (NaN stays NaN).
CTE_HD inline float abs_derivative(float a) {
  if (a > 0.0f) return 1.0f;
  if (a < 0.0f) return -1.0f;
  return a == 0.0f ? 0.0f : a;
}

// ---------------------------------------------------------------- LP relaxations
// Triangle and Parallelogram (relaxations/lp.h) bound y = relu(x), x in [l, u],
// by half-planes: y >= every lower line and y <= every upper line. The LP
// (relaxations/lp.cpp) turns them into rows; the relaxation viewer
// (tools/viewer/) draws them. In the LP's double precision, or in float.
enum class LpReluRule : int {
  triangle,       // unstable: y >= 0, y >= x, y <= u (x - l) / (u - l)  (the convex hull)
  parallelogram,  // unstable: y >= 0, y >= x, y <= u, y <= x - l
};

template <class Real>
struct ReluLine {
  Real slope, intercept;  // y = slope x + intercept
};

template <class Real>
struct ReluHalfPlanes {
  int lower_count, upper_count;  // 1 or 2 of each
  ReluLine<Real> lower[2], upper[2];
};

template <class Real>
CTE_HD inline ReluHalfPlanes<Real> lp_relu_half_planes(LpReluRule rule, Real l, Real u) {
  const Real zero(0), one(1);
  switch (relu_case(l, u)) {
    case ReluCase::identity: return {1, 1, {{one, zero}, {zero, zero}}, {{one, zero}, {zero, zero}}};  // y = x
    case ReluCase::dead: return {1, 1, {{zero, zero}, {zero, zero}}, {{zero, zero}, {zero, zero}}};    // y = 0
    case ReluCase::unstable: break;
  }
  if (rule == LpReluRule::triangle) {
    const Real slope = u / (u - l);
    return {2, 1, {{zero, zero}, {one, zero}}, {{slope, -slope * l}, {zero, zero}}};
  }
  return {2, 2, {{zero, zero}, {one, zero}}, {{zero, u}, {one, -l}}};
}

// ---------------------------------------------------------------- Box (IBP)
// Centre c and radius r of [l, u] = [c - r, c + r] through a ReLU:
// l' = relu(l), u' = relu(u), c' = (u' + l') / 2, r' = (u' - l') / 2.
struct CentreRadius {
  float centre, radius;
};

CTE_HD inline float relu_keep_nan(float x) { return x < 0.0f ? 0.0f : x; }  // NaN passes through

CTE_HD inline CentreRadius box_relu(float c, float r) {
  const float l = relu_keep_nan(c - r), u = relu_keep_nan(c + r);
  return {(u + l) * 0.5f, (u - l) * 0.5f};
}

// Gradients of (c, r) from those of (c', r'); relu's derivative is 1 where its input is > 0.
CTE_HD inline CentreRadius box_relu_grad(float c, float r, float d_centre_out, float d_radius_out) {
  const float d_l = (c - r) > 0.0f ? (d_centre_out - d_radius_out) * 0.5f : 0.0f;
  const float d_u = (c + r) > 0.0f ? (d_centre_out + d_radius_out) * 0.5f : 0.0f;
  return {d_l + d_u, d_u - d_l};
}

// ---------------------------------------------------------------- hBox
// A hybrid-zonotope neuron c + g.e + [-b, b] (e: the input error terms, only
// the L1 norm g_norm = ||g||_1 matters here) through a ReLU, with
// l = c - g_norm - b and u = c + g_norm + b:
//   l >= 0: unchanged (keep = 1: the symbolic row survives);
//   u <= 0: c = b = 0 (keep = 0);
//   unstable: c = u/2, b = u/2, symbolic row dropped (keep = 0).
struct HboxNeuron {
  float centre, box, lower, upper;
};

CTE_HD inline HboxNeuron hbox_relu(float c, float g_norm, float b) {
  const float l = c - g_norm - b, u = c + g_norm + b;
  switch (relu_case(l, u)) {
    case ReluCase::identity: return {c, b, l, u};
    case ReluCase::dead: return {0.0f, 0.0f, l, u};
    case ReluCase::unstable: break;
  }
  const float half_u = 0.5f * u;
  return {half_u, half_u, l, u};
}

struct HboxNeuronGrad {
  float d_centre, d_g_norm, d_box;
};

CTE_HD inline HboxNeuronGrad hbox_relu_grad(float c, float g_norm, float b, float d_centre_out,
                                            float d_box_out) {
  const float l = c - g_norm - b, u = c + g_norm + b;
  switch (relu_case(l, u)) {
    case ReluCase::identity: return {d_centre_out, 0.0f, d_box_out};
    case ReluCase::dead: return {0.0f, 0.0f, 0.0f};
    case ReluCase::unstable: break;
  }
  // c' = b' = u / 2 and du/dc = du/dg_norm = du/db = 1.
  const float d_u = 0.5f * (d_centre_out + d_box_out);
  return {d_u, d_u, d_u};
}

}  // namespace cte::kern
