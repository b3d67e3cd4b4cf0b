// bench_bounds: the cost of one certified-training step's relaxation. For the
// paper's FC (784-400-200-100-100-10) and CONV (conv 1->16 4x4 s2 p1, FC 100,
// FC 10) on 28x28 inputs at batch 50 and 100, and CONV+ (conv 3->16 4x4 s2,
// conv 16->32 4x4 s1, FC 100, FC 10) on 32x32x3 inputs at batch 50, and for
// each relaxation, it times compute_bounds with the margin specification +
// the worst-case-logits cross-entropy + backward (median of a few runs after a
// warm-up; PyTorch-default random init, eps 0.1 around random inputs in
// [0, 1]) and reports the allocator's peak memory during the step. As in
// training, only the upper bounds of the margins are computed (need_lower).
// --mode certify-fast | certify-sound times certification instead: the bounds
// alone under NoGrad, fast or sound (relaxations/sound.cpp), for the price of
// soundness. Each line ends with, per ReLU layer whose intermediate bounds are
// backsubstituted, the percentage of (sample, neuron) pairs unstable under
// them and (in brackets) of rows backsubstituted: all with --intermediate
// dense, the ones unstable under cheap bounds (plus batching) with sparse.
// --checkpoint adds a trained net (a train run's checkpoint) on the first
// test images of --dataset instead of random inputs. alpha-crown runs once
// per --alpha-steps value (20 and 100 by default; early stop off, so every
// step runs), labelled alpha-crown/N; so do triangle and parallelogram (their
// optimised slopes). --gap-to REL (certify modes) times REL first and prints
// each line's largest relative gap of the margins' upper bounds above REL's:
// with triangle-lp, how close the slopes come to the LP and how much faster,
// e.g. --nets fc-small --batch 2 --mode certify-sound --relaxations
// triangle,parallelogram --gap-to triangle-lp.
// Usage: bench_bounds [--device cpu|cuda|auto] [--runs N] [--nets fc,conv,conv+,fc-small]
//                     [--relaxations box,crown,...] [--memory-cap-mb M] [--threads N]
//                     [--mode train|certify-fast|certify-sound] [--intermediate sparse|dense|both]
//                     [--eps E] [--checkpoint FILE [--dataset NAME]] [--sparse-crown0]
//                     [--alpha-steps 20,100] [--patches by-cost|never|always] [--batch N] [--gap-to REL]
//                     [--conv-path by-size|gemm|lanes] [--live-columns on|off]
//                     [--row-plan by-cost|shared|per-sample] [--early-stops on|off] [--profile]
// --profile adds, under each line, one more step with every kernel timed
// (engine/dispatch.h's KernelProfile): where the step's time goes by kernel.
// Network names are train's (lowercase; FC, CONV, CONV+ are accepted too).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "engine/allocator.h"
#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "kernels/kernels.h"
#include "relaxations/relax_ops.h"
#include "relaxations/relaxations.h"
#include "tools/bench/profile_print.h"
#include "train/trainer.h"

namespace {

using namespace cte;
using Clock = std::chrono::steady_clock;

struct BenchNet {
  std::string name;
  Network net;
  std::vector<int> batches;
  const Dataset* data = nullptr;  // --checkpoint: the first test images; else random inputs
};

Network make_fc(Rng& rng) {
  return Network(Shape{1, 28, 28}, {make_flatten(), make_linear(784, 400, rng), make_relu(), make_linear(400, 200, rng),
                                    make_relu(), make_linear(200, 100, rng), make_relu(), make_linear(100, 100, rng),
                                    make_relu(), make_linear(100, 10, rng)});
}

Network make_fc_small(Rng& rng) {  // issue 14's size for Triangle/Parallelogram against their LPs
  return Network(Shape{1, 28, 28}, {make_flatten(), make_linear(784, 100, rng), make_relu(), make_linear(100, 100, rng),
                                    make_relu(), make_linear(100, 10, rng)});
}

Network make_conv_net(Rng& rng) {
  return Network(Shape{1, 28, 28}, {make_conv(1, 16, 4, 2, 1, rng), make_relu(), make_flatten(),
                                    make_linear(16 * 14 * 14, 100, rng), make_relu(), make_linear(100, 10, rng)});
}

Network make_conv_plus(Rng& rng) {
  return Network(Shape{3, 32, 32}, {make_conv(3, 16, 4, 2, 0, rng), make_relu(), make_conv(16, 32, 4, 1, 0, rng),
                                    make_relu(), make_flatten(), make_linear(32 * 12 * 12, 100, rng), make_relu(),
                                    make_linear(100, 10, rng)});
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) items.push_back(item);
  return items;
}

