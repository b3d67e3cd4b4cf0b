// SABR's and Shi et al.'s recipe pieces (train/schedule, train/networks'
// ibp_initialise, train/bound_reg), each against values computed by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/nn.h"
#include "engine/tape.h"
#include "tests/test_util.h"
#include "train/bound_reg.h"
#include "train/config.h"
#include "train/networks.h"
#include "train/schedule.h"
#include "train/trainer.h"

using namespace cte;
using namespace cte::train;

namespace {

// x (2) -> diag(2, 3) x + b -> relu -> a 1-logit head (not read by the regulariser).
Network two_neuron_network(float b0, float b1) {
  std::vector<Layer> layers;
  layers.push_back(test::linear_layer({{2.0f, 0.0f}, {0.0f, 3.0f}}, {b0, b1}));
  layers.push_back(make_relu());
  layers.push_back(test::linear_layer({{1.0f, 1.0f}}, {0.0f}));
  return Network(Shape{2}, layers);
}

float regulariser_at(const Network& net, float lo, float hi) {
  const Tensor lower = Tensor::from_vector({lo, lo}, Shape{1, 2}, Device::cpu);
  const Tensor upper = Tensor::from_vector({hi, hi}, Shape{1, 2}, Device::cpu);
  NoGrad no_grad;
  return bound_regulariser(net, lower, upper).item();
}

}  // namespace

TEST_CASE("recipe: --eps-schedule smoothed, --kappa-schedule zero-after-warmup, --lr-decay-factor") {
  TrainConfig c;
  c.method = "sabr";
  c.epochs = 10;
  c.warmup = 1;
  c.rampup = 4;
  c.eps_train = 0.2;
  c.eps_schedule = "smoothed";
  // t = 2: r = 0.25, the smoothed ramp's mid point, 1/13 of the way; t = 3.5: r = 0.625, 7/13.
  CHECK(schedule_eps(c, 0.5) == 0.0f);
  CHECK(schedule_eps(c, 2.0) == doctest::Approx(0.2 / 13.0).epsilon(1e-6));
  CHECK(schedule_eps(c, 3.5) == doctest::Approx(0.2 * 7.0 / 13.0).epsilon(1e-6));
  CHECK(schedule_eps(c, 6.0) == doctest::Approx(0.2));
  // kappa stays linear under the smoothed eps: t = 3, r = 0.5, kappa 1 -> 0.5 halfway.
  CHECK(schedule_kappa(c, 3.0) == doctest::Approx(0.75));
  c.kappa_schedule = "zero-after-warmup";
  CHECK(schedule_kappa(c, 0.99) == 1.0f);
  CHECK(schedule_kappa(c, 1.0) == 0.0f);
  CHECK(schedule_kappa(c, 3.0) == 0.0f);
  CHECK(schedule_kappa(c, 9.0) == 0.0f);
  c.lr = 1e-3;
  c.milestones = {2, 4};
  c.lr_decay_factor = 0.2;
  CHECK(schedule_lr(c, 1.9) == doctest::Approx(1e-3));
  CHECK(schedule_lr(c, 3.0) == doctest::Approx(2e-4));
  CHECK(schedule_lr(c, 4.0) == doctest::Approx(4e-5));
  // The names are checked.
  c.eps_schedule = "cosine";
  CHECK_THROWS_WITH(validate_config(c), doctest::Contains("--eps-schedule 'cosine' is unknown"));
}

