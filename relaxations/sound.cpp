// Sound mode (BoundOptions::sound): bounds that hold for the real-valued
// network on the input box AND for the engine's own float32 forward pass,
// with every rounding of both, and of the relaxation's float32 arithmetic,
// accounted for. The fast mode (training) can be off by a few ulps, and a
// certificate whose margin is within float error of zero can be false.
//
// The argument. u = 2^-24 is float32's unit roundoff, gamma_m = m u / (1 - m u).
// 1. A dot product of m terms computed in float32 in ANY order, with or
//    without FMA (OpenBLAS, cuBLAS, cuDNN's implicit-GEMM convolutions that
//    kernels/cuda/conv.cu fixes), is within gamma_m * sum |terms| of the exact
//    one (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
//    section 3.1). So the float32 forward pass is the real network with an
//    error e_k added at every affine layer, |e_k| <= gamma_{n+1} (|W| |a| + |b|);
//    ReLU and flatten are exact; normalize rounds twice. A bound that holds
//    for every network of this perturbed family (e = 0 included) holds for
//    both the float32 pass and the real network.
// 2. A backsubstitution bound is a sum of terms A_k v_k with A_k the
//    coefficients as computed. However rounding made A_{k-1} differ from
//    A_k W_k, the identity A_k z_k = A_{k-1} a_{k-1} + (A_k W_k - A_{k-1}) a_{k-1}
//    + A_k b_k holds exactly, with |residual| <= gamma |A_k| |W_k| |a_{k-1}|.
//    The bias sums, the ReLU step (rounded slopes and intercepts whose lines
//    may miss the ReLU by a few ulps of max(|l|, |u|); the intercepts' dot
//    product) and the input step (rounded centre and radius) are alike. So
//    each step adds |A_k| s_k to the error, where the slack vector s_k depends
//    only on the layer and a bound M on the magnitude of its input:
//      affine  3 gamma_{n+1} (|W| M + |b|)  (forward error e_k, the residual,
//              a fold of C into W under last-layer elision); 2 gamma for
//              hBox's generator norms, whose e_k is in hBox's box part (item 4)
//              (AffineRoundings in relax_ops.h)
//      ReLU    gamma_n max(|l|, |u|); none under an exact rule
//              (relu_rule_exact: hBox's symbolic rows, times 1 or 0 with no
//              intercepts; its unstable neurons are in the box part, item 4)
//      input   2 gamma_{n0} (|c0| + r0 + |normalize shift|)
//    The walker (backsub.cpp) accumulates sum_k |A_k| s_k beside the bound.
// 3. Intermediate bounds are widened the same way before any ReLU case is
//    decided from them, so every relaxation's lines hold on the true range of
//    every network of the family; the magnitudes M come from them: relu(upper)
//    after a ReLU, magnitude_after through affine layers.
// 4. Box and hBox are forward passes: their radius grows by the affine slack
//    at each affine layer and by 8 u (|c| + r) at a ReLU. Two gammas cover an
//    affine box step: with |x - c| <= r and |c| + r <= M, the float32 pass's
//    x' = W x + b + e_k lies within r' + s of c' = fl(W c + b), r' = fl(|W| r),
//    for s = gamma (|W| M + |b|) (e_k, as |x| <= M) + gamma (|W| |c| + |b|)
//    (c') + gamma |W| r (r'), at most 2 gamma (|W| M + |b|); rounding_gamma's
//    16 spare terms absorb the rounding of s itself, of r' + s and of M (each
//    a relative u). A last layer with C folded in keeps 3 (the fold). hBox's
//    box part: the same, with M its magnitude bound; hBox's generator norms come
//    from the walker of 2, widened the same way. An hBox neuron is c + G e + beta
//    with |beta| <= b: the float32 pass's error e_k enters beta (the box radius),
//    so the walker's affine steps cover only the rounding of the coefficients
//    and of the fold (AffineRoundings::generator_norm). And those are over the
//    symbolic part s = G e alone: the walk computes |A_0| r0 for the exact
//    A_top s_top, and A_k s_k = A_k W_k s_{k-1} = A_{k-1} s_{k-1} + (A_k W_k -
//    A_{k-1}) s_{k-1} (no bias: s has none), so each residual is within gamma
//    |A_k| |W_k| |s_{k-1}|, and |s| <= S with S = r0 at the input, |W| S
//    through an affine layer (rounded up) and, through a ReLU, S where the
//    neuron is kept and 0 where it is dropped (BacksubContext::symbolic_magnitude).
//    S leaves out every centre and bias, and the dropped neurons entirely.
//    Its input step has no A c0: 2 gamma r0 covers the rounding of r0 and of
//    |A| r0, and 4 u |c0| that of the centre c0 = (l0 + u0) / 2, by which the
//    box c0 -+ r0 may miss the input box. Under last-layer elision the walk's
//    first step also covers the last layer's forward error on the symbolic
//    part (gamma |C W| S, which the box part's output bound, over |c| + b,
//    leaves out): its 2 gammas are of n + K terms, the fold's and that error's.
// 5. The slack terms are themselves computed in float32 from nonnegative
//    terms, with relative error below m u for m terms: widen() multiplies the
//    slack by 1.03 (enough for sums of up to 5e5 terms) and adds the rounding
//    of the final subtraction (4 u |bound|) and 1e-30 for underflow.
// 6. Every walk step's gamma counts the longer of the layer's forward dot
//    product (dot_terms) and the backsubstitution's product through it
//    (backsub_terms: a conv from 1 channel to 64 sums 64 x taps terms per
//    coefficient where its forward output sums 9).
// Not covered: flush-to-zero/denormals-are-zero modes (never enabled: no
// fast-math anywhere) and cuDNN algorithms other than the fixed ones.
//
// The price: about one extra |A| v product per layer, and bounds looser by
// the worst-case rounding, which grows with width and depth (gamma_n is the
// worst case; typical float errors are far smaller). tests/test_soundness.cpp
// samples 10^6 points per network against the float32 and a float64 forward pass.
#include <algorithm>
#include <cmath>

