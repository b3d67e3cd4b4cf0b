// The fused relaxation ops and kernels (relaxations/relax_ops.h,
// kernels/relax_kernels.h, kernels/common/relu_relaxation.h), checked four ways:
//  - the per-neuron rules: derivatives against central finite differences,
//    and the boundary cases (l = u = 0 is the identity, -l == u gives CROWN's
//    slope 0, u <= 0 dead, l >= 0 identity);
//  - each fused op against the same computation built from generic engine
//    ops (compare/select/mul/...), values and gradients of a random weighted
//    sum, on the CPU and on CUDA (emulated in CI), inputs away from case
//    switches; a walk of CTE_RELAXATION_OPS fails for an op without such a check;
//  - kernel parity: every entry of CTE_RELAX_KERNELS, _cpu vs _cuda on the
//    same inputs over sizes 0, 1, odd and many blocks, outputs NaN-prefilled;
//    a walk of CTE_RELAX_KERNELS fails for a kernel without a parity check;
//  - compute_bounds on the CPU and on CUDA agree for every relaxation on a
//    tiny convolutional and a tiny dense network, with and without a spec,
//    elision on and off; chunked + checkpointed intermediate bounds give the
//    same values and gradients as one pass.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/common/relu_relaxation.h"
#include "kernels/gpu_runtime.h"
#include "kernels/relax_kernels.h"
#include "relaxations/relax_ops.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

using kern::BinaryOp;
using kern::ReluRule;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

const ReluRule kRules[] = {ReluRule::deepz,           ReluRule::crown,      ReluRule::crown_tie1, ReluRule::crown0,
                           ReluRule::crown0_unstable, ReluRule::hbox_fresh, ReluRule::hbox_symbolic};
const char* rule_name(ReluRule r) {
  switch (r) {
    case ReluRule::deepz: return "deepz";
    case ReluRule::crown: return "crown";
    case ReluRule::crown_tie1: return "crown_tie1";
    case ReluRule::crown0: return "crown0";
    case ReluRule::crown0_unstable: return "crown0_unstable";
    case ReluRule::hbox_fresh: return "hbox_fresh";
    case ReluRule::hbox_symbolic: return "hbox_symbolic";
  }
  return "?";
}

// Values in [lo, hi] at least `gap` away from 0.
std::vector<float> away_from_zero(int64_t n, Rng& rng, float lo, float hi, float gap) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {
    do x = rng.uniform(lo, hi);
    while (std::fabs(x) < gap);
  }
  return v;
}

// Pre-activation bounds (l, u) with l < u, every endpoint at least `gap` from
// 0 and, when unstable, -l at least `gap` from u (CROWN's switch).
void random_bounds(int64_t n, Rng& rng, std::vector<float>& l, std::vector<float>& u, float gap = 0.05f) {
  l.resize(size_t(n));
  u.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    float a, b;
    do {
      a = rng.uniform(-2.0f, 2.0f);
      b = rng.uniform(-2.0f, 2.0f);
      if (a > b) std::swap(a, b);
    } while (b - a < gap || std::fabs(a) < gap || std::fabs(b) < gap || std::fabs(-a - b) < gap);
    l[size_t(i)] = a;
    u[size_t(i)] = b;
  }
}

// A mask with exactly round(share * count) live entries, spread by the generator.
std::vector<float> live_mask(int64_t count, double share, Rng& rng) {
  std::vector<float> live(size_t(count), 0.0f);
  const int64_t wanted = int64_t(std::lround(share * double(count)));
  for (int64_t placed = 0; placed < wanted;) {
    float& slot = live[size_t(int64_t(rng.uniform(0.0f, 1.0f) * float(count)) % count)];
    if (slot == 0.0f) slot = 1.0f, ++placed;
  }
  return live;
}

// ---------------------------------------------------------------- fused vs generic registry

// Fused-vs-generic checks by op name; the walk of CTE_RELAXATION_OPS runs them.
std::map<std::string, std::function<void()>>& fused_checks() {
  static std::map<std::string, std::function<void()>> checks;
  return checks;
}

// Runs `build` on device copies of `inputs` (all requiring a gradient), then
// backward of sum_k sum(w_k * out_k); returns the outputs' values followed by
// the inputs' gradients, flattened per tensor.
std::vector<std::vector<float>> run_with_grads(const std::vector<Tensor>& inputs, Device device,
                                               const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& build,
                                               uint64_t weight_seed) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) {
    Tensor leaf = t.to(device);
    leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  const std::vector<Tensor> outs = build(leaves);
  std::vector<std::vector<float>> result;
  Rng rng(weight_seed);
  Tensor loss;
  for (const Tensor& out : outs) {
    result.push_back(out.to_vector());
    const Tensor w = random_tensor(out.shape(), rng, device);
    const Tensor term = ops::sum(ops::mul(out, w));
    loss = loss.defined() ? ops::add(loss, term) : term;
  }
  backward(loss);
  for (const Tensor& leaf : leaves)
    result.push_back(leaf.grad().defined() ? leaf.grad().to_vector() : std::vector<float>(size_t(leaf.numel()), 0.0f));
  return result;
}

void compare_runs(const std::vector<std::vector<float>>& fused, const std::vector<std::vector<float>>& generic,
                  const std::string& what) {
  REQUIRE(fused.size() == generic.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    INFO(what << ", tensor " << i << " (outputs first, then input gradients)");
    CHECK_CLOSE_VEC(fused[i], generic[i], 1e-5, 1e-4);
  }
}

// Broadcasts a per-(sample, neuron) tensor (N, n) to (N, K, n).
Tensor over_rows(const Tensor& t, int64_t rows) {
  const int64_t batch = t.size(0), n = t.size(1);
  const Tensor ones = Tensor::full(Shape{batch, rows, n}, 1.0f, t.device());
  return ops::mul(ones, ops::reshape(t, Shape{batch, 1, n}));
}

Tensor constant_like(const Tensor& t, float value) { return Tensor::full(t.shape(), value, t.device()); }

// The rule's four coefficients (N, n) from generic ops: case masks by
// compare, lambda and the chord intercept by div/mul, cases joined by select.
struct GenericRule {
  Tensor ls, li, us, ui;
};
GenericRule generic_rule(ReluRule rule, const Tensor& l, const Tensor& u) {
  const Tensor zero = constant_like(l, 0.0f), one = constant_like(l, 1.0f);
  const Tensor identity = ops::compare(l, zero, BinaryOp::ge);
  const Tensor dead = ops::compare(u, zero, BinaryOp::le);
  const Tensor lambda = ops::div(u, ops::sub(u, l));
  const Tensor chord = ops::neg(ops::mul(lambda, l));
  Tensor ls = zero, us = zero, ui = zero;
  switch (rule) {
    case ReluRule::deepz: ls = lambda, us = lambda, ui = chord; break;
    case ReluRule::crown:
      ls = ops::select(ops::compare(ops::neg(l), u, BinaryOp::ge), zero, one);
      us = lambda, ui = chord;
      break;
    case ReluRule::crown_tie1:
      ls = ops::select(ops::compare(ops::neg(l), u, BinaryOp::gt), zero, one);
      us = lambda, ui = chord;
      break;
    case ReluRule::crown0:
    case ReluRule::crown0_unstable: us = lambda, ui = chord; break;
    case ReluRule::hbox_fresh: ui = u; break;
    case ReluRule::hbox_symbolic: break;
  }
  auto by_case = [&](const Tensor& unstable, const Tensor& if_identity) {
    return ops::select(identity, if_identity, ops::select(dead, zero, unstable));
  };
  const Tensor identity_lower_slope = rule == ReluRule::crown0 ? zero : one;  // CROWN-0: y >= 0 everywhere
  return {by_case(ls, identity_lower_slope), by_case(zero, zero), by_case(us, one), by_case(ui, zero)};
}

// backsub_relu from generic ops: coeffs (N, K, n) or shared (K, n); l, u (N, n).
std::vector<Tensor> generic_backsub_relu(ReluRule rule, const Tensor& coeffs, const Tensor& l, const Tensor& u,
                                         bool want_upper) {
  const int64_t batch = l.size(0), n = l.size(1);
  const int64_t rows = coeffs.size(coeffs.ndim() == 2 ? 0 : 1);
  const Tensor a = coeffs.ndim() == 2 ? ops::mul(Tensor::full(Shape{batch, rows, n}, 1.0f, l.device()), coeffs) : coeffs;
  const GenericRule r = generic_rule(rule, l, u);
  const Tensor positive = ops::compare(a, constant_like(a, 0.0f), BinaryOp::ge);
  const Tensor ls = over_rows(r.ls, rows), li = over_rows(r.li, rows), us = over_rows(r.us, rows),
               ui = over_rows(r.ui, rows);
  std::vector<Tensor> out{ops::select(positive, ops::mul(a, ls), ops::mul(a, us)),
                          ops::sum_axis(ops::select(positive, ops::mul(a, li), ops::mul(a, ui)), 2)};
  if (want_upper) out.push_back(ops::sum_axis(ops::select(positive, ops::mul(a, ui), ops::mul(a, li)), 2));
  return out;
}