TEST_CASE("recipe: --init ibp draws every weight but the last from N(0, (sqrt(2 pi)/fan_in)^2)") {
  Rng rng(3);
  std::vector<Layer> layers;
  layers.push_back(make_conv(2, 40, 3, 1, 1, rng));  // fan_in 2 x 3 x 3 = 18
  layers.push_back(make_relu());
  layers.push_back(make_flatten());
  layers.push_back(make_linear(40 * 5 * 5, 50, rng));  // fan_in 1000
  layers.push_back(make_relu());
  layers.push_back(make_linear(50, 10, rng));
  Network net(Shape{2, 5, 5}, layers);
  const std::vector<float> last_before = net.layers()[5].weight.to_vector();
  const std::vector<float> bias_before = net.layers()[0].bias.to_vector();
  ibp_initialise(net, 7);
  auto stats = [](const std::vector<float>& v) {
    double sum = 0, sq = 0;
    for (float x : v) sum += x;
    const double mean = sum / double(v.size());
    for (float x : v) sq += (x - mean) * (x - mean);
    return std::pair<double, double>(mean, std::sqrt(sq / double(v.size())));
  };
  const double root_two_pi = std::sqrt(2.0 * M_PI);
  const auto [conv_mean, conv_std] = stats(net.layers()[0].weight.to_vector());  // 720 draws
  CHECK(conv_std == doctest::Approx(root_two_pi / 18.0).epsilon(0.08));
  CHECK(std::abs(conv_mean) < 0.2 * root_two_pi / 18.0);
  const auto [fc_mean, fc_std] = stats(net.layers()[3].weight.to_vector());  // 50000 draws
  CHECK(fc_std == doctest::Approx(root_two_pi / 1000.0).epsilon(0.02));
  CHECK(std::abs(fc_mean) < 0.05 * root_two_pi / 1000.0);
  CHECK(net.layers()[5].weight.to_vector() == last_before);  // the last layer keeps its weights
  CHECK(net.layers()[0].bias.to_vector() == bias_before);    // biases too
  TrainConfig c;
  c.init = "xavier";
  CHECK_THROWS_WITH(validate_config(c), doctest::Contains("--init 'xavier' is unknown"));
}

TEST_CASE("recipe: bound_reg's tightness and ReLU-balance terms on a two-neuron layer, by hand") {
  // Input box [0.4, 0.6]^2: input radius 0.1 (no normalisation layer). Pre-activations
  // (2 x0 + b0, 3 x1 + b1) with b = (0.5, -2): neuron 0 in [1.3, 1.7] (active, centre 1.5, radius 0.2),
  // neuron 1 in [-0.8, -0.2] (inactive, centre -0.5, radius 0.3). Mean radius 0.25:
  //   tightness = relu(0.5 - 0.1 / 0.25) / 0.5 = 0.2;
  //   m+ = mean(1.5, 0) = 0.75, m- = -mean(0, -0.5) = 0.25: relu(0.5 - 1/3) / 0.5 = 1/3;
  //   centres' mean 0.5, squared deviations 1 and 1: v+ = v- = 1, ratio 1, term 0.
  // One ReLU layer: 0.2 + 1/3 = 8/15.
  CHECK(regulariser_at(two_neuron_network(0.5f, -2.0f), 0.4f, 0.6f) == doctest::Approx(8.0 / 15.0).epsilon(1e-5));
  // Both neurons unstable (b = (-1, -1.5): [-0.2, 0.2] and [-0.3, 0.3]): no active and no
  // inactive neuron, 0/0, so only the tightness term, 0.2.
  CHECK(regulariser_at(two_neuron_network(-1.0f, -1.5f), 0.4f, 0.6f) == doctest::Approx(0.2).epsilon(1e-5));
  // Differentiable in the parameters: the radii do not depend on b0, and v+ = v- whatever b0,
  // so d/db0 comes from the mean term alone: m+ = (1 + b0) / 2, ratio 0.25 / m+,
  // d/db0 (0.5 - ratio) / 0.5 = 2 x (0.25 / m+^2) x 0.5 = 0.25 / 0.5625 = 4/9.
  Network net = two_neuron_network(0.5f, -2.0f);
  net.set_requires_grad(true);
  const Tensor lower = Tensor::from_vector({0.4f, 0.4f}, Shape{1, 2}, Device::cpu);
  const Tensor upper = Tensor::from_vector({0.6f, 0.6f}, Shape{1, 2}, Device::cpu);
  backward(bound_regulariser(net, lower, upper));
  const std::vector<float> grad_bias = net.layers()[0].bias.grad().to_vector();
  CHECK(grad_bias[0] == doctest::Approx(4.0 / 9.0).epsilon(1e-4));
  tape_reset();
}

