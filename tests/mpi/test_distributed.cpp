// Tests of data-parallel training under MPI (train/distributed.h), run by
// tests/run_all.sh as `mpirun --oversubscribe -np 2 build/test/tests_mpi`
// (ASan/UBSan build; every rank runs every case, so the collectives match).
// References are independent of the code under test: hand-computed
// reductions, and the gradient of the whole batch computed by one process.
// Started without mpirun it is one rank, and the cases that need two say so.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "kernels/gpu_runtime.h"
#include "tests/test_util.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/networks.h"
#include "train/trainer.h"

using namespace cte;
using namespace cte::train;
using cte::test::mismatch;

namespace {

dist::Communicator& world() { return dist::world(); }

bool two_ranks() {
  if (world().size() == 2) return true;
  MESSAGE("needs exactly 2 MPI ranks (mpirun -np 2), has " << world().size() << ": skipped");
  return false;
}

// count random 1x4x4 images in [0, 1] with labels in 0..2 (the same on every rank).
void random_batch(int64_t count, uint64_t seed, std::vector<float>& images, std::vector<int>& labels) {
  Rng rng(seed);
  images = test::random_values(count * 16, rng, 0.0f, 1.0f);
  labels.clear();
  for (int64_t i = 0; i < count; ++i) labels.push_back(int(rng.next_u64() % 3));
}

TrainConfig step_config(const std::string& method) {
  TrainConfig c;
  c.method = method;
  c.net = "fc-small";
  c.l1 = 1e-3;  // each rank's optimiser adds it after the gradient sum: once
  c.l2 = 1e-2;  // rank 0 alone adds it before the sum: once
  c.pgd_steps = 2;
  return c;
}

// One SGD step with learning rate 1 on `images`: the parameters move by
// exactly minus the gradient, which is returned (flattened).
std::vector<float> gradient_of_step(dist::Communicator& comm, const std::string& method, Device device,
                                    std::vector<float> images, std::vector<int> labels, StepStats* stats) {
  Network net = build_network("fc-small", Shape{1, 4, 4}, 3, Normalization{{0.5f}, {0.25f}}, 7);
  net.to(device);
  net.set_requires_grad(true);
  std::vector<float> before;
  for (const Tensor& p : net.parameters())
    for (float v : p.to_vector()) before.push_back(v);
  Sgd sgd(net.parameters(), 1.0f);
  const TrainConfig c = step_config(method);
  TrainStep step(net, sgd, c, 3, comm);
  ScheduleValues s;
  s.eps = 0.05f;
  s.kappa = 0.5f;
  s.beta = 0.5f;
  s.lr = 1.0f;
  const int64_t count = int64_t(labels.size());
  const Tensor x = Tensor::from_vector(images, Shape{count, 1, 4, 4}, device);
  *stats = step.run(x, labels, s, 11);
  std::vector<float> gradient;
  size_t i = 0;
  for (const Tensor& p : net.parameters())
    for (float v : p.to_vector()) gradient.push_back(before[i++] - v);
  return gradient;
}

// One step on `count` random images: the whole batch by one process (CPU)
// against the shards on `device` summed over the ranks. The tolerance, as a
// fraction of the largest gradient: the shards' gradients are summed in
// another order than one process sums the whole batch (and each shard's mean
// is rescaled), so they agree to float rounding, a few ulp: 1e-5 (1e-4 when
// the CUDA kernels also differ from the CPU's). A normalisation slip (the
// shard's mean unweighted, the L1 or L2 term on every rank) is off by a factor,
// far outside it.
void check_shards_sum_to_whole(const std::string& method, Device device, int64_t count, uint64_t seed,
                               double tolerance) {
  std::vector<float> images;
  std::vector<int> labels;
  random_batch(count, seed, images, labels);
  StepStats whole_stats, shard_stats;
  const std::vector<float> whole =
      gradient_of_step(dist::single_process(), method, Device::cpu, images, labels, &whole_stats);
  dist::keep_shard(world(), images, labels);
  const dist::Range mine = dist::shard_range(count, world().rank(), world().size());
  CHECK(int64_t(labels.size()) == mine.size());
  const std::vector<float> summed = gradient_of_step(world(), method, device, images, labels, &shard_stats);
  float largest = 0;
  for (float g : whole) largest = std::max(largest, std::fabs(g));
  REQUIRE(largest > 0.0f);
  CHECK_CLOSE_VEC(summed, whole, tolerance * largest, 0.0);
  CHECK(shard_stats.count == count);
  const StepStats::Host shard_host = shard_stats.read(), whole_host = whole_stats.read();
  CHECK(shard_host.correct == whole_host.correct);
  CHECK(shard_host.loss == doctest::Approx(whole_host.loss).epsilon(1e-5));
  CHECK(shard_host.finite);
}

}  // namespace