// Also: relu_rule_has_bound_gradient is false exactly for the rules whose
// derivatives are zero everywhere (the kernels skip that sum for them).
TEST_CASE("relax fused: the per-neuron rules' derivatives match finite differences") {
  Rng rng(11);
  std::vector<float> l, u;
  random_bounds(200, rng, l, u, 0.1f);
  for (ReluRule rule : kRules) {
    CAPTURE(rule_name(rule));
    bool any_nonzero = false;
    for (size_t i = 0; i < l.size(); ++i) {
      if (!(l[i] < 0.0f && u[i] > 0.0f)) continue;  // stable: constant coefficients, no gradient
      const kern::ReluLinearBoundsGrad g = kern::relu_linear_bounds_grad(rule, l[i], u[i]);
      const double h = 1e-3;
      auto coefficient = [&](int which, double ll, double uu) {
        const kern::ReluLinearBounds b = kern::relu_linear_bounds(rule, float(ll), float(uu));
        const float v[4] = {b.lower_slope, b.lower_intercept, b.upper_slope, b.upper_intercept};
        return double(v[which]);
      };
      const float dl[4] = {g.d_l.lower_slope, g.d_l.lower_intercept, g.d_l.upper_slope, g.d_l.upper_intercept};
      const float du[4] = {g.d_u.lower_slope, g.d_u.lower_intercept, g.d_u.upper_slope, g.d_u.upper_intercept};
      for (int which = 0; which < 4; ++which) {
        any_nonzero = any_nonzero || dl[which] != 0.0f || du[which] != 0.0f;
        const double fd_l = (coefficient(which, l[i] + h, u[i]) - coefficient(which, l[i] - h, u[i])) / (2 * h);
        const double fd_u = (coefficient(which, l[i], u[i] + h) - coefficient(which, l[i], u[i] - h)) / (2 * h);
        CHECK(std::fabs(fd_l - dl[which]) <= 2e-3 + 2e-2 * std::fabs(fd_l));
        CHECK(std::fabs(fd_u - du[which]) <= 2e-3 + 2e-2 * std::fabs(fd_u));
      }
    }
    CHECK(kern::relu_rule_has_bound_gradient(rule) == any_nonzero);
  }
}

TEST_CASE("relax fused: boundary cases of the per-neuron rules") {
  for (ReluRule rule : kRules) {
    CAPTURE(rule_name(rule));
    // l = u = 0: the identity (checked before u <= 0); crown0's lower bound is y >= 0 there too.
    const float identity_lower_slope = rule == ReluRule::crown0 ? 0.0f : 1.0f;
    kern::ReluLinearBounds b = kern::relu_linear_bounds(rule, 0.0f, 0.0f);
    CHECK(b.lower_slope == identity_lower_slope);
    CHECK(b.upper_slope == 1.0f);
    CHECK(b.lower_intercept == 0.0f);
    CHECK(b.upper_intercept == 0.0f);
    // l >= 0: identity; u <= 0: zero; neither has a gradient.
    b = kern::relu_linear_bounds(rule, 0.5f, 2.0f);
    CHECK(b.lower_slope == identity_lower_slope);
    CHECK(b.upper_slope == 1.0f);
    b = kern::relu_linear_bounds(rule, -2.0f, 0.0f);
    CHECK(b.lower_slope == 0.0f);
    CHECK(b.upper_slope == 0.0f);
    CHECK(b.upper_intercept == 0.0f);
    const kern::ReluLinearBoundsGrad g = kern::relu_linear_bounds_grad(rule, -2.0f, -0.5f);
    CHECK(g.d_l.upper_slope == 0.0f);
    CHECK(g.d_u.upper_intercept == 0.0f);
  }
  // -l == u: CROWN picks the lower slope 0; just past it, 1.
  CHECK(kern::relu_linear_bounds(ReluRule::crown, -1.0f, 1.0f).lower_slope == 0.0f);
  CHECK(kern::relu_linear_bounds(ReluRule::crown, -1.0f, 1.001f).lower_slope == 1.0f);
  CHECK(kern::relu_linear_bounds(ReluRule::crown, -1.001f, 1.0f).lower_slope == 0.0f);
  // crown_tie1 (the authors' code): the tie gets 1; either side of it as crown.
  CHECK(kern::relu_linear_bounds(ReluRule::crown_tie1, -1.0f, 1.0f).lower_slope == 1.0f);
  CHECK(kern::relu_linear_bounds(ReluRule::crown_tie1, -1.0f, 1.001f).lower_slope == 1.0f);
  CHECK(kern::relu_linear_bounds(ReluRule::crown_tie1, -1.001f, 1.0f).lower_slope == 0.0f);
  // CROWN-0 keeps y >= 0 on a stable active ReLU, upper the identity; crown0_unstable is exact there.
  const kern::ReluLinearBounds c0 = kern::relu_linear_bounds(ReluRule::crown0, 0.5f, 2.0f);
  CHECK(c0.lower_slope == 0.0f);
  CHECK(c0.lower_intercept == 0.0f);
  CHECK(c0.upper_slope == 1.0f);
  CHECK(c0.upper_intercept == 0.0f);
  CHECK(kern::relu_linear_bounds(ReluRule::crown0_unstable, 0.5f, 2.0f).lower_slope == 1.0f);
  // Unstable DeepZ: lambda = u / (u - l), chord through (l, 0) and (u, u).
  const kern::ReluLinearBounds d = kern::relu_linear_bounds(ReluRule::deepz, -1.0f, 3.0f);
  CHECK(d.lower_slope == doctest::Approx(0.75));
  CHECK(d.upper_slope == doctest::Approx(0.75));
  CHECK(d.upper_intercept == doctest::Approx(0.75));
  CHECK(kern::relu_linear_bounds(ReluRule::hbox_fresh, -1.0f, 3.0f).upper_intercept == 3.0f);
  // Box and hBox neurons at their case boundaries.
  const kern::CentreRadius box = kern::box_relu(0.0f, 0.0f);
  CHECK(box.centre == 0.0f);
  CHECK(box.radius == 0.0f);
  const kern::CentreRadius half = kern::box_relu(0.5f, 1.5f);  // [-1, 2] -> [0, 2]
  CHECK(half.centre == 1.0f);
  CHECK(half.radius == 1.0f);
  kern::HboxNeuron h = kern::hbox_relu(1.0f, 0.5f, 0.5f);  // l = 0: identity, row kept
  CHECK(h.centre == 1.0f);
  CHECK(h.box == 0.5f);
  CHECK(h.lower == 0.0f);
  h = kern::hbox_relu(-1.0f, 0.5f, 0.5f);  // u = 0: dead
  CHECK(h.centre == 0.0f);
  CHECK(h.box == 0.0f);
  h = kern::hbox_relu(0.5f, 1.0f, 0.5f);  // [-1, 2]: centre = box = u/2 = 1
  CHECK(h.centre == 1.0f);
  CHECK(h.box == 1.0f);
  // NaN bounds propagate instead of turning into a finite coefficient.
  CHECK(std::isnan(kern::relu_linear_bounds(ReluRule::deepz, kNaN, 1.0f).upper_slope));
}

void fused_vs_generic_box_relu() {
  Rng rng(21);
  const int64_t n = 37;
  std::vector<float> l, u;
  random_bounds(2 * n, rng, l, u);
  std::vector<float> c(l.size()), r(l.size());
  for (size_t i = 0; i < l.size(); ++i) c[i] = 0.5f * (l[i] + u[i]), r[i] = 0.5f * (u[i] - l[i]);
  const Shape shape{2, n};
  const std::vector<Tensor> inputs{Tensor::from_vector(c, shape, Device::cpu), Tensor::from_vector(r, shape, Device::cpu)};
  for (Device device : devices()) {
    CAPTURE(device_name(device));
    const auto fused = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
      const relax::CentreRadiusPair out = relax::box_relu(x[0], x[1]);
      return std::vector<Tensor>{out.centre, out.radius};
    }, 5);
    const auto generic = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
      const Tensor lo = ops::relu(ops::sub(x[0], x[1])), hi = ops::relu(ops::add(x[0], x[1]));
      return std::vector<Tensor>{ops::scale(ops::add(hi, lo), 0.5f), ops::scale(ops::sub(hi, lo), 0.5f)};
    }, 5);
    compare_runs(fused, generic, "box_relu");
  }
}