TEST_CASE("recipe: --recipe presets set their flags, explicit flags win, SABR's recipes train CNN7 unless --net is given") {
  {
    TrainConfig c;
    const char* argv[] = {"train", "--recipe", "paradox-crown-ibp-conv-0.3", "--epochs", "5", "--kappa-end", "0.25"};
    REQUIRE(parse_train_args(7, const_cast<char**>(argv), c) == -1);
    CHECK(c.method == "crown-ibp");
    CHECK(c.net == "conv");
    CHECK(c.eps_train == 0.3);
    CHECK(c.warmup == 10);
    CHECK(c.rampup == 50);
    CHECK(c.milestones == std::vector<int>{130, 190});
    CHECK(c.epochs == 5);         // the command line overrides the preset
    CHECK(c.kappa_end == 0.25);
  }
  TrainConfig c;
  {
    TrainConfig cnn7;
    apply_recipe("sabr-mnist-0.1", cnn7);
    CHECK(cnn7.net == "cnn7");
    CHECK(cnn7.method == "sabr");
  }
  CHECK_THROWS_WITH(apply_recipe("sabr-mnist", c), doctest::Contains("--recipe 'sabr-mnist' is unknown"));
  // With --net given, the rest of the recipe applies: SABR's MNIST 0.1 values.
  auto net_given = [](const std::string& key, void*) { return key == "net"; };
  apply_recipe("sabr-mnist-0.1", c, net_given, nullptr);
  CHECK(c.net == "conv");
  CHECK(c.method == "sabr");
  CHECK(c.sabr_lambda == 0.4);
  CHECK(c.batch_size == 256);
  CHECK(c.milestones == std::vector<int>{49, 59});
  CHECK(c.lr_decay_factor == 0.2);
  CHECK(c.eps_schedule == "smoothed");
  CHECK(c.kappa_schedule == "zero-after-warmup");
  CHECK(c.init == "ibp");
  CHECK(c.bound_reg == 0.5);
  CHECK(c.l1_bias);
  // Every recipe is a valid configuration (on a network this build has).
  for (const Recipe& r : recipe_table()) {
    TrainConfig each;
    apply_recipe(r.name, each, net_given, nullptr);
    CHECK_NOTHROW(validate_config(each));
  }
  CHECK(recipes_listing().find("sabr-mnist-0.3: ") != std::string::npos);
  CHECK(recipes_listing().find("  --sabr-lambda 0.6\n") != std::string::npos);
}

TEST_CASE("certify best: an image counts when any listed relaxation certifies it (Box and CROWN differ)") {
  // Pre-activation p = x - 0.5 in three ReLUs; margin z1 - z0 = h_a - h_b - 3 h_c - 0.17 (label 0).
  // Image A, x0 = 140/255: p in [-0.05098, 0.14902] (unstable, -l < u, CROWN's lower slope 1):
  //   Box:   u - 0 - 0 - 0.17 = -0.021 < 0, certified;
  //   CROWN: the backsubstituted bound peaks at x = l: (1 + 3) |l| - 0.17 = +0.034, not certified.
  // Image B, x0 = 154/255: p in [0.003922, 0.203922] (stable active, CROWN exact):
  //   Box:   (u - l) - 3 l - 0.17 = 0.2 - 0.0118 - 0.17 = +0.018, not certified;
  //   CROWN: -3 l - 0.17 = -0.182, certified.
  std::vector<Layer> layers;
  layers.push_back(test::linear_layer({{1.0f}, {1.0f}, {1.0f}}, {-0.5f, -0.5f, -0.5f}));
  layers.push_back(make_relu());
  layers.push_back(test::linear_layer({{0.0f, 0.0f, 0.0f}, {1.0f, -1.0f, -3.0f}}, {0.0f, -0.17f}));
  const Network net(Shape{1}, layers);
  Dataset test;
  test.name = "folder";
  test.channels = test.height = test.width = 1;
  test.num_classes = 2;
  test.images = {140, 154};
  test.labels = {0, 0};
  EvalOptions o;
  o.eps = {0.1f};
  o.relaxations = {Relaxation::box, Relaxation::crown};
  o.best = true;
  o.pgd = false;
  const EvalReport r = evaluate(net, test, o);
  REQUIRE(r.radii.size() == 1);
  CHECK(r.correct == 2);
  CHECK(r.radii[0].certified[0].second == 1);  // box: A
  CHECK(r.radii[0].certified[1].second == 1);  // crown: B
  CHECK(r.radii[0].best_certified == 2);
  CHECK(r.to_json()["radii"][0]["certified"]["best"] == 1.0);
  o.best = false;
  CHECK(evaluate(net, test, o).radii[0].best_certified == -1);
  CHECK(evaluate(net, test, o).to_json()["radii"][0]["certified"].contains("best") == false);
  // The trainer's --certify-with takes best next to the relaxations.
  TrainConfig c;
  c.certify_with = {"box", "crown", "best"};
  CHECK_NOTHROW(validate_config(c));
  CHECK(certify_relaxations(c) == std::vector<Relaxation>{Relaxation::box, Relaxation::crown});
}

