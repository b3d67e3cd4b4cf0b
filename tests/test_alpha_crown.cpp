// alpha-crown (relaxations/alpha_crown.cpp) on tiny random dense nets:
// ordered between CROWN (never looser, row by row) and the Triangle LP
// (never tighter: any lower slope in [0, 1] is a relaxation the LP's convex
// hull contains, and the LP's intermediate bounds are at least as tight);
// strictly tighter than CROWN somewhere; the LP's value reached where the
// intermediate bounds coincide (one hidden layer); soundness by sampling;
// CPU against (emulated) CUDA; the training gradient against finite
// differences of the optimised bound.
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

Bounds bounds_of(const Network& net, const LabelledBox& box, Relaxation r, int steps = 20, bool sound = false) {
  NoGrad no_grad;
  BoundOptions options;
  options.alpha.steps = steps;
  options.alpha.patience = 0;
  options.sound = sound;
  return compute_bounds(net, box.lower, box.upper, box.spec, r, options);
}

}  // namespace

TEST_CASE("alpha-crown: between CROWN and the Triangle LP on random dense nets, strictly tighter than CROWN somewhere") {
  Rng rng(1401);
  int tighter_rows = 0, rows = 0;
  double worst_gap = 0.0, sum_gap = 0.0, sum_crown_gap = 0.0;
  for (int trial = 0; trial < 3; ++trial) {
    const Network net = dense_net({5, 8, 8, 4}, rng);
    const LabelledBox box = random_labelled_box(net, 3, 0.15f, rng);
    const Bounds crown = bounds_of(net, box, Relaxation::crown);
    const Bounds alpha = bounds_of(net, box, Relaxation::alpha_crown, 60);
    const Bounds lp = bounds_of(net, box, Relaxation::triangle_lp);
    const std::vector<float> cu = crown.upper.to_vector(), au = alpha.upper.to_vector(), lu = lp.upper.to_vector();
    const std::vector<float> cl = crown.lower.to_vector(), al = alpha.lower.to_vector(), ll = lp.lower.to_vector();
    for (size_t k = 0; k < cu.size(); ++k) {
      CAPTURE(trial);
      CAPTURE(k);
      const double tol = 1e-5 * (1.0 + std::fabs(cu[k]));
      CHECK(au[k] <= cu[k] + tol);
      CHECK(al[k] >= cl[k] - tol);
      CHECK(au[k] >= lu[k] - tol);
      CHECK(al[k] <= ll[k] + tol);
      tighter_rows += (au[k] < cu[k] - tol) + (al[k] > cl[k] + tol);
      rows += 2;
      for (double gap : {double(au[k]) - lu[k], double(ll[k]) - al[k]}) {
        worst_gap = std::max(worst_gap, gap);
        sum_gap += gap;
      }
      sum_crown_gap += (double(cu[k]) - lu[k]) + (double(ll[k]) - cl[k]);
    }
  }
  MESSAGE("alpha-crown (60 steps) vs the Triangle LP over " << rows << " bounds: mean gap " << sum_gap / rows
          << ", worst " << worst_gap << " (CROWN's mean gap " << sum_crown_gap / rows << "); tighter than CROWN on "
          << tighter_rows);
  CHECK(tighter_rows > 0);
  CHECK(sum_gap < 0.5 * sum_crown_gap);  // the optimisation closes most of CROWN's gap
}

TEST_CASE("alpha-crown: reaches the Triangle LP on one hidden layer (same intermediate bounds)") {
  // With one hidden layer the intermediate bounds of both are exact, and the
  // best lower slope per neuron and row is the LP's optimum.
  Rng rng(1402);
  const Network net = dense_net({4, 10, 3}, rng);
  const LabelledBox box = random_labelled_box(net, 2, 0.2f, rng);
  const Bounds alpha = bounds_of(net, box, Relaxation::alpha_crown, 300);
  const Bounds lp = bounds_of(net, box, Relaxation::triangle_lp);
  const std::vector<float> au = alpha.upper.to_vector(), lu = lp.upper.to_vector();
  const std::vector<float> al = alpha.lower.to_vector(), ll = lp.lower.to_vector();
  double worst = 0.0;
  for (size_t k = 0; k < au.size(); ++k) {
    worst = std::max({worst, (double(au[k]) - lu[k]) / (1.0 + std::fabs(lu[k])),
                      (double(ll[k]) - al[k]) / (1.0 + std::fabs(ll[k]))});
    CHECK(au[k] >= lu[k] - 1e-5 * (1.0 + std::fabs(lu[k])));
  }
  MESSAGE("one hidden layer, 300 steps: worst gap to the LP " << worst << " relative");
  CHECK(worst < 1e-3);
}

TEST_CASE("alpha-crown: no steps is CROWN exactly; the options are checked") {
  Rng rng(1403);
  const Network net = dense_net({3, 6, 6, 3}, rng);
  const LabelledBox box = random_labelled_box(net, 2, 0.2f, rng);
  const Bounds crown = bounds_of(net, box, Relaxation::crown);
  const Bounds alpha = bounds_of(net, box, Relaxation::alpha_crown, 0);
  CHECK(alpha.upper.to_vector() == crown.upper.to_vector());
  CHECK(alpha.lower.to_vector() == crown.lower.to_vector());
  NoGrad no_grad;
  BoundOptions bad;
  bad.alpha.lr = 0.0f;
  CHECK_THROWS_WITH_AS(compute_bounds(net, box.lower, box.upper, box.spec, Relaxation::alpha_crown, bad),
                       doctest::Contains("alpha.lr"), std::runtime_error);
  bad = BoundOptions{};
  bad.alpha.steps = -1;
  CHECK_THROWS_WITH_AS(compute_bounds(net, box.lower, box.upper, box.spec, Relaxation::alpha_crown, bad),
                       doctest::Contains("alpha.steps"), std::runtime_error);
}

