// Bound landscapes (tools/lib/landscape.h) on the paper's section 4.1
// network, whose bounds along the bias direction are known in closed form,
// and the gradient direction against its closed form on a linear network.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/nn.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"
#include "tools/lib/curves.h"
#include "tools/lib/landscape.h"

namespace cte::test {
namespace {

// Section 4.1: x1 = (x0 + w, x0 + w), x2 = relu(x1), x3 = (x22 + 1, x22 - x21),
// x0 in [-1, 1]; w is the first layer's bias (here 0, moved by delta).
Network section_4_1_network() {
  return Network(Shape{1}, {linear_layer({{1}, {1}}, {0, 0}), make_relu(), linear_layer({{0, 1}, {-1, 1}}, {1, 0})});
}

}  // namespace

TEST_CASE("landscape: the section 4.1 bounds along w, by formula") {
  const Network net = section_4_1_network();
  const Tensor lower0 = Tensor::from_vector({-1.0f}, Shape{1, 1}, Device::cpu);
  const Tensor upper0 = Tensor::from_vector({1.0f}, Shape{1, 1}, Device::cpu);
  tools::ParameterDirection along_w;
  along_w.bias = Tensor::from_vector({1.0f, 1.0f}, Shape{2}, Device::cpu);
  const std::vector<double> w = tools::linspace(-0.9, 0.9, 19);  // w = -0.9, -0.8, ..., 0.9 (0 included)
  const std::vector<Relaxation> relaxations{Relaxation::crown, Relaxation::hbox, Relaxation::deepz};
  const std::vector<std::vector<double>> l31 = tools::bound_landscape(net, lower0, upper0, 0, relaxations, w, along_w);
  const std::vector<std::vector<double>> l32 = tools::bound_landscape(net, lower0, upper0, 1, relaxations, w, along_w);
  for (size_t k = 0; k < w.size(); ++k) {
    CAPTURE(w[k]);
    // CROWN: l31 = 1 for w <= 0 (slope 0 since -l >= u), w for w > 0 (the paper's discontinuity).
    CHECK(l31[0][k] == doctest::Approx(w[k] <= 1e-9 ? 1.0 : w[k]).epsilon(1e-5));
    // hBox: l32 = -1 - w while both ReLUs are unstable (the paper's formula).
    CHECK(l32[1][k] == doctest::Approx(-1.0 - w[k]).epsilon(1e-5));
    // DeepZ (by hand): x22 >= lambda x12 with lambda = (1 + w) / 2, at x0 = -1:
    // l31 = lambda (w - 1) + 1 = (1 + w^2) / 2, continuous but curved (sensitive).
    CHECK(l31[2][k] == doctest::Approx((1.0 + w[k] * w[k]) / 2.0).epsilon(1e-5));
  }
  // The step statistic sees CROWN's jump at w = 0 and DeepZ's smooth curve.
  CHECK(tools::largest_step_ratio(l31[0]) > 5.0);
  CHECK(tools::largest_step_ratio(l31[2]) < 3.0);
  CHECK(tools::largest_step_ratio({1.0, 1.0, 1.0}) == 0.0);
  CHECK(tools::largest_step_ratio({0.0, 1.0, 2.0, 3.0}) == doctest::Approx(1.0));
  // The network itself is not modified.
  CHECK(net.layers()[0].bias.to_vector() == std::vector<float>{0.0f, 0.0f});
}

TEST_CASE("landscape: the logit gradient direction has its closed form") {
  // z = W2 (W1 x + b1) + b2: dz_j / dW1 = W2[j, :]^T x^T, here
  // W2[1, :] = (2, -1), x = (0.5, 0.25): (1, 0.5; -0.5, -0.25) / norm.
  const Network net(Shape{2}, {linear_layer({{1, 2}, {3, 4}}, {0.1f, -0.2f}), linear_layer({{1, 1}, {2, -1}}, {0, 0})});
  const Tensor x = Tensor::from_vector({0.5f, 0.25f}, Shape{1, 2}, Device::cpu);
  const tools::ParameterDirection d = tools::gradient_direction(net, x, x, x, 1, std::nullopt);
  const double norm = std::sqrt(1.0 + 0.25 + 0.25 + 0.0625);
  CHECK_CLOSE_VEC(d.weight.to_vector(),
                  (std::vector<float>{float(1 / norm), float(0.5 / norm), float(-0.5 / norm), float(-0.25 / norm)}),
                  1e-6, 1e-6);
  CHECK_FALSE(d.bias.defined());
  // Through a relaxation's lower bound (a point box: the same function here).
  const tools::ParameterDirection box = tools::gradient_direction(net, x, x, x, 1, Relaxation::box);
  CHECK_CLOSE_VEC(box.weight.to_vector(), d.weight.to_vector(), 1e-6, 1e-6);
  CHECK_THROWS_WITH_AS(tools::gradient_direction(net, x, x, x, 2, std::nullopt), doctest::Contains("outside [0, 2)"),
                       std::invalid_argument);
}

TEST_CASE("landscape: slopes along the line and gradient ascent on the section 4.1 network") {
  const Network net = section_4_1_network();
  const Tensor lower0 = Tensor::from_vector({-1.0f}, Shape{1, 1}, Device::cpu);
  const Tensor upper0 = Tensor::from_vector({1.0f}, Shape{1, 1}, Device::cpu);
  tools::ParameterDirection along_w;
  along_w.bias = Tensor::from_vector({1.0f, 1.0f}, Shape{2}, Device::cpu);
  // DeepZ l31 = (1 + w^2) / 2: slope w. CROWN l31 = 1 (slope 0) for w <= 0, w (slope 1) for w > 0.
  for (double w : {-0.6, -0.25, 0.3, 0.7}) {
    CAPTURE(w);
    const tools::ValueAndSlope deepz = tools::bound_and_slope(net, lower0, upper0, 0, Relaxation::deepz, along_w, w);
    CHECK(deepz.value == doctest::Approx((1 + w * w) / 2).epsilon(1e-5));
    CHECK(deepz.slope == doctest::Approx(w).epsilon(1e-5));
    const tools::ValueAndSlope crown = tools::bound_and_slope(net, lower0, upper0, 0, Relaxation::crown, along_w, w);
    CHECK(crown.slope == doctest::Approx(w > 0 ? 1.0 : 0.0));
  }
  // Ascent on DeepZ from w = 0 with rate 0.5, no decay: the slope at 0 is 0, so it stays.
  // From the hBox l32 = -1 - w (slope -1): w_t = -0.1 t, the bound 0.1 t - 1.
  std::vector<double> deltas;
  const std::vector<tools::ValueAndSlope> path =
      tools::ascend(net, lower0, upper0, 1, Relaxation::hbox, along_w, 0.1, 1.0, 3, &deltas);
  REQUIRE(path.size() == 4);
  for (size_t t = 0; t < path.size(); ++t) {
    CHECK(deltas[t] == doctest::Approx(-0.1 * double(t)));
    CHECK(path[t].value == doctest::Approx(0.1 * double(t) - 1.0).epsilon(1e-5));
  }
  CHECK(tools::ascend(net, lower0, upper0, 0, Relaxation::deepz, along_w, 0.5, 1.0, 2, &deltas).back().value ==
        doctest::Approx(0.5));
  // The appendix F networks: integer weights in [-4, 4], the asked shape.
  Rng rng(3);
  const Network random = tools::random_integer_network(rng, 2, 10, 2, 4);
  CHECK(random.describe() == "input(1) -> linear(1->10) -> relu -> linear(10->10) -> relu -> linear(10->2)");
  for (const Tensor& p : random.parameters())
    for (float v : p.to_vector()) CHECK((v == std::round(v) && std::fabs(v) <= 4));
}

}  // namespace cte::test