void fused_vs_generic_hbox_relu() {
  Rng rng(22);
  const int64_t n = 41;
  std::vector<float> c, g, b;
  // Centres and radii whose l = c - g - b and u = c + g + b stay 0.05 away from 0.
  while (int64_t(c.size()) < 2 * n) {
    const float cc = rng.uniform(-2.0f, 2.0f), gg = rng.uniform(0.0f, 1.0f), bb = rng.uniform(0.0f, 1.0f);
    if (std::fabs(cc - gg - bb) < 0.05f || std::fabs(cc + gg + bb) < 0.05f) continue;
    c.push_back(cc), g.push_back(gg), b.push_back(bb);
  }
  const Shape shape{2, n};
  const std::vector<Tensor> inputs{Tensor::from_vector(c, shape, Device::cpu), Tensor::from_vector(g, shape, Device::cpu),
                                   Tensor::from_vector(b, shape, Device::cpu)};
  for (Device device : devices()) {
    CAPTURE(device_name(device));
    const auto fused = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
      const relax::HboxReluResult out = relax::hbox_relu(x[0], x[1], x[2]);
      CHECK_FALSE(out.lower.requires_grad());
      return std::vector<Tensor>{out.centre, out.box};
    }, 6);
    const auto generic = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
      const Tensor spread = ops::add(x[1], x[2]);
      const Tensor lo = ops::sub(x[0], spread), hi = ops::add(x[0], spread);
      const Tensor zero = constant_like(lo, 0.0f);
      const Tensor identity = ops::compare(lo, zero, BinaryOp::ge), dead = ops::compare(hi, zero, BinaryOp::le);
      const Tensor half_u = ops::scale(hi, 0.5f);
      return std::vector<Tensor>{ops::select(identity, x[0], ops::select(dead, zero, half_u)),
                                 ops::select(identity, x[2], ops::select(dead, zero, half_u))};
    }, 6);
    compare_runs(fused, generic, "hbox_relu");
  }
}

void fused_vs_generic_backsub_relu() {
  Rng rng(23);
  const int64_t batch = 3, rows = 4, n = 41;  // n: the CPU backward's neuron blocks of 32, the last one short
  std::vector<float> l, u;
  random_bounds(batch * n, rng, l, u);
  const Tensor lower = Tensor::from_vector(l, Shape{batch, n}, Device::cpu);
  const Tensor upper = Tensor::from_vector(u, Shape{batch, n}, Device::cpu);
  const Tensor per_sample = Tensor::from_vector(away_from_zero(batch * rows * n, rng, -1, 1, 0.01f),
                                                Shape{batch, rows, n}, Device::cpu);
  const Tensor shared = Tensor::from_vector(away_from_zero(rows * n, rng, -1, 1, 0.01f), Shape{rows, n}, Device::cpu);
  const Tensor bias_below = random_tensor(Shape{n}, rng);
  for (Device device : devices()) {
    for (ReluRule rule : kRules) {
      for (const Tensor& coeffs : {per_sample, shared}) {
        const bool want_upper = kern::relu_rule_symmetric(rule);
        CAPTURE(device_name(device));
        CAPTURE(rule_name(rule));
        CAPTURE(coeffs.ndim());
        const std::vector<Tensor> inputs{coeffs, lower, upper};
        const auto fused = run_with_grads(inputs, device, [rule, want_upper](const std::vector<Tensor>& x) {
          const relax::BacksubReluResult r = relax::backsub_relu(rule, x[0], x[1], x[2], true, want_upper);
          std::vector<Tensor> out{r.coeffs, r.bias_lower};
          if (want_upper) out.push_back(r.bias_upper);
          return out;
        }, 7);
        const auto generic = run_with_grads(inputs, device, [rule, want_upper](const std::vector<Tensor>& x) {
          return generic_backsub_relu(rule, x[0], x[1], x[2], want_upper);
        }, 7);
        compare_runs(fused, generic, std::string("backsub_relu ") + rule_name(rule));
        // The affine layer's bias b below folded in: the reference adds that
        // layer's own term, coeffs_out . b, to each bias, as the unfolded walk does.
        const std::vector<Tensor> with_bias{coeffs, lower, upper, bias_below};
        const auto fused_folded = run_with_grads(with_bias, device, [rule, want_upper](const std::vector<Tensor>& x) {
          const relax::BacksubReluResult r = relax::backsub_relu(rule, x[0], x[1], x[2], true, want_upper, x[3]);
          std::vector<Tensor> out{r.coeffs, r.bias_lower};
          if (want_upper) out.push_back(r.bias_upper);
          return out;
        }, 8);
        const auto generic_folded = run_with_grads(with_bias, device, [rule, want_upper](const std::vector<Tensor>& x) {
          std::vector<Tensor> out = generic_backsub_relu(rule, x[0], x[1], x[2], want_upper);
          const Tensor layer_term = ops::sum_axis(ops::mul(out[0], x[3]), 2);  // (N, K, n) . (n)
          for (size_t k = 1; k < out.size(); ++k) out[k] = ops::add(out[k], layer_term);
          return out;
        }, 8);
        compare_runs(fused_folded, generic_folded, std::string("backsub_relu, bias below folded, ") + rule_name(rule));
      }
    }
  }
  // An upper-bound bias needs equal slopes: asking for it under CROWN is an error.
  CHECK_THROWS_WITH_AS(relax::backsub_relu(ReluRule::crown, per_sample, lower, upper, true, true),
                       doctest::Contains("[backsub_relu]"), std::runtime_error);
  // A bias below of the wrong length, or with no intercept sum to fold it into.
  CHECK_THROWS_WITH_AS(relax::backsub_relu(ReluRule::crown, per_sample, lower, upper, true, false,
                                           random_tensor(Shape{n + 1}, rng)),
                       doctest::Contains("bias_below is (42), expected (41)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(relax::backsub_relu(ReluRule::crown, per_sample, lower, upper, false, false, bias_below),
                       doctest::Contains("ask for at least one"), std::runtime_error);
}

void fused_vs_generic_backsub_linear() {
  Rng rng(24);
  const int64_t batch = 2, rows = 3, n_out = 7, n_in = 5;
  const Tensor weight = random_tensor(Shape{n_out, n_in}, rng), bias = random_tensor(Shape{n_out}, rng);
  const Tensor per_sample = random_tensor(Shape{batch, rows, n_out}, rng), shared = random_tensor(Shape{rows, n_out}, rng);
  for (Device device : devices())
    for (const Tensor& coeffs : {per_sample, shared}) {
      CAPTURE(device_name(device));
      CAPTURE(coeffs.ndim());
      const std::vector<Tensor> inputs{coeffs, weight, bias};
      const auto fused = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
        const relax::BacksubAffineResult r = relax::backsub_linear(x[0], x[1], x[2], true);
        return std::vector<Tensor>{r.coeffs, r.bias_term};
      }, 8);
      const auto generic = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
        const Tensor q = ops::matmul(x[0], ops::reshape(x[2], Shape{x[2].numel(), 1}));
        const Shape rows_shape = x[0].ndim() == 2 ? Shape{x[0].size(0)} : Shape{x[0].size(0), x[0].size(1)};
        return std::vector<Tensor>{ops::matmul(x[0], x[1]), ops::reshape(q, rows_shape)};
      }, 8);
      compare_runs(fused, generic, "backsub_linear");
    }
  // With live columns (per-sample coefficients only): A W and A^T dA' over the
  // live columns, dA' W^T there and 0 elsewhere, plus dq b^T everywhere. As
  // generic ops: the coefficients masked before the product, the bias term
  // from the unmasked ones. Coefficients are nonzero in dead columns here, so
  // a kernel that ignored the mask would fail. A sparse mask takes the CPU's
  // gathered products, a dense one its masked large product.
  for (double live_share : {0.3, 0.9, 0.0})
    for (Device device : devices()) {
      CAPTURE(device_name(device));
      CAPTURE(live_share);
      const Tensor live = Tensor::from_vector(live_mask(batch * n_out, live_share, rng), Shape{batch, n_out}, device);
      const std::vector<Tensor> inputs{per_sample, weight, bias};
      const auto fused = run_with_grads(inputs, device, [&](const std::vector<Tensor>& x) {
        const relax::BacksubAffineResult r = relax::backsub_linear(x[0], x[1], x[2], true, live);
        return std::vector<Tensor>{r.coeffs, r.bias_term};
      }, 9);
      const auto generic = run_with_grads(inputs, device, [&](const std::vector<Tensor>& x) {
        const Tensor masked = ops::mul(x[0], ops::reshape(live, Shape{batch, 1, n_out}));
        const Tensor q = ops::matmul(x[0], ops::reshape(x[2], Shape{n_out, 1}));
        return std::vector<Tensor>{ops::matmul(masked, x[1]), ops::reshape(q, Shape{batch, rows})};
      }, 9);
      compare_runs(fused, generic, "backsub_linear with live columns");
    }
  const Tensor wrong_live = Tensor::zeros(Shape{batch, n_out + 1}, Device::cpu);
  CHECK_THROWS_WITH_AS(relax::backsub_linear(per_sample, weight, bias, true, wrong_live),
                       doctest::Contains("live columns (2,8) do not fit coefficients (2,3,7)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(relax::backsub_linear(shared, weight, bias, true, Tensor::zeros(Shape{batch, n_out}, Device::cpu)),
                       doctest::Contains("expects per-sample"), std::runtime_error);
}

