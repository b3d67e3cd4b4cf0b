// The LP relaxations Triangle and Parallelogram (relaxations/lp.h): the
// appendix A network by hand, soundness on sampled points, the orderings that
// follow from their constraint sets (Triangle is the convex hull, so it is at
// least as tight as every other single-neuron relaxation here; Parallelogram
// contains Triangle and lies inside Box), exactness through affine layers,
// and the API contract (no gradients, need_lower, device).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/lp.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

// A normalize layer, then dense_net's layers.
Network random_dense(const std::vector<int64_t>& widths, Rng& rng) {
  return dense_net(widths, rng, {make_normalize({0.3f}, {0.8f})});
}

Network random_conv(Rng& rng) {
  return Network(Shape{1, 5, 5}, {make_normalize({0.2f}, {0.5f}), make_conv(1, 2, 3, 2, 1, rng), make_relu(),
                                  make_flatten(), make_linear(18, 6, rng), make_relu(), make_linear(6, 3, rng)});
}

struct Box {
  Tensor lower, upper;
};

Box random_box(const Network& net, int64_t count, Rng& rng, float eps) {
  std::vector<int64_t> dims{count};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  const Tensor x = random_tensor(Shape(dims), rng, Device::cpu, 0.0f, 1.0f);
  const auto [lo, hi] = input_box(x, eps);
  return {lo, hi};
}

Bounds bounds_of(const Network& net, const Box& box, const Tensor& spec, Relaxation r) {
  NoGrad no_grad;
  return compute_bounds(net, box.lower, box.upper, spec, r);
}

}  // namespace

TEST_CASE("lp: Triangle and Parallelogram on the appendix A network, by hand") {
  // x1 = (x01 + x02, x01 - x02) in [-2, 2]^2 over x0 in [-1, 1]^2, ReLU, x3 = (x21 + x22, x21 - x22).
  // Triangle (y >= 0, y >= x, y <= (x + 2) / 2): x3_1 >= 0 at x0 = 0, and
  // x3_1 <= (x11 + 2) / 2 + (x12 + 2) / 2 = x01 + 2 <= 3; x3_2 >= max(0, x11) - (x12 + 2) / 2,
  // smallest -2 at x0 = (1, -1); by symmetry x3_2 <= 2.
  // Parallelogram (y <= 2, y <= x + 2): x3_1 <= 4 at x0 = (1, 0) (y1 = y2 = 2 allowed); x3_2 as above.
  const Network net(Shape{2}, {linear_layer({{1, 1}, {1, -1}}, {0, 0}), make_relu(),
                               linear_layer({{1, 1}, {1, -1}}, {0, 0})});
  const Box box{Tensor::from_vector({-1, -1}, Shape{1, 2}, Device::cpu),
                Tensor::from_vector({1, 1}, Shape{1, 2}, Device::cpu)};
  const Bounds triangle = bounds_of(net, box, Tensor(), Relaxation::triangle_lp);
  CHECK_CLOSE_VEC(triangle.lower.to_vector(), (std::vector<float>{0, -2}), 1e-6, 0);
  CHECK_CLOSE_VEC(triangle.upper.to_vector(), (std::vector<float>{3, 2}), 1e-6, 0);
  const Bounds parallelogram = bounds_of(net, box, Tensor(), Relaxation::parallelogram_lp);
  CHECK_CLOSE_VEC(parallelogram.lower.to_vector(), (std::vector<float>{0, -2}), 1e-6, 0);
  CHECK_CLOSE_VEC(parallelogram.upper.to_vector(), (std::vector<float>{4, 2}), 1e-6, 0);
}