struct Measurement {
  double median_s = 0, min_s = 0;
  size_t peak_bytes = 0;
  int runs = 0;
  Tensor upper;  // certify modes: the margins' upper bounds of the last run, (N, K-1)
  double profiled_s = 0;                        // --profile: one more step, its kernels timed
  std::vector<KernelProfile::Entry> kernels;  // that step's time per kernel stem, costliest first
};

// One step: bounds of the margins, the certified cross-entropy, backward.
double one_step(const Network& net, const Tensor& x, const std::vector<int>& labels, const Tensor& label_tensor,
                Relaxation relaxation, const BoundOptions& options, Device device, bool certify, float eps,
                Tensor* upper = nullptr) {
  for (const Tensor& p : net.parameters()) Tensor(p).zero_grad();
  if (device == Device::cuda) gpu::synchronize();
  const auto start = Clock::now();
  if (certify) {  // what certify eval runs per batch
    NoGrad no_grad;
    const auto [lower0, upper0] = input_box(x, eps, true, options.sound);
    const Tensor spec = margin_spec(labels, 10, device);
    const Bounds bounds = compute_bounds(net, lower0, upper0, spec, relaxation, options);
    [[maybe_unused]] const std::vector<bool> proven = certified(bounds);
    if (device == Device::cuda) gpu::synchronize();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (upper) *upper = bounds.upper;
    return seconds;
  }
  const auto [lower0, upper0] = input_box(x, eps);
  const Tensor spec = margin_spec(labels, 10, device);
  const Bounds bounds = compute_bounds(net, lower0, upper0, spec, relaxation, options);
  const Tensor worst = worst_case_logits(bounds, labels, 10);
  const Tensor loss = ops::mean(ops::softmax_cross_entropy(worst, label_tensor));
  backward(loss);
  if (device == Device::cuda) gpu::synchronize();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Measurement measure(const Network& net, int batch, Relaxation relaxation, const BoundOptions& options, Device device,
                    int runs, Rng& rng, bool certify, float eps, const Dataset* data, bool profile) {
  std::vector<int64_t> dims{batch};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  std::vector<float> xs(size_t(Shape(dims).numel()));
  for (size_t k = 0; k < xs.size(); ++k) xs[k] = data ? float(data->images[k]) / 255.0f : rng.uniform(0.0f, 1.0f);
  const Tensor x = Tensor::from_vector(xs, Shape(dims), device);
  std::vector<int> labels(static_cast<size_t>(batch));
  std::vector<float> label_values(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) labels[size_t(i)] = data ? int(data->labels[size_t(i)]) : int(rng.below(10)), label_values[size_t(i)] = float(labels[size_t(i)]);
  const Tensor label_tensor = Tensor::from_vector(label_values, Shape{batch}, device);

  Measurement m;
  // No blocks of earlier configurations: a best fit to one of them (up to twice
  // the request) would count in this one's peak.
  empty_cache(device);
  reset_peak_bytes(device);
  const size_t base = allocator_stats(device).bytes_in_use;
  const double warmup = one_step(net, x, labels, label_tensor, relaxation, options, device, certify, eps);
  m.peak_bytes = allocator_stats(device).peak_bytes_in_use - base;
  // Very slow configurations get one timed run instead of several. The warm-up
  // also pays the first touch of every fresh page (CONV+ CROWN: ~3 GB, about
  // three times the timed step on this VM), so the bar is high.
  const int timed = warmup > 50.0 ? 1 : runs;
  std::vector<double> times;
  for (int r = 0; r < timed; ++r) {
    reset_peak_bytes(device);
    times.push_back(one_step(net, x, labels, label_tensor, relaxation, options, device, certify, eps, &m.upper));
    m.peak_bytes = std::max(m.peak_bytes, allocator_stats(device).peak_bytes_in_use - base);
  }
  std::sort(times.begin(), times.end());
  m.median_s = times[times.size() / 2];
  m.min_s = times.front();
  m.runs = timed;
  if (profile) {  // after the timed runs, so the timer's cost is in no median
    KernelProfile kernels;
    m.profiled_s = one_step(net, x, labels, label_tensor, relaxation, options, device, certify, eps);
    m.kernels = kernels.entries();
  }
  return m;
}

// How far `upper` lies above the reference's upper bounds of the same margins:
// the largest (u - u_ref) / max(|u_ref|, 1e-6), as a fraction (negative: tighter).
double worst_relative_gap(const Tensor& upper, const Tensor& reference) {
  const std::vector<float> u = upper.to_vector(), r = reference.to_vector();
  double worst = -1e300;
  for (size_t k = 0; k < u.size(); ++k)
    worst = std::max(worst, (double(u[k]) - double(r[k])) / std::max(std::fabs(double(r[k])), 1e-6));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_bounds: time of one relaxation bound + certified loss + backward, and peak memory"};
  std::string device_name_arg = "cpu", nets_arg = "fc,conv,conv+", relaxations_arg;
  for (Relaxation r : all_relaxations()) relaxations_arg += (relaxations_arg.empty() ? "" : ",") + std::string(relaxation_name(r));
  relaxations_arg += std::string(",") + relaxation_name(Relaxation::alpha_crown);
  std::vector<int> alpha_steps{20, 100};
  std::string mode = "train", intermediate = "sparse", checkpoint, dataset = "fashion-mnist";
  float eps = 0.1f;
  bool sparse_crown0 = false, profile = false;
  std::string patches = "by-cost", conv_path = "by-size", live_columns = "on", row_plan = "by-cost", early_stops = "off";
  int batch_override = 0;
  std::string gap_to;
  int runs = 5, threads = 0;
  double cap_mb = 1024;
  app.add_option("--device", device_name_arg, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--runs", runs, "timed runs per configuration after one warm-up (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--nets", nets_arg, "comma-separated subset of fc, conv, conv+, fc-small (train's names)")
      ->capture_default_str();
  app.add_option("--relaxations", relaxations_arg, "comma-separated relaxations")->capture_default_str();
  app.add_option("--memory-cap-mb", cap_mb, "BoundOptions::memory_cap_bytes in MiB (chunking of intermediate bounds)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  app.add_option("--alpha-steps", alpha_steps,
                 "alpha-crown, triangle, parallelogram: Adam steps on the slopes, one bench line per value (early stop off)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--mode", mode,
                 "train: bound + certified loss + backward (fast bounds); certify-fast / certify-sound: the bounds "
                 "alone under NoGrad, as certify eval computes them, fast or sound")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "certify-fast", "certify-sound"}));
  app.add_option("--intermediate", intermediate,
                 "backsubstituted intermediate bounds (crown, crown0, deepz, hbox-fresh): sparse (only the neurons "
                 "unstable under cheap bounds, the default), dense (every neuron), or both, one line each")
      ->capture_default_str()
      ->check(CLI::IsMember({"sparse", "dense", "both"}));
  app.add_option("--eps", eps, "radius of the L-inf input boxes")->capture_default_str();
  app.add_option("--patches", patches,
                 "intermediate bounds of conv outputs in patches form (relaxations/backsub_patches.cpp): by-cost "
                 "(the default), never (the dense rows), always (wherever it applies)")
      ->capture_default_str()
      ->check(CLI::IsMember({"by-cost", "never", "always"}));
  app.add_option("--conv-path", conv_path,
                 "how the CPU convolutions run (kernels/cpu/conv.cpp): by-size (the default: batches of small "
                 "images in vector lanes, the rest through im2col + sgemm), gemm or lanes (always that one)")
      ->capture_default_str()
      ->check(CLI::IsMember({"by-size", "gemm", "lanes"}));
  app.add_option("--live-columns", live_columns,
                 "on (the default): an affine step under a ReLU step sums and differentiates over the columns "
                 "that step reads only (relax_ops.h, backsub_linear's live); off: the dense products, to compare")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--row-plan", row_plan,
                 "sparse intermediate bounds: how the neurons to backsubstitute become rows (relaxations/backsub.cpp's "
                 "plan_rows): by-cost (the default), shared (the union over the batch, for every sample) or "
                 "per-sample (each sample's own list)")
      ->capture_default_str()
      ->check(CLI::IsMember({"by-cost", "shared", "per-sample"}));
  app.add_option("--early-stops", early_stops,
                 "sparse intermediate bounds, fast mode: on refines the interval classification by backsubstituting "
                 "the unstable neurons down to the ReLU outputs below them first (BoundOptions::sparse_early_stops: "
                 "faster on certifiably trained deep nets, no longer exactly the paper's relaxation); off (the "
                 "default): the interval classification alone")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  app.add_flag("--sparse-crown0", sparse_crown0,
               "crown0 on the sparse path too (BoundOptions::sparse_crown0: tighter than the paper's CROWN-0)");
  app.add_option("--batch", batch_override,
                 "one batch size for every net instead of each net's own (fc, conv: 50 and 100; conv+ and --checkpoint: 50); "
                 "0: theirs")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--checkpoint", checkpoint,
                 "also a trained net: a train run's checkpoint.ckpt, on the first test images of --dataset (batch 50)");
  app.add_option("--dataset", dataset, "the data set of --checkpoint (load_dataset's names)")->capture_default_str();
  app.add_option("--gap-to", gap_to,
                 "certify modes: also time this relaxation (e.g. triangle-lp) first on each net and batch, and print "
                 "each line's largest relative gap of the margins' upper bounds above it (1e-3: 0.1% looser)");
  app.add_flag("--profile", profile,
               "after each line's timed runs, one more step with every kernel timed (engine/dispatch.h's "
               "KernelProfile): the kernels taking >= 1% of it and the time outside kernels (on a GPU each "
               "kernel synchronizes, so the step is slower)");
  CLI11_PARSE(app, argc, argv);
  try {
    set_thread_count(threads, "[bench_bounds] --threads");
    const Device device = parse_device(device_name_arg);
    std::fprintf(stderr, "%s\n", device_banner(device).c_str());
    std::vector<Relaxation> relaxations;
    for (const std::string& name : split_list(relaxations_arg)) relaxations.push_back(parse_relaxation(name));
    BoundOptions options;
    options.sparse_crown0 = sparse_crown0;
    options.sparse_early_stops = early_stops == "on";
    relax::set_patch_choice(patches == "never"    ? relax::PatchChoice::never
                            : patches == "always" ? relax::PatchChoice::always
                                                  : relax::PatchChoice::by_cost);
    kern::set_cpu_conv_path(conv_path == "gemm"    ? kern::CpuConvPath::gemm
                            : conv_path == "lanes" ? kern::CpuConvPath::lanes
                                                   : kern::CpuConvPath::by_size);
    relax::set_backsub_live_columns(live_columns == "on");
    relax::set_row_plan_choice(row_plan == "shared"       ? relax::RowPlanChoice::shared
                               : row_plan == "per-sample" ? relax::RowPlanChoice::per_sample
                                                          : relax::RowPlanChoice::by_cost);
    options.memory_cap_bytes = size_t(cap_mb * 1024.0 * 1024.0);
    options.need_lower = false;  // as in training: the certified loss reads only the upper bounds
    options.sound = mode == "certify-sound";
    const bool certify = mode != "train";
    if (!gap_to.empty() && !certify)
      throw std::runtime_error("[bench_bounds] --gap-to compares certification bounds: use it with --mode certify-fast "
                               "or certify-sound");
    if (!gap_to.empty()) {  // the reference goes first, so every other line can print its gap
      const Relaxation reference = parse_relaxation(gap_to);
      relaxations.erase(std::remove(relaxations.begin(), relaxations.end(), reference), relaxations.end());
      relaxations.insert(relaxations.begin(), reference);
    }
    std::vector<BenchNet> nets;
    Rng init(2024);
    for (const std::string& given : split_list(nets_arg)) {
      std::string name = given;
      for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
      if (name == "fc") nets.push_back({name, make_fc(init), {50, 100}});
      else if (name == "conv") nets.push_back({name, make_conv_net(init), {50, 100}});
      else if (name == "conv+") nets.push_back({name, make_conv_plus(init), {50}});
      else if (name == "fc-small") nets.push_back({name, make_fc_small(init), {50}});
      else throw std::runtime_error("[bench_bounds] --nets: unknown net '" + given +
                                    "' (expected fc, conv, conv+, fc-small)");
    }
    DatasetSplits data_splits;
    if (!checkpoint.empty()) {
      data_splits = load_dataset(dataset, "");
      nets.push_back({"ckpt", train::network_from_checkpoint(checkpoint), {50}, &data_splits.test});
    }
    if (batch_override > 0)
      for (BenchNet& b : nets) b.batches = {batch_override};
    std::printf("bench_bounds on %s: %s, eps %g, patches %s, CPU convolutions %s, live columns %s, row plan %s, early stops %s\n",
                device_name(device),
                certify ? (options.sound ? "certification with sound bounds (NoGrad)" : "certification with fast bounds (NoGrad)")
                        : "bound (margin spec) + certified cross-entropy + backward",
                double(eps), patches.c_str(), conv_path.c_str(), live_columns.c_str(), row_plan.c_str(),
                early_stops.c_str());
    std::printf("%-8s %5s  %-18s %-6s %10s %10s %5s %12s %10s  %s\n", "net", "batch", "relaxation", "interm",
                "median s", "min s", "runs", "peak MiB", gap_to.empty() ? "" : "gap",
                "unstable% [backsubstituted%] per ReLU layer");
    Rng data(7);
    for (BenchNet& b : nets) {
      b.net.to(device);
      b.net.set_requires_grad(true);
      for (int batch : b.batches) {
        Tensor reference_upper;  // --gap-to's bounds on this net and batch
        for (Relaxation r : relaxations) {
          const bool alpha = relaxation_info(r).engine == BoundsEngine::optimised_slopes;
          for (size_t v = 0; v < (alpha ? alpha_steps.size() : 1); ++v) {
            BoundOptions o = options;
            std::string label = relaxation_name(r);
            if (alpha) {
              o.alpha.steps = alpha_steps[v];
              o.alpha.patience = 0;
              label.append(1, '/').append(std::to_string(alpha_steps[v]));  // not "/" + ...: GCC 12's -Wrestrict false positive
            }
            for (const std::string& kind : split_list(intermediate == "both" ? "dense,sparse" : intermediate)) {
              o.sparse_intermediate = kind == "sparse";
              Rng same_data = data;  // both paths see the same inputs
              reset_relu_layer_stats();
              const Measurement m = measure(b.net, batch, r, o, device, runs, same_data, certify, eps, b.data, profile);
              std::string layers;
              for (const ReluLayerStats& s : relu_layer_stats()) {
                char text[64];
                const double pairs = double(std::max<uint64_t>(s.pairs, 1));
                std::snprintf(text, sizeof text, " %zu:%.1f[%.1f]", s.layer, 100.0 * double(s.unstable) / pairs,
                              100.0 * double(s.backsubstituted) / pairs);
                layers += text;
              }
              if (!gap_to.empty() && !reference_upper.defined()) reference_upper = m.upper;
              char gap[32] = "";
              if (!gap_to.empty()) std::snprintf(gap, sizeof gap, "%.2e", worst_relative_gap(m.upper, reference_upper));
              std::printf("%-8s %5d  %-18s %-6s %10.4f %10.4f %5d %12.1f %10s %s\n", b.name.c_str(), batch,
                          label.c_str(), kind.c_str(), m.median_s, m.min_s, m.runs,
                          double(m.peak_bytes) / (1024.0 * 1024.0), gap, layers.c_str());
              if (profile) bench::print_kernel_profile(m.kernels, m.profiled_s);
              std::fflush(stdout);
            }
          }
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