// backsub_relu_live against the rules' cases as the paper states them: a dead
// ReLU passes nothing under every rule, an active one passes its coefficient
// (slope 1; CROWN-0's upper slope 1), an unstable one passes it under the
// rules with a slope lambda or 0/1 (DeepZ, CROWN and its variants) and not
// under hBox's (slopes 0, a fresh variable or a dropped row). A NaN bound is
// unstable: live where the slopes follow l and u (the NaN reaches the
// products), not under hBox's rules (whose intercepts carry it).
void fused_backsub_relu_live() {
  // The last column: lambda = u / (u - l) = 1e-47 rounds to 0, so under CROWN both slopes
  // are 0, but lambda's derivative in u (-l / (u - l)^2 = 1e-10) is not: still live.
  const std::vector<float> l = {-2.0f, -1.0f, 0.0f, 0.5f, -1.0f, -3.0f, kNaN, -1.0f, 0.0f, -1e10f};
  const std::vector<float> u = {-1.0f, 0.0f, 0.0f, 2.0f, 1.0f, 0.5f, 1.0f, kNaN, 1e-30f, 1e-37f};
  enum Case { dead, active, unstable, nan };
  const Case cases[] = {dead, dead, active, active, unstable, unstable, nan, nan, active, unstable};
  for (Device device : devices())
    for (ReluRule rule : kRules) {
      CAPTURE(device_name(device));
      CAPTURE(rule_name(rule));
      const Tensor lo = Tensor::from_vector(l, Shape{2, 5}, device), hi = Tensor::from_vector(u, Shape{2, 5}, device);
      const std::vector<float> got = relax::backsub_relu_live(rule, lo, hi).to_vector();
      const bool hbox_rule = rule == ReluRule::hbox_fresh || rule == ReluRule::hbox_symbolic;
      for (size_t i = 0; i < l.size(); ++i) {
        CAPTURE(i);
        const float want = cases[i] == dead ? 0.0f : (cases[i] == unstable || cases[i] == nan) && hbox_rule ? 0.0f : 1.0f;
        CHECK(got[i] == want);
      }
    }
  CHECK_THROWS_WITH_AS(relax::backsub_relu_live(ReluRule::crown, Tensor::zeros(Shape{2, 3}, Device::cpu), Tensor::zeros(Shape{3, 2}, Device::cpu)),
                       doctest::Contains("backsub_relu_live"), std::runtime_error);
}

void fused_vs_generic_backsub_conv() {
  Rng rng(25);
  const int64_t batch = 2, rows = 3;
  const Shape in_shape{2, 7, 6}, out_shape{3, 4, 3};  // conv 2->3, 3x3 kernel, stride 2, padding 1
  const int stride = 2, padding = 1;
  const Tensor weight = random_tensor(Shape{3, 2, 3, 3}, rng), bias = random_tensor(Shape{3}, rng);
  const Tensor per_sample = random_tensor(Shape{batch, rows, out_shape.numel()}, rng);
  const Tensor shared = random_tensor(Shape{rows, out_shape.numel()}, rng);
  for (Device device : devices())
    for (const Tensor& coeffs : {per_sample, shared}) {
      CAPTURE(device_name(device));
      CAPTURE(coeffs.ndim());
      const std::vector<Tensor> inputs{coeffs, weight, bias};
      const auto fused = run_with_grads(inputs, device, [&](const std::vector<Tensor>& x) {
        const relax::BacksubAffineResult r = relax::backsub_conv(x[0], x[1], x[2], stride, padding, in_shape, out_shape, true);
        return std::vector<Tensor>{r.coeffs, r.bias_term};
      }, 9);
      const auto generic = run_with_grads(inputs, device, [&](const std::vector<Tensor>& x) {
        const int64_t total_rows = x[0].numel() / out_shape.numel();
        const Tensor images = ops::reshape(x[0], Shape{total_rows, out_shape[0], out_shape[1], out_shape[2]});
        const Tensor back = ops::conv2d_transpose(images, x[1], stride, padding, int(in_shape[1]), int(in_shape[2]));
        const Shape coeffs_shape = x[0].ndim() == 2 ? Shape{x[0].size(0), in_shape.numel()}
                                                    : Shape{x[0].size(0), x[0].size(1), in_shape.numel()};
        const int64_t plane = out_shape[1] * out_shape[2];
        const Tensor bias_full = ops::reshape(
            ops::mul(Tensor::full(Shape{out_shape[0], plane}, 1.0f, device), ops::reshape(x[2], Shape{out_shape[0], 1})),
            Shape{out_shape.numel(), 1});
        const Shape rows_shape = x[0].ndim() == 2 ? Shape{x[0].size(0)} : Shape{x[0].size(0), x[0].size(1)};
        return std::vector<Tensor>{ops::reshape(back, coeffs_shape), ops::reshape(ops::matmul(x[0], bias_full), rows_shape)};
      }, 9);
      compare_runs(fused, generic, "backsub_conv");
    }
}

void fused_vs_generic_backsub_input() {
  Rng rng(26);
  const int64_t batch = 3, rows = 4, n = 23;
  const Tensor coeffs = Tensor::from_vector(away_from_zero(batch * rows * n, rng, -1, 1, 0.01f), Shape{batch, rows, n},
                                            Device::cpu);
  const Tensor centre = random_tensor(Shape{batch, n}, rng), radius = random_tensor(Shape{batch, n}, rng, Device::cpu, 0, 1);
  for (Device device : devices()) {
    CAPTURE(device_name(device));
    const std::vector<Tensor> inputs{coeffs, centre, radius};
    const auto fused = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
      const relax::BacksubInputResult r = relax::backsub_input(x[0], x[1], x[2]);
      return std::vector<Tensor>{r.centre_term, r.spread};
    }, 10);
    const auto generic = run_with_grads(inputs, device, [](const std::vector<Tensor>& x) {
      const int64_t b = x[0].size(0), k = x[0].size(1), m = x[0].size(2);
      auto apply = [&](const Tensor& a, const Tensor& v) {
        return ops::reshape(ops::matmul(a, ops::reshape(v, Shape{b, m, 1})), Shape{b, k});
      };
      return std::vector<Tensor>{apply(x[0], x[1]), apply(ops::abs(x[0]), x[2])};
    }, 10);
    compare_runs(fused, generic, "backsub_input");
  }
}

const bool kFusedRegistered = [] {
  fused_checks()["backsub_linear"] = fused_vs_generic_backsub_linear;
  fused_checks()["backsub_relu_live"] = fused_backsub_relu_live;
  fused_checks()["backsub_conv"] = fused_vs_generic_backsub_conv;
  fused_checks()["backsub_input"] = fused_vs_generic_backsub_input;
  fused_checks()["box_relu"] = fused_vs_generic_box_relu;
  fused_checks()["hbox_relu"] = fused_vs_generic_hbox_relu;
  fused_checks()["backsub_relu"] = fused_vs_generic_backsub_relu;
  return true;
}();