TEST_CASE("lp: sound on sampled points, and ordered as their constraint sets dictate") {
  Rng rng(71);
  const std::vector<Network> nets{random_dense({4, 7, 6, 3}, rng), random_dense({3, 5, 5, 5, 4}, rng), random_conv(rng)};
  int compared = 0;
  for (const Network& net : nets) {
    CAPTURE(net.describe());
    const int64_t count = 3, classes = net.output_shape().numel();
    const Box box = random_box(net, count, rng, 0.15f);
    std::vector<int> labels;
    for (int64_t s = 0; s < count; ++s) labels.push_back(int(rng.below(uint64_t(classes))));
    const Tensor spec = margin_spec(labels, int(classes), Device::cpu);
    for (const Tensor& c : {spec, Tensor()}) {
      const Bounds tri = bounds_of(net, box, c, Relaxation::triangle_lp);
      const Bounds par = bounds_of(net, box, c, Relaxation::parallelogram_lp);
      const std::vector<float> tl = tri.lower.to_vector(), tu = tri.upper.to_vector();
      const std::vector<float> pl = par.lower.to_vector(), pu = par.upper.to_vector();
      // Soundness: every sampled input's (C) z lies inside both.
      const std::vector<float> lo = box.lower.to_vector(), hi = box.upper.to_vector();
      const int64_t rows = tri.upper.size(1);
      for (int t = 0; t < 300; ++t) {
        std::vector<float> xs(lo.size());
        for (size_t i = 0; i < xs.size(); ++i) xs[i] = lo[i] + (hi[i] - lo[i]) * (t % 3 == 0 ? float(rng.below(2)) : rng.uniform(0.0f, 1.0f));
        std::vector<int64_t> dims{count};
        for (int64_t d : net.input_shape().dims()) dims.push_back(d);
        NoGrad no_grad;
        Tensor z = net.forward(Tensor::from_vector(xs, Shape(dims), Device::cpu));
        if (c.defined()) z = ops::reshape(ops::matmul(c, ops::reshape(z, Shape{count, classes, 1})), Shape{count, rows});
        const std::vector<float> v = z.to_vector();
        for (size_t i = 0; i < v.size(); ++i) {
          const float slack = 1e-4f * (1.0f + std::fabs(v[i]));
          REQUIRE(v[i] >= tl[i] - slack);
          REQUIRE(v[i] <= tu[i] + slack);
          REQUIRE(v[i] >= pl[i] - slack);
          REQUIRE(v[i] <= pu[i] + slack);
        }
      }
      // Triangle is inside every other relaxation; Parallelogram inside Box.
      for (Relaxation other : {Relaxation::box, Relaxation::hbox, Relaxation::deepz, Relaxation::crown,
                               Relaxation::crown_ibp, Relaxation::parallelogram_lp}) {
        CAPTURE(relaxation_name(other));
        const Bounds b = bounds_of(net, box, c, other);
        const std::vector<float> ol = b.lower.to_vector(), ou = b.upper.to_vector();
        for (size_t i = 0; i < ol.size(); ++i) {
          const float slack = 1e-4f * (1.0f + std::fabs(ol[i]) + std::fabs(ou[i]));
          CHECK(tl[i] >= ol[i] - slack);
          CHECK(tu[i] <= ou[i] + slack);
          ++compared;
        }
      }
      const Bounds b = bounds_of(net, box, c, Relaxation::box);
      const std::vector<float> bl = b.lower.to_vector(), bu = b.upper.to_vector();
      for (size_t i = 0; i < bl.size(); ++i) {
        CHECK(pl[i] >= bl[i] - 1e-4f * (1.0f + std::fabs(bl[i])));
        CHECK(pu[i] <= bu[i] + 1e-4f * (1.0f + std::fabs(bu[i])));
      }
    }
  }
  MESSAGE(compared << " bounds compared with Triangle's");
}

TEST_CASE("lp: exact through affine layers, strictly tighter than CROWN somewhere") {
  Rng rng(72);
  // No ReLU: every relaxation is exact, the LP too (normalize + linear).
  const Network affine(Shape{3}, {make_normalize({0.5f}, {0.25f}), make_linear(3, 2, rng)});
  const Box box = random_box(affine, 2, rng, 0.2f);
  const Bounds tri = bounds_of(affine, box, Tensor(), Relaxation::triangle_lp);
  const Bounds exact = bounds_of(affine, box, Tensor(), Relaxation::box);
  CHECK_CLOSE_VEC(tri.lower.to_vector(), exact.lower.to_vector(), 1e-5, 1e-5);
  CHECK_CLOSE_VEC(tri.upper.to_vector(), exact.upper.to_vector(), 1e-5, 1e-5);
  // On a deeper random net Triangle must beat CROWN on some bound (it optimises
  // jointly where CROWN fixes one slope per neuron).
  const Network deep = random_dense({4, 8, 8, 3}, rng);
  const Box wide = random_box(deep, 4, rng, 0.3f);
  const std::vector<float> t = bounds_of(deep, wide, Tensor(), Relaxation::triangle_lp).upper.to_vector();
  const std::vector<float> c = bounds_of(deep, wide, Tensor(), Relaxation::crown).upper.to_vector();
  double best_gain = 0;
  for (size_t i = 0; i < t.size(); ++i) best_gain = std::max(best_gain, double(c[i]) - double(t[i]));
  MESSAGE("largest gain of Triangle over CROWN: " << best_gain);
  CHECK(best_gain > 1e-3);
}

