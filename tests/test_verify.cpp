// The verifier (issue 15): ONNX import/export, VNNLIB properties, the MILP
// reference and branch and bound. Fixtures: tests/fixtures/mnistfc holds
// VNN-COMP 2021's mnistfc 256x2 net and two of its properties; the other 28
// are parsed when ../shared/vnncomp2021/mnistfc (or $CTE_VNNCOMP_MNISTFC) exists.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "engine/onnx_io.h"
#include "engine/random.h"
#include "tests/test_util.h"
#include "train/trainer.h"
#include "verify/bab.h"
#include "verify/milp.h"
#include "verify/property.h"

namespace fs = std::filesystem;
using namespace cte;
using namespace cte::verify;
using cte::test::linear_layer;

namespace {

const std::string kFixtures = "tests/fixtures/mnistfc/";

std::string temp_dir(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("cte_verify_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace

TEST_CASE("onnx: the mnistfc 256x2 net imports and its float64 forward pass matches numpy's") {
  const Network net = load_network_onnx(kFixtures + "mnist-net_256x2.onnx");
  CHECK(net.input_shape() == Shape{784});
  CHECK(net.describe().find("linear") != std::string::npos);
  REQUIRE(net.layers().size() == 5);  // Flatten of a flat input is dropped
  // Input: the centre of prop_0_0.03's box. Expected: numpy float64 on the
  // weights read by the onnx Python package (Debian's python3-onnx), run once:
  //   h = W @ h + b, relu between, from numpy_helper.to_array of the initialisers.
  const Property p = load_vnnlib(kFixtures + "prop_0_0.03.vnnlib");
  std::vector<double> x(784);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (p.lower[i] + p.upper[i]) / 2;
  const std::vector<double> expected{-0.011673457323733392, -0.01593673624014033, 0.022003274425090397,
                                     -0.011337706192279945, -0.00607850013055139, 0.00676906636289229,
                                     -0.005074204429145024, -0.018639204700841155, 1.0099178604014307,
                                     -0.011581570637292385};
  const std::vector<double> y = forward_f64(net, x);
  REQUIRE(y.size() == 10);
  for (size_t j = 0; j < 10; ++j) CHECK(y[j] == doctest::Approx(expected[j]).epsilon(1e-12));
  // The engine's float32 forward pass agrees to float32 accuracy.
  std::vector<float> xf(x.begin(), x.end());
  const std::vector<float> yf = net.forward(Tensor::from_vector(xf, Shape{1, 784}, Device::cpu)).to_vector();
  for (size_t j = 0; j < 10; ++j) CHECK(double(yf[j]) == doctest::Approx(expected[j]).epsilon(1e-4));
}

TEST_CASE("onnx: export round-trips and onnx.checker accepts it; unsupported ops name the node") {
  Rng rng(7);
  std::vector<Layer> layers{make_normalize({0.5f}, {0.25f}), make_conv(1, 2, 3, 2, 1, rng), make_relu(),
                            make_flatten(), make_linear(2 * 3 * 3, 4, rng)};
  const Network net(Shape{1, 5, 5}, layers);
  const std::string dir = temp_dir("onnx");
  const std::string path = dir + "/net.onnx";
  save_network_onnx(path, net);
  const Network back = load_network_onnx(path);
  CHECK(back.describe() == net.describe());
  std::vector<double> x(25);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i % 7) / 7.0;
  const std::vector<double> a = forward_f64(net, x), b = forward_f64(back, x);
  for (size_t j = 0; j < a.size(); ++j) CHECK(a[j] == b[j]);
  // Another tool reads it: the onnx package's checker, and its shape inference
  // agrees on the output shape.
  const std::string cmd = "/usr/bin/python3 -c \"import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); "
                          "d=m.graph.output[0].type.tensor_type.shape.dim; assert d[1].dim_value==4\" " + path;
  CHECK(std::system(cmd.c_str()) == 0);
  // A node the importer does not know: the error names it and its op.
  const std::string bad = dir + "/bad.onnx";
  const std::string make_bad = "/usr/bin/python3 -c \"import onnx,sys; from onnx import helper as h, TensorProto as T; "
      "g=h.make_graph([h.make_node('Sigmoid',['x'],['y'],name='squash')],'g',[h.make_tensor_value_info('x',T.FLOAT,[1,3])],"
      "[h.make_tensor_value_info('y',T.FLOAT,[1,3])]); onnx.save(h.make_model(g), sys.argv[1])\" " + bad;
  REQUIRE(std::system(make_bad.c_str()) == 0);
  CHECK_THROWS_WITH_AS(load_network_onnx(bad), doctest::Contains("node 'squash' (Sigmoid): operator not supported"),
                       std::exception);
  fs::remove_all(dir);
}

TEST_CASE("vnnlib: prop_7_0.05 parses to its box and nine one-row disjuncts (hand-checked)") {
  const Property p = load_vnnlib(kFixtures + "prop_7_0.05.vnnlib");
  REQUIRE(p.lower.size() == 784);
  CHECK(p.num_outputs == 10);
  // Lines 1341-1345 of the file.
  CHECK(p.lower[180] == 0.012745101004838943);
  CHECK(p.upper[180] == 0.11274510622024536);
  CHECK(p.lower[181] == 0.5029411911964417);
  CHECK(p.upper[181] == 0.6029412150382996);
  CHECK(p.lower[203] == 0.0);
  CHECK(p.upper[203] == 0.05000000074505806);
  // (or (and (>= Y_0 Y_9)) ... (and (>= Y_8 Y_9))): Y_9 - Y_j <= 0 for j = 0..8.
  REQUIRE(p.disjuncts.size() == 9);
  for (int j = 0; j < 9; ++j) {
    REQUIRE(p.disjuncts[size_t(j)].size() == 1);
    const LinearInequality& q = p.disjuncts[size_t(j)][0];
    std::vector<double> expected(10, 0.0);
    expected[9] = 1.0;
    expected[size_t(j)] = -1.0;
    CHECK(q.coeffs == expected);
    CHECK(q.rhs == 0.0);
  }
}

TEST_CASE("vnnlib: nested and/or, arithmetic terms, errors with the line; every mnistfc property parses") {
  const std::string text =
      "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
      "(assert (and (<= X_0 1) (>= X_0 -1)))\n(assert (<= -2 X_1))\n(assert (>= 3 X_1))\n"
      "(assert (or (and (<= (+ Y_0 (* 2 Y_1)) 4) (>= Y_1 0.5)) (<= (- Y_0 Y_1) -1)))\n"
      "(assert (<= Y_0 10))\n";
  const Property p = parse_vnnlib(text);
  CHECK(p.lower == std::vector<double>{-1, -2});
  CHECK(p.upper == std::vector<double>{1, 3});
  REQUIRE(p.disjuncts.size() == 2);
  REQUIRE(p.disjuncts[0].size() == 3);  // Y0 + 2 Y1 <= 4, -Y1 <= -0.5, Y0 <= 10
  CHECK(p.disjuncts[0][0].coeffs == std::vector<double>{1, 2});
  CHECK(p.disjuncts[0][0].rhs == 4);
  CHECK(p.disjuncts[0][1].coeffs == std::vector<double>{0, -1});
  CHECK(p.disjuncts[0][1].rhs == -0.5);
  REQUIRE(p.disjuncts[1].size() == 2);  // Y0 - Y1 <= -1, Y0 <= 10
  CHECK(p.disjuncts[1][0].coeffs == std::vector<double>{1, -1});
  CHECK(p.disjuncts[1][0].rhs == -1);
  CHECK(conjunction_violation(p.disjuncts[1], {0.0, 2.0}) == -1.0);  // max(0 - 2 + 1, 0 - 10)
  CHECK_THROWS_WITH_AS(parse_vnnlib("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (<= Y_0 0))"),
                       doctest::Contains("X_0 is not bounded on both sides"), std::exception);
  CHECK_THROWS_WITH_AS(parse_vnnlib("(declare-const X_0 Real)\n\n(assert (<= X_0 (* X_0 X_0))"),
                       doctest::Contains("<vnnlib>:3: "), std::exception);
  CHECK_THROWS_WITH_AS(parse_vnnlib("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 Y_0))"),
                       doctest::Contains("mixing inputs and outputs"), std::exception);
  // Our own writer's output reads back.
  const Property r = parse_vnnlib(robustness_vnnlib({0.25f, 0.99f}, 1, 3, 0.05));
  CHECK(r.lower[0] == doctest::Approx(0.2));
  CHECK(r.upper[1] == 1.0);
  CHECK(r.disjuncts.size() == 2);
  // The struct form says the same: Y_1 - Y_j <= 0 for j = 0 and j = 2.
  const Property direct = cte::verify::robustness_property({0.25f, 0.99f}, 1, 3, 0.05);
  CHECK(direct.lower == r.lower);
  CHECK(direct.upper == r.upper);
  REQUIRE(direct.disjuncts.size() == 2);
  CHECK(direct.disjuncts[0][0].coeffs == std::vector<double>{-1.0, 1.0, 0.0});
  CHECK(direct.disjuncts[1][0].coeffs == std::vector<double>{0.0, 1.0, -1.0});
  CHECK(direct.disjuncts[1][0].rhs == 0.0);
  CHECK(r.disjuncts[1][0].coeffs == direct.disjuncts[1][0].coeffs);

  const char* env = std::getenv("CTE_VNNCOMP_MNISTFC");
  const fs::path dir = env ? fs::path(env) : fs::path("../shared/vnncomp2021/mnistfc");
  if (!fs::exists(dir)) {
    MESSAGE("skipping the 30 mnistfc properties: " << dir << " not found");
    return;
  }
  int parsed = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".vnnlib") continue;
    const Property q = load_vnnlib(entry.path().string());
    CHECK(q.lower.size() == 784);
    CHECK(q.disjuncts.size() == 9);
    ++parsed;
  }
  CHECK(parsed == 30);
}

