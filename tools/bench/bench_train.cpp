// bench_train: images/s of a full training step (clean forward, the method's
// robust term, loss, backward, Adam) for every training method on FC and
// CONV, on synthetic MNIST-shaped data (1x28x28, 10 classes), at batch 100 by
// default. It runs the trainer's own TrainStep, so what it times is what
// `train` runs. Schedule values are those of the ramp-up (eps 0.1, kappa 0.5,
// beta 0.5: crown-ibp computes both of its bounds), the worst case per step.
// Each (network, method) runs for --seconds after its warm-up (at least one
// timed step). Besides wall-clock images/s it prints images per CPU-second
// (process CPU time), which a busy shared machine distorts less. --profile
// adds, under each line, where the time of more steps (a quarter of --seconds,
// at least 3) goes by kernel (engine/dispatch.h's KernelProfile).
//
// Usage: bench_train [--nets fc,conv] [--methods box,crown,...] [--batch 100]
//                    [--seconds 3] [--train-pgd-steps 10] [--threads N]
//                    [--device cpu|cuda|auto] [--sparse-bounds auto|on|off]
//                    [--json FILE] [--profile]
#include <CLI/CLI.hpp>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "tools/bench/profile_print.h"
#include "train/config.h"
#include "train/networks.h"
#include "train/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;