TEST_CASE("recipe: --box-shrink scales each crossing ReLU's upper bound by 1 - R/2 in the Box the loss trains on (hand-computed)") {
  // x in [-1, 2] -> (x, x + 1.5, x - 3): crossing [-1, 2], active [0.5, 3.5], dead [-4, -1];
  // ReLU; the sum. Box: [0 + 0.5 + 0, 2 + 3.5 + 0] = [0.5, 5.5]. Shrink 0.4: the crossing
  // neuron's upper bound 2 -> 2 x 0.8 = 1.6, the others untouched: [0.5, 5.1].
  std::vector<Layer> layers;
  layers.push_back(test::linear_layer({{1.0f}, {1.0f}, {1.0f}}, {0.0f, 1.5f, -3.0f}));
  layers.push_back(make_relu());
  layers.push_back(test::linear_layer({{1.0f, 1.0f, 1.0f}}, {0.0f}));
  Network net(Shape{1}, layers);
  net.set_requires_grad(true);
  const Tensor lo = Tensor::from_vector({-1.0f}, Shape{1, 1}, Device::cpu);
  const Tensor hi = Tensor::from_vector({2.0f}, Shape{1, 1}, Device::cpu);
  BoundOptions o;
  const Bounds plain = compute_bounds(net, lo, hi, Tensor(), Relaxation::box, o);
  CHECK(plain.lower.item() == doctest::Approx(0.5));
  CHECK(plain.upper.item() == doctest::Approx(5.5));
  o.box_shrink = 0.4f;
  const Bounds shrunk = compute_bounds(net, lo, hi, Tensor(), Relaxation::box, o);
  CHECK(shrunk.lower.item() == doctest::Approx(0.5));
  CHECK(shrunk.upper.item() == doctest::Approx(5.1));
  // The gradient passes through the scaling: d upper / d b0 = 0.8 (the crossing
  // neuron's), d upper / d b1 = 1 (the active one's), d upper / d b2 = 0 (dead).
  backward(shrunk.upper);
  const std::vector<float> db = net.layers()[0].bias.grad().to_vector();
  CHECK(db[0] == doctest::Approx(0.8));
  CHECK(db[1] == doctest::Approx(1.0));
  CHECK(db[2] == doctest::Approx(0.0));
  // It gives no bound: refused for certification (sound mode) and for other relaxations.
  o.sound = true;
  CHECK_THROWS_WITH(compute_bounds(net, lo, hi, Tensor(), Relaxation::box, o), doctest::Contains("sound mode"));
  o.sound = false;
  CHECK_THROWS_WITH(compute_bounds(net, lo, hi, Tensor(), Relaxation::crown, o), doctest::Contains("not crown"));
  // The flag: box and sabr only; SABR's CIFAR-10 2/255 recipe sets it to its 0.4.
  TrainConfig c;
  c.method = "crown-ibp";
  c.box_shrink = 0.4;
  CHECK_THROWS_WITH(validate_config(c), doctest::Contains("--method box or sabr, not crown-ibp"));
  c.method = "sabr";
  CHECK_NOTHROW(validate_config(c));
  c.box_shrink = 1.0;
  CHECK_THROWS_WITH(validate_config(c), doctest::Contains("--box-shrink 1 must lie in [0, 1)"));
  TrainConfig cifar;
  apply_recipe("sabr-cifar10-2", cifar);
  CHECK(cifar.box_shrink == 0.4);
}
