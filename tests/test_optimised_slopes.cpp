// triangle and parallelogram by optimised slopes (relaxations/alpha_crown.cpp)
// against their exact references, the GLPK LPs triangle-lp and
// parallelogram-lp, on tiny random dense nets: within 1e-3 relative of the
// LP and never tighter than it beyond float tolerance (any slopes give a
// relaxation the LP's feasible set is contained in); Triangle never looser
// than Parallelogram (the paper's Triangle is the convex hull, and its own
// intermediate bounds are the tighter ones); sound by sampling; the training
// gradient against finite differences of the LP's value.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relaxations.h"
#include "train/config.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

BoundOptions slope_options(int steps, bool sound = false) {
  BoundOptions options;
  options.alpha.steps = steps;
  options.alpha.patience = 0;
  options.alpha.lr = 0.05f;
  options.sound = sound;
  return options;
}

Bounds bounds_with(const Network& net, const LabelledBox& box, Relaxation r, const BoundOptions& options = {}) {
  NoGrad no_grad;
  return compute_bounds(net, box.lower, box.upper, box.spec, r, options);
}

// Largest relative gap (looser side positive) of `b` to the reference `ref`, both (N, K).
double worst_relative_gap(const Bounds& b, const Bounds& ref, double& most_tighter) {
  const std::vector<float> bu = b.upper.to_vector(), ru = ref.upper.to_vector();
  const std::vector<float> bl = b.lower.to_vector(), rl = ref.lower.to_vector();
  double worst = 0.0;
  most_tighter = 0.0;
  for (size_t k = 0; k < bu.size(); ++k) {
    const double gap_u = (double(bu[k]) - ru[k]) / (1.0 + std::fabs(ru[k]));
    const double gap_l = (double(rl[k]) - bl[k]) / (1.0 + std::fabs(rl[k]));
    worst = std::max({worst, gap_u, gap_l});
    most_tighter = std::max({most_tighter, -gap_u, -gap_l});
  }
  return worst;
}

}  // namespace

TEST_CASE("triangle and parallelogram by slopes reach their LPs within 1e-3 relative, never tighter") {
  Rng rng(1501);
  for (int trial = 0; trial < 2; ++trial) {
    const Network net = dense_net({6, 10, 10, 4}, rng);
    const LabelledBox box = random_labelled_box(net, 2, 0.1f, rng);
    for (auto [slopes, lp] : {std::pair{Relaxation::triangle, Relaxation::triangle_lp},
                              std::pair{Relaxation::parallelogram, Relaxation::parallelogram_lp}}) {
      CAPTURE(trial);
      CAPTURE(std::string(relaxation_name(slopes)));
      const Bounds reference = bounds_with(net, box, lp);
      const Bounds optimised = bounds_with(net, box, slopes, slope_options(300));
      const Bounds crown = bounds_with(net, box, Relaxation::crown);
      double tighter = 0.0, crown_tighter = 0.0;
      const double gap = worst_relative_gap(optimised, reference, tighter);
      const double crown_gap = worst_relative_gap(crown, reference, crown_tighter);
      MESSAGE(std::string(relaxation_name(slopes)) << " (300 steps) vs " << std::string(relaxation_name(lp)) << ", trial " << trial
                                      << ": worst gap " << gap << " relative (CROWN's " << crown_gap
                                      << "), most tighter " << tighter);
      CHECK(gap < 1e-3);
      CHECK(tighter < 1e-5);  // float tolerance: the LP's bounds are rounded outwards
    }
  }
}

TEST_CASE("triangle by slopes is never looser than parallelogram by slopes, and strictly tighter somewhere") {
  Rng rng(1502);
  int strictly = 0;
  for (int trial = 0; trial < 2; ++trial) {
    const Network net = dense_net({5, 8, 8, 3}, rng);
    const LabelledBox box = random_labelled_box(net, 2, 0.15f, rng);
    const Bounds tri = bounds_with(net, box, Relaxation::triangle, slope_options(100));
    const Bounds par = bounds_with(net, box, Relaxation::parallelogram, slope_options(100));
    const std::vector<float> tu = tri.upper.to_vector(), pu = par.upper.to_vector();
    const std::vector<float> tl = tri.lower.to_vector(), pl = par.lower.to_vector();
    for (size_t k = 0; k < tu.size(); ++k) {
      const double tol = 1e-3 * (1.0 + std::fabs(pu[k]));  // both optimisations stop short of their optima
      CHECK(tu[k] <= pu[k] + tol);
      CHECK(tl[k] >= pl[k] - tol);
      strictly += (tu[k] < pu[k] - tol) + (tl[k] > pl[k] + tol);
    }
  }
  CHECK(strictly > 0);
}

