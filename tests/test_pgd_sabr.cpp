// SABR's training attack (train/pgd.h: step decay, highest-loss iterate, early
// stop), checked on a hand-made 1-D network whose every iterate is computed by
// hand: logits z = (0, a - b |x - c|) through two ReLUs, label 0, so the
// cross-entropy softplus(a - b|x - c|) peaks at x = c and every sign step
// moves toward c (and overshoots it when the step is larger than the gap).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/staging.h"
#include "engine/tape.h"
#include "train/pgd.h"
#include "train/schedule.h"
#include "train/trainer.h"
#include "kernels/gpu_runtime.h"
#include "tests/test_util.h"

using namespace cte;
using namespace cte::train;

namespace {

Layer linear_layer(std::vector<float> w, std::vector<float> b, int64_t out, int64_t in) {
  Layer l;
  l.kind = LayerKind::linear;
  l.weight = Tensor::from_vector(w, Shape{out, in}, Device::cpu);
  l.bias = Tensor::from_vector(b, Shape{out}, Device::cpu);
  return l;
}

// z(x) = (0, a - b |x - c|): h = relu(x - c, c - x), z1 = a - b (h0 + h1).
Network tent_network(float a, float b, float c) {
  std::vector<Layer> layers;
  layers.push_back(linear_layer({1.0f, -1.0f}, {-c, c}, 2, 1));
  layers.push_back(make_relu());
  layers.push_back(linear_layer({0.0f, 0.0f, -b, -b}, {0.0f, a}, 2, 2));
  return Network(Shape{1}, layers);
}

float attack_1d(const Network& net, float x0, const PgdOptions& o) {
  const Tensor x = Tensor::from_vector({x0}, Shape{1, 1}, Device::cpu);
  const PgdResult r = pgd_attack(net, x, {0}, o);
  return r.x_adv.to_vector().at(0);
}

PgdOptions sabr_options() {
  PgdOptions o;
  o.eps = 0.4f;
  o.steps = 8;
  o.step_size = 0.2f;  // 0.5 eps, SABR's relative step
  o.step_decay_at = {0.5, 0.8, 0.9};
  o.step_decay_factor = 0.1f;
  o.random_start = false;  // a known start, so that every iterate is known
  o.keep_highest_loss = true;
  o.track = false;
  o.stop_at_success = false;
  return o;
}

}  // namespace

TEST_CASE("pgd recipe: SABR's step decay x0.1 from steps ceil(0.5 n), ceil(0.8 n), ceil(0.9 n)") {
  PgdOptions o = sabr_options();
  // n = 8: thresholds 4, 7 (ceil 6.4), 8 (ceil 7.2): five steps of 0.2, 0.02 (k = 4..6), 0.002 (k = 7).
  const float want[] = {0.2f, 0.2f, 0.2f, 0.2f, 0.02f, 0.02f, 0.02f, 0.002f};
  for (int k = 0; k < 8; ++k) CHECK(pgd_step_size(o, k) == doctest::Approx(want[k]).epsilon(1e-6));
  o.steps = 10;  // thresholds 5, 8, 9
  CHECK(pgd_step_size(o, 4) == doctest::Approx(0.2f));
  CHECK(pgd_step_size(o, 5) == doctest::Approx(0.02f));
  CHECK(pgd_step_size(o, 8) == doctest::Approx(0.002f));
  CHECK(pgd_step_size(o, 9) == doctest::Approx(0.0002f));
  o.step_decay_at.clear();
  CHECK(pgd_step_size(o, 9) == 0.2f);
}

TEST_CASE("pgd recipe: the decayed steps land where the hand computation says (monotone loss)") {
  // c far outside the ball: every step goes right. x0 = 0.2, eps 0.7 (ball [0, 0.9]), step 0.1:
  // 0.2 + 4 x 0.1 + 3 x 0.01 + 0.001 = 0.631; without decay the 8 steps reach the ball's edge 0.9.
  const Network net = tent_network(-1.0f, 1.0f, 5.0f);
  PgdOptions o = sabr_options();
  o.eps = 0.7f;
  o.step_size = 0.1f;
  o.keep_highest_loss = false;
  CHECK(attack_1d(net, 0.2f, o) == doctest::Approx(0.631f).epsilon(1e-5));
  // The loss grows at every step, but the final iterate is only checked for misclassification (as
  // in the official code): the highest-loss iterate among x0..x7 is x7 = 0.63.
  o.keep_highest_loss = true;
  CHECK(attack_1d(net, 0.2f, o) == doctest::Approx(0.63f).epsilon(1e-5));
  o.step_decay_at.clear();
  o.keep_highest_loss = false;
  CHECK(attack_1d(net, 0.2f, o) == doctest::Approx(0.9f).epsilon(1e-6));
}