namespace {

// A random net in -> h -> h -> out with PyTorch-style initialisation.
Network random_mlp(int64_t in, int64_t hidden, int64_t out, Rng& rng) {
  std::vector<Layer> layers{make_linear(in, hidden, rng), make_relu(), make_linear(hidden, hidden, rng), make_relu(),
                            make_linear(hidden, out, rng)};
  return Network(Shape{in}, layers);
}

// Robustness at x (label: the float64 argmax at x) in the box x -+ eps.
Property robustness_property(const Network& net, const std::vector<double>& x, double eps) {
  const std::vector<double> y = forward_f64(net, x);
  const int label = int(std::max_element(y.begin(), y.end()) - y.begin());
  return parse_vnnlib(robustness_vnnlib(std::vector<float>(x.begin(), x.end()), label, int(y.size()), eps, -10.0, 10.0));
}

}  // namespace

TEST_CASE("milp: a one-neuron net's optimum by hand, and its counterexample is one") {
  // y0 = relu(x) - 0.5, y1 = 0 on x in [-1, 1]: y1 >= y0 always; y0 >= y1 iff x >= 0.5.
  const Network net(Shape{1}, std::vector<Layer>{linear_layer({{1.0f}}, {0.0f}), make_relu(),
                                                 linear_layer({{1.0f}, {0.0f}}, {-0.5f, 0.0f})});
  Property p;
  p.lower = {-1.0};
  p.upper = {1.0};
  p.num_outputs = 2;
  p.disjuncts = {{LinearInequality{{-1.0, 1.0}, 0.0}}};  // y1 - y0 <= 0
  MilpResult r = milp_verify(net, p);
  REQUIRE(r.solved);
  CHECK(r.objective == doctest::Approx(-0.5));  // min over x of y1 - y0 = 0 - (1 - 0.5)
  CHECK(r.violated());
  REQUIRE(r.x.size() == 1);
  INFO("x = " << r.x[0]);
  CHECK(confirms_counterexample(net, p, r.x));
  p.upper = {0.25};  // now y0 <= -0.25 < y1: min of y1 - y0 is 0.25
  r = milp_verify(net, p);
  CHECK(r.objective == doctest::Approx(0.25));
  CHECK_FALSE(r.violated());
}