// CPU seconds of the whole process (all threads): on a shared machine the
// wall clock also counts other people's work, this does not.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cte;
  using namespace cte::train;
  CLI::App app{"bench_train: images/s of one training step per method and network"};
  std::vector<std::string> nets{"fc", "conv"};
  std::vector<std::string> methods = train_methods();
  int batch = 100, train_pgd_steps = 10, threads = 0;
  double seconds = 3.0;
  std::string device_name = "auto", json_path, sparse_bounds = "auto";
  bool cuda_graph = false, profile = false;
  app.add_option("--nets", nets, "networks to time")->delimiter(',');
  app.add_option("--methods", methods, "training methods to time")->delimiter(',');
  app.add_option("--batch", batch, "batch size");
  app.add_option("--seconds", seconds, "time per (network, method) after two warm-up steps");
  app.add_option("--train-pgd-steps", train_pgd_steps, "PGD steps inside a pgd/sabr training step");
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)");
  app.add_option("--device", device_name, "cpu | cuda | auto");
  app.add_option("--sparse-bounds", sparse_bounds,
                 "train's --sparse-bounds: intermediate bounds of the unstable neurons only (on), of every neuron "
                 "(off), or auto (on on the CPU, off on a GPU)");
  app.add_option("--json", json_path, "also write the results as JSON to this file");
  CLI::Option* profile_flag = app.add_flag(
      "--profile", profile,
      "after each line, time more steps kernel by kernel and print the kernels taking at least 1% of "
      "them (on a GPU each timed launch synchronizes: read the shares, not the total)");
  app.add_flag("--cuda-graph", cuda_graph,
               "train's --cuda-graph: replay the step as a CUDA graph (Adam's step count starts at 20,000, where its "
               "bias corrections are exactly 1 in float, as after epoch 29 at batch 100)")
      // A replayed graph launches no CTE_RUN to time, and a timed launch's synchronize would
      // abort a capture.
      ->excludes(profile_flag);
  CLI11_PARSE(app, argc, argv);

  TrainConfig config;
  config.threads = threads;
  config.device = device_name;
  config.batch_size = batch;
  config.train_pgd_steps = train_pgd_steps;
  config.cuda_graph = cuda_graph;
  config.sparse_bounds = sparse_bounds;
  Device device;
  try {
    device = prepare_runtime(config);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  std::fprintf(stderr, "%s\n", device_banner(device).c_str());
  std::printf("bench_train: one full training step (forward, bounds, loss, backward, Adam), batch %d, synthetic "
              "1x28x28 data, eps 0.1, kappa 0.5, beta 0.5, PGD/SABR with %d steps, sparse bounds %s\n",
              batch, train_pgd_steps, sparse_bounds.c_str());

  Rng rng(1);
  std::vector<float> images(size_t(batch) * 784);
  for (float& v : images) v = float(rng.uniform());
  std::vector<int> labels(static_cast<size_t>(batch));
  for (int& y : labels) y = int(rng.below(10));
  ScheduleValues sched;
  sched.eps = 0.1f;
  sched.kappa = 0.5f;
  sched.beta = 0.5f;
  sched.lr = 5e-4f;

  nlohmann::json results = nlohmann::json::array();
  for (const std::string& net_name : nets) {
    for (const std::string& method : methods) {
      config.method = method;
      config.net = net_name;
      try {
        validate_config(config);
        Network net = build_network(net_name, Shape{1, 28, 28}, 10, dataset_normalization("mnist"), 0);
        net.to(device);
        net.set_requires_grad(true);
        Adam adam(net.parameters(), 5e-4f);
        if (cuda_graph) {
          std::vector<std::pair<std::string, Tensor>> state = adam.state();
          for (auto& [name, t] : state)
            if (name == "adam.step") t = Tensor::scalar(20000.0f, Device::cpu);
          adam.load_state(state);
        }
        TrainStep step(net, adam, config, 10);
        const Tensor x = Tensor::from_vector(images, Shape{batch, 1, 28, 28}, device);
        // Warm-up (allocator caches, BLAS buffers): two steps, or one for a slow method.
        const auto warm = Clock::now();
        step.run(x, labels, sched, 0);
        if (std::chrono::duration<double>(Clock::now() - warm).count() < seconds / 4) step.run(x, labels, sched, 1);
        int64_t steps = 0;
        const gpu::HostSyncCounters syncs_before = gpu::host_sync_counters();
        const auto start = Clock::now();
        const double cpu_start = process_cpu_seconds();
        double elapsed = 0;
        StepStats last;  // read after the timed loop: a read inside it would wait for the device
        do {
          last = step.run(x, labels, sched, uint64_t(100 + steps));
          ++steps;
          elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        } while (elapsed < seconds);
        // Host round trips per step on a GPU (issue 19's target: none): synchronous copies each way and syncs.
        const gpu::HostSyncCounters syncs_after = gpu::host_sync_counters();
        if (device == Device::cuda) {
          // Without round trips the host runs ahead of the device: time until the queue has drained.
          gpu::synchronize();
          elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        }
        const double cpu = process_cpu_seconds() - cpu_start;
        const float loss = last.read().loss;
        const double per_step = 1.0 / double(steps);
        const double to_host = double(syncs_after.device_to_host - syncs_before.device_to_host) * per_step;
        const double to_device = double(syncs_after.host_to_device - syncs_before.host_to_device) * per_step;
        const double syncs = double(syncs_after.synchronizes - syncs_before.synchronizes) * per_step;
        const double ips = double(steps) * batch / elapsed;
        const double ips_cpu = double(steps) * batch / std::max(1e-9, cpu);
        std::printf("%-5s %-12s %9.0f images/s  (%4lld steps in %5.2f s, %7.2f ms/step; %8.0f images per CPU-second; "
                    "loss %.3f)\n",
                    net_name.c_str(), method.c_str(), ips, static_cast<long long>(steps), elapsed,
                    1000.0 * elapsed / double(steps), ips_cpu, double(loss));
        if (device == Device::cuda)
          std::printf("%-5s %-12s host round trips per step: %.1f device->host copies, %.1f host->device, %.1f syncs\n",
                      net_name.c_str(), method.c_str(), to_host, to_device, syncs);
        const TrainStep::GraphCounts& graphs = step.graph_counts();
        if (cuda_graph && device == Device::cuda)
          std::printf("%-5s %-12s CUDA graphs: %lld captured, %lld steps replayed%s\n", net_name.c_str(),
                      method.c_str(), static_cast<long long>(graphs.captures),
                      static_cast<long long>(graphs.replays),
                      graphs.refused.empty() ? "" : (" (refused: " + graphs.refused + ")").c_str());
        if (profile) {  // after the timed steps, so the timer's cost is in none of them
          KernelProfile kernels;
          int64_t profiled_steps = 0;
          const auto profile_start = Clock::now();
          double profiled_s = 0;
          do {
            step.run(x, labels, sched, uint64_t(1000000 + profiled_steps)).read();
            ++profiled_steps;
            profiled_s = std::chrono::duration<double>(Clock::now() - profile_start).count();
          } while (profiled_steps < 3 || profiled_s < seconds / 4);
          bench::print_kernel_profile(kernels.entries(), profiled_s, profiled_steps);
        }
        std::fflush(stdout);
        results.push_back({{"net", net_name}, {"method", method}, {"images_per_s", ips}, {"images_per_cpu_s", ips_cpu}, {"batch", batch},
                           {"steps", steps}, {"seconds", elapsed},
                           {"cuda_graph", {{"on", cuda_graph}, {"captures", graphs.captures}, {"replays", graphs.replays}}},
                           {"host_round_trips_per_step",
                            {{"device_to_host", to_host}, {"host_to_device", to_device}, {"synchronizes", syncs}}}});
      } catch (const std::exception& e) {
        tape_reset();
        std::printf("%-5s %-12s failed: %s\n", net_name.c_str(), method.c_str(), e.what());
        results.push_back({{"net", net_name}, {"method", method}, {"error", e.what()}});
      }
    }
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"device", device_banner(device)}, {"results", results}}.dump(2) << "\n";
  }
  return 0;
}