TEST_CASE("pgd recipe: the highest-loss iterate is kept, not the last") {
  // Peak at c = 0.75, never misclassified (a = -1). From x0 = 0.5 in the ball [0.1, 0.9]:
  // 0.7, 0.9 (clipped), 0.7, 0.9, then 0.88, 0.86, 0.84 and 0.838. The closest to c, hence the
  // highest loss, is x1 = 0.7 (x3 ties it; the first is kept); the last iterate is 0.838.
  const Network net = tent_network(-1.0f, 1.0f, 0.75f);
  PgdOptions o = sabr_options();
  CHECK(attack_1d(net, 0.5f, o) == doctest::Approx(0.7f).epsilon(1e-5));
  o.keep_highest_loss = false;
  CHECK(attack_1d(net, 0.5f, o) == doctest::Approx(0.838f).epsilon(1e-5));
  CHECK(tape_size() == 0);
}

TEST_CASE("pgd recipe: a misclassified sample keeps its latest iterate; early stop once all are") {
  // a = +1: z1 = 1 - |x - 0.75| > 0 = z0 over the whole ball, so x0 is already misclassified.
  const Network net = tent_network(1.0f, 1.0f, 0.75f);
  PgdOptions o = sabr_options();
  CHECK(attack_1d(net, 0.5f, o) == doctest::Approx(0.838f).epsilon(1e-5));  // its latest iterate
  o.stop_when_all_misclassified = true;
  CHECK(attack_1d(net, 0.5f, o) == doctest::Approx(0.5f));  // stopped at x0
  // Two samples: one broken at x0, one never (its own start far below c): no early stop,
  // and each keeps its own answer.
  const Tensor x = Tensor::from_vector({0.5f, 0.5f}, Shape{2, 1}, Device::cpu);
  const Network tent = tent_network(-1.0f, 1.0f, 0.75f);
  const PgdResult r = pgd_attack(tent, x, {0, 1}, o);  // label 1: z1 = -1 - |x - c| < 0 = z0, misclassified
  CHECK(r.broken.to_vector() == std::vector<float>{0, 1});
  const std::vector<float> adv = r.x_adv.to_vector();
  CHECK(adv[0] == doctest::Approx(0.7f).epsilon(1e-5));
  // Label 1's loss softplus(z0 - z1) = softplus(1 + |x - c|) grows away from c: its steps go left,
  // 0.3, 0.1 (clipped), then stay; misclassified throughout, it keeps its latest iterate, 0.1.
  CHECK(adv[1] == doctest::Approx(0.1f).epsilon(1e-5));
}

TEST_CASE("schedule: the smoothed eps ramp (exponential, then linear, C^1 at the mid point)") {
  // mid 0.25, beta 4: alpha = 1 / (0.25^3 (4 x 0.75 + 0.25)) = 1 / (3.25 / 64) = 64 / 3.25, so
  // f(0.25) = alpha / 256 = 1 / 13, then the line from (0.25, 1/13) to (1, 1).
  const double alpha = 64.0 / 3.25;
  CHECK(smoothed_ramp(0.0) == 0.0);
  CHECK(smoothed_ramp(0.1) == doctest::Approx(alpha * 1e-4).epsilon(1e-12));
  CHECK(smoothed_ramp(0.25) == doctest::Approx(1.0 / 13.0).epsilon(1e-12));
  CHECK(smoothed_ramp(0.625) == doctest::Approx(1.0 / 13.0 + (12.0 / 13.0) * 0.5).epsilon(1e-12));
  CHECK(smoothed_ramp(1.0) == 1.0);
  CHECK(smoothed_ramp(2.0) == 1.0);
  // Continuous with a continuous slope at mid: one-sided difference quotients agree.
  const double h = 1e-6;
  const double left = (smoothed_ramp(0.25) - smoothed_ramp(0.25 - h)) / h;
  const double right = (smoothed_ramp(0.25 + h) - smoothed_ramp(0.25)) / h;
  CHECK(left == doctest::Approx(right).epsilon(1e-4));
  CHECK(right == doctest::Approx((12.0 / 13.0) / 0.75).epsilon(1e-6));
  // Monotone on a fine grid.
  double previous = 0.0;
  for (int i = 1; i <= 1000; ++i) {
    const double v = smoothed_ramp(i / 1000.0);
    CHECK(v >= previous);
    previous = v;
  }
}