TEST_CASE("alpha-crown: sound by sampling (fast and sound mode), without a spec and without elision too") {
  Rng rng(1404);
  const Network net = dense_net({4, 8, 8, 3}, rng);
  const LabelledBox box = random_labelled_box(net, 2, 0.2f, rng);
  const int64_t width = 4, logits = 3, points = 20000;
  const std::vector<float> lo = box.lower.to_vector(), hi = box.upper.to_vector(), spec = box.spec.to_vector();
  for (bool sound : {false, true})
    for (int variant = 0; variant < 3; ++variant) {  // margin spec, logits, margin spec without elision
      CAPTURE(sound);
      CAPTURE(variant);
      NoGrad no_grad;
      BoundOptions options;
      options.sound = sound;
      options.elide_last_layer = variant != 2;
      const Tensor spec_t = variant == 1 ? Tensor() : box.spec;
      const Bounds b = compute_bounds(net, box.lower, box.upper, spec_t, Relaxation::alpha_crown, options);
      const std::vector<float> l = b.lower.to_vector(), u = b.upper.to_vector();
      const int64_t rows = variant == 1 ? logits : logits - 1;
      int64_t outside = 0;
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
            for (int64_t j = 0; j < logits; ++j)
              v += (variant == 1 ? (j == k ? 1.0 : 0.0) : spec[size_t((s * rows + k) * logits + j)]) *
                   z[size_t(p * logits + j)];
            outside += !(v >= l[size_t(s * rows + k)] && v <= u[size_t(s * rows + k)]);
          }
      }
      if (sound) CHECK(outside == 0);
      else CHECK(outside <= 2 * points * rows / 1000);  // fast mode: only rounding-level misses, if any
    }
}

TEST_CASE("alpha-crown: CPU and CUDA agree") {
  if (!cuda_available()) return;
  Rng rng(1405);  // small: the emulator runs each CUDA thread on the CPU
  const Network net_cpu = dense_net({3, 5, 5, 3}, rng);
  const LabelledBox box = random_labelled_box(net_cpu, 1, 0.2f, rng);
  Network net_cuda = net_cpu;
  net_cuda.to(Device::cuda);
  const LabelledBox box_cuda{box.lower.to(Device::cuda), box.upper.to(Device::cuda), box.spec.to(Device::cuda)};
  for (bool sound : {false, true}) {
    CAPTURE(sound);
    const Bounds cpu = bounds_of(net_cpu, box, Relaxation::alpha_crown, 5, sound);
    const Bounds cuda = bounds_of(net_cuda, box_cuda, Relaxation::alpha_crown, 5, sound);
    CHECK_CLOSE_VEC(cuda.upper.to_vector(), cpu.upper.to_vector(), 1e-4, 1e-4);
    CHECK_CLOSE_VEC(cuda.lower.to_vector(), cpu.lower.to_vector(), 1e-4, 1e-4);
  }
}

TEST_CASE("alpha-crown: the training gradient (slopes held at their optimum) matches finite differences") {
  // The envelope theorem: at an optimum of the slopes the optimised bound's
  // derivative in a weight is the partial derivative with the slopes fixed,
  // chained through CROWN's intermediate bounds, which is what one recorded
  // walk gives. Against central differences of the whole optimised bound.
  Rng rng(1406);
  Network net = dense_net({3, 5, 4, 3}, rng);
  const LabelledBox box = random_labelled_box(net, 2, 0.15f, rng);
  BoundOptions options;
  options.need_lower = false;  // as in training
  options.alpha.steps = 100;
  options.alpha.patience = 0;
  options.alpha.lr = 0.1f;
  const auto objective = [&](const Network& n) {
    const Bounds b = compute_bounds(n, box.lower, box.upper, box.spec, Relaxation::alpha_crown, options);
    return ops::sum(b.upper);
  };
  net.set_requires_grad(true);
  backward(objective(net));
  std::vector<double> analytic, numeric;
  const double h = 1e-2;
  NoGrad no_grad;
  for (const Tensor& p : net.parameters()) {
    const std::vector<float> g = p.grad().to_vector();
    std::vector<float> values = p.to_vector();
    for (size_t i = 0; i < values.size(); ++i) {
      const float saved = values[i];
      double f[2];
      for (int side = 0; side < 2; ++side) {
        values[i] = saved + float(side ? h : -h);
        Tensor(p).copy_from(Tensor::from_vector(values, p.shape(), Device::cpu));
        f[side] = objective(net).item();
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
  MESSAGE("gradient vs central differences (h " << h << ") over " << analytic.size() << " weights: cosine " << cosine
          << ", worst absolute difference " << worst << ", gradient norm " << std::sqrt(na));
  CHECK(cosine > 0.99);
  CHECK(worst < 0.05 * (1.0 + std::sqrt(na)));
}

TEST_CASE("alpha-crown: a training method") {
  const train::TrainMethod& m = train::train_method("alpha-crown");
  CHECK(m.certified);
  CHECK(m.relaxation == Relaxation::alpha_crown);
  CHECK(m.certifier == Relaxation::alpha_crown);
}

}  // namespace cte::test