TEST_CASE("relax fused: every op of CTE_RELAXATION_OPS equals its generic-op computation") {
  REQUIRE(kFusedRegistered);
  std::vector<std::string> listed;
#define CTE_LIST_RELAX_OP(name, kernels, differentiable) listed.push_back(#name);
  CTE_RELAXATION_OPS(CTE_LIST_RELAX_OP)
#undef CTE_LIST_RELAX_OP
  for (const std::string& name : listed)
    CHECK_MESSAGE(fused_checks().count(name) == 1, "op " << name << " has no fused-vs-generic check");
  // Every kernel stem an op names is a kernel of CTE_KERNELS or CTE_RELAX_KERNELS.
  std::set<std::string> kernels;
#define CTE_LIST_ANY_KERNEL(name, params) kernels.insert(#name);
  CTE_KERNELS(CTE_LIST_ANY_KERNEL)
  CTE_RELAX_KERNELS(CTE_LIST_ANY_KERNEL)
#undef CTE_LIST_ANY_KERNEL
  const std::vector<std::pair<std::string, std::string>> stems = {
#define CTE_LIST_RELAX_OP_STEMS(name, kernel_stems, differentiable) {#name, kernel_stems},
      CTE_RELAXATION_OPS(CTE_LIST_RELAX_OP_STEMS)
#undef CTE_LIST_RELAX_OP_STEMS
  };
  for (const auto& [op, list] : stems) {
    std::istringstream words(list);
    std::string stem;
    while (words >> stem) CHECK_MESSAGE(kernels.count(stem) == 1, "op " << op << " names unknown kernel " << stem);
  }
  for (const auto& [name, check] : fused_checks())
    CHECK_MESSAGE(std::find(listed.begin(), listed.end(), name) != listed.end(),
                  "check " << name << " names no op of CTE_RELAXATION_OPS");
  for (const std::string& name : listed) {
    const auto found = fused_checks().find(name);
    if (found == fused_checks().end()) continue;
    INFO("op: " << name);
    found->second();
  }
}

// ---------------------------------------------------------------- kernel parity

std::map<std::string, std::function<void()>>& parity_checks() {
  static std::map<std::string, std::function<void()>> checks;
  return checks;
}
size_t parity_comparisons = 0;

// Device copy of host values (NaN-filled outputs use nan_on_device).
Tensor on_device(const std::vector<float>& v) {
  return Tensor::from_vector(v, Shape{int64_t(v.size())}, Device::cuda);
}
std::vector<float> nans(int64_t n) { return std::vector<float>(size_t(n), kNaN); }

void expect_parity(const std::string& what, const Tensor& cuda, const std::vector<float>& cpu) {
  parity_comparisons += cpu.size() + 1;
  const std::vector<float> got = cuda.to_vector();
  INFO(what);
  CHECK_CLOSE_VEC(got, cpu, 1e-5, 1e-4);
}

const std::vector<int64_t> kSizes = {0, 1, 31, 257, 70001};

void parity_box(bool backward) {
  Rng rng(31);
  for (int64_t n : kSizes) {
    const std::vector<float> c = random_values(n, rng, -2, 2), r = random_values(n, rng, 0, 2);
    const std::vector<float> dc = random_values(n, rng), dr = random_values(n, rng);
    std::vector<float> out1 = nans(n), out2 = nans(n);
    Tensor c_d = on_device(c), r_d = on_device(r), dc_d = on_device(dc), dr_d = on_device(dr);
    Tensor o1 = on_device(out1), o2 = on_device(out2);
    if (!backward) {
      kern::box_relu_forward_cpu(c.data(), r.data(), out1.data(), out2.data(), n);
      kern::box_relu_forward_cuda(c_d.data(), r_d.data(), o1.data(), o2.data(), n);
    } else {
      kern::box_relu_backward_cpu(c.data(), r.data(), dc.data(), dr.data(), out1.data(), out2.data(), n);
      kern::box_relu_backward_cuda(c_d.data(), r_d.data(), dc_d.data(), dr_d.data(), o1.data(), o2.data(), n);
    }
    expect_parity("box n=" + std::to_string(n) + " output 1", o1, out1);
    expect_parity("box n=" + std::to_string(n) + " output 2", o2, out2);
  }
}

void parity_hbox(bool backward) {
  Rng rng(32);
  for (int64_t n : kSizes) {
    const std::vector<float> c = random_values(n, rng, -2, 2), g = random_values(n, rng, 0, 1),
                             b = random_values(n, rng, 0, 1);
    const std::vector<float> dc = random_values(n, rng), db = random_values(n, rng);
    std::vector<std::vector<float>> outs(4, nans(n));
    std::vector<Tensor> outs_d;
    for (const auto& o : outs) outs_d.push_back(on_device(o));
    Tensor c_d = on_device(c), g_d = on_device(g), b_d = on_device(b), dc_d = on_device(dc), db_d = on_device(db);
    if (!backward) {
      kern::hbox_relu_forward_cpu(c.data(), g.data(), b.data(), outs[0].data(), outs[1].data(), outs[2].data(),
                                  outs[3].data(), n);
      kern::hbox_relu_forward_cuda(c_d.data(), g_d.data(), b_d.data(), outs_d[0].data(), outs_d[1].data(),
                                   outs_d[2].data(), outs_d[3].data(), n);
    } else {
      outs.pop_back();
      outs_d.pop_back();
      kern::hbox_relu_backward_cpu(c.data(), g.data(), b.data(), dc.data(), db.data(), outs[0].data(), outs[1].data(),
                                   outs[2].data(), n);
      kern::hbox_relu_backward_cuda(c_d.data(), g_d.data(), b_d.data(), dc_d.data(), db_d.data(), outs_d[0].data(),
                                    outs_d[1].data(), outs_d[2].data(), n);
    }
    for (size_t k = 0; k < outs.size(); ++k)
      expect_parity("hbox n=" + std::to_string(n) + " output " + std::to_string(k), outs_d[k], outs[k]);
  }
}

struct BacksubShape {
  int64_t batch, rows, n;
};
// Zero, one, odd, many blocks (batch * rows rows for the forward kernel, batch * n
// neurons and batch * rows * n coefficients for the backward kernels); the last
// is above the CPU twins' threshold for threads (2 * 9 * 1000 > 2^14) in few
// rows: the emulator runs each row's block reductions in lockstep, ~3 ms a row.
const BacksubShape kBacksubShapes[] = {{0, 3, 5}, {1, 1, 1}, {2, 3, 31}, {3, 5, 300}, {4, 70, 9}, {2, 9, 1000}};
// On a real GPU also more rows than one launch has warps (4096 blocks x 8), so
// the forward kernels' warp-per-row loop wraps (too slow for the emulator).
std::vector<BacksubShape> backsub_shapes() {
  std::vector<BacksubShape> shapes(std::begin(kBacksubShapes), std::end(kBacksubShapes));
  if (gpu::compiled_backend() == gpu::Backend::real_cuda) shapes.push_back({9, 4000, 5});
  return shapes;
}

// "[batch,rows,n]" (a stream, which also dodges a g++ 12 -Wrestrict false positive at -O3).
std::string shape_label(const BacksubShape& s) {
  std::ostringstream out;
  out << "[" << s.batch << "," << s.rows << "," << s.n << "]";
  return out.str();
}

// Random inputs of one ReLU backsubstitution step: bounds l, u (batch, n),
// coefficients a (coeff_batch, rows, n), their incoming gradient da and the
// intercepts' dbl, dbu, and a bias below (n).
struct BacksubInputs {
  int64_t coeff_batch;
  std::vector<float> l, u, a, da, dbl, dbu, bias;
};
BacksubInputs random_backsub_inputs(const BacksubShape& s, bool shared, Rng& rng) {
  BacksubInputs in;
  in.coeff_batch = shared ? 1 : s.batch;
  random_bounds(s.batch * s.n, rng, in.l, in.u, 0.0f);
  in.a = random_values(in.coeff_batch * s.rows * s.n, rng);
  in.da = random_values(s.batch * s.rows * s.n, rng);
  in.dbl = random_values(s.batch * s.rows, rng);
  in.dbu = random_values(s.batch * s.rows, rng);
  in.bias = random_values(s.n, rng);
  return in;
}

