// Tests of the training binary's library (train/): schedules (warm-up, ramps,
// beta, learning rates), the network builders, PGD (stays in the ball and
// [0, 1]; finds what brute force finds on a 2-D network), a short Box run
// whose certified accuracy rises, bitwise resume, checkpoints, and the
// messages for bad input. Small networks on synthetic data, CPU only.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/staging.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"
#include "train/config.h"
#include "train/networks.h"
#include "train/pgd.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace cte;
using namespace cte::train;

namespace {

// A fresh folder under the system temp dir, removed when the test ends.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("cte-test-train-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str(const std::string& sub = "") const { return (path / sub).string(); }
};

// Synthetic 1x4x4 images of `classes` classes: each class is a prototype
// pattern plus bounded noise, so a small network separates them with margin.
Dataset synthetic_split(size_t n, int classes, uint64_t seed, const std::vector<std::vector<int>>& prototypes) {
  Dataset d;
  d.name = "folder";
  d.channels = 1;
  d.height = 4;
  d.width = 4;
  d.num_classes = classes;
  Rng rng(seed);
  for (size_t i = 0; i < n; ++i) {
    const int y = int(i % size_t(classes));
    d.labels.push_back(uint8_t(y));
    for (int k = 0; k < 16; ++k) {
      const int v = prototypes[size_t(y)][size_t(k)] + int(rng.below(41)) - 20;
      d.images.push_back(uint8_t(std::clamp(v, 0, 255)));
    }
  }
  for (int c = 0; c < classes; ++c) d.class_names.push_back(std::to_string(c));
  return d;
}

DatasetSplits synthetic_data(int classes = 3) {
  Rng rng(7);
  std::vector<std::vector<int>> prototypes(size_t(classes), std::vector<int>(16));
  for (auto& p : prototypes)
    for (int& v : p) v = 40 + int(rng.below(176));
  DatasetSplits s;
  s.train = synthetic_split(600, classes, 1, prototypes);
  s.test = synthetic_split(150, classes, 2, prototypes);
  s.dir = "<synthetic>";
  return s;
}

TrainConfig small_config(const std::string& out) {
  TrainConfig c;
  c.dataset = "folder";
  c.data_dir = "<synthetic>";
  c.net = "fc-small";
  c.method = "box";
  c.epochs = 4;
  c.warmup = 0;
  c.rampup = 2;
  c.eps_train = 0.04;
  c.eps_test = 0.04;
  c.kappa_end = 0.0;
  c.lr = 2e-3;
  c.milestones = {};
  c.batch_size = 50;
  c.pgd_steps = 10;
  c.pgd_step_size = 0.01;
  c.device = "cpu";
  c.out = out;
  c.quiet = true;
  c.seed = 3;
  return c;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  return all.str();
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

double certified_fraction(const EvalReport& r) {
  return r.n ? double(r.radii.at(0).certified.at(0).second) / double(r.n) : 0.0;
}

}  // namespace

// ---------------------------------------------------------------- schedules

TEST_CASE("train: schedule warm-up, ramp-up and constant phase") {
  TrainConfig c;
  c.epochs = 10;
  c.warmup = 2;
  c.rampup = 4;
  c.eps_train = 0.2;
  c.eps_start = 0.0;
  c.kappa_start = 1.0;
  c.kappa_end = 0.5;
  c.method = "crown-ibp";
  // warm-up: natural training
  for (double t : {0.0, 1.0, 1.999}) {
    CHECK(in_warmup(c, t));
    CHECK(schedule_eps(c, t) == 0.0f);
    CHECK(schedule_kappa(c, t) == 1.0f);
    CHECK(schedule_beta(c, t) == 1.0f);
  }
  // end of the warm-up = start of the ramp-up
  CHECK_FALSE(in_warmup(c, 2.0));
  CHECK(schedule_eps(c, 2.0) == 0.0f);
  CHECK(schedule_kappa(c, 2.0) == 1.0f);
  CHECK(schedule_beta(c, 2.0) == 1.0f);
  // mid ramp
  CHECK(ramp_fraction(c, 4.0) == doctest::Approx(0.5));
  CHECK(schedule_eps(c, 4.0) == doctest::Approx(0.1).epsilon(1e-7));
  CHECK(schedule_kappa(c, 4.0) == doctest::Approx(0.75).epsilon(1e-7));
  CHECK(schedule_beta(c, 4.0) == doctest::Approx(0.5).epsilon(1e-7));
  // a quarter of the way, per batch: epoch 3, batch 0 of 100 -> t = 3
  const ScheduleValues q = schedule_at(c, 3, 0, 100);
  CHECK(q.t == 3.0);
  CHECK(q.eps == doctest::Approx(0.05).epsilon(1e-6));
  CHECK(q.kappa == doctest::Approx(0.875).epsilon(1e-6));
  CHECK(q.beta == doctest::Approx(0.75).epsilon(1e-6));
  // per batch: epoch 3, batch 50 of 100 -> t = 3.5
  CHECK(schedule_time(3, 50, 100) == 3.5);
  CHECK(schedule_at(c, 3, 50, 100).eps == doctest::Approx(0.2 * 1.5 / 4).epsilon(1e-6));
  // end of the ramp and after
  for (double t : {6.0, 7.5, 9.99}) {
    CHECK(schedule_eps(c, t) == doctest::Approx(0.2).epsilon(1e-7));
    CHECK(schedule_kappa(c, t) == doctest::Approx(0.5).epsilon(1e-7));
    CHECK(schedule_beta(c, t) == 0.0f);
  }
  // eps_start
  c.eps_start = 0.001;
  CHECK(schedule_eps(c, 2.0) == doctest::Approx(0.001).epsilon(1e-6));
  CHECK(schedule_eps(c, 4.0) == doctest::Approx(0.1005).epsilon(1e-6));
  CHECK(schedule_eps(c, 1.0) == 0.0f);  // still warm-up
  // no ramp-up: the end values right after the warm-up
  c.rampup = 0;
  CHECK(schedule_eps(c, 2.0) == doctest::Approx(0.2).epsilon(1e-7));
  CHECK(schedule_kappa(c, 2.0) == doctest::Approx(0.5).epsilon(1e-7));
  CHECK(schedule_beta(c, 2.0) == 0.0f);
  // crown-ibp-r keeps beta at 1
  c.rampup = 4;
  c.method = "crown-ibp-r";
  CHECK(schedule_beta(c, 4.0) == 1.0f);
  CHECK(schedule_beta(c, 9.0) == 1.0f);
}

TEST_CASE("train: learning-rate milestones and steps") {
  TrainConfig c;
  c.lr = 5e-4;
  c.lr_schedule = "milestones";
  c.milestones = {130, 190};
  CHECK(schedule_lr(c, 0.0) == doctest::Approx(5e-4).epsilon(1e-6));
  CHECK(schedule_lr(c, 129.99) == doctest::Approx(5e-4).epsilon(1e-6));
  CHECK(schedule_lr(c, 130.0) == doctest::Approx(5e-5).epsilon(1e-6));
  CHECK(schedule_lr(c, 189.5) == doctest::Approx(5e-5).epsilon(1e-6));
  CHECK(schedule_lr(c, 190.0) == doctest::Approx(5e-6).epsilon(1e-6));
  c.lr_schedule = "steps";
  c.lr = 1e-3;
  c.warmup = 10;
  c.rampup = 50;
  c.lr_step_every = 20;
  CHECK(schedule_lr(c, 0.0) == doctest::Approx(1e-3).epsilon(1e-6));
  CHECK(schedule_lr(c, 60.0) == doctest::Approx(1e-3).epsilon(1e-6));   // end of the ramp-up
  CHECK(schedule_lr(c, 79.99) == doctest::Approx(1e-3).epsilon(1e-6));
  CHECK(schedule_lr(c, 80.0) == doctest::Approx(5e-4).epsilon(1e-6));
  CHECK(schedule_lr(c, 100.0) == doctest::Approx(2.5e-4).epsilon(1e-6));
  CHECK(schedule_lr(c, 139.0) == doctest::Approx(1.25e-4).epsilon(1e-6));
  // per batch: the value at epoch 79, last batch, is still the undecayed one
  CHECK(schedule_at(c, 79, 99, 100).lr == doctest::Approx(1e-3).epsilon(1e-6));
  CHECK(schedule_at(c, 80, 0, 100).lr == doctest::Approx(5e-4).epsilon(1e-6));
}

// ---------------------------------------------------------------- networks