TEST_CASE("bab: every unsat/sat verdict on random small nets agrees with the MILP; no unsat beside a counterexample") {
  Rng rng(2026);
  int unsat = 0, sat = 0, compared = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const Network net = random_mlp(4, 8, 3, rng);
    std::vector<double> x(4);
    for (double& v : x) v = rng.uniform() * 2.0 - 1.0;
    const double eps = 0.05 + 0.6 * rng.uniform();
    const Property p = robustness_property(net, x, eps);
    const MilpResult exact = milp_verify(net, p, 20.0);
    REQUIRE(exact.solved);
    if (std::fabs(exact.objective) < 1e-5) continue;  // too close to call for GLPK's tolerances
    ++compared;
    VerifyOptions o;
    o.timeout_s = 20.0;
    o.batch = 16;
    o.seed = uint64_t(trial);
    const VerifyResult r = verify_property(net, p, o);
    INFO("trial " << trial << ": milp " << exact.objective << ", bab " << std::string(verdict_name(r.verdict)) << " (" << r.note << ")");
    if (exact.violated()) {
      CHECK(confirms_counterexample(net, p, exact.x));
      CHECK(r.verdict != Verdict::unsat);
    } else {
      CHECK(r.verdict != Verdict::sat);
      CHECK(r.verdict == Verdict::unsat);  // 16 ReLUs: branch and bound finishes in time
    }
    if (r.verdict == Verdict::sat) {
      ++sat;
      CHECK(confirms_counterexample(net, p, r.counterexample));
    }
    if (r.verdict == Verdict::unsat) {
      ++unsat;
      // No sampled point of the box violates the property either.
      for (int s = 0; s < 200; ++s) {
        std::vector<double> z(4);
        for (size_t i = 0; i < 4; ++i) z[i] = p.lower[i] + rng.uniform() * (p.upper[i] - p.lower[i]);
        CHECK_FALSE(confirms_counterexample(net, p, z));
      }
    }
  }
  MESSAGE("compared " << compared << " instances: " << unsat << " unsat, " << sat << " sat");
  CHECK(unsat >= 3);
  CHECK(sat >= 3);
}