TEST_CASE("train attack: --method pgd/sabr take SABR's attack by default, relative to the ramped eps") {
  TrainConfig c;
  c.method = "sabr";
  c.epochs = 10;
  c.warmup = 1;
  c.rampup = 4;
  c.eps_train = 0.2;
  // Epoch 2 (0-based), batch 0 of 10: t = 2, r = (2 - 1) / 4 = 0.25, eps = 0.05.
  const ScheduleValues s = schedule_at(c, 2, 0, 10);
  REQUIRE(s.eps == doctest::Approx(0.05f));
  const PgdOptions o = training_pgd_options(c, s.eps);
  CHECK(o.eps == s.eps);
  CHECK(o.steps == 8);
  CHECK(o.step_size == doctest::Approx(0.025f).epsilon(1e-6));  // 0.5 x 0.05, not an absolute step
  CHECK(o.step_decay_at == std::vector<double>{0.5, 0.8, 0.9});
  CHECK(o.step_decay_factor == doctest::Approx(0.1f));
  CHECK(o.random_start);
  CHECK(o.keep_highest_loss);
  CHECK(o.stop_when_all_misclassified);
  CHECK(pgd_step_size(o, 7) == doctest::Approx(0.025e-2f).epsilon(1e-5));  // thresholds 4 and ceil(6.4) = 7 passed
  // Later in the ramp-up the step follows eps: t = 4, eps 0.15, step 0.075.
  CHECK(training_pgd_options(c, schedule_at(c, 4, 0, 10).eps).step_size == doctest::Approx(0.075f).epsilon(1e-6));
  // The former behaviour, by flags: 100 steps of an absolute 0.01, the last iterate, no decay.
  c.train_pgd_steps = 100;
  c.train_pgd_step_size = 0.01;
  c.train_pgd_step_unit = "absolute";
  c.train_pgd_decay_at.clear();
  c.train_pgd_keep_highest_loss = false;
  c.train_pgd_early_stop = false;
  const PgdOptions old = training_pgd_options(c, s.eps);
  CHECK(old.steps == 100);
  CHECK(old.step_size == doctest::Approx(0.01f));
  CHECK(pgd_step_size(old, 99) == doctest::Approx(0.01f));
  CHECK_FALSE(old.keep_highest_loss);
  CHECK_FALSE(old.stop_when_all_misclassified);
  c.train_pgd_steps = 0;  // 0: --pgd-steps
  c.pgd_steps = 37;
  CHECK(training_pgd_options(c, s.eps).steps == 37);
}

TEST_CASE("train attack: the trainer's options run exactly n decayed steps (hand-computed end point)") {
  // Loss monotone to the right (c = 5 far outside), never misclassified. eps 0.4 and step 0.1 eps
  // = 0.04 from x0 = 0.3 (ball [0, 0.7]): four steps of 0.04, three of 0.004, one of 0.0004.
  const Network net = tent_network(-1.0f, 1.0f, 5.0f);
  TrainConfig c;
  c.method = "pgd";
  c.train_pgd_step_size = 0.1;
  c.train_pgd_random_start = false;  // a known start
  PgdOptions o = training_pgd_options(c, 0.4f);
  // The highest-loss iterate among x0..x7 (the 8th step's point is only checked for misclassification).
  CHECK(attack_1d(net, 0.3f, o) == doctest::Approx(0.3f + 0.16f + 0.012f).epsilon(1e-5));
  c.train_pgd_keep_highest_loss = false;  // the last iterate, after all 8 steps
  o = training_pgd_options(c, 0.4f);
  CHECK(attack_1d(net, 0.3f, o) == doctest::Approx(0.3f + 0.16f + 0.012f + 0.0004f).epsilon(1e-5));
  c.train_pgd_steps = 3;  // decay from steps ceil(1.5) = 2, ceil(2.4) = 3, ceil(2.7) = 3: 0.04, 0.04, 0.004
  o = training_pgd_options(c, 0.4f);
  CHECK(attack_1d(net, 0.3f, o) == doctest::Approx(0.3f + 0.08f + 0.004f).epsilon(1e-5));
}

TEST_CASE("train attack: early stop without keep-highest-loss returns the iterate that broke the batch") {
  // z1 = 1 - 4 |x - 0.5|: misclassified (z1 >= z0 = 0) iff |x - 0.5| <= 0.25. From x0 = 0.2
  // (z1 = -0.2, correct), steps of 0.1 right: x1 = 0.3 is misclassified (z1 = 0.2).
  const Network net = tent_network(1.0f, 4.0f, 0.5f);
  PgdOptions o;
  o.eps = 0.4f;
  o.steps = 8;
  o.step_size = 0.1f;
  o.random_start = false;
  o.track = false;
  o.stop_at_success = false;
  o.stop_when_all_misclassified = true;
  CHECK(attack_1d(net, 0.2f, o) == doctest::Approx(0.3f).epsilon(1e-6));
  o.stop_when_all_misclassified = false;  // on to the peak and around it
  CHECK(attack_1d(net, 0.2f, o) > 0.35f);
  CHECK(tape_size() == 0);
}

