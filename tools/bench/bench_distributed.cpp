// bench_distributed: data-parallel training steps (train/distributed.h).
// Run it as one process and under `mpirun -np N`: every rank takes its shard
// of a global batch (synthetic MNIST-shaped data, as bench_train) and runs the
// trainer's own TrainStep, whose gradients are summed across the ranks. For
// Box, CROWN-IBP and CROWN on FC and CONV it prints the global images/s, the
// time per step, the part of it spent in the gradient reduction (waiting for
// the slowest rank included), the bytes each rank reduces per step, and a
// projection to 8 ranks with a ring all-reduce:
//   t_allreduce(8) = 2 (8 - 1) latency + 2 (8 - 1) / 8 bytes / bandwidth
//   efficiency(8) = t_compute / (t_compute + t_allreduce(8))
// where t_compute is this run's compute time per step of one rank (weak
// scaling: each of the 8 keeps this rank's shard). The defaults for latency
// and bandwidth are those of NVLink GPUs under NCCL (see the README's
// Benchmarks section, which applies the model to measured GPU step times).
//
// Usage: [mpirun -np N] bench_distributed [--nets fc,conv] [--methods box,crown-ibp,crown]
//        [--batch 100] [--steps 20] [--threads 1] [--link-gb-s 150] [--link-latency-us 5]
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/networks.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  using namespace cte;
  using namespace cte::train;
  dist::Session mpi(argc, argv);
  dist::Communicator& comm = dist::world();
  CLI::App app{"bench_distributed: data-parallel training steps, one process or under mpirun -np N"};
  std::vector<std::string> nets{"fc", "conv"};
  std::vector<std::string> methods{"box", "crown-ibp", "crown"};
  int batch = 100, steps = 20, threads = 1;
  double link_gb_s = 150.0, link_latency_us = 5.0;
  std::string device_name = "cpu";
  app.add_option("--nets", nets, "networks to time")->delimiter(',');
  app.add_option("--methods", methods, "training methods to time")->delimiter(',');
  app.add_option("--batch", batch, "global batch size (split across the ranks)");
  app.add_option("--steps", steps, "timed steps per (network, method), after two warm-up steps");
  app.add_option("--threads", threads, "OpenMP and BLAS threads per rank (0: the default)");
  app.add_option("--device", device_name, "cpu | cuda | auto");
  app.add_option("--link-gb-s", link_gb_s, "projection: all-reduce bandwidth per rank, GB/s");
  app.add_option("--link-latency-us", link_latency_us, "projection: latency of one all-reduce hop, microseconds");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return comm.is_root() ? app.exit(e) : 1;
  }

  TrainConfig config;
  config.threads = threads;
  config.device = device_name;
  config.batch_size = batch;
  Device device;
  try {
    device = prepare_runtime(config);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return dist::exit_after_error(1);
  }
  const bool root = comm.is_root();
  if (root) {
    std::fprintf(stderr, "%s; %s\n", device_banner(device).c_str(), comm.name().c_str());
    std::printf("bench_distributed: %d rank%s, global batch %d (shards of %lld..%lld), %d steps, synthetic 1x28x28, "
                "eps 0.1, kappa 0.5, beta 0.5\n",
                comm.size(), comm.size() == 1 ? "" : "s", batch,
                static_cast<long long>(dist::shard_range(batch, comm.size() - 1, comm.size()).size()),
                static_cast<long long>(dist::shard_range(batch, 0, comm.size()).size()), steps);
    std::printf("%-5s %-10s %10s %9s %10s %8s %12s %14s\n", "net", "method", "images/s", "ms/step", "reduce ms",
                "reduce%", "bytes/step", "8-rank effic.");
  }

  Rng rng(1);
  std::vector<float> images(size_t(batch) * 784);
  for (float& v : images) v = float(rng.uniform());
  std::vector<int> labels(static_cast<size_t>(batch));
  for (int& y : labels) y = int(rng.below(10));
  dist::keep_shard(comm, images, labels);
  const int64_t shard = int64_t(labels.size());
  ScheduleValues sched;
  sched.eps = 0.1f;
  sched.kappa = 0.5f;
  sched.beta = 0.5f;
  sched.lr = 5e-4f;

  for (const std::string& net_name : nets) {
    for (const std::string& method : methods) {
      config.method = method;
      config.net = net_name;
      validate_config(config);
      Network net = build_network(net_name, Shape{1, 28, 28}, 10, dataset_normalization("mnist"), 0);
      net.to(device);
      net.set_requires_grad(true);
      Adam adam(net.parameters(), 5e-4f);
      TrainStep step(net, adam, config, 10, comm);
      const Tensor x = Tensor::from_vector(images, Shape{shard, 1, 28, 28}, device);
      for (int i = 0; i < 2; ++i) step.run(x, labels, sched, uint64_t(i));  // warm-up: caches, NCCL set-up
      comm.reset_traffic();
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) step.run(x, labels, sched, uint64_t(100 + i));
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const dist::Traffic traffic = comm.gradient_traffic();
      const double step_s = elapsed / steps;
      const double reduce_s = traffic.seconds / steps;
      const double bytes = comm.size() > 1 ? double(traffic.bytes) / steps
                                           : 4.0 * double(net.num_parameters());  // what N > 1 would reduce
      const double compute_s = step_s - reduce_s;
      const double allreduce_8 = 2.0 * 7.0 * link_latency_us * 1e-6 + 2.0 * 7.0 / 8.0 * bytes / (link_gb_s * 1e9);
      if (root)
        std::printf("%-5s %-10s %10.0f %9.2f %10.3f %7.1f%% %12.0f %13.1f%%\n", net_name.c_str(), method.c_str(),
                    double(batch) / step_s, 1000.0 * step_s, 1000.0 * reduce_s, 100.0 * reduce_s / step_s, bytes,
                    100.0 * compute_s / (compute_s + allreduce_8));
      std::fflush(stdout);
    }
  }
  if (root)
    std::printf("8-rank efficiency: this rank's compute time per step against a ring all-reduce of the same bytes at "
                "%g GB/s and %g us per hop (weak scaling, each rank keeping its shard)\n",
                link_gb_s, link_latency_us);
  return 0;
}