TEST_CASE("bab: without the attack, branching alone proves what the root bound cannot") {
  Rng rng(11);
  int needed_branching = 0;
  for (int trial = 0; trial < 40 && needed_branching < 2; ++trial) {
    const Network net = random_mlp(3, 8, 3, rng);
    std::vector<double> x(3);
    for (double& v : x) v = rng.uniform() * 2.0 - 1.0;
    const Property p = robustness_property(net, x, 0.4);
    const MilpResult exact = milp_verify(net, p, 20.0);
    if (!exact.solved || exact.objective < 1e-4) continue;  // only properties that hold
    VerifyOptions o;
    o.attack = false;
    o.timeout_s = 20.0;
    o.batch = 4;
    const VerifyResult r = verify_property(net, p, o);
    CHECK(r.verdict == Verdict::unsat);
    if (r.domains_bounded > 1) ++needed_branching;
  }
  CHECK(needed_branching >= 1);
}

TEST_CASE("bab: with alpha-CROWN's optimised slopes every verdict still agrees with the MILP") {
  Rng rng(77);
  int unsat = 0, compared = 0;
  for (int trial = 0; trial < 6; ++trial) {
    const Network net = random_mlp(4, 8, 3, rng);
    std::vector<double> x(4);
    for (double& v : x) v = rng.uniform() * 2.0 - 1.0;
    const Property p = robustness_property(net, x, 0.05 + 0.6 * rng.uniform());
    const MilpResult exact = milp_verify(net, p, 20.0);
    REQUIRE(exact.solved);
    if (std::fabs(exact.objective) < 1e-5) continue;  // too close to call for GLPK's tolerances
    ++compared;
    VerifyOptions o;
    o.attack = false;  // the bounds alone must prove every property that holds, and no other
    o.alpha_slopes = true;
    o.alpha.steps = 8;  // fewer than the default: fast under the sanitizers, and any slopes are sound
    o.timeout_s = 20.0;
    o.batch = 8;
    const VerifyResult r = verify_property(net, p, o);
    INFO("trial " << trial << ": milp " << exact.objective << ", bab " << std::string(verdict_name(r.verdict)) << " (" << r.note << ")");
    if (exact.violated()) {
      CHECK(r.verdict != Verdict::unsat);
    } else {
      CHECK(r.verdict == Verdict::unsat);
      ++unsat;
    }
  }
  MESSAGE("compared " << compared << " instances, " << unsat << " unsat");
  CHECK(unsat >= 2);
  CHECK(compared - unsat >= 1);
}