TEST_CASE("mpi: reductions, gather and broadcast against hand-computed values") {
  dist::Communicator& comm = world();
  const int r = comm.rank(), n = comm.size();
  double d[2] = {double(r + 1), 0.5};
  comm.sum(d, 2);
  CHECK(d[0] == double(n * (n + 1) / 2));
  CHECK(d[1] == 0.5 * n);
  int64_t k[1] = {int64_t(10 * r + 1)};
  comm.sum(k, 1);
  CHECK(k[0] == 10 * n * (n - 1) / 2 + n);
  float m[2] = {float(r), -float(r)};
  comm.min(m, 2);
  CHECK(m[0] == 0.0f);
  CHECK(m[1] == -float(n - 1));
  const std::vector<uint64_t> all = comm.gather(uint64_t(100 + r));
  REQUIRE(all.size() == size_t(n));
  for (int i = 0; i < n; ++i) CHECK(all[size_t(i)] == uint64_t(100 + i));
  char text[8] = "rank x";
  if (r == 0) text[5] = 'Z';
  comm.broadcast(text, sizeof text, 0);
  CHECK(std::string(text) == "rank Z");
  CHECK(dist::any_rank(comm, r == n - 1));
  CHECK(!dist::any_rank(comm, false));
}

TEST_CASE("mpi: a rank whose parameters differ stops every rank with the hashes named") {
  if (!two_ranks()) return;
  Network net = build_network("fc-small", Shape{1, 4, 4}, 3, Normalization{{0.5f}, {0.25f}}, 3);
  CHECK_NOTHROW(dist::check_parameters_agree(world(), net, "after epoch 1"));
  if (world().rank() == 1) {
    Tensor w = net.parameters()[0];
    std::vector<float> v = w.to_vector();
    v[0] += 1e-6f;
    w.copy_from(Tensor::from_vector(v, w.shape(), Device::cpu));
  }
  std::string message;
  try {
    dist::check_parameters_agree(world(), net, "after epoch 2");
  } catch (const std::exception& e) {
    message = e.what();
  }
  CHECK(message.find("[train] the parameters or BatchNorm running averages differ across MPI ranks after epoch 2 "
                     "(fnv1a64: rank 0 ") == 0);
  CHECK(message.find(", rank 1 ") != std::string::npos);
  CHECK_THROWS_WITH(dist::check_same_on_all_ranks(world(), uint64_t(world().rank()), "resume", "the checkpoint read"),
                    "[resume] the checkpoint read differs across MPI ranks (rank 0 0, rank 1 1): every rank must "
                    "see the same files (a shared file system) and flags");
}

TEST_CASE("mpi: shards are contiguous and as even as possible (hand-computed)") {
  CHECK(dist::shard_range(7, 0, 2).begin == 0);
  CHECK(dist::shard_range(7, 0, 2).end == 4);
  CHECK(dist::shard_range(7, 1, 2).begin == 4);
  CHECK(dist::shard_range(7, 1, 2).end == 7);
  CHECK(dist::shard_range(1, 1, 2).size() == 0);
  CHECK(dist::shard_range(10, 2, 4).begin == 6);  // 3, 3, 2, 2
  CHECK(dist::shard_range(10, 3, 4).end == 10);
}