TEST_CASE("train: network builders follow the paper's architectures") {
  const Normalization fm = dataset_normalization("fashion-mnist");
  CHECK(fm.mean == std::vector<float>{0.2861f});
  CHECK(fm.std == std::vector<float>{0.3530f});
  CHECK(dataset_normalization("cifar10").mean.size() == 3);
  const Shape mnist{1, 28, 28};
  const Network fc = build_network("fc", mnist, 10, fm, 0);
  CHECK(fc.describe() ==
        "input(1,28,28) -> normalize -> flatten -> linear(784->400) -> relu -> linear(400->200) -> relu -> "
        "linear(200->100) -> relu -> linear(100->100) -> relu -> linear(100->10)");
  CHECK(fc.num_parameters() == 314000 + 80200 + 20100 + 10100 + 1010);
  const Network conv = build_network("conv", mnist, 10, fm, 0);
  CHECK(conv.describe() ==
        "input(1,28,28) -> normalize -> conv(1->16, 4x4, s2, p1) -> relu -> flatten -> linear(3136->100) -> relu -> "
        "linear(100->10)");
  CHECK(conv.num_parameters() == 314982);
  const Network convp = build_network("conv+", mnist, 10, fm, 0);
  CHECK(convp.describe() ==
        "input(1,28,28) -> normalize -> conv(1->16, 4x4, s2, p0) -> relu -> conv(16->32, 4x4, s1, p0) -> relu -> "
        "flatten -> linear(3200->100) -> relu -> linear(100->10)");
  const Network cifar = build_network("conv+", Shape{3, 32, 32}, 10, dataset_normalization("cifar10"), 0);
  CHECK(cifar.layers()[0].mean_values.size() == 3);
  CHECK(cifar.num_parameters() == 784 + 8224 + 460900 + 1010);
  const Network small = build_network("fc-small", mnist, 10, fm, 0);
  CHECK(small.num_parameters() == 78500 + 10100 + 1010);
  // The normalisation is the first layer, with the data set's statistics.
  CHECK(conv.layers()[0].kind == LayerKind::normalize);
  CHECK(conv.layers()[0].mean_values == std::vector<float>{0.2861f});
  // Same seed, same weights; another seed, others.
  CHECK(parameter_hash(build_network("conv", mnist, 10, fm, 0)) == parameter_hash(conv));
  CHECK(parameter_hash(build_network("conv", mnist, 10, fm, 1)) != parameter_hash(conv));
}

// ---------------------------------------------------------------- PGD

TEST_CASE("train: PGD never leaves the eps-ball or [0, 1]") {
  Rng rng(11);
  Network net = build_network("fc-small", Shape{1, 4, 4}, 3, Normalization{{0.5f}, {0.25f}}, 5);
  net.set_requires_grad(true);  // as in training: the attack must still leave them alone
  std::vector<float> xs(32 * 16);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = i % 7 == 0 ? 0.0f : i % 11 == 0 ? 1.0f : float(rng.uniform());
  const Tensor x = Tensor::from_vector(xs, Shape{32, 1, 4, 4}, Device::cpu);
  std::vector<int> labels(32);
  for (int i = 0; i < 32; ++i) labels[size_t(i)] = i % 3;
  for (bool training : {false, true}) {
    PgdOptions o;
    o.eps = 0.3f;
    o.steps = 25;
    o.step_size = 0.1f;  // large steps that would overshoot without projection
    o.restarts = training ? 0 : 2;
    o.random_start = training;
    o.stop_at_success = !training;
    o.track = !training;
    o.seed = 9;
    const PgdResult r = pgd_attack(net, x, labels, o);
    const std::vector<float> adv = r.x_adv.to_vector();
    REQUIRE(adv.size() == xs.size());
    for (size_t i = 0; i < xs.size(); ++i) {
      const float lo = std::max(0.0f, xs[i] - o.eps), hi = std::min(1.0f, xs[i] + o.eps);
      CHECK(adv[i] >= lo - 1e-6f);
      CHECK(adv[i] <= hi + 1e-6f);
      CHECK(adv[i] >= 0.0f);
      CHECK(adv[i] <= 1.0f);
    }
  }
  CHECK(tape_size() == 0);
  // The parameters received no gradient.
  for (const Tensor& p : net.parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("train: PGD finds an adversarial example wherever brute force finds one (2-D network)") {
  // A 2 -> 16 -> 16 -> 2 ReLU network trained naturally on x0 + x1 > 1.
  Rng rng(21);
  std::vector<Layer> layers{make_linear(2, 16, rng), make_relu(), make_linear(16, 16, rng), make_relu(),
                            make_linear(16, 2, rng)};
  Network net(Shape{2}, std::move(layers));
  net.set_requires_grad(true);
  const int n = 256;
  std::vector<float> points(size_t(2 * n));
  std::vector<int> labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    points[size_t(2 * i)] = float(rng.uniform());
    points[size_t(2 * i + 1)] = float(rng.uniform());
    labels[size_t(i)] = points[size_t(2 * i)] + points[size_t(2 * i + 1)] > 1.0f ? 1 : 0;
  }
  const Tensor x = Tensor::from_vector(points, Shape{n, 2}, Device::cpu);
  TrainConfig c;
  c.method = "natural";
  c.l1 = 0;
  Adam adam(net.parameters(), 1e-2f);
  TrainStep step(net, adam, c, 2);
  ScheduleValues s;
  s.lr = 1e-2f;
  for (int i = 0; i < 300; ++i) step.run(x, labels, s, uint64_t(i));
  const StepStats final_stats = step.run(x, labels, s, 999);
  REQUIRE(final_stats.read().correct >= n * 9 / 10);

  // Test points near the boundary; brute force over a 101 x 101 grid of the ball.
  const float eps = 0.08f;
  std::vector<float> probe;
  std::vector<int> probe_labels;
  for (int i = 0; i < 40; ++i) {
    const float a = 0.15f + 0.7f * float(i) / 39.0f;
    const float offset = (i % 2 ? 1.0f : -1.0f) * (0.02f + 0.04f * float(i % 3) / 2.0f);
    probe.push_back(a);
    probe.push_back(1.0f - a + offset);
    probe_labels.push_back(offset > 0 ? 1 : 0);
  }
  const int m = int(probe_labels.size());
  const Tensor xp = Tensor::from_vector(probe, Shape{m, 2}, Device::cpu);
  std::vector<bool> brute(size_t(m), false);
  {
    NoGrad no_grad;
    const int g = 101;
    std::vector<float> grid(size_t(g * g * 2));
    for (int s_i = 0; s_i < m; ++s_i) {
      for (int i = 0; i < g; ++i)
        for (int j = 0; j < g; ++j) {
          const float u = std::clamp(probe[size_t(2 * s_i)] - eps + 2 * eps * float(i) / float(g - 1), 0.0f, 1.0f);
          const float v = std::clamp(probe[size_t(2 * s_i + 1)] - eps + 2 * eps * float(j) / float(g - 1), 0.0f, 1.0f);
          grid[size_t(2 * (i * g + j))] = u;
          grid[size_t(2 * (i * g + j) + 1)] = v;
        }
      const Tensor gx = Tensor::from_vector(grid, Shape{g * g, 2}, Device::cpu);
      const std::vector<bool> wrong =
          misclassified(net.forward(gx), std::vector<int>(size_t(g * g), probe_labels[size_t(s_i)]));
      for (bool w : wrong) brute[size_t(s_i)] = brute[size_t(s_i)] || w;
    }
  }
  PgdOptions o;
  o.eps = eps;
  o.steps = 100;
  o.step_size = 0.01f;
  o.seed = 1;
  const PgdResult r = pgd_attack(net, xp, probe_labels, o);
  int with_counterexample = 0;
  const std::vector<bool> adv_wrong = misclassified(net.forward(r.x_adv.detach()), probe_labels);
  tape_reset();
  for (int i = 0; i < m; ++i) {
    if (brute[size_t(i)]) {
      ++with_counterexample;
      CHECK_MESSAGE(r.adversarial[size_t(i)], "probe " << i << ": brute force found a counterexample, PGD did not");
      CHECK(adv_wrong[size_t(i)]);  // the returned point is one
    }
    // PGD never claims more than exists: its points lie in the ball, which the grid covers.
    if (r.adversarial[size_t(i)]) CHECK(adv_wrong[size_t(i)]);
  }
  CHECK(with_counterexample >= 10);
}

// ---------------------------------------------------------------- training

TEST_CASE("train: a short Box run on synthetic data raises certified accuracy") {
  TempDir dir("rise");
  const TrainConfig c = small_config(dir.str("run"));
  std::ostringstream log;
  Trainer trainer(c, synthetic_data(), &log);
  EvalOptions eo;
  eo.eps = {float(c.eps_test)};
  eo.relaxations = {Relaxation::box};
  eo.pgd = false;
  const DatasetSplits data = synthetic_data();
  const double before = certified_fraction(evaluate(trainer.network(), data.test, eo));
  const TrainSummary s = trainer.run();
  const double after = certified_fraction(s.final_eval);
  MESSAGE("certified accuracy (box, eps 0.04): " << before << " -> " << after);
  CHECK_FALSE(s.interrupted);
  CHECK(s.epochs_done == 4);
  CHECK(after >= before + 0.3);
  CHECK(after >= 0.6);
  CHECK(s.final_eval.accuracy() >= after);
  CHECK(s.final_eval.radii.at(0).pgd_robust >= s.final_eval.radii.at(0).certified.at(0).second);
  // metrics.jsonl: one line per epoch and a final one
  std::ifstream in(dir.str("run/metrics.jsonl"));
  std::string line;
  int lines = 0, final_lines = 0;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("final", false)) {
      ++final_lines;
      CHECK(j.at("eval").at("radii").at(0).at("certified").at("box").get<double>() == doctest::Approx(after));
    } else {
      ++lines;
      CHECK(j.at("epoch").get<int>() == lines);
      for (const char* key : {"lr", "eps", "kappa", "beta", "train_loss", "train_accuracy", "images_per_s"})
        CHECK_MESSAGE(j.contains(key), key);
    }
  }
  CHECK(lines == 4);
  CHECK(final_lines == 1);
  CHECK(fs::exists(dir.str("run/checkpoint.ckpt")));
  CHECK(fs::exists(dir.str("run/config.json")));
}