#include "engine/ops.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

constexpr double kUnitRoundoff = 0x1p-24;

Shape flat_of(int64_t batch, const Shape& per_sample) { return Shape{batch, per_sample.numel()}; }

}  // namespace

Tensor abs_layer_image(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias) {
  return bound_rules(layer).abs_image(layer, v, batch, with_bias);
}

namespace {

// Layers that compute nothing of their own in the forward pass (flatten) or
// whose rounding the walkers account for separately (ReLU: none in the forward pass).
bool rounds(const Layer& layer) {
  const LayerRole role = bound_rules(layer).role;
  return role == LayerRole::affine || role == LayerRole::elementwise;
}

}  // namespace

float rounding_gamma(int64_t terms) {
  const double m = double(std::max<int64_t>(terms, 0) + 16);
  if (m * kUnitRoundoff >= 0.01)
    fail("bounds", "sound mode: a dot product of " + std::to_string(terms) +
                       " terms is too long for float32's error bound (m u >= 0.01)");
  const double gamma = m * kUnitRoundoff / (1.0 - m * kUnitRoundoff);
  return std::nextafter(float(gamma * 1.001), 1.0f);
}

Tensor magnitude_after(const Layer& layer, const Tensor& magnitude, int64_t batch, bool with_bias) {
  if (!rounds(layer)) return ops::reshape(magnitude, flat_of(batch, layer.out_shape));
  // |W| M + |b| bounds the exact image; the float32 pass adds up to gamma of
  // it, and computing it here in float32 loses up to gamma more.
  const float gamma = rounding_gamma(bound_rules(layer).dot_terms(layer) + 1);
  return ops::scale(abs_layer_image(layer, magnitude, batch, with_bias), 1.0f + 2.0f * gamma);
}

Tensor affine_slack(const Layer& layer, const Tensor& magnitude, int64_t batch, int64_t extra_terms,
                    AffineRoundings roundings, bool with_bias) {
  if (!rounds(layer)) return Tensor();
  // A walk's step (every rounding kind but box_step's) also covers its residual,
  // a dot product of backsub_terms terms, which may be the longer one.
  const BoundRules& rules = bound_rules(layer);
  const int64_t terms = roundings == AffineRoundings::box_step
                            ? rules.dot_terms(layer)
                            : std::max(rules.dot_terms(layer), rules.backsub_terms(layer));
  const float gamma = rounding_gamma(terms + 1 + extra_terms);
  return ops::scale(abs_layer_image(layer, magnitude, batch, with_bias),
                    float(rounding_count(roundings)) * gamma);
}

Tensor relu_slack(const Tensor& lower, const Tensor& upper) {
  const float gamma = rounding_gamma(lower.size(lower.ndim() - 1));
  return ops::scale(ops::maximum(ops::abs(lower), ops::abs(upper)), gamma);
}

Tensor abs_coeffs_times(const Tensor& coeffs, const Tensor& v) {
  const Tensor magnitude = ops::abs(coeffs);
  if (coeffs.ndim() == 2) return ops::matmul(v, magnitude, false, true);  // (N, n)(K, n)^T
  const int64_t batch = coeffs.size(0), rows = coeffs.size(1), n = coeffs.size(2);
  return ops::reshape(ops::matmul(magnitude, ops::reshape(v, Shape{batch, n, 1})), Shape{batch, rows});
}

Tensor roundoff(const Tensor& v, float ulps) { return ops::scale(v, float(ulps * kUnitRoundoff)); }

Bounds widen(const Bounds& bounds, const Tensor& slack) {
  const Tensor margin = ops::add_scalar(ops::scale(slack, 1.03f), 1e-30f);
  auto moved = [&margin](const Tensor& bound) { return ops::add(margin, roundoff(ops::abs(bound), 4.0f)); };
  Bounds out;
  if (bounds.lower.defined()) out.lower = ops::sub(bounds.lower, moved(bounds.lower));
  if (bounds.upper.defined()) out.upper = ops::add(bounds.upper, moved(bounds.upper));
  return out;
}

}  // namespace cte::relax