TEST_CASE("lp: Triangle's LP never looser than CROWN on FC-SMALL-like nets, fast and sound modes") {
  // CROWN's bound is the LP's dual at one feasible point (its slopes lie in
  // the triangle, its intermediate bounds are looser), so the LP optimum can
  // only be tighter, in sound mode too: there the LP models the float32
  // pass's rounding as ranged affine rows, priced by the dual as CROWN's walker
  // prices its slack. (The LP once added a worst-case forward error grown
  // through |W| afterwards instead, looser than sound CROWN by ~0.1 on FC-SMALL.)
  Rng rng(74);
  const std::vector<std::vector<int64_t>> shapes{{120, 60, 60, 10}, {200, 40, 40, 10}};
  int compared = 0, tighter = 0;
  for (const auto& widths : shapes) {
    const Network net = random_dense(widths, rng);
    const Box box = random_box(net, 2, rng, 0.05f);
    const Tensor spec = margin_spec({3, 7}, 10, Device::cpu);
    for (bool sound : {false, true}) {
      CAPTURE(sound);
      BoundOptions options;
      options.sound = sound;
      NoGrad no_grad;
      const Bounds tri = compute_bounds(net, box.lower, box.upper, spec, Relaxation::triangle_lp, options);
      const Bounds crown = compute_bounds(net, box.lower, box.upper, spec, Relaxation::crown, options);
      const std::vector<float> tl = tri.lower.to_vector(), tu = tri.upper.to_vector();
      const std::vector<float> cl = crown.lower.to_vector(), cu = crown.upper.to_vector();
      for (size_t i = 0; i < tl.size(); ++i) {
        const float slack = 1e-5f * (1.0f + std::fabs(cl[i]) + std::fabs(cu[i]));
        CHECK(tl[i] >= cl[i] - slack);
        CHECK(tu[i] <= cu[i] + slack);
        tighter += (tu[i] < cu[i] - slack) + (tl[i] > cl[i] + slack);
        compared += 2;
      }
    }
  }
  MESSAGE(tighter << " of " << compared << " Triangle LP bounds strictly tighter than CROWN's");
  CHECK(tighter > 0);
}

TEST_CASE("lp: a simplex stopped by its iteration limit is retried from a fresh basis, same bounds") {
  Rng rng(75);
  const Network net = random_dense({30, 20, 20, 5}, rng);
  const Box box = random_box(net, 2, rng, 0.1f);
  const Tensor spec = margin_spec({1, 4}, 5, Device::cpu);
  const Bounds normal = bounds_of(net, box, spec, Relaxation::triangle_lp);
  const int64_t failed_before = relax::lp_failed_solves();
  const int previous = relax::lp_set_first_try_iteration_limit(1);  // every warm start stops: GLP_EITLIM
  const Bounds retried = bounds_of(net, box, spec, Relaxation::triangle_lp);
  relax::lp_set_first_try_iteration_limit(previous);
  CHECK(relax::lp_failed_solves() == failed_before);  // every retry reached the optimum
  CHECK_CLOSE_VEC(retried.lower.to_vector(), normal.lower.to_vector(), 1e-5, 1e-5);
  CHECK_CLOSE_VEC(retried.upper.to_vector(), normal.upper.to_vector(), 1e-5, 1e-5);
}

TEST_CASE("lp: no gradients, upper-only bounds, and the input's device") {
  Rng rng(73);
  Network net = random_dense({3, 4, 2}, rng);
  const Box box = random_box(net, 2, rng, 0.1f);
  net.set_requires_grad(true);
  CHECK_THROWS_WITH_AS(compute_bounds(net, box.lower, box.upper, Tensor(), Relaxation::triangle_lp),
                       doctest::Contains("triangle-lp is an LP relaxation without gradients"), std::runtime_error);
  net.set_requires_grad(false);
  BoundOptions upper_only;
  upper_only.need_lower = false;
  const Bounds full = bounds_of(net, box, Tensor(), Relaxation::parallelogram_lp);
  const Bounds upper = compute_bounds(net, box.lower, box.upper, Tensor(), Relaxation::parallelogram_lp, upper_only);
  CHECK_FALSE(upper.lower.defined());
  CHECK(upper.upper.to_vector() == full.upper.to_vector());
  CHECK(parse_relaxation("triangle-lp") == Relaxation::triangle_lp);
  CHECK(parse_relaxation("triangle") == Relaxation::triangle);
  CHECK(std::string(relaxation_name(Relaxation::parallelogram_lp)) == "parallelogram-lp");
  if (cuda_available()) {
    Network on_gpu = net;
    on_gpu.to(Device::cuda);
    NoGrad no_grad;
    const Bounds gpu = compute_bounds(on_gpu, box.lower.to(Device::cuda), box.upper.to(Device::cuda), Tensor(),
                                      Relaxation::parallelogram_lp);
    CHECK(gpu.upper.device() == Device::cuda);
    CHECK(gpu.upper.to_vector() == full.upper.to_vector());
  }
}

}  // namespace cte::test