TEST_CASE("train: every method takes a finite training step") {
  const DatasetSplits data = synthetic_data();
  for (const std::string& method : train_methods()) {
    CAPTURE(method);
    TrainConfig c = small_config("unused");
    c.method = method;
    c.train_pgd_steps = 3;
    validate_config(c);
    Network net = build_network("fc-small", Shape{1, 4, 4}, 3, dataset_normalization("folder", &data.train), 1);
    net.set_requires_grad(true);
    Adam adam(net.parameters(), 1e-3f);
    TrainStep step(net, adam, c, 3);
    std::vector<float> xs(data.train.images.begin(), data.train.images.begin() + 20 * 16);
    for (float& v : xs) v /= 255.0f;
    std::vector<int> labels(data.train.labels.begin(), data.train.labels.begin() + 20);
    ScheduleValues s;
    s.eps = 0.05f;
    s.kappa = 0.5f;
    s.beta = 0.5f;
    s.lr = 1e-3f;
    const uint64_t before = parameter_hash(net);
    const StepStats st = step.run(Tensor::from_vector(xs, Shape{20, 1, 4, 4}, Device::cpu), labels, s, 1);
    CHECK(std::isfinite(st.read().loss));
    CHECK(st.count == 20);
    CHECK(parameter_hash(net) != before);
    CHECK(tape_size() == 0);
  }
}

// One plain SGD step of `c` on fc-small over the first 20 synthetic training
// images; the parameters after it (and before it, into `before`; the loss
// it reports, into `reported_loss`).
std::vector<std::vector<float>> one_sgd_step(const TrainConfig& c, const DatasetSplits& data, double lr,
                                             std::vector<std::vector<float>>* before, float* reported_loss = nullptr) {
  std::vector<float> xs(data.train.images.begin(), data.train.images.begin() + 20 * 16);
  for (float& v : xs) v /= 255.0f;
  const std::vector<int> labels(data.train.labels.begin(), data.train.labels.begin() + 20);
  Network net = build_network("fc-small", Shape{1, 4, 4}, 3, dataset_normalization("folder", &data.train), 1);
  net.set_requires_grad(true);
  if (before)
    for (const Tensor& p : net.parameters()) before->push_back(p.to_vector());
  Sgd sgd(net.parameters(), float(lr));
  TrainStep step(net, sgd, c, 3);
  ScheduleValues s;
  s.kappa = 1.0f;
  s.lr = float(lr);
  const StepStats stats = step.run(Tensor::from_vector(xs, Shape{20, 1, 4, 4}, Device::cpu), labels, s, 1);
  if (reported_loss) *reported_loss = stats.read().loss;
  std::vector<std::vector<float>> after;
  for (const Tensor& p : net.parameters()) after.push_back(p.to_vector());
  return after;
}

TEST_CASE("train: --l2 adds lambda * sum W^2 over the weights (not the biases): one SGD step by hand") {
  // d/dW of lambda * sum W^2 is 2 lambda W, so one plain SGD step with lr
  // moves each weight by -2 lr lambda W0 more than the same step without the
  // penalty, and each bias by exactly as much (biases are not penalised, as
  // in the authors' code). L1 off so the difference is the L2 term alone.
  const DatasetSplits data = synthetic_data();
  const double lambda = 0.05, lr = 0.1;
  auto one_step = [&](double l2, std::vector<std::vector<float>>* before) {
    TrainConfig c = small_config("unused");
    c.method = "natural";
    c.l1 = 0;
    c.l2 = l2;
    validate_config(c);
    return one_sgd_step(c, data, lr, before);
  };
  std::vector<std::vector<float>> initial;
  const auto with = one_step(lambda, &initial);
  const auto without = one_step(0.0, nullptr);
  // Which parameters are weights: the linear layers' 2-D tensors, in parameters() order.
  Network shapes = build_network("fc-small", Shape{1, 4, 4}, 3, dataset_normalization("folder", &data.train), 1);
  const std::vector<Tensor> params = shapes.parameters();
  REQUIRE(params.size() == initial.size());
  int weights = 0, biases = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const bool weight = params[k].ndim() == 2;
    weights += weight;
    biases += !weight;
    for (size_t i = 0; i < initial[k].size(); ++i) {
      const double want = weight ? -2.0 * lr * lambda * double(initial[k][i]) : 0.0;
      CHECK(double(with[k][i]) - double(without[k][i]) == doctest::Approx(want).epsilon(1e-3).scale(1e-6));
    }
  }
  CHECK(weights == 3);
  CHECK(biases == 3);
  // config.json carries it (resumable) and a negative value is refused.
  TrainConfig c = small_config("unused");
  c.l2 = 5e-3;
  TrainConfig back;
  apply_config_json(config_to_json(c), back, "test");
  CHECK(back.l2 == 5e-3);
  c.l2 = -1;
  CHECK(message_of([&] { validate_config(c); }).find("--l2 -1 must be >= 0") != std::string::npos);
}

TEST_CASE("train: --l1 moves each weight by -lr lambda sign(W0) and adds lambda sum |W0| to the loss") {
  // The optimiser's kernel adds L1's gradient lambda sign(W) (not the tape):
  // one plain SGD step with lr moves each weight by -lr lambda sign(W0) more
  // than the same step without it, each bias by nothing, and the reported
  // loss is larger by lambda sum |W0| over the weights, all computed here in
  // double from the initial parameters. A term dropped, doubled, applied to
  // the biases or with its sign flipped is off by lr lambda = 5e-3 per weight.
  const DatasetSplits data = synthetic_data();
  const double lambda = 0.05, lr = 0.1;
  auto one_step = [&](double l1, std::vector<std::vector<float>>* before, float* loss) {
    TrainConfig c = small_config("unused");
    c.method = "natural";
    c.l1 = l1;
    validate_config(c);
    return one_sgd_step(c, data, lr, before, loss);
  };
  std::vector<std::vector<float>> initial;
  float loss_with = 0, loss_without = 0;
  const auto with = one_step(lambda, &initial, &loss_with);
  const auto without = one_step(0.0, nullptr, &loss_without);
  double sum_abs_weights = 0;
  int weights = 0;
  for (size_t k = 0; k < initial.size(); ++k) {
    const bool weight = k % 2 == 0;  // parameters(): weight, bias per linear layer
    weights += weight;
    for (size_t i = 0; i < initial[k].size(); ++i) {
      const double w0 = initial[k][i];
      if (weight) sum_abs_weights += std::fabs(w0);
      const double want = weight ? -lr * lambda * double((w0 > 0) - (w0 < 0)) : 0.0;
      CHECK(double(with[k][i]) - double(without[k][i]) == doctest::Approx(want).epsilon(1e-3).scale(1e-6));
    }
  }
  CHECK(weights == 3);
  REQUIRE(sum_abs_weights > 1.0);
  CHECK(double(loss_with) - double(loss_without) == doctest::Approx(lambda * sum_abs_weights).epsilon(1e-4));
}

TEST_CASE("train: --l1-bias puts the biases under the L1 sum too: one SGD step by hand") {
  // d/db of lambda sum |b| is lambda sign(b): with --l1-bias one SGD step moves each bias by
  // -lr lambda sign(b0) more than without; the weights are under the L1 sum either way.
  const DatasetSplits data = synthetic_data();
  const double lambda = 0.05, lr = 0.1;
  auto one_step = [&](bool l1_bias, std::vector<std::vector<float>>* before) {
    TrainConfig c = small_config("unused");
    c.method = "natural";
    c.l1 = lambda;
    c.l1_bias = l1_bias;
    return one_sgd_step(c, data, lr, before);
  };
  std::vector<std::vector<float>> initial;
  const auto with = one_step(true, &initial);
  const auto without = one_step(false, nullptr);
  int biases = 0;
  for (size_t k = 0; k < initial.size(); ++k) {
    const bool bias = k % 2 == 1;  // parameters(): weight, bias per linear layer
    biases += bias;
    for (size_t i = 0; i < initial[k].size(); ++i) {
      const double b0 = initial[k][i];
      const double want = bias ? -lr * lambda * double((b0 > 0) - (b0 < 0)) : 0.0;
      CHECK(double(with[k][i]) - double(without[k][i]) == doctest::Approx(want).epsilon(1e-3).scale(1e-6));
    }
  }
  CHECK(biases == 3);
}