TEST_CASE("mpi: the summed gradient of the shards is the whole batch's (box, crown-ibp, crown, natural)") {
  if (!two_ranks()) return;
  for (const std::string method : {"natural", "box", "crown-ibp", "crown"}) {
    CAPTURE(method);
    check_shards_sum_to_whole(method, Device::cpu, 7, 5, 1e-5);  // shards of 4 and 3
  }
}

TEST_CASE("mpi: a rank with an empty shard (last batch smaller than the rank count) still adds up") {
  if (!two_ranks()) return;
  check_shards_sum_to_whole("box", Device::cpu, 1, 9, 1e-5);
}

TEST_CASE("mpi: CUDA gradients (emulated device: staged through the host) sum like the CPU's") {
  if (!two_ranks()) return;
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  check_shards_sum_to_whole("box", Device::cuda, 5, 13, 1e-4);
}

namespace {

// BatchNorm on the input itself (so its batch statistics are the pixels'),
// a conv, BatchNorm2d over its 2 channels, a linear layer: (1, 4, 4) -> 3.
Network batch_norm_net() {
  Rng rng(17);
  std::vector<Layer> layers{make_batch_norm(1), make_conv(1, 2, 3, 1, 1, rng), make_batch_norm(2), make_relu(),
                            make_flatten(), make_linear(32, 3, rng)};
  return Network(Shape{1, 4, 4}, layers);
}

// The running averages of every BatchNorm layer after one training step on
// `images` (this rank's shard under `comm`), flattened layer by layer.
std::vector<float> running_averages_after_step(dist::Communicator& comm, const std::string& method,
                                               std::vector<float> images, std::vector<int> labels) {
  Network net = batch_norm_net();
  net.set_requires_grad(true);
  Sgd sgd(net.parameters(), 0.1f);
  TrainStep step(net, sgd, step_config(method), 3, comm);
  ScheduleValues s;
  s.eps = 0.05f;
  s.kappa = 0.5f;
  s.lr = 0.1f;
  const int64_t count = int64_t(labels.size());
  step.run(Tensor::from_vector(images, Shape{count, 1, 4, 4}, Device::cpu), labels, s, 3);
  std::vector<float> out;
  for (const Layer& layer : net.layers())
    if (layer.running_mean.defined())
      for (const Tensor* t : {&layer.running_mean, &layer.running_var})
        for (float v : t->to_vector()) out.push_back(v);
  return out;
}

}  // namespace

TEST_CASE("mpi: BatchNorm's running averages are updated with the global batch's statistics, the same on every rank") {
  if (!two_ranks()) return;
  for (const int64_t count : {int64_t(7), int64_t(1)}) {
    for (const std::string method : {"natural", "box"}) {
      CAPTURE(count);
      CAPTURE(method);
      std::vector<float> images;
      std::vector<int> labels;
      random_batch(count, 23 + uint64_t(count), images, labels);
      // Hand-computed for the first layer (BatchNorm on the pixels): momentum 0.1 from mean 0, variance 1,
      // with the whole batch's mean and unbiased variance.
      double sum = 0, sum_sq = 0;
      for (float v : images) sum += v;
      const double m = double(images.size()), mean = sum / m;
      for (float v : images) sum_sq += (v - mean) * (v - mean);
      const double expected_mean = 0.1 * mean, expected_var = 0.9 + 0.1 * sum_sq / (m - 1);
      const std::vector<float> whole = running_averages_after_step(dist::single_process(), method, images, labels);
      dist::keep_shard(world(), images, labels);
      const std::vector<float> sharded = running_averages_after_step(world(), method, images, labels);
      REQUIRE(sharded.size() == 2 + 2 * 2);
      CHECK(sharded[0] == doctest::Approx(expected_mean).epsilon(1e-5));
      CHECK(sharded[1] == doctest::Approx(expected_var).epsilon(1e-5));
      // The conv's channels: their inputs were normalised by the first layer with each shard's
      // statistics, not the whole batch's, so they are near one process's, not equal.
      CHECK_CLOSE_VEC(sharded, whole, 1e-3, 2e-2);  // measured: 1e-4 apart
      for (size_t i = 2; i < sharded.size(); ++i) CHECK(sharded[i] != (i < 4 ? 0.0f : 1.0f));  // moved from 0 and 1
      // Every rank holds the same values (the check training runs after every epoch).
      Network agreed = batch_norm_net();
      size_t i = 0;
      for (Layer& layer : agreed.layers())
        if (layer.running_mean.defined())
          for (Tensor* t : {&layer.running_mean, &layer.running_var}) {
            std::vector<float> v(sharded.begin() + i, sharded.begin() + i + size_t(t->numel()));
            i += v.size();
            t->copy_from(Tensor::from_vector(v, t->shape(), Device::cpu));
          }
      CHECK_NOTHROW(dist::check_parameters_agree(world(), agreed, "after the step"));
    }
  }
}