TEST_CASE("triangle and parallelogram by slopes: sound by sampling (fast and sound mode)") {
  Rng rng(1503);
  const Network net = dense_net({4, 8, 8, 3}, rng);
  const LabelledBox box = random_labelled_box(net, 2, 0.2f, rng);
  const int64_t width = 4, logits = 3, rows = 2, points = 20000;
  const std::vector<float> lo = box.lower.to_vector(), hi = box.upper.to_vector(), spec = box.spec.to_vector();
  for (Relaxation r : {Relaxation::triangle, Relaxation::parallelogram})
    for (bool sound : {false, true}) {
      CAPTURE(std::string(relaxation_name(r)));
      CAPTURE(sound);
      const Bounds b = bounds_with(net, box, r, slope_options(30, sound));
      const std::vector<float> l = b.lower.to_vector(), u = b.upper.to_vector();
      int64_t outside = 0;
      double worst = -1e9;
      for (int64_t s = 0; s < 2; ++s) {
        std::vector<float> xs(size_t(points * width));
        for (int64_t p = 0; p < points; ++p)
          for (int64_t i = 0; i < width; ++i) {
            const float a = lo[size_t(s * width + i)], h = hi[size_t(s * width + i)];
            xs[size_t(p * width + i)] = p % 2 ? (rng.below(2) ? h : a) : std::fmin(h, a + (h - a) * float(rng.uniform()));
          }
        const std::vector<float> z = net.forward(Tensor::from_vector(xs, Shape{points, width}, Device::cpu)).to_vector();
        for (int64_t p = 0; p < points; ++p)
          for (int64_t k = 0; k < rows; ++k) {
            double v = 0;
            for (int64_t j = 0; j < logits; ++j) v += spec[size_t((s * rows + k) * logits + j)] * z[size_t(p * logits + j)];
            outside += !(v >= l[size_t(s * rows + k)] && v <= u[size_t(s * rows + k)]);
            worst = std::max({worst, double(l[size_t(s * rows + k)]) - v, v - u[size_t(s * rows + k)]});
          }
      }
      if (sound) CHECK(outside == 0);
      // Fast mode: the bounds are exact at corners of the box (the samples hit them), so misses
      // there are the float32 rounding of the forward pass and of the bound, never more than that.
      else CHECK(worst <= 1e-6);
    }
}

TEST_CASE("triangle and parallelogram: the memory cap chunks an intermediate layer without changing the bounds") {
  Rng rng(1504);
  const Network net = dense_net({4, 8, 8, 3}, rng);
  const LabelledBox box = random_labelled_box(net, 2, 0.2f, rng);
  for (Relaxation r : {Relaxation::triangle, Relaxation::parallelogram}) {
    CAPTURE(std::string(relaxation_name(r)));
    BoundOptions small = slope_options(20);
    small.alpha.memory_cap_bytes = 1;  // one row per chunk
    const Bounds whole = bounds_with(net, box, r, slope_options(20));
    const Bounds chunked = bounds_with(net, box, r, small);
    // Adam's per-row updates do not depend on the other rows, so the chunks give the same numbers.
    CHECK_CLOSE_VEC(chunked.upper.to_vector(), whole.upper.to_vector(), 1e-5, 1e-5);
    CHECK_CLOSE_VEC(chunked.lower.to_vector(), whole.lower.to_vector(), 1e-5, 1e-5);
  }
}

TEST_CASE("triangle and parallelogram: the training gradient against finite differences of the LP's value") {
  // Slopes held at their optimum (the envelope theorem), chained through the
  // optimised intermediate bounds: one recorded walk per bound. The reference
  // is the exact LP (triangle-lp, parallelogram-lp) differenced centrally.
  for (auto [slopes, lp] : {std::pair{Relaxation::triangle, Relaxation::triangle_lp},
                            std::pair{Relaxation::parallelogram, Relaxation::parallelogram_lp}}) {
    CAPTURE(std::string(relaxation_name(slopes)));
    Rng rng(1505);
    Network net = dense_net({3, 5, 4, 3}, rng);
    const LabelledBox box = random_labelled_box(net, 2, 0.15f, rng);
    BoundOptions options = slope_options(200);
    options.need_lower = false;  // as in training
    net.set_requires_grad(true);
    backward(ops::sum(compute_bounds(net, box.lower, box.upper, box.spec, slopes, options).upper));
    NoGrad no_grad;
    const auto lp_value = [&](const Network& n) {
      return double(ops::sum(compute_bounds(n, box.lower, box.upper, box.spec, lp).upper).item());
    };
    std::vector<double> analytic, numeric;
    const double h = 1e-2;
    for (const Tensor& p : net.parameters()) {
      const std::vector<float> g = p.grad().to_vector();
      std::vector<float> values = p.to_vector();
      for (size_t i = 0; i < values.size(); ++i) {
        const float saved = values[i];
        double f[2];
        for (int side = 0; side < 2; ++side) {
          values[i] = saved + float(side ? h : -h);
          Tensor(p).copy_from(Tensor::from_vector(values, p.shape(), Device::cpu));
          f[side] = lp_value(net);
        }
        values[i] = saved;
        Tensor(p).copy_from(Tensor::from_vector(values, p.shape(), Device::cpu));
        analytic.push_back(g[i]);
        numeric.push_back((f[1] - f[0]) / (2 * h));
      }
    }
    double dot = 0, na = 0, nn = 0, worst = 0;
    for (size_t i = 0; i < analytic.size(); ++i) {
      dot += analytic[i] * numeric[i];
      na += analytic[i] * analytic[i];
      nn += numeric[i] * numeric[i];
      worst = std::max(worst, std::fabs(analytic[i] - numeric[i]));
    }
    const double cosine = dot / std::sqrt(na * nn);
    MESSAGE(std::string(relaxation_name(slopes)) << " gradient vs central differences of " << std::string(relaxation_name(lp)) << " (h " << h
                                    << ") over " << analytic.size() << " weights: cosine " << cosine
                                    << ", worst absolute difference " << worst);
    CHECK(cosine > 0.99);
  }
}

TEST_CASE("triangle and parallelogram: training methods; the LPs stay as triangle-lp and parallelogram-lp") {
  for (const char* name : {"triangle", "parallelogram"}) {
    const train::TrainMethod& m = train::train_method(name);
    CHECK(m.certified);
    CHECK(m.relaxation == parse_relaxation(name));
    CHECK(relaxation_info(m.relaxation).has_gradient());
  }
  CHECK_FALSE(relaxation_info(parse_relaxation("triangle-lp")).has_gradient());
  CHECK_FALSE(relaxation_info(parse_relaxation("parallelogram_lp")).has_gradient());
}

}  // namespace cte::test