TEST_CASE("train: evaluation PGD starts at a seeded uniform point of the ball clipped to [0, 1]") {
  Network net = build_network("fc-small", Shape{1, 4, 4}, 3, Normalization{{0.5f}, {0.25f}}, 5);
  Rng rng(4);
  std::vector<float> xs(64 * 16);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = i % 5 == 0 ? 0.02f : i % 7 == 0 ? 0.99f : float(rng.uniform());
  const Tensor x = Tensor::from_vector(xs, Shape{64, 1, 4, 4}, Device::cpu);
  std::vector<int> labels(64);
  for (int i = 0; i < 64; ++i) labels[size_t(i)] = i % 3;
  PgdOptions o;  // steps 0: x_adv is the start itself
  o.eps = 0.1f;
  o.steps = 0;
  o.random_start = true;
  o.stop_at_success = false;
  o.seed = 17;
  const std::vector<float> a = pgd_attack(net, x, labels, o).x_adv.to_vector();
  const std::vector<float> b = pgd_attack(net, x, labels, o).x_adv.to_vector();
  o.seed = 18;
  const std::vector<float> c = pgd_attack(net, x, labels, o).x_adv.to_vector();
  CHECK(a == b);  // seeded: the same start every time
  CHECK(a != c);  // another seed, another start
  double mean_offset = 0, mean_square = 0;
  int inside = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float lo = std::max(0.0f, xs[i] - o.eps), hi = std::min(1.0f, xs[i] + o.eps);
    CHECK(a[i] >= lo);
    CHECK(a[i] <= hi);
    if (xs[i] - o.eps >= 0.0f && xs[i] + o.eps <= 1.0f) {  // unclipped: uniform on [x - eps, x + eps]
      const double t = double(a[i] - xs[i]) / o.eps;
      mean_offset += t;
      mean_square += t * t;
      ++inside;
    }
  }
  REQUIRE(inside > 300);
  // Uniform on [-1, 1]: mean 0 (sd 0.577 / sqrt(n)), mean square 1/3 (sd 0.298 / sqrt(n)); 5 sd.
  CHECK(std::fabs(mean_offset / inside) < 5 * 0.577 / std::sqrt(double(inside)));
  CHECK(std::fabs(mean_square / inside - 1.0 / 3.0) < 5 * 0.298 / std::sqrt(double(inside)));
  // --pgd-start zero: the start is x itself.
  o.random_start = false;
  CHECK(pgd_attack(net, x, labels, o).x_adv.to_vector() == xs);

  // evaluate(): random by default and recorded; zero on request; both deterministic.
  const DatasetSplits data = synthetic_data();
  EvalOptions eo;
  eo.eps = {0.05f};
  eo.pgd_options.steps = 3;
  eo.pgd_options.seed = 2;
  eo.subset = 30;
  const EvalReport r1 = evaluate(net, data.test, eo), r2 = evaluate(net, data.test, eo);
  CHECK(r1.to_json()["pgd_start"] == "random");
  CHECK(r1.radii[0].pgd_robust == r2.radii[0].pgd_robust);
  eo.pgd_random_start = false;
  CHECK(evaluate(net, data.test, eo).to_json()["pgd_start"] == "zero");
  TrainConfig bad = small_config("unused");
  bad.pgd_start = "x";
  CHECK(message_of([&] { validate_config(bad); }).find("--pgd-start 'x' is unknown") != std::string::npos);
}

// Two short epochs of 12 batches for the resume tests.
TrainConfig resume_test_config(const std::string& out, const std::string& method) {
  TrainConfig c = small_config(out);
  c.method = method;
  c.train_pgd_steps = 2;
  c.epochs = 2;
  c.rampup = 1;
  c.pgd_steps = 5;
  return c;
}

TEST_CASE("train: resume continues a run to the same weights bit for bit") {
  TempDir dir("resume");
  // sabr exercises everything random: data order, PGD random starts, Box.
  const TrainConfig c = resume_test_config(dir.str("straight"), "sabr");
  std::ostringstream quiet;
  const TrainSummary straight = Trainer(c, synthetic_data(), &quiet).run();

  TrainConfig first = c;
  first.out = dir.str("killed");
  first.epochs = 1;
  Trainer(first, synthetic_data(), &quiet).run();
  TrainConfig second = first;
  second.epochs = 2;
  second.resume = true;
  std::ostringstream log;
  Trainer resumed(second, synthetic_data(), &log);
  CHECK(resumed.start_epoch() == 1);
  const TrainSummary continued = resumed.run();
  CHECK(log.str().find("continuing with epoch 2 of 2") != std::string::npos);
  CHECK(continued.weights_hash == straight.weights_hash);
  CHECK(hex64(continued.weights_hash) == hex64(parameter_hash(resumed.network())));
  CHECK(continued.final_eval.to_json()["radii"] == straight.final_eval.to_json()["radii"]);

  // The checkpoint rebuilds the same network.
  nlohmann::json meta;
  const Network loaded = network_from_checkpoint(dir.str("killed/checkpoint.ckpt"), &meta);
  CHECK(loaded.describe() == resumed.network().describe());
  CHECK(parameter_hash(loaded) == continued.weights_hash);
  CHECK(meta.at("epoch").get<int>() == 2);
  CHECK(meta.at("global_step").get<int64_t>() == 2 * 12);

  // Resuming the finished run does nothing and says so; metrics.jsonl stays as it was.
  const std::string metrics_before = read_text(dir.str("killed/metrics.jsonl"));
  std::ostringstream again_log;
  Trainer again(second, synthetic_data(), &again_log);
  CHECK(again.already_finished());
  const TrainSummary nothing = again.run();
  CHECK(nothing.already_finished);
  CHECK(nothing.weights_hash == straight.weights_hash);
  CHECK(again_log.str().find("is finished: 2 of 2 epochs") != std::string::npos);
  CHECK(read_text(dir.str("killed/metrics.jsonl")) == metrics_before);
  // Fewer epochs than the checkpoint has done: refused, saying what to give.
  TrainConfig fewer = second;
  fewer.epochs = 1;
  CHECK(message_of([&] { Trainer(fewer, synthetic_data(), &quiet); }).find("give --epochs 2 or more") !=
        std::string::npos);

  // A checkpoint of another network is refused before any work.
  TrainConfig other = second;
  other.net = "fc";
  const std::string msg = message_of([&] { Trainer(other, synthetic_data(), &quiet); });
  CHECK(msg.find("[resume]") != std::string::npos);
  CHECK(msg.find("holds a network") != std::string::npos);
  CHECK(msg.find("--net fc builds") != std::string::npos);
}

// The epoch lines of a metrics.jsonl without their timings (which differ between runs).
std::vector<nlohmann::json> epoch_lines_untimed(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(read_text(path));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("final")) continue;
    j.erase("seconds");
    j.erase("images_per_s");
    lines.push_back(j);
  }
  return lines;
}

TEST_CASE("train: a run stopped mid-epoch resumes from that batch to the same weights and metrics bit for bit") {
  // sabr draws every kind of randomness (data order, PGD random starts); crown records the
  // per-layer unstable fractions, which the checkpoint must carry across the stop too.
  for (const std::string method : {"sabr", "crown"}) {
    CAPTURE(method);
    TempDir dir("midepoch_" + method);
    const TrainConfig c = resume_test_config(dir.str("straight"), method);
    std::ostringstream quiet;
    const TrainSummary straight = Trainer(c, synthetic_data(), &quiet).run();

    // 12 batches an epoch: stop after 5 (mid epoch 1), resume and stop 12 steps later (mid
    // epoch 2, across an epoch end), then resume to the end.
    TrainConfig stopped = c;
    stopped.out = dir.str("stopped");
    stopped.stop_after_steps = 5;
    std::ostringstream log1;
    const TrainSummary first = Trainer(stopped, synthetic_data(), &log1).run();
    CHECK(first.interrupted);
    CHECK(log1.str().find("0 epochs and 5 batches of epoch 1") != std::string::npos);
    nlohmann::json meta;
    network_from_checkpoint(dir.str("stopped/checkpoint.ckpt"), &meta);
    CHECK(meta.at("epoch").get<int>() == 0);
    CHECK(meta.at("global_step").get<int64_t>() == 5);
    CHECK(meta.at("partial_epoch").at("batch").get<int64_t>() == 5);

    TrainConfig resumed = stopped;
    resumed.resume = true;
    resumed.stop_after_steps = 12;
    {
      std::ostringstream log2;
      Trainer second(resumed, synthetic_data(), &log2);  // holds the folder's lock until the end of this block
      CHECK(second.start_epoch() == 0);
      CHECK(log2.str().find("continuing with epoch 1 of 2 at batch 6") != std::string::npos);
      CHECK(second.run().interrupted);
    }
    network_from_checkpoint(dir.str("stopped/checkpoint.ckpt"), &meta);
    CHECK(meta.at("epoch").get<int>() == 1);
    CHECK(meta.at("global_step").get<int64_t>() == 17);
    CHECK(meta.at("partial_epoch").at("batch").get<int64_t>() == 5);

    resumed.stop_after_steps = 0;
    const TrainSummary done = Trainer(resumed, synthetic_data(), &quiet).run();
    CHECK_FALSE(done.interrupted);
    CHECK(hex64(done.weights_hash) == hex64(straight.weights_hash));
    CHECK(done.final_eval.to_json()["radii"] == straight.final_eval.to_json()["radii"]);
    // The epoch lines (losses, accuracies, unstable fractions) as if never stopped.
    CHECK(epoch_lines_untimed(dir.str("stopped/metrics.jsonl")) == epoch_lines_untimed(dir.str("straight/metrics.jsonl")));
  }
  // A stop at an epoch's last batch lets the epoch finish: its line and checkpoint, no partial one.
  TempDir dir("midepoch_last");
  TrainConfig c = small_config(dir.str("run"));
  c.epochs = 2;
  c.stop_after_steps = 12;
  std::ostringstream quiet;
  const TrainSummary s = Trainer(c, synthetic_data(), &quiet).run();
  CHECK(s.interrupted);
  CHECK(s.epochs_done == 1);
  nlohmann::json meta;
  network_from_checkpoint(dir.str("run/checkpoint.ckpt"), &meta);
  CHECK(meta.at("epoch").get<int>() == 1);
  CHECK_FALSE(meta.contains("partial_epoch"));
  CHECK(epoch_lines_untimed(dir.str("run/metrics.jsonl")).size() == 1);
}