TEST_CASE("mpi: ranks whose BatchNorm running averages differ are stopped") {
  if (!two_ranks()) return;
  Network net = batch_norm_net();
  if (world().rank() == 1) net.layers()[0].running_var.copy_from(Tensor::from_vector({1.5f}, Shape{1}, Device::cpu));
  CHECK_THROWS(dist::check_parameters_agree(world(), net, "after epoch 1"));
}

TEST_CASE("mpi: evaluation split across ranks counts exactly what one process counts") {
  Dataset test;
  test.name = "folder";
  test.channels = 1;
  test.height = 4;
  test.width = 4;
  test.num_classes = 3;
  Rng rng(21);
  for (int i = 0; i < 11 * 16; ++i) test.images.push_back(uint8_t(rng.next_u64() % 256));
  for (int i = 0; i < 11; ++i) test.labels.push_back(int(rng.next_u64() % 3));
  const Network net = build_network("fc-small", Shape{1, 4, 4}, 3, Normalization{{0.5f}, {0.25f}}, 5);
  EvalOptions o;
  o.eps = {0.0f, 0.01f};
  o.relaxations = {Relaxation::box, Relaxation::crown};
  o.pgd_options.steps = 3;
  o.batch_size = 3;  // 4 batches: ranks 0 and 1 take two each
  o.comm = &dist::single_process();
  const EvalReport one = evaluate(net, test, o);
  o.comm = &world();
  const EvalReport split = evaluate(net, test, o);
  CHECK(split.n == 11);
  CHECK(split.correct == one.correct);
  REQUIRE(split.radii.size() == one.radii.size());
  for (size_t i = 0; i < one.radii.size(); ++i) {
    CHECK(split.radii[i].pgd_robust == one.radii[i].pgd_robust);
    CHECK(split.radii[i].certified == one.radii[i].certified);
    for (size_t k = 0; k < one.radii[i].smallest_margin.size(); ++k)
      CHECK(split.radii[i].smallest_margin[k] == one.radii[i].smallest_margin[k]);
  }
  // eps 0: every correct image certifies (a check that the counts are not all zero).
  CHECK(one.radii[0].certified[0].second == one.correct);
}

int main(int argc, char** argv) {
  cte::dist::Session mpi(argc, argv);
  cte::set_poison_new_tensors(true);
  cte::gpu::enable_emulator();
  doctest::Context context(argc, argv);
  // Rank 0 reports; the other ranks' failures still set the exit status.
  if (!cte::dist::world().is_root()) context.setOption("out", "/dev/null");
  const int failed = context.run();
  int64_t any_failed = failed ? 1 : 0;
  cte::dist::world().sum(&any_failed, 1);
  return any_failed ? 1 : 0;
}