TEST_CASE("evaluate: the bab column certifies the MILP-robust images (within its timeout) and no others; best covers every column") {
  // Images of 1x2x2 pixels on a random net (normalised by mean 0.5, std 0.1,
  // so that [0, 1] spans the inputs a random 4-8-8-3 MLP is sensitive to);
  // the label is the class the net predicts at the image (so every image is
  // correct); eps such that box and CROWN leave some robust images to
  // branch and bound, and some are not robust.
  Rng rng(404);
  const Network mlp = random_mlp(4, 8, 3, rng);
  std::vector<Layer> layers{make_normalize({0.5f}, {0.1f}), make_flatten()};
  for (const Layer& layer : mlp.layers()) layers.push_back(layer);
  const Network net(Shape{1, 2, 2}, layers);
  int milp_robust = 0, bab_certified = 0, beyond_relaxations = 0, images = 0, timeouts = 0;
  for (int i = 0; i < 14; ++i) {
    Dataset one;
    one.name = "folder";
    one.channels = 1, one.height = 2, one.width = 2, one.num_classes = 3;
    std::vector<float> x(4);
    for (size_t k = 0; k < 4; ++k) {
      one.images.push_back(uint8_t(rng.below(256)));
      x[k] = float(one.images[k]) / 255.0f;  // the loader's pixel value
    }
    const std::vector<double> y = forward_f64(net, std::vector<double>(x.begin(), x.end()));
    const int label = int(std::max_element(y.begin(), y.end()) - y.begin());
    one.labels.push_back(uint8_t(label));
    const float eps = 0.02f + 0.2f * float(rng.uniform());
    // The reference: the exact MILP on the same property (the eps ball clipped to [0, 1]).
    const MilpResult exact = milp_verify(net, verify::robustness_property(x, label, 3, eps), 20.0);
    REQUIRE(exact.solved);
    if (std::fabs(exact.objective) < 1e-5) continue;  // too close to call for GLPK's tolerances
    const std::vector<float> yf = net.forward(Tensor::from_vector(x, Shape{1, 1, 2, 2}, Device::cpu)).to_vector();
    if (int(std::max_element(yf.begin(), yf.end()) - yf.begin()) != label) continue;  // float32 disagrees: skip
    train::EvalOptions o;
    o.eps = {eps};
    o.relaxations = {Relaxation::box, Relaxation::crown};
    o.best = true;
    o.bab = true;
    o.pgd = false;
    o.bab_options.timeout_s = 2.0;  // one image of these needs ~8 s under the sanitizers: it may time out
    o.bab_options.batch = 8;
    o.bab_options.pgd_steps = 10;  // a counterexample missed by the attack is still found by the LP of a leaf
    const train::EvalReport report = train::evaluate(net, one, o);
    REQUIRE(report.correct == 1);
    const train::EvalAtRadius& r = report.radii[0];
    INFO("image " << i << ": milp " << exact.objective << ", box " << r.certified[0].second << ", crown "
                  << r.certified[1].second << ", bab " << r.bab_certified << ", best " << r.best_certified);
    ++images;
    // Sound: never an image with a counterexample. Complete within the timeout:
    // every robust image that did not time out.
    if (exact.violated() || r.bab_timeouts == 0) CHECK(r.bab_certified == (exact.violated() ? 0 : 1));
    timeouts += int(r.bab_timeouts);
    CHECK(r.bab_runs == r.bab_unsat + r.bab_sat + r.bab_timeouts + r.bab_unknown);
    for (const auto& [relaxation, count] : r.certified) CHECK(r.best_certified >= count);
    CHECK(r.best_certified >= r.bab_certified);
    milp_robust += !exact.violated();
    bab_certified += int(r.bab_certified);
    beyond_relaxations += int(r.bab_unsat);
  }
  MESSAGE(images << " images: " << milp_robust << " MILP-robust, bab certifies " << bab_certified << ", "
                 << beyond_relaxations << " of them by branching past box and CROWN, " << timeouts << " timeouts");
  CHECK(images >= 10);
  CHECK(milp_robust >= 3);
  CHECK(images - milp_robust >= 2);
  CHECK(beyond_relaxations >= 1);
  CHECK(timeouts <= 1);
}