TEST_CASE("train: an epoch's ReLU fractions are its training steps' alone, not --eval-every's bounds too") {
  // The evaluation after epoch 1 certifies with CROWN at eps_test 0.3 (ten
  // times eps_train, so far more ReLUs unstable): had its bounds leaked into
  // epoch 1's statistics, its unstable fractions would differ from a run
  // without that evaluation, whose training steps are identical.
  std::vector<nlohmann::json> fractions;
  for (int eval_every : {1, 0}) {
    CAPTURE(eval_every);
    TempDir dir("relu_fractions_" + std::to_string(eval_every));
    TrainConfig c = resume_test_config(dir.str("run"), "crown");
    c.eps_test = 0.3;
    c.eval_every = eval_every;
    std::ostringstream quiet;
    Trainer(c, synthetic_data(), &quiet).run();
    const std::vector<nlohmann::json> lines = epoch_lines_untimed(dir.str("run/metrics.jsonl"));
    REQUIRE(lines.size() == 2);
    REQUIRE(lines[0].contains("unstable_fraction"));
    fractions.push_back(lines[0].at("unstable_fraction"));
    CHECK(lines[0].contains("eval") == (eval_every == 1));
  }
  MESSAGE("epoch 1 unstable fractions: " << fractions[0].dump());
  CHECK(fractions[0] == fractions[1]);
}

TEST_CASE("train: a non-finite loss stops training, naming epoch and step, keeping the last checkpoint") {
  // On the CPU the step is read at once; on CUDA the device-side flag and the
  // first bad step's index are read at the end of the epoch.
  for (Device device : test::devices()) {
  CAPTURE(device_name(device));
  TempDir dir("nonfinite");
  TrainConfig c = small_config(dir.str("run"));
  c.device = device_name(device);
  c.test_subset = 20;  // the final evaluation of the first run: kept short on the emulator
  c.pgd_steps = 2;
  c.epochs = 1;
  c.rampup = 0;
  std::ostringstream quiet;
  Trainer(c, synthetic_data(), &quiet).run();
  nlohmann::json meta;
  const uint64_t good_hash = parameter_hash(network_from_checkpoint(dir.str("run/checkpoint.ckpt"), &meta));
  // Resumed with a learning rate of 1e38, the first step throws the weights
  // to +-1e38 and the second step's loss is infinite or NaN.
  TrainConfig blowup = c;
  blowup.epochs = 2;
  blowup.resume = true;
  blowup.force = true;  // a changed learning rate changes the experiment: resume refuses it otherwise
  blowup.lr = 1e38;
  const std::string msg = message_of([&] { Trainer(blowup, synthetic_data(), &quiet).run(); });
  INFO(msg);
  CHECK(msg.find("[train] the loss") != std::string::npos);
  CHECK(msg.find("is not finite at epoch 2, step 2 of 12 (global step 14)") != std::string::npos);
  CHECK(msg.find("The last good checkpoint (epoch 1)") != std::string::npos);
  nlohmann::json after;
  CHECK(parameter_hash(network_from_checkpoint(dir.str("run/checkpoint.ckpt"), &after)) == good_hash);
  CHECK(after.at("epoch").get<int>() == 1);
  std::ifstream metrics(dir.str("run/metrics.jsonl"));
  const std::string lines((std::istreambuf_iterator<char>(metrics)), std::istreambuf_iterator<char>());
  CHECK(lines.find("\"epoch\":2") == std::string::npos);  // nothing of the failed epoch
  if (device == Device::cuda) CHECK(msg.find("and in 10 later steps of the epoch") != std::string::npos);
  }
}

TEST_CASE("train: two trainers cannot share an output folder") {
  TempDir dir("lock");
  const TrainConfig c = small_config(dir.str("run"));
  std::ostringstream quiet;
  Trainer first(c, synthetic_data(), &quiet);
  const std::string msg = message_of([&] { Trainer second(c, synthetic_data(), &quiet); });
  INFO(msg);
  CHECK(msg.find(dir.str("run") + " is in use by another process (pid " + std::to_string(::getpid())) !=
        std::string::npos);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("train: bad input stops before any work with a message naming the flag") {
  const TrainConfig good = small_config("unused");
  CHECK_NOTHROW(validate_config(good));
  struct Case {
    std::function<void(TrainConfig&)> change;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](TrainConfig& c) { c.method = "ibp++"; }, "--method 'ibp++' is unknown"},
      {[](TrainConfig& c) { c.net = "resnet"; }, "--net 'resnet' is unknown"},
      {[](TrainConfig& c) { c.net = "/no/such/net.json"; }, "--net /no/such/net.json: no such network JSON file"},
      {[](TrainConfig& c) { c.dataset = "imagenet"; }, "--dataset 'imagenet' is unknown"},
      {[](TrainConfig& c) { c.eps_train = -0.1; }, "--eps-train -0.1 must be a number >= 0"},
      {[](TrainConfig& c) { c.eps_test = std::numeric_limits<double>::quiet_NaN(); }, "--eps-test nan"},
      {[](TrainConfig& c) { c.eps_start = -1; }, "--eps-start -1"},
      {[](TrainConfig& c) { c.warmup = 3; c.rampup = 2; c.epochs = 4; }, "--warmup 3 + --rampup 2 = 5 epochs is longer than --epochs 4"},
      {[](TrainConfig& c) { c.batch_size = 0; }, "--batch-size 0 must be at least 1"},
      {[](TrainConfig& c) { c.kappa_end = 1.5; }, "--kappa-end 1.5 must lie in [0, 1]"},
      {[](TrainConfig& c) { c.lr_schedule = "cosine"; }, "--lr-schedule 'cosine' is unknown"},
      {[](TrainConfig& c) { c.certify_with = {"box", "zono"}; }, "--certify-with 'zono'"},
      {[](TrainConfig& c) { c.device = "tpu"; }, "--device 'tpu' is unknown"},
      {[](TrainConfig& c) { c.pgd_step_size = std::numeric_limits<double>::quiet_NaN(); }, "--pgd-step-size nan must be > 0"},
      {[](TrainConfig& c) { c.pgd_restarts = -2; }, "--pgd-restarts -2 must be >= 0"},
  };
  for (const Case& k : cases) {
    TrainConfig c = good;
    k.change(c);
    const std::string msg = message_of([&] { validate_config(c); });
    CHECK_MESSAGE(msg.find(k.expected) != std::string::npos, "got: " << msg << "\nwanted: " << k.expected);
    CHECK(msg.rfind("[train]", 0) == 0);
  }
  // A missing data set: find_data_dir's message, naming where it looked.
  TempDir dir("bad");
  TrainConfig missing = good;
  missing.dataset = "mnist";
  missing.data_dir = dir.str("no-such-dir");
  const std::string msg = message_of([&] { Trainer t(missing); });
  CHECK(msg.find("[mnist]") != std::string::npos);
  CHECK(msg.find("no-such-dir") != std::string::npos);
  CHECK_FALSE(fs::exists("unused"));  // failed before creating --out
  // A device that is not there.
  if (!cuda_available()) {
    TrainConfig gpu = good;
    gpu.device = "cuda";
    CHECK(message_of([&] { prepare_runtime(gpu); }).find("[device]") != std::string::npos);
  }
}