void parity_backsub(bool backward) {
  Rng rng(33);
  for (const BacksubShape& s : backsub_shapes()) {
    for (ReluRule rule : kRules) {
      for (bool shared : {false, true}) {
        const BacksubInputs in = random_backsub_inputs(s, shared, rng);
        const int64_t coeff_batch = in.coeff_batch;
        const std::vector<float>&l = in.l, &u = in.u, &a = in.a, &da = in.da, &dbl = in.dbl, &dbu = in.dbu, &bias = in.bias;
        const bool symmetric = kern::relu_rule_symmetric(rule);
        Tensor a_d = on_device(a), l_d = on_device(l), u_d = on_device(u), da_d = on_device(da),
               dbl_d = on_device(dbl), dbu_d = on_device(dbu), bias_d = on_device(bias);
        for (bool fold : {false, true}) {  // with and without the bias below folded in
          const float* bb = fold ? bias.data() : nullptr;
          const float* bb_d = fold ? bias_d.data() : nullptr;
          const std::string what = std::string(rule_name(rule)) + (shared ? " shared " : " ") + shape_label(s) +
                                   (fold ? " bias below" : "");
          if (!backward) {
            std::vector<float> out = nans(s.batch * s.rows * s.n), bl = nans(s.batch * s.rows), bu = nans(s.batch * s.rows);
            Tensor out_d = on_device(out), bl_d = on_device(bl), bu_d = on_device(bu);
            kern::backsub_relu_forward_cpu(rule, a.data(), l.data(), u.data(), bb, out.data(), bl.data(),
                                           symmetric ? bu.data() : nullptr, kern::BacksubShape{s.batch, s.rows, s.n, shared});
            kern::backsub_relu_forward_cuda(rule, a_d.data(), l_d.data(), u_d.data(), bb_d, out_d.data(), bl_d.data(),
                                            symmetric ? bu_d.data() : nullptr,
                                            kern::BacksubShape{s.batch, s.rows, s.n, shared});
            expect_parity("backsub forward coeffs " + what, out_d, out);
            expect_parity("backsub forward bias_lower " + what, bl_d, bl);
            if (symmetric) expect_parity("backsub forward bias_upper " + what, bu_d, bu);
            continue;
          }
          for (bool with_biases : {true, false}) {
            // Folded without its gradient asked for (d_bias_below nullptr) when the intercepts' gradients are off.
            const bool bias_grad = fold && with_biases;
            std::vector<float> dcoef = nans(coeff_batch * s.rows * s.n), dl = nans(s.batch * s.n), du = nans(s.batch * s.n),
                               db = nans(s.batch * s.n);
            Tensor dcoef_d = on_device(dcoef), dl_d = on_device(dl), du_d = on_device(du), db_d = on_device(db);
            kern::backsub_relu_backward_cpu(rule, a.data(), l.data(), u.data(), bb, da.data(),
                                            with_biases ? dbl.data() : nullptr,
                                            with_biases && symmetric ? dbu.data() : nullptr, dcoef.data(), dl.data(),
                                            du.data(), bias_grad ? db.data() : nullptr,
                                            kern::BacksubShape{s.batch, s.rows, s.n, shared});
            kern::backsub_relu_backward_cuda(rule, a_d.data(), l_d.data(), u_d.data(), bb_d, da_d.data(),
                                             with_biases ? dbl_d.data() : nullptr,
                                             with_biases && symmetric ? dbu_d.data() : nullptr, dcoef_d.data(),
                                             dl_d.data(), du_d.data(), bias_grad ? db_d.data() : nullptr,
                                             kern::BacksubShape{s.batch, s.rows, s.n, shared});
            const std::string w = what + (with_biases ? "" : " no bias grads");
            expect_parity("backsub backward d_coeffs " + w, dcoef_d, dcoef);
            expect_parity("backsub backward d_lower " + w, dl_d, dl);
            expect_parity("backsub backward d_upper " + w, du_d, du);
            if (bias_grad) expect_parity("backsub backward d_bias_below " + w, db_d, db);
          }
        }
      }
    }
  }
}