TEST_CASE("train attack: on the device without host round trips, the GPU's late early stop changing nothing") {
  // z1 = 1 - 4 |x - 0.5|: label 0 is broken iff |x - 0.5| <= 0.25. Steps of 0.1 to the right from
  // 0.2, 0.1, 0.0 break the samples at x1, x2, x3 (0.3 each), so the batch is all broken at
  // iterate 3 and the attack stops there: each sample's latest iterate, 0.2 + 0.3 = 0.5 (the peak,
  // where the gradient's sign is 0), 0.4 and 0.3. On a GPU the host sees the stop flag one step
  // late and runs step 4 too, which must change nothing: CUDA (emulated) equals the CPU bit for bit.
  const Network net = tent_network(1.0f, 4.0f, 0.5f);
  const std::vector<float> starts{0.2f, 0.1f, 0.0f};
  for (bool highest_loss : {true, false}) {
    for (bool random_start : {false, true}) {
      CAPTURE(highest_loss);
      CAPTURE(random_start);
      PgdOptions o = sabr_options();
      o.step_decay_at.clear();
      o.step_size = 0.1f;
      o.keep_highest_loss = highest_loss;
      o.stop_when_all_misclassified = true;
      o.random_start = random_start;
      o.seed = 5;
      std::vector<std::vector<float>> answers;
      for (Device device : test::devices()) {
        CAPTURE(device_name(device));
        Network on_device = net;
        on_device.to(device);
        const Tensor x = Tensor::from_vector(starts, Shape{3, 1}, device);
        UploadStaging staging;
        o.labels_on_device = Tensor::zeros(Shape{3}, device);
        o.staging = &staging;
        const gpu::HostSyncCounters before = gpu::host_sync_counters();
        const PgdResult r = pgd_attack(on_device, x, {0, 0, 0}, o);
        const gpu::HostSyncCounters after = gpu::host_sync_counters();
        if (device == Device::cuda) {
          CHECK(after.device_to_host - before.device_to_host == 0);
          CHECK(after.host_to_device - before.host_to_device == 0);
          CHECK(after.synchronizes - before.synchronizes == 0);
        }
        answers.push_back(r.x_adv.to_vector());
        if (!random_start) {
          CHECK(r.broken.to_vector() == std::vector<float>{1, 1, 1});
          CHECK(answers.back()[0] == doctest::Approx(0.5f).epsilon(1e-5));
          CHECK(answers.back()[1] == doctest::Approx(0.4f).epsilon(1e-5));
          CHECK(answers.back()[2] == doctest::Approx(0.3f).epsilon(1e-5));
        }
        for (size_t i = 0; i < starts.size(); ++i) {
          CHECK(answers.back()[i] >= std::max(0.0f, starts[i] - o.eps));
          CHECK(answers.back()[i] <= starts[i] + o.eps);
        }
        CHECK(tape_size() == 0);
        // As a CUDA graph runs it: the random start's draws given as a tensor, and all 8 steps
        // run with no flag read (steps 4-7 past the stop, frozen): the same answer.
        PgdOptions captured = o;
        captured.read_early_stop = false;
        if (random_start)
          captured.start_draws = Tensor::from_vector(pgd_start_draws(o.seed, 3), Shape{3, 1}, device);
        answers.push_back(pgd_attack(on_device, x, {0, 0, 0}, captured).x_adv.to_vector());
        CHECK(tape_size() == 0);
      }
      for (size_t d = 1; d < answers.size(); ++d) CHECK(answers[d] == answers[0]);
    }
  }
  // Without the early stop the attack goes on past x3 (to the peak and around it).
  PgdOptions o = sabr_options();
  o.step_decay_at.clear();
  o.step_size = 0.1f;
  o.keep_highest_loss = false;
  const Tensor x = Tensor::from_vector(starts, Shape{3, 1}, Device::cpu);
  CHECK(pgd_attack(net, x, {0, 0, 0}, o).x_adv.to_vector()[2] > 0.35f);
  // Draws must match the batch; they and the flagless run are the training attack's.
  o.start_draws = Tensor::zeros(Shape{2, 1}, Device::cpu);
  CHECK_THROWS_WITH(pgd_attack(net, x, {0, 0, 0}, o), doctest::Contains("[pgd] start_draws are (2,1) on cpu but the input is (3,1)"));
  o.start_draws = Tensor();
  PgdOptions evaluation;
  evaluation.read_early_stop = false;
  CHECK_THROWS_WITH(pgd_attack(net, x, {0, 0, 0}, evaluation), doctest::Contains("for the training attack"));
  // Labels on the device must match the batch.
  o.labels_on_device = Tensor::zeros(Shape{2}, Device::cpu);
  CHECK_THROWS_WITH(pgd_attack(net, x, {0, 0, 0}, o), doctest::Contains("[pgd] labels_on_device is (2) on cpu"));
}