TEST_CASE("train: the schedule flags a method does not read are ignored, and notes say what to change") {
  TrainConfig c = small_config("unused");
  c.epochs = 3;
  c.warmup = 0;
  c.rampup = 50;
  c.method = "box";
  const std::string msg = message_of([&] { validate_config(c); });
  CHECK(msg.find("--warmup 0 + --rampup 50 = 50 epochs is longer than --epochs 3") != std::string::npos);
  CHECK(msg.find("give --rampup 3 or less, or --epochs 50 or more") != std::string::npos);
  c.method = "natural";  // no ramp-up in natural training
  CHECK_NOTHROW(validate_config(c));
  CHECK_FALSE(uses_eps_schedule("natural"));
  CHECK(uses_eps_schedule("pgd"));  // PGD training attacks at the scheduled eps
  CHECK(uses_beta_schedule("crown-ibp"));
  CHECK_FALSE(uses_beta_schedule("box"));
  CHECK_FALSE(uses_beta_schedule("crown-ibp-r"));  // beta held at 1
  // Natural training's "steps" learning rate halves every 2 epochs from epoch
  // 0 (no ramp-up to wait for): at t = 2 it is alpha / 2, at t = 4 alpha / 4.
  c.lr = 0.004;
  c.lr_schedule = "steps";
  c.lr_step_every = 2;
  CHECK(schedule_lr(c, 1.5) == doctest::Approx(0.004));
  CHECK(schedule_lr(c, 2.0) == doctest::Approx(0.002));
  CHECK(schedule_lr(c, 4.5) == doctest::Approx(0.001));
  // Milestones at or beyond --epochs never lower the rate: a note says so.
  c.lr_schedule = "milestones";
  c.epochs = 2;
  c.milestones = {1, 20, 27};
  const std::vector<std::string> notes = config_notes(c);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("--milestones 20,27 lie at or beyond --epochs 2") != std::string::npos);
  c.milestones = {1};
  CHECK(config_notes(c).empty());
}

TEST_CASE("train: --resume refuses settings that change the experiment unless --force") {
  TrainConfig then = small_config("unused");
  TrainConfig now = then;
  now.epochs = then.epochs + 5;  // training on is no change of the experiment
  now.threads = 1;
  CHECK(check_resume_changes(now, config_to_json(then), "run/config.json").empty());
  now.method = "crown";
  const std::string msg = message_of([&] { check_resume_changes(now, config_to_json(then), "run/config.json"); });
  CHECK(msg.find("[resume] --method is \"crown\" now but \"" + then.method + "\" in run/config.json") !=
        std::string::npos);
  CHECK(msg.find("add --force") != std::string::npos);
  now.force = true;
  const std::vector<std::string> notes = check_resume_changes(now, config_to_json(then), "run/config.json");
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("--method") != std::string::npos);
}

TEST_CASE("train: integers out of range in config JSON are refused (fuzz regression)") {
  // 3.9e50 epochs converted to int was undefined behaviour (found by
  // tests/fuzz/fuzz_config); 2^32 + 5 would have wrapped to 5.
  for (const char* text : {R"({"epochs": 388888888888888888888888888888888888888888888888888})",
                           R"({"epochs": 4294967301})", R"({"epochs": -2147483649})", R"({"seed": -1})",
                           R"({"test-subset": 9223372036854775808})"}) {
    CAPTURE(text);
    TrainConfig c;
    const std::string msg = message_of([&] { apply_config_json(nlohmann::json::parse(text), c, "c.json"); });
    CHECK(msg.find("[config] c.json: key '") != std::string::npos);
    CHECK((msg.find("is out of range") != std::string::npos || msg.find("must not be negative") != std::string::npos));
  }
  TrainConfig c;
  apply_config_json(nlohmann::json::parse(R"({"epochs": 2147483647, "test-subset": 9223372036854775807})"), c, "c.json");
  CHECK(c.epochs == 2147483647);
  CHECK(c.test_subset == 9223372036854775807LL);
}