// The CPU backward of a ReLU step splits its neuron blocks (of 32) between
// threads, whole blocks for shared coefficients, (sample, block) pairs
// otherwise, and must add every sum in the same order on any thread count:
// the same bits, for every rule, shared or not, with the bias below and all
// gradients asked for. Sizes above the threads' threshold, n with a short
// last block (200 = 6 x 32 + 8) and the CONV net's 3,136.
TEST_CASE("relax fused: the CPU ReLU backsubstitution backward is the same bit for bit on 1 and 3 threads") {
  Rng rng(35);
  const int threads_before = omp_get_max_threads();
  for (const BacksubShape& s : {BacksubShape{3, 40, 200}, BacksubShape{5, 37, 3136}}) {
    for (ReluRule rule : kRules) {
      for (bool shared : {false, true}) {
        const BacksubInputs in = random_backsub_inputs(s, shared, rng);
        const bool symmetric = kern::relu_rule_symmetric(rule);
        std::vector<std::vector<float>> outputs[2];
        for (int run = 0; run < 2; ++run) {
          omp_set_num_threads(run == 0 ? 1 : 3);
          std::vector<float> dcoef = nans(in.coeff_batch * s.rows * s.n), dl = nans(s.batch * s.n),
                             du = nans(s.batch * s.n), db = nans(s.batch * s.n);
          kern::backsub_relu_backward_cpu(rule, in.a.data(), in.l.data(), in.u.data(), in.bias.data(), in.da.data(),
                                          in.dbl.data(), symmetric ? in.dbu.data() : nullptr, dcoef.data(), dl.data(),
                                          du.data(), db.data(), kern::BacksubShape{s.batch, s.rows, s.n, shared});
          outputs[run] = {dcoef, dl, du, db};
        }
        omp_set_num_threads(threads_before);
        const char* names[] = {"d_coeffs", "d_lower", "d_upper", "d_bias_below"};
        for (size_t k = 0; k < 4; ++k) {
          CAPTURE(names[k]);
          CAPTURE(rule_name(rule));
          CAPTURE(shared);
          CAPTURE(shape_label(s));
          CHECK(std::memcmp(outputs[0][k].data(), outputs[1][k].data(), outputs[0][k].size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

void parity_backsub_input(bool backward) {
  Rng rng(34);
  for (const BacksubShape& s : backsub_shapes()) {
    const std::vector<float> a = random_values(s.batch * s.rows * s.n, rng);
    const std::vector<float> c = random_values(s.batch * s.n, rng), r = random_values(s.batch * s.n, rng, 0, 1);
    const std::vector<float> dc = random_values(s.batch * s.rows, rng), ds = random_values(s.batch * s.rows, rng);
    Tensor a_d = on_device(a), c_d = on_device(c), r_d = on_device(r), dc_d = on_device(dc), ds_d = on_device(ds);
    const std::string what = shape_label(s);
    if (!backward) {
      std::vector<float> ct = nans(s.batch * s.rows), sp = nans(s.batch * s.rows);
      Tensor ct_d = on_device(ct), sp_d = on_device(sp);
      kern::backsub_input_forward_cpu(a.data(), c.data(), r.data(), ct.data(), sp.data(), s.batch, s.rows, s.n);
      kern::backsub_input_forward_cuda(a_d.data(), c_d.data(), r_d.data(), ct_d.data(), sp_d.data(), s.batch, s.rows, s.n);
      expect_parity("backsub_input forward centre_term " + what, ct_d, ct);
      expect_parity("backsub_input forward spread " + what, sp_d, sp);
      continue;
    }
    for (int variant = 0; variant < 3; ++variant) {  // both gradients; no d_spread; no input-box gradients
      const bool with_spread = variant != 1, with_box = variant != 2;
      std::vector<float> da = nans(s.batch * s.rows * s.n), dcen = nans(s.batch * s.n), drad = nans(s.batch * s.n);
      Tensor da_d = on_device(da), dcen_d = on_device(dcen), drad_d = on_device(drad);
      kern::backsub_input_backward_cpu(a.data(), c.data(), r.data(), dc.data(), with_spread ? ds.data() : nullptr,
                                       da.data(), with_box ? dcen.data() : nullptr, with_box ? drad.data() : nullptr,
                                       s.batch, s.rows, s.n);
      kern::backsub_input_backward_cuda(a_d.data(), c_d.data(), r_d.data(), dc_d.data(),
                                        with_spread ? ds_d.data() : nullptr, da_d.data(),
                                        with_box ? dcen_d.data() : nullptr, with_box ? drad_d.data() : nullptr,
                                        s.batch, s.rows, s.n);
      const std::string w = what + " variant " + std::to_string(variant);
      expect_parity("backsub_input backward d_coeffs " + w, da_d, da);
      if (with_box) {
        expect_parity("backsub_input backward d_centre " + w, dcen_d, dcen);
        expect_parity("backsub_input backward d_radius " + w, drad_d, drad);
      }
    }
  }
}

// The live-column products of backsub_linear (relax_kernels.h): the CPU twin
// against a float64 evaluation of each formula, the CUDA twin against the
// CPU's. Masks with few live columns (the CPU's gathered products, samples
// with none), most live (its masked large product) and all live.
struct LiveLinearCase {
  int64_t batch, rows, n, n_in;
  double live_share;
};
const LiveLinearCase kLiveLinearCases[] = {{0, 3, 5, 4, 0.5},  {1, 1, 1, 1, 1.0},    {3, 5, 31, 7, 0.1},
                                           {4, 9, 40, 33, 0.3}, {2, 7, 37, 70, 0.9},  {3, 4, 16, 300, 1.0},
                                           {5, 3, 20, 6, 0.0},  {2, 0, 5, 3, 0.5},    {2, 3, 0, 4, 0.5},
                                           {2, 3, 5, 0, 0.5}};


// A per-sample row plan pads each sample's rows with zero rows at the end
// (relaxations/backsub.cpp's plan_rows), which the CPU's gathered products
// skip: sample s gets s % (rows + 1) of them, and sample 1 a zero row that is
// not trailing (still a row to compute). A skip that dropped a live row fails
// the float64 check.
void zero_padding_rows(std::vector<float>& values, const LiveLinearCase& c, int64_t width) {
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t k = 0; k < c.rows; ++k) {
      const bool padding = k >= c.rows - s % (c.rows + 1) || (s == 1 && k == 0 && c.rows > 1);
      if (padding) std::fill_n(values.begin() + (s * c.rows + k) * width, width, 0.0f);
    }
}

void check_live_linear(int which) {  // 0 forward, 1 coefficient gradient, 2 weight gradient
  Rng rng(36 + uint64_t(which));
  for (const LiveLinearCase& c : kLiveLinearCases) {
    const std::string what = std::string(which == 0 ? "forward" : which == 1 ? "grad" : "weight_grad") + " [" +
                             std::to_string(c.batch) + "," + std::to_string(c.rows) + "," + std::to_string(c.n) +
                             "] n_in " + std::to_string(c.n_in) + " live share " + std::to_string(c.live_share);
    CAPTURE(what);
    std::vector<float> a = random_values(c.batch * c.rows * c.n, rng);         // coefficients, nonzero when dead too
    std::vector<float> d = random_values(c.batch * c.rows * c.n_in, rng);      // d_coeffs_out
    const std::vector<float> w = random_values(c.n * c.n_in, rng);
    const std::vector<float> live = live_mask(c.batch * c.n, c.live_share, rng);
    zero_padding_rows(a, c, c.n);
    zero_padding_rows(d, c, c.n_in);
    const int64_t out_count = which == 0 ? c.batch * c.rows * c.n_in : which == 1 ? c.batch * c.rows * c.n : c.n * c.n_in;
    std::vector<double> want(size_t(out_count), 0.0);
    for (int64_t s = 0; s < c.batch; ++s)
      for (int64_t k = 0; k < c.rows; ++k)
        for (int64_t j = 0; j < c.n; ++j) {
          if (live[size_t(s * c.n + j)] == 0.0f) continue;
          const double coeff = a[size_t((s * c.rows + k) * c.n + j)];
          for (int64_t t = 0; t < c.n_in; ++t) {
            const double wt = w[size_t(j * c.n_in + t)], dt = d[size_t((s * c.rows + k) * c.n_in + t)];
            if (which == 0) want[size_t((s * c.rows + k) * c.n_in + t)] += coeff * wt;
            if (which == 1) want[size_t((s * c.rows + k) * c.n + j)] += dt * wt;
            if (which == 2) want[size_t(j * c.n_in + t)] += coeff * dt;
          }
        }
    const kern::BacksubShape shape{c.batch, c.rows, c.n, false};
    std::vector<float> out = nans(out_count), scratch = nans(c.batch * c.rows * c.n);
    Tensor a_d = on_device(a), d_d = on_device(d), w_d = on_device(w), live_d = on_device(live), out_d = on_device(out),
           scratch_d = on_device(scratch);
    if (which == 0) {
      kern::backsub_linear_live_forward_cpu(a.data(), w.data(), live.data(), out.data(), scratch.data(), c.n_in, shape);
      kern::backsub_linear_live_forward_cuda(a_d.data(), w_d.data(), live_d.data(), out_d.data(), scratch_d.data(),
                                             c.n_in, shape);
    } else if (which == 1) {
      kern::backsub_linear_live_grad_cpu(d.data(), w.data(), live.data(), out.data(), c.n_in, shape);
      kern::backsub_linear_live_grad_cuda(d_d.data(), w_d.data(), live_d.data(), out_d.data(), c.n_in, shape);
    } else {
      kern::backsub_linear_live_weight_grad_cpu(a.data(), d.data(), live.data(), out.data(), scratch.data(), c.n_in,
                                                shape);
      kern::backsub_linear_live_weight_grad_cuda(a_d.data(), d_d.data(), live_d.data(), out_d.data(), scratch_d.data(),
                                                 c.n_in, shape);
    }
    const int64_t terms = which == 0 ? c.n : which == 1 ? c.n_in : c.batch * c.rows;
    for (int64_t i = 0; i < out_count; ++i) {
      CAPTURE(i);
      // |sum| <= terms, each term below 1 in magnitude: float32's error is at most ~terms^2 u.
      CHECK(std::fabs(double(out[size_t(i)]) - want[size_t(i)]) <= 1e-6 * double(terms + 1) * double(terms + 1));
    }
    expect_parity("backsub_linear_live " + what, out_d, out);
  }
}

// The CPU live-column products' gathered path (few live columns) gives the
// same bits on 1 and 3 threads, weight gradients summed over samples in more
// than one group of shares (n_in large) too. (Most columns live: one gemm_cpu,
// whose OpenBLAS path for small shapes makes no such promise.)
TEST_CASE("relax fused: the CPU live-column products are the same bit for bit on 1 and 3 threads") {
  Rng rng(37);
  const int threads_before = omp_get_max_threads();
  for (const LiveLinearCase& c : {LiveLinearCase{7, 30, 64, 200, 0.1}, LiveLinearCase{5, 20, 48, 96, 0.5},
                                  LiveLinearCase{40, 8, 300, 20000, 0.05}}) {
    const std::vector<float> a = random_values(c.batch * c.rows * c.n, rng);
    const std::vector<float> d = random_values(c.batch * c.rows * c.n_in, rng);
    const std::vector<float> w = random_values(c.n * c.n_in, rng);
    const std::vector<float> live = live_mask(c.batch * c.n, c.live_share, rng);
    const kern::BacksubShape shape{c.batch, c.rows, c.n, false};
    std::vector<float> scratch(size_t(c.batch * c.rows * c.n));
    std::vector<std::vector<float>> outputs[2];
    for (int run = 0; run < 2; ++run) {
      omp_set_num_threads(run == 0 ? 1 : 3);
      std::vector<float> fwd(size_t(c.batch * c.rows * c.n_in)), grad(size_t(c.batch * c.rows * c.n)),
          wgrad(size_t(c.n * c.n_in));
      kern::backsub_linear_live_forward_cpu(a.data(), w.data(), live.data(), fwd.data(), scratch.data(), c.n_in, shape);
      kern::backsub_linear_live_grad_cpu(d.data(), w.data(), live.data(), grad.data(), c.n_in, shape);
      kern::backsub_linear_live_weight_grad_cpu(a.data(), d.data(), live.data(), wgrad.data(), scratch.data(), c.n_in,
                                                shape);
      outputs[run] = {fwd, grad, wgrad};
    }
    omp_set_num_threads(threads_before);
    for (size_t k = 0; k < 3; ++k) {
      CAPTURE(k);
      CAPTURE(c.live_share);
      CHECK(std::memcmp(outputs[0][k].data(), outputs[1][k].data(), outputs[0][k].size() * sizeof(float)) == 0);
    }
  }
}

void parity_backsub_relu_live() {
  Rng rng(38);
  for (ReluRule rule : kRules)
    for (int64_t n : kSizes) {
      std::vector<float> l, u;
      random_bounds(n, rng, l, u, 0.0f);
      if (n > 1) l[1] = kNaN;
      std::vector<float> live = nans(n);
      Tensor l_d = on_device(l), u_d = on_device(u), live_d = on_device(live);
      kern::backsub_relu_live_cpu(rule, l.data(), u.data(), live.data(), n);
      kern::backsub_relu_live_cuda(rule, l_d.data(), u_d.data(), live_d.data(), n);
      expect_parity(std::string("backsub_relu_live ") + rule_name(rule) + " n=" + std::to_string(n), live_d, live);
    }
}

const bool kParityRegistered = [] {
  parity_checks()["backsub_relu_live"] = parity_backsub_relu_live;
  parity_checks()["backsub_linear_live_forward"] = [] { check_live_linear(0); };
  parity_checks()["backsub_linear_live_grad"] = [] { check_live_linear(1); };
  parity_checks()["backsub_linear_live_weight_grad"] = [] { check_live_linear(2); };
  parity_checks()["backsub_input_forward"] = [] { parity_backsub_input(false); };
  parity_checks()["backsub_input_backward"] = [] { parity_backsub_input(true); };
  parity_checks()["box_relu_forward"] = [] { parity_box(false); };
  parity_checks()["box_relu_backward"] = [] { parity_box(true); };
  parity_checks()["hbox_relu_forward"] = [] { parity_hbox(false); };
  parity_checks()["hbox_relu_backward"] = [] { parity_hbox(true); };
  parity_checks()["backsub_relu_forward"] = [] { parity_backsub(false); };
  parity_checks()["backsub_relu_backward"] = [] { parity_backsub(true); };
  return true;
}();

TEST_CASE("relax fused: every kernel of CTE_RELAX_KERNELS matches its CPU twin") {
  REQUIRE(kParityRegistered);
  std::vector<std::string> listed;
#define CTE_LIST_RELAX_KERNEL(name, params) listed.push_back(#name);
  CTE_RELAX_KERNELS(CTE_LIST_RELAX_KERNEL)
#undef CTE_LIST_RELAX_KERNEL
  const std::set<std::string> listed_set(listed.begin(), listed.end());
  for (const std::string& name : listed)
    CHECK_MESSAGE(parity_checks().count(name) == 1, "kernel " << name << " has no parity check");
  for (const auto& [name, check] : parity_checks())
    CHECK_MESSAGE(listed_set.count(name) == 1, "parity check " << name << " names no kernel of CTE_RELAX_KERNELS");
  if (!cuda_available()) {
    MESSAGE("no CUDA device: relaxation kernel parity skipped");
    return;
  }
  for (const std::string& name : listed) {
    const auto found = parity_checks().find(name);
    if (found == parity_checks().end()) continue;
    INFO("kernel: " << name);
    parity_comparisons = 0;
    found->second();
    CHECK_MESSAGE(parity_comparisons > 0, "parity check of " << name << " compared nothing");
  }
}

// ---------------------------------------------------------------- compute_bounds, CPU vs CUDA

Layer linear_layer(int64_t in, int64_t out, Rng& rng) { return make_linear(in, out, rng); }

Network tiny_dense(Rng& rng) {
  return Network(Shape{5}, {make_normalize({0.25f}, {0.5f}), linear_layer(5, 6, rng), make_relu(),
                            linear_layer(6, 6, rng), make_relu(), linear_layer(6, 3, rng)});
}

Network tiny_conv(Rng& rng) {
  return Network(Shape{2, 6, 6}, {make_normalize({0.5f, 0.25f}, {0.5f, 0.75f}), make_conv(2, 3, 3, 1, 1, rng),
                                  make_relu(), make_conv(3, 2, 3, 2, 0, rng), make_relu(), make_flatten(),
                                  linear_layer(8, 5, rng), make_relu(), linear_layer(5, 3, rng)});
}

struct BoundsRun {
  std::vector<float> lower, upper;
  std::vector<std::vector<float>> grads;  // of sum(w_l * lower + w_u * upper) for each parameter
};

BoundsRun run_bounds(const Network& source, Device device, const Tensor& lower0, const Tensor& upper0,
                     const std::vector<int>* labels, Relaxation relaxation, const BoundOptions& options) {
  Network net = source;
  for (Layer& layer : net.layers()) {  // a deep copy, so the copies' gradients stay apart
    if (layer.weight.defined()) layer.weight = layer.weight.clone();
    if (layer.bias.defined()) layer.bias = layer.bias.clone();
  }
  net.to(device);
  net.set_requires_grad(true);
  const Tensor spec = labels ? margin_spec(*labels, 3, device) : Tensor();
  const Bounds b = compute_bounds(net, lower0.to(device), upper0.to(device), spec, relaxation, options);
  BoundsRun run{b.lower.to_vector(), b.upper.to_vector(), {}};
  Rng rng(77);
  const Tensor wl = random_tensor(b.lower.shape(), rng, device), wu = random_tensor(b.upper.shape(), rng, device);
  backward(ops::add(ops::sum(ops::mul(b.lower, wl)), ops::sum(ops::mul(b.upper, wu))));
  for (const Tensor& p : net.parameters())
    run.grads.push_back(p.grad().defined() ? p.grad().to_vector() : std::vector<float>(size_t(p.numel()), 0.0f));
  return run;
}

void compare_bounds_runs(const BoundsRun& a, const BoundsRun& b, double tol) {
  CHECK_CLOSE_VEC(a.lower, b.lower, tol, tol);
  CHECK_CLOSE_VEC(a.upper, b.upper, tol, tol);
  REQUIRE(a.grads.size() == b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    CAPTURE(i);
    CHECK_CLOSE_VEC(a.grads[i], b.grads[i], tol, 1e-3);
  }
}

TEST_CASE("relax fused: compute_bounds agrees on the CPU and CUDA for every relaxation") {
  if (!cuda_available()) {
    MESSAGE("no CUDA device: CPU-vs-CUDA bounds comparison skipped");
    return;
  }
  Rng rng(41);
  const std::vector<int> labels{0, 2};
  for (int which = 0; which < 2; ++which) {
    const Network net = which == 0 ? tiny_dense(rng) : tiny_conv(rng);
    std::vector<int64_t> dims{2};
    for (int64_t d : net.input_shape().dims()) dims.push_back(d);
    const Tensor x = random_tensor(Shape(dims), rng, Device::cpu, 0.0f, 1.0f);
    const auto [lower0, upper0] = input_box(x, 0.15f);
    for (Relaxation relaxation : all_relaxations()) {
      // Without a spec there is nothing to elide: three combinations cover both flags.
      for (const auto& [with_spec, elide] : {std::pair{false, true}, std::pair{true, true}, std::pair{true, false}}) {
        {
          CAPTURE(which);
          CAPTURE(relaxation_name(relaxation));
          CAPTURE(with_spec);
          CAPTURE(elide);
          BoundOptions options;
          options.elide_last_layer = elide;
          const BoundsRun cpu = run_bounds(net, Device::cpu, lower0, upper0, with_spec ? &labels : nullptr, relaxation, options);
          const BoundsRun cuda = run_bounds(net, Device::cuda, lower0, upper0, with_spec ? &labels : nullptr, relaxation, options);
          compare_bounds_runs(cuda, cpu, 1e-4);
          for (size_t i = 0; i < cpu.lower.size(); ++i) CHECK(cpu.lower[i] <= cpu.upper[i] + 1e-5f);
        }
      }
    }
  }
}

TEST_CASE("relax fused: chunked, checkpointed intermediate bounds equal one pass") {
  Rng rng(42);
  const Network net = tiny_conv(rng);
  const Tensor x = random_tensor(Shape{3, 2, 6, 6}, rng, Device::cpu, 0.0f, 1.0f);
  const auto [lower0, upper0] = input_box(x, 0.1f);
  const std::vector<int> labels{1, 0, 2};
  for (Relaxation relaxation : all_relaxations()) {
    CAPTURE(relaxation_name(relaxation));
    BoundOptions one_pass, chunked;
    chunked.memory_cap_bytes = 20000;  // several chunks per layer, all but the first few checkpointed
    const BoundsRun a = run_bounds(net, Device::cpu, lower0, upper0, &labels, relaxation, one_pass);
    relax::reset_backsub_chunk_stats();
    const BoundsRun b = run_bounds(net, Device::cpu, lower0, upper0, &labels, relaxation, chunked);
    const relax::BacksubChunkStats stats = relax::backsub_chunk_stats();
    if (relaxation != Relaxation::box && relaxation != Relaxation::crown_ibp) {
      CHECK(stats.checkpointed_chunks >= 4);  // the ReLU layers past the first in several chunks
      CHECK(stats.checkpointed_chunks <= 60);
    }
    compare_bounds_runs(b, a, 1e-5);
  }
}

TEST_CASE("relax fused: elision tightens every relaxation (interval arithmetic on the logits is looser)") {
  Rng rng(43);
  const Network net = tiny_dense(rng);
  const Tensor x = random_tensor(Shape{4, 5}, rng, Device::cpu, 0.0f, 1.0f);
  const auto [lower0, upper0] = input_box(x, 0.2f);
  const std::vector<int> labels{0, 1, 2, 1};
  for (Relaxation relaxation : all_relaxations()) {
    CAPTURE(relaxation_name(relaxation));
    BoundOptions on, off;
    off.elide_last_layer = false;
    const BoundsRun a = run_bounds(net, Device::cpu, lower0, upper0, &labels, relaxation, on);
    const BoundsRun b = run_bounds(net, Device::cpu, lower0, upper0, &labels, relaxation, off);
    for (size_t i = 0; i < a.lower.size(); ++i) {
      CHECK(a.lower[i] >= b.lower[i] - 1e-5f);
      CHECK(a.upper[i] <= b.upper[i] + 1e-5f);
    }
  }
}

}  // namespace
}  // namespace cte::test
