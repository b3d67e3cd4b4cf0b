// End-to-end smoke test of the engine: a small MLP learns a synthetic,
// separable 3-class problem with Adam, on the CPU and on the CUDA backend
// (emulated in CI), and both backends trace the same loss curve.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/tape.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

struct Problem {
  std::vector<float> x, y;  // (n, 2), (n)
  int64_t n;
};

// Three well-separated blobs at angles 0, 120 and 240 degrees.
Problem make_blobs(int64_t n, uint64_t seed) {
  Rng rng(seed);
  Problem p{{}, {}, n};
  for (int64_t i = 0; i < n; ++i) {
    const int label = int(rng.below(3));
    const double angle = 2.0 * M_PI * label / 3.0;
    p.x.push_back(float(2.0 * std::cos(angle) + 0.5 * rng.normal()));
    p.x.push_back(float(2.0 * std::sin(angle) + 0.5 * rng.normal()));
    p.y.push_back(float(label));
  }
  return p;
}

struct RunResult {
  std::vector<float> losses;
  double accuracy;
};

RunResult train_mlp(Device device, int steps) {
  Rng init(5);
  std::vector<Layer> layers{make_linear(2, 32, init), make_relu(), make_linear(32, 32, init), make_relu(),
                            make_linear(32, 3, init)};
  Network net(Shape{2}, std::move(layers));
  net.to(device);
  net.set_requires_grad(true);
  Adam adam(net.parameters(), 1e-2f);
  const Problem train = make_blobs(64 * 8, 1);
  RunResult result;
  for (int step = 0; step < steps; ++step) {
    const int64_t batch = 64, start = (step % 8) * batch;
    const Tensor x = Tensor::from_vector({train.x.begin() + start * 2, train.x.begin() + (start + batch) * 2},
                                         Shape{batch, 2}, device);
    const Tensor y = Tensor::from_vector({train.y.begin() + start, train.y.begin() + start + batch}, Shape{batch}, device);
    adam.zero_grad();
    const Tensor loss = ops::mean(ops::softmax_cross_entropy(net.forward(x), y));
    result.losses.push_back(loss.item());
    backward(loss);
    adam.step();
  }
  const Problem test = make_blobs(600, 2);
  NoGrad no_grad;
  const std::vector<float> logits =
      net.forward(Tensor::from_vector(test.x, Shape{test.n, 2}, device)).to_vector();
  int correct = 0;
  for (int64_t i = 0; i < test.n; ++i) {
    int best = 0;
    for (int k = 1; k < 3; ++k)
      if (logits[size_t(i * 3 + k)] > logits[size_t(i * 3 + best)]) best = k;
    correct += best == int(test.y[size_t(i)]);
  }
  result.accuracy = double(correct) / double(test.n);
  return result;
}

}  // namespace

TEST_CASE("smoke: an MLP learns a separable problem (>95%), and CUDA traces the CPU's loss curve") {
  const RunResult cpu = train_mlp(Device::cpu, 60);
  MESSAGE("CPU: first loss " << cpu.losses.front() << ", last " << cpu.losses.back() << ", test accuracy "
                             << cpu.accuracy);
  CHECK(cpu.accuracy > 0.95);
  CHECK(cpu.losses.back() < 0.5f * cpu.losses.front());
  if (!cuda_available()) {
    MESSAGE("no CUDA device: the CUDA half of the smoke test is skipped");
    return;
  }
  const RunResult gpu = train_mlp(Device::cuda, 60);
  CHECK(gpu.accuracy > 0.95);
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(gpu.losses[i] - cpu.losses[i]) <= 1e-4);
  }
}

}  // namespace cte::test