TEST_CASE("train: config JSON round trip, --config merge and unknown keys") {
  TrainConfig c;
  c.method = "crown-ibp";
  c.milestones = {10, 20};
  c.certify_with = {"box", "crown"};
  c.elide = false;
  c.seed = 12345678901ull;
  TrainConfig back;
  apply_config_json(config_to_json(c), back, "test");
  CHECK(config_to_json(back) == config_to_json(c));
  CHECK(message_of([&] { apply_config_json(nlohmann::json{{"epoch", 3}}, back, "f.json"); })
            .find("[config] f.json: unknown key 'epoch'") != std::string::npos);
  CHECK(message_of([&] { apply_config_json(nlohmann::json{{"epochs", "many"}}, back, "f.json"); })
            .find("key 'epochs' must be a number") != std::string::npos);
  // Lists as strings, as on the command line.
  apply_config_json(nlohmann::json{{"milestones", "5,9"}, {"certify-with", "deepz"}}, back, "f.json");
  CHECK(back.milestones == std::vector<int>{5, 9});
  CHECK(back.certify_with == std::vector<std::string>{"deepz"});

  // --config FILE with a flag overriding one of its keys.
  TempDir dir("config");
  {
    std::ofstream out(dir.str("c.json"));
    out << R"({"epochs": 7, "lr": 0.001, "method": "crown", "elide": false, "milestones": [3, 5]})";
  }
  const std::string path = dir.str("c.json");
  std::vector<std::string> args{"train", "--config", path, "--epochs", "9", "--elide"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  TrainConfig parsed;
  CHECK(parse_train_args(int(argv.size()), argv.data(), parsed) == -1);
  CHECK(parsed.epochs == 9);
  CHECK(parsed.lr == doctest::Approx(0.001));
  CHECK(parsed.method == "crown");
  CHECK(parsed.elide);
  CHECK(parsed.milestones == std::vector<int>{3, 5});
  CHECK(certify_relaxations(parsed) == std::vector<Relaxation>{Relaxation::crown});
  parsed.method = "crown-ibp";
  CHECK(certify_relaxations(parsed) == std::vector<Relaxation>{Relaxation::box});
  parsed.method = "crown-ibp-r";
  CHECK(certify_relaxations(parsed) == std::vector<Relaxation>{Relaxation::crown_ibp});
}

// ---------------------------------------------------------------- CUDA backend

// The first n synthetic training images (4x4, scaled to [0, 1]) and their labels.
std::pair<std::vector<float>, std::vector<int>> first_training_images(const DatasetSplits& data, int64_t n) {
  std::vector<float> xs(data.train.images.begin(), data.train.images.begin() + n * 16);
  for (float& v : xs) v /= 255.0f;
  return {xs, std::vector<int>(data.train.labels.begin(), data.train.labels.begin() + n)};
}

TEST_CASE("train: training steps and evaluation on the CUDA backend match the CPU") {
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  const DatasetSplits data = synthetic_data();
  const auto [xs, labels] = first_training_images(data, 12);
  for (const std::string method : {"natural", "box", "crown-ibp", "sabr"}) {
    CAPTURE(method);
    TrainConfig c = small_config("unused");
    c.method = method;
    c.train_pgd_steps = 2;
    std::vector<std::vector<float>> after;
    for (Device device : {Device::cpu, Device::cuda}) {
      Network net = build_network("fc-small", Shape{1, 4, 4}, 3, dataset_normalization("folder", &data.train), 4);
      net.to(device);
      net.set_requires_grad(true);
      Adam adam(net.parameters(), 1e-3f);
      TrainStep step(net, adam, c, 3);
      ScheduleValues s;
      s.eps = 0.05f;
      s.kappa = 0.5f;
      s.beta = 0.5f;
      s.lr = 1e-3f;
      const Tensor x = Tensor::from_vector(xs, Shape{12, 1, 4, 4}, device);
      for (int i = 0; i < 2; ++i) CHECK(std::isfinite(step.run(x, labels, s, uint64_t(i)).read().loss));
      std::vector<float> flat;
      for (const Tensor& p : net.parameters())
        for (float v : p.to_vector()) flat.push_back(v);
      after.push_back(flat);
      if (method == "box") {
        EvalOptions eo;
        eo.eps = {0.02f};
        eo.pgd_options.steps = 3;
        eo.subset = 30;
        const EvalReport r = evaluate(net, data.test, eo);
        CHECK(r.n == 30);
        if (device == Device::cuda) MESSAGE("evaluation on the CUDA backend: " << r.to_json().dump());
      }
    }
    CHECK_CLOSE_VEC(after[1], after[0], 1e-4, 1e-3);
  }
}

// A network by name (built in, on 1x4x4 images), or "two-conv": two convolutions
// (1x4x4 -> 2x4x4 -> 3x2x2) and a linear layer, whose second ReLU's bounds walk back
// through a convolution (CONV's single one needs no constant: its first ReLU is bounded
// by a forward pass).
Network net_for_cuda_tests(const std::string& name, const DatasetSplits& data, uint64_t seed) {
  if (name != "two-conv")
    return build_network(name, Shape{1, 4, 4}, 3, dataset_normalization("folder", &data.train), seed);
  Rng rng(seed);
  return Network(Shape{1, 4, 4}, {make_conv(1, 2, 3, 1, 1, rng), make_relu(), make_conv(2, 3, 3, 2, 1, rng),
                                  make_relu(), make_flatten(), make_linear(12, 3, rng)});
}

TEST_CASE("train: a CUDA training step makes no host round trip, and its device-side stats are the step's") {
  // Issue 19: labels staged asynchronously, the margin specification and the
  // hit count built on the device, the finite check a device flag the
  // optimiser's kernels read. Counted: synchronous copies either way and
  // device synchronisations (gpu::host_sync_counters). The values are checked
  // against the step's logits read beforehand and evaluated here in double.
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  const DatasetSplits data = synthetic_data();
  const auto [xs, labels] = first_training_images(data, 12);
  const Shape shape{12, 1, 4, 4};
  // fc-small starts with a Normalize layer, whose expansion the backsubstitution
  // relaxations (hbox, crown-ibp) build on the device too.
  // pgd and sabr: the training attack decides on the device too (train/pgd.cpp), its early stop
  // read asynchronously. deepz and crown: dense intermediate bounds on a GPU (--sparse-bounds
  // auto), their ReLU statistics counted on the device (on fc-2x20: the emulator runs a block of
  // rows in lockstep). l1 on: the optimiser's kernels add its gradient.
  // crown on two convolutions: the identity rows of the second (or the patches' identity kernel)
  // are uploaded by the first steps and kept on the device (relax::constant_tensor).
  const std::pair<const char*, const char*> cases[] = {
      {"fc-small", "natural"}, {"fc-small", "box"}, {"fc-small", "hbox"}, {"fc-small", "crown-ibp"},
      {"fc-small", "pgd"},     {"fc-small", "sabr"}, {"fc-2x20", "deepz"}, {"fc-2x20", "crown"},
      {"two-conv", "crown"}};
  for (const auto& [net_name, method_name] : cases) {
    const std::string method = method_name;
    CAPTURE(net_name);
    CAPTURE(method);
    const bool backsub = std::string(net_name) == "fc-2x20";
    TrainConfig c = small_config("unused");
    c.method = method;
    c.l1 = 1e-4;
    Network net = net_for_cuda_tests(net_name, data, 4);
    net.to(Device::cuda);
    net.set_requires_grad(true);
    Adam adam(net.parameters(), 1e-3f);
    TrainStep step(net, adam, c, 3);
    ScheduleValues s;
    s.eps = 0.05f;
    s.kappa = 0.5f;
    s.beta = 0.5f;
    s.lr = 1e-3f;
    UploadStaging staging;
    Tensor x = staging.upload(xs, shape, Device::cuda);
    relax::clear_device_constants();  // (earlier tests' nets may have made the same ones)
    for (int i = 0; i < 2; ++i) step.run(x, labels, s, uint64_t(i));  // warm: allocator caches, constants
    const relax::DeviceConstantStats constants = relax::device_constant_stats();
    std::vector<float> z;
    double l1_term = 0;  // the L1 penalty the step's reported loss includes: l1 * sum |W| over the weights
    {
      NoGrad no_grad;
      z = net.forward(x).to_vector();  // the next step's clean logits (12, 3)
      for (const Tensor& p : net.parameters())
        if (p.ndim() == 2)
          for (float w : p.to_vector()) l1_term += c.l1 * std::fabs(double(w));
    }
    reset_relu_layer_stats();
    const gpu::HostSyncCounters before = gpu::host_sync_counters();
    const StepStats st = step.run(x, labels, s, 2);
    const gpu::HostSyncCounters after_step = gpu::host_sync_counters();
    x = staging.upload(xs, shape, Device::cuda);  // the next batch's upload queues too
    const gpu::HostSyncCounters after = gpu::host_sync_counters();
    CHECK(after.device_to_host - before.device_to_host == 0);
    CHECK(after.host_to_device - before.host_to_device == 0);
    CHECK(after.synchronizes - before.synchronizes == 0);
    // Staging and readback buffers are kept across steps (cudaFreeHost would wait for the device).
    CHECK(after_step.pinned_allocations - before.pinned_allocations == 0);
    CHECK(after.pinned_frees - before.pinned_frees == 0);
    // The step's ReLU statistics, read now: fc-2x20's two ReLU layers of 20 neurons, 12 samples.
    // (hbox: fc-small's layers, counted the same way.)
    const std::vector<ReluLayerStats> relu = relu_layer_stats();
    if (backsub) {
      REQUIRE(relu.size() == 2);
      for (const ReluLayerStats& layer : relu) {
        CHECK(layer.pairs == 12 * 20);
        CHECK(layer.backsubstituted == (layer.layer == relu[0].layer ? 0 : 12 * 20));  // the first: a forward pass
        CHECK(layer.unstable <= layer.pairs);
      }
    } else if (method == "hbox" || method == "crown") {
      CHECK_FALSE(relu.empty());
      for (const ReluLayerStats& layer : relu) CHECK(layer.unstable <= layer.pairs);
    } else {
      CHECK(relu.empty());
    }
    if (std::string(net_name) == "two-conv") CHECK(constants.count > 0);  // the second convolution needed some
    CHECK(relax::device_constant_stats().uploads == constants.uploads);  // and uploaded none again

    int64_t correct = 0;
    double cross_entropy = 0;
    for (size_t i = 0; i < labels.size(); ++i) {
      const float* row = z.data() + 3 * i;
      const int64_t best = std::max_element(row, row + 3) - row;
      correct += best == labels[i];
      double m = row[0];
      for (int k = 1; k < 3; ++k) m = std::max(m, double(row[k]));
      double sum = 0;
      for (int k = 0; k < 3; ++k) sum += std::exp(double(row[k]) - m);
      cross_entropy += (m + std::log(sum) - row[labels[i]]) / double(labels.size());
    }
    const StepStats::Host h = st.read();
    CHECK(h.finite);
    CHECK(h.correct == correct);
    CHECK(st.count == 12);
    REQUIRE(l1_term > 1e-4);
    if (method == "natural") CHECK(h.loss == doctest::Approx(cross_entropy + l1_term).epsilon(1e-5));
    if (method != "natural") CHECK(h.loss > float(0.5 * cross_entropy));  // plus half the worst case's, > the clean CE

    // A NaN pixel: the loss is NaN, the flag set, and the optimiser's kernels skip
    // the update on the device, still without a host round trip.
    std::vector<float> poisoned = xs;
    poisoned[5] = NAN;
    const Tensor x_nan = Tensor::from_vector(poisoned, shape, Device::cuda);
    const uint64_t weights_before = parameter_hash(net);
    const gpu::HostSyncCounters before_nan = gpu::host_sync_counters();
    const StepStats bad = step.run(x_nan, labels, s, 3);
    const gpu::HostSyncCounters after_nan = gpu::host_sync_counters();
    CHECK(after_nan.device_to_host - before_nan.device_to_host == 0);
    CHECK(after_nan.synchronizes - before_nan.synchronizes == 0);
    CHECK_FALSE(bad.read().finite);
    CHECK(parameter_hash(net) == weights_before);
  }
}

TEST_CASE("train: --cuda-graph replays steps bit for bit on each batch's data, and refuses steps with round trips") {
  // (Also: the bound statistics of a replayed step count as an eager step's.)
  // The same eleven steps (three different batches, eps changed for steps 5-9
  // and back at step 10) eagerly and with --cuda-graph on the emulated GPU:
  // the losses of every step and the final weights must be identical. A replay
  // that kept the captured batch or the captured attack's random start (pgd,
  // sabr: each step has its own seed), lost a scalar or aliased a buffer would
  // change them (their attacks take 3 steps here: a seed the replay kept
  // shows in the first). CONV's crown-ibp walks its convolution backwards in
  // the graph. Adam starts at step 20,000, where its bias corrections are
  // exactly 1 in float, so only eps changes the values a graph keeps. Values
  // are captured on their fourth step in a row: steps 0-2 eager, 3 captured,
  // 4 replayed; 5-7 eager, 8 captured, 9 replayed; 10 replays the first graph.
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  const DatasetSplits data = synthetic_data();
  const auto [xs, labels] = first_training_images(data, 36);
  struct Outcome {
    uint64_t weights = 0;
    std::vector<float> losses;
    TrainStep::GraphCounts graphs;
    std::vector<ReluLayerStats> relu;  // the steps' bound statistics: a replay adds its own too
    uint64_t bound_chunks = 0;
  };
  auto train = [&](const std::string& net_name, const std::string& method, bool graph, int steps, bool early_stops) {
    TrainConfig c = small_config("unused");
    c.method = method;
    c.l1 = 1e-4;
    c.cuda_graph = graph;
    c.pgd_steps = 3;
    c.early_stops = early_stops;
    reset_relu_layer_stats();
    relax::reset_backsub_chunk_stats();
    Network net = net_for_cuda_tests(net_name, data, 4);
    net.to(Device::cuda);
    net.set_requires_grad(true);
    Adam adam(net.parameters(), 1e-3f);
    std::vector<std::pair<std::string, Tensor>> state = adam.state();
    for (auto& [name, t] : state)
      if (name == "adam.step") t = Tensor::scalar(20000.0f, Device::cpu);
    adam.load_state(state);
    TrainStep step(net, adam, c, 3);
    Outcome out;
    for (int i = 0; i < steps; ++i) {
      ScheduleValues s;
      s.eps = i >= 5 && i <= 9 ? 0.03f : 0.05f;
      s.kappa = 0.5f;
      s.beta = 0.5f;
      s.lr = 1e-3f;
      const int64_t first = (i % 3) * 12;
      const std::vector<float> batch(xs.begin() + first * 16, xs.begin() + (first + 12) * 16);
      const std::vector<int> batch_labels(labels.begin() + first, labels.begin() + first + 12);
      const Tensor x = Tensor::from_vector(batch, Shape{12, 1, 4, 4}, Device::cuda);
      out.losses.push_back(step.run(x, batch_labels, s, uint64_t(i)).read().loss);
    }
    out.weights = parameter_hash(net);
    out.graphs = step.graph_counts();
    out.relu = relu_layer_stats();
    out.bound_chunks = relax::backsub_chunk_stats().chunks;
    return out;
  };
  // crown, deepz and hbox (dense intermediate bounds on a GPU, counted on the device) run five
  // steps, one captured and one replayed, on fc-2x20's 20-neuron rows (the emulator runs a block
  // of fc-small's 100-neuron intermediate-bound rows in lockstep, 1200 of them per layer: 15 s a
  // step). With --early-stops crown takes the sparse path, which reads the bounds on the host
  // mid-step: its capture is refused (and leaves no statistics behind: they equal eager's).
  // crown on two-conv walks its second convolution backwards from constants kept on the device.
  struct Case {
    std::string net, method;
    int steps, captures, replays;
    bool early_stops = false;
  };
  const Case cases[] = {{"fc-small", "natural", 11, 2, 3},   {"fc-small", "box", 11, 2, 3},
                        {"fc-small", "crown-ibp", 11, 2, 3}, {"fc-small", "pgd", 11, 2, 3},
                        {"fc-small", "sabr", 11, 2, 3},      {"fc-2x20", "crown", 5, 1, 1},
                        {"fc-2x20", "deepz", 5, 1, 1},       {"fc-2x20", "hbox", 5, 1, 1},
                        {"fc-2x20", "crown", 5, 0, 0, true}, {"conv", "crown-ibp", 11, 2, 3},
                        {"two-conv", "crown", 5, 1, 1}};
  for (const Case& k : cases) {
    CAPTURE(k.net);
    CAPTURE(k.method);
    CAPTURE(k.early_stops);
    const Outcome eager = train(k.net, k.method, false, k.steps, k.early_stops);
    const Outcome graph = train(k.net, k.method, true, k.steps, k.early_stops);
    CHECK(graph.losses == eager.losses);
    CHECK(graph.weights == eager.weights);
    CHECK(eager.graphs.captures == 0);
    CHECK(graph.graphs.captures == k.captures);
    CHECK(graph.graphs.replays == k.replays);
    CHECK(graph.graphs.refused.empty() == (k.captures > 0));
    REQUIRE(graph.relu.size() == eager.relu.size());
    for (size_t i = 0; i < eager.relu.size(); ++i) {
      CAPTURE(eager.relu[i].layer);
      CHECK(graph.relu[i].layer == eager.relu[i].layer);
      CHECK(graph.relu[i].pairs == eager.relu[i].pairs);
      CHECK(graph.relu[i].unstable == eager.relu[i].unstable);
      CHECK(graph.relu[i].backsubstituted == eager.relu[i].backsubstituted);
    }
    CHECK(graph.bound_chunks == eager.bound_chunks);
    if (k.net == "fc-2x20") {
      REQUIRE(eager.relu.size() == 2);
      CHECK(eager.relu[1].pairs == uint64_t(12 * 20 * k.steps));  // every step counted, replays too
    }
  }
}

TEST_CASE("train: labels outside the classes stop a step before any device work, naming label and sample") {
  const DatasetSplits data = synthetic_data();
  Network net = build_network("fc-small", Shape{1, 4, 4}, 3, dataset_normalization("folder", &data.train), 4);
  net.set_requires_grad(true);
  Adam adam(net.parameters(), 1e-3f);
  TrainConfig c = small_config("unused");
  TrainStep step(net, adam, c, 3);
  ScheduleValues s;
  s.eps = 0.05f;
  const std::string msg = message_of(
      [&] { step.run(Tensor::zeros(Shape{2, 1, 4, 4}, Device::cpu), std::vector<int>{1, 3}, s, 0); });
  CHECK(msg.find("[train step] label 3 of sample 1 is outside [0, 3)") != std::string::npos);
}

TEST_CASE("train: a --method pgd step updates BatchNorm's running averages once, from the clean batch") {
  // linear 2 -> 3, BatchNorm1d(3), ReLU, linear 3 -> 2. The step's clean pass
  // and its adversarial pass both run in training mode; only the clean one may
  // move the running averages (eth-sri/SABR: the adversarial pass has
  // track_running_stats off). Expected, by hand in double from the first
  // layer's weights: running_mean = 0.9 * 0 + 0.1 * mean_i(W x_i + b).
  Rng rng(57);
  Network net(Shape{2}, {make_linear(2, 3, rng), make_batch_norm(3), make_relu(), make_linear(3, 2, rng)});
  net.set_requires_grad(true);
  const std::vector<float> points{0.1f, 0.9f, 0.4f, 0.3f, 0.8f, 0.6f, 0.2f, 0.2f};
  const std::vector<int> labels{0, 1, 1, 0};
  const std::vector<float> w = net.layers()[0].weight.to_vector(), b = net.layers()[0].bias.to_vector();
  std::vector<double> expected_mean(3, 0.0);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      expected_mean[size_t(j)] += 0.1 * (double(w[size_t(2 * j)]) * points[size_t(2 * i)] +
                                         double(w[size_t(2 * j + 1)]) * points[size_t(2 * i + 1)] + b[size_t(j)]) / 4.0;
  TrainConfig c;
  c.method = "pgd";
  c.l1 = 0;
  Sgd sgd(net.parameters(), 0.0f);  // lr 0: the first layer stays as read above
  TrainStep step(net, sgd, c, 2);
  ScheduleValues s;
  s.eps = 0.2f;
  s.kappa = 0.5f;
  step.run(Tensor::from_vector(points, Shape{4, 2}, Device::cpu), labels, s, 7);
  const std::vector<float> running_mean = net.layers()[1].running_mean.to_vector();
  for (int j = 0; j < 3; ++j) CHECK(running_mean[size_t(j)] == doctest::Approx(expected_mean[size_t(j)]).epsilon(1e-5));
  CHECK_FALSE(net.training());  // the step leaves evaluation mode behind
}

// The label ops against independent references: margin_spec against the host
// builder of relaxations.h (its own loop), count_correct against a count by hand.
TEST_CASE("ops: margin_spec from device labels equals the host builder; count_correct counts first maxima") {
  const std::vector<int> labels{0, 4, 2, 2, 3};
  std::vector<float> as_float(labels.begin(), labels.end());
  for (Device device : test::devices()) {
    CAPTURE(device_name(device));
    const Tensor spec = ops::margin_spec(Tensor::from_vector(as_float, Shape{5}, device), 5);
    CHECK(spec.shape() == Shape{5, 4, 5});
    CHECK(spec.to_vector() == margin_spec(labels, 5, Device::cpu).to_vector());
    // Rows: argmax 4 (label 4: hit); argmax 0 (label 0: hit); a tie of classes 1
    // and 3 (the first wins; label 3: miss); NaN first (std::max_element keeps
    // index 0; label 2: miss).
    const Tensor logits = Tensor::from_vector({0, 1, 2, 3, 4, 9, 1, 0, 0, 0, 0, 7, 0, 7, 0, NAN, 1, 5, 0, 0},
                                              Shape{4, 5}, device);
    CHECK(ops::count_correct(logits, Tensor::from_vector({4, 0, 3, 2}, Shape{4}, device)).item() == 2.0f);
    CHECK(ops::count_correct(logits, Tensor::from_vector({4, 0, 1, 0}, Shape{4}, device)).item() == 4.0f);
    // misclassified: row 0 correct; row 1 beaten by class 0; row 2 tied with class 1 (a tie
    // breaks the sample, as in PGD's host test); row 3 only by its NaN; a label naming no class.
    const Tensor broken = ops::misclassified(logits, Tensor::from_vector({4, 1, 3, 2}, Shape{4}, device));
    CHECK(broken.to_vector() == std::vector<float>{0, 1, 1, 1});
    CHECK(misclassified(logits, {4, 1, 3, 2}) == std::vector<bool>{false, true, true, true});
    CHECK(ops::misclassified(logits, Tensor::from_vector({4, 0, 1, 7}, Shape{4}, device)).to_vector() ==
          std::vector<float>{0, 0, 1, 1});
  }
  CHECK_THROWS_WITH(ops::margin_spec(Tensor::zeros(Shape{2, 2}, Device::cpu), 3),
                    doctest::Contains("[margin_spec] labels are (2,2), expected (N)"));
}
