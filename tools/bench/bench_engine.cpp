// Engine benchmarks (make bench): the production kernels themselves, timed.
//  - GFLOP/s of the engine's gemm kernel (our blocked AVX-512 GEMM where the
//    CPU has AVX-512, else OpenBLAS) for the shapes of the paper's networks at
//    batch 100 and FC CROWN's largest product, beside OpenBLAS's own
//    cblas_sgemm rate on the same shapes;
//  - on the CPU, one image's live-column products of backsubstitution (W's
//    live rows read in place) beside gathering them for gemm_cpu;
//  - the three convolution kernels on the CONV net's layers, CONV+'s patch
//    windows and FC rows in backsubstitution, and a larger 3x3 layer: on the
//    CPU once per path (im2col + sgemm, and lanes of small images);
//  - images/s of one natural training step (forward, backward, Adam) of FC
//    (784-400-200-100-100-10) and CONV (conv 16 4x4 s2 p1, FC 100, FC 10), and
//    of one Box step (interval bounds, certified loss, backward, Adam);
//  - every rate also as a percent of this CPU's fp32 peak, measured first
//    with an FMA loop (tools/bench/fp32_peak.h) on the same thread count.
// Usage: bench_engine [--device cpu|cuda|auto] [--seconds S] [--threads N]
#include <CLI/CLI.hpp>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "engine/device.h"
#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/tape.h"
#include "kernels/cpu/gemm_cpu.h"
#include "kernels/gpu_runtime.h"
#include "kernels/kernels.h"
#include "relaxations/relaxations.h"
#include "tools/bench/fp32_peak.h"

using namespace cte;

namespace {

double g_peak_gflops = 0;      // the fp32 peak on the benchmark's thread count (CPU only)
double g_peak_one_gflops = 0;  // and on one thread

// " (P% of peak)" for a CPU rate, nothing on the GPU.
std::string of_peak(double gflops, Device device, bool one_thread = false) {
  const double peak = one_thread ? g_peak_one_gflops : g_peak_gflops;
  if (device != Device::cpu || peak <= 0) return "";
  char text[48];
  std::snprintf(text, sizeof text, " (%4.1f%% of peak)", 100.0 * gflops / peak);
  return text;
}

// Multiply-adds of one image's forward pass through the linear and conv layers.
double forward_macs(const Network& net) {
  double macs = 0;
  for (const Layer& l : net.layers()) {
    if (l.kind == LayerKind::linear) macs += double(l.weight.numel());
    if (l.kind == LayerKind::conv) macs += double(l.weight.numel()) * double(l.out_shape[1] * l.out_shape[2]);
  }
  return macs;
}

// The multiply-adds of the first affine layer (linear or conv): its input
// gradient is never computed, since the input does not require one.
double first_affine_macs(const Network& net) {
  for (const Layer& l : net.layers()) {
    if (l.kind == LayerKind::linear) return double(l.weight.numel());
    if (l.kind == LayerKind::conv) return double(l.weight.numel()) * double(l.out_shape[1] * l.out_shape[2]);
  }
  return 0.0;
}

// Seconds per call of fn: the fastest of kWindows windows that split the
// budget. On a machine shared with other tenants their load can only slow a
// window down, so the fastest is the closest to this code's own speed, and it
// is measured the way the fp32 peak is (the best of its runs).
constexpr int kWindows = 5;
double seconds_per_call(const std::function<void()>& fn, double budget, Device device) {
  fn();  // warm-up: caches, allocator, OpenBLAS threads
  if (device == Device::cuda) gpu::synchronize();
  double best = 0.0;
  for (int window = 0; window < kWindows; ++window) {
    int calls = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0.0;
    do {
      fn();
      ++calls;
      if (device == Device::cuda) gpu::synchronize();
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < budget / kWindows);
    const double per_call = elapsed / calls;
    if (window == 0 || per_call < best) best = per_call;
  }
  return best;
}

Tensor random(const Shape& s, Rng& rng, Device d, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, s, d);
}

// C[m,n] = A[m,k] op(B): op(B) = B^T for B stored [n,k] (a linear layer's
// weights), B itself for B stored [k,n] (a backsubstitution's coefficients
// times the next layer's weights).
void bench_gemm(const char* label, int64_t m, int64_t n, int64_t k, bool trans_b, Device device, double budget,
                Rng& rng) {
  Tensor a = random(Shape{m, k}, rng, device), b = random(trans_b ? Shape{n, k} : Shape{k, n}, rng, device);
  Tensor c = Tensor::empty(Shape{m, n}, device);
  const double flops = 2.0 * double(m) * double(n) * double(k);
  const int64_t ldb = trans_b ? k : n;
  const double t = seconds_per_call([&] {
    const kern::GemmShape shape = kern::dense_gemm(false, trans_b, m, n, k);
    if (device == Device::cpu) kern::gemm_cpu(shape, 1.0f, a.data(), b.data(), 0.0f, c.data());
    else kern::gemm_cuda(shape, 1.0f, a.data(), b.data(), 0.0f, c.data());
  }, budget, device);
  std::printf("  %-44s %8.1f GFLOP/s%s", label, flops / t * 1e-9, of_peak(flops / t * 1e-9, device).c_str());
  if (device == Device::cpu) {
    const double t_ref = seconds_per_call([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), 1.0f,
                  a.data(), int(k), b.data(), int(ldb), 0.0f, c.data(), int(n));
    }, budget, device);
    std::printf("   (OpenBLAS cblas_sgemm directly: %.1f GFLOP/s, ratio %.2f)", flops / t_ref * 1e-9, t_ref / t);
  }
  std::printf("\n");
}

// One image's live-column products in backsubstitution (kernels/cpu/relax.cpp's
// gathered path): `rows` coefficient rows over `live` of the layer's `n` neurons,
// times those neurons' rows of W [n, n_in], read in place (gemm_selected_rows),
// beside what the path did before: copy the live rows of W out, then gemm_cpu.
// Then the coefficient gradient's product (rows x n_in times those rows transposed).
// On one thread, as there (each image's products run inside a parallel loop over
// images); percentages of the one-thread peak.
void bench_selected_rows(const char* label, int64_t rows, int64_t live, int64_t n, int64_t n_in, double budget,
                         Rng& rng) {
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(1);
  Tensor w = random(Shape{n, n_in}, rng, Device::cpu), a = random(Shape{rows, live}, rng, Device::cpu);
  Tensor d = random(Shape{rows, n_in}, rng, Device::cpu), w_live = Tensor::empty(Shape{live, n_in}, Device::cpu);
  Tensor c = Tensor::empty(Shape{rows, n_in}, Device::cpu), p = Tensor::empty(Shape{rows, live}, Device::cpu);
  std::vector<int64_t> columns;
  for (int64_t j = 0; j < live; ++j) columns.push_back(j * n / live);  // spread over the layer
  const double flops = 2.0 * double(rows) * double(live) * double(n_in);
  auto gather = [&] {
    for (int64_t j = 0; j < live; ++j)
      std::memcpy(w_live.data() + j * n_in, w.data() + columns[size_t(j)] * n_in, sizeof(float) * size_t(n_in));
  };
  auto rate = [&](const std::function<void()>& fn) { return flops / seconds_per_call(fn, budget, Device::cpu) * 1e-9; };
  const double rows_rate = rate([&] {
    kern::gemm_selected_rows_cpu({rows, n_in, live, live, n_in, n_in, columns.data()}, a.data(), w.data(), c.data());
  });
  const double rows_gemm_rate = rate([&] {
    gather();
    kern::gemm_cpu(kern::dense_gemm(false, false, rows, n_in, live), 1.0f, a.data(), w_live.data(), 0.0f, c.data());
  });
  const double dots_rate = rate([&] {
    kern::gemm_selected_rows_t_cpu({rows, live, n_in, n_in, n_in, live, columns.data()}, d.data(), w.data(), p.data());
  });
  const double dots_gemm_rate = rate([&] {
    gather();
    kern::gemm_cpu(kern::dense_gemm(false, true, rows, live, n_in), 1.0f, d.data(), w_live.data(), 0.0f, p.data());
  });
  std::printf("  %-44s A W %6.1f GFLOP/s%s (gather + gemm_cpu %6.1f);  dA W^T %6.1f%s (%6.1f)\n", label, rows_rate,
              of_peak(rows_rate, Device::cpu, true).c_str(), rows_gemm_rate, dots_rate,
              of_peak(dots_rate, Device::cpu, true).c_str(), dots_gemm_rate);
  omp_set_num_threads(threads_before);
}

// The three convolution kernels on one geometry: GFLOP/s of each, on the CPU
// once per path (im2col + sgemm, and lanes), marking the path by_size picks.
void bench_conv(const char* label, const kern::ConvGeometry& g, Device device, double budget, Rng& rng) {
  Tensor x = random(Shape{g.n, g.c_in, g.h_in, g.w_in}, rng, device), w = random(Shape{g.c_out, g.c_in, g.kh, g.kw}, rng, device);
  Tensor dy = random(Shape{g.n, g.c_out, g.h_out, g.w_out}, rng, device), bias = random(Shape{g.c_out}, rng, device);
  Tensor y = Tensor::empty(dy.shape(), device), dx = Tensor::empty(x.shape(), device), dw = Tensor::empty(w.shape(), device);
  const double flops = 2.0 * double(g.n) * g.c_out * g.h_out * g.w_out * g.c_in * g.kh * g.kw;
  const bool cpu = device == Device::cpu;
  auto rate = [&](const std::function<void()>& fn) { return flops / seconds_per_call(fn, budget / 3, device) * 1e-9; };
  auto line = [&](const std::string& path) {
    const double forward = rate([&] {
      if (cpu) kern::conv2d_forward_cpu(x.data(), w.data(), bias.data(), y.data(), g);
      else kern::conv2d_forward_cuda(x.data(), w.data(), bias.data(), y.data(), g);
    });
    const double data = rate([&] {
      if (cpu) kern::conv2d_backward_data_cpu(dy.data(), w.data(), dx.data(), g);
      else kern::conv2d_backward_data_cuda(dy.data(), w.data(), dx.data(), g);
    });
    const double filter = rate([&] {
      if (cpu) kern::conv2d_backward_filter_cpu(x.data(), dy.data(), dw.data(), g);
      else kern::conv2d_backward_filter_cuda(x.data(), dy.data(), dw.data(), g);
    });
    const std::string best = of_peak(std::max({forward, data, filter}), device);
    std::printf("  %-34s %-6s %7.1f %7.1f %7.1f GFLOP/s%s\n", label, path.c_str(), forward, data, filter,
                best.empty() ? "" : (" (the best of the three: " + best.substr(2)).c_str());
  };
  if (!cpu) return line("cuDNN");
  const bool lanes_by_size = kern::cpu_conv_by_size_takes_lanes(g);
  kern::set_cpu_conv_path(kern::CpuConvPath::gemm);
  line(lanes_by_size ? "gemm" : "gemm*");
  kern::set_cpu_conv_path(kern::CpuConvPath::lanes);
  line(lanes_by_size ? "lanes*" : "lanes");
  kern::set_cpu_conv_path(kern::CpuConvPath::by_size);
}

Network make_fc(Rng& rng) {
  std::vector<Layer> l{make_normalize({0.1307f}, {0.3081f}), make_flatten(), make_linear(784, 400, rng), make_relu(),
                       make_linear(400, 200, rng), make_relu(), make_linear(200, 100, rng), make_relu(),
                       make_linear(100, 100, rng), make_relu(), make_linear(100, 10, rng)};
  return Network(Shape{1, 28, 28}, std::move(l));
}

Network make_conv_net(Rng& rng) {
  std::vector<Layer> l{make_normalize({0.1307f}, {0.3081f}), make_conv(1, 16, 4, 2, 1, rng), make_relu(), make_flatten(),
                       make_linear(16 * 14 * 14, 100, rng), make_relu(), make_linear(100, 10, rng)};
  return Network(Shape{1, 28, 28}, std::move(l));
}

// A natural step (box false) or a Box step at eps 0.1 (box true: the interval bounds of the
// margins, the certified cross-entropy of their worst-case logits, backward, Adam).
void bench_training_step(const char* label, Network net, bool box, Device device, double budget, Rng& rng) {
  net.to(device);
  net.set_requires_grad(true);
  Adam adam(net.parameters(), 5e-4f);
  const int64_t batch = 100;
  const int classes = 10;
  Tensor x = random(Shape{batch, 1, 28, 28}, rng, device, 0.0f, 1.0f);
  std::vector<int> label_ids(batch);
  std::vector<float> labels(batch);
  for (int64_t i = 0; i < batch; ++i) label_ids[size_t(i)] = int(i % classes), labels[size_t(i)] = float(i % classes);
  Tensor y = Tensor::from_vector(labels, Shape{batch}, device);
  const auto [lower0, upper0] = input_box(x, 0.1f);
  const Tensor spec = margin_spec(label_ids, classes, device);
  BoundOptions options;
  options.check_finite_weights = false;  // as in training
  const double t = seconds_per_call([&] {
    adam.zero_grad();
    const Tensor logits =
        box ? worst_case_logits(compute_bounds(net, lower0, upper0, spec, Relaxation::box, options), label_ids, classes)
            : net.forward(x);
    backward(ops::mean(ops::softmax_cross_entropy(logits, y)));
    adam.step();
  }, budget, device);
  // A training step: forward (2 FLOPs per multiply-add), and backward to the inputs and the
  // weights (4), less the first layer's input gradient (2). Box runs every product twice, for
  // the centres (W c) and the radii (|W| r).
  const double step_flops = 6.0 * forward_macs(net) - 2.0 * first_affine_macs(net);
  const double gflops = (box ? 2.0 : 1.0) * step_flops * double(batch) / t * 1e-9;
  std::printf("  %-34s %8.0f images/s  (%.2f ms per step of %lld; %.1f GFLOP/s%s)\n", label, double(batch) / t,
              t * 1e3, (long long)batch, gflops, of_peak(gflops, device).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_engine: GEMM and convolution rates of the engine's kernels, and natural training steps"};
  std::string device_name = "cpu";
  double budget = 1.0;
  int threads = 0;
  app.add_option("--device", device_name, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--seconds", budget, "time per measurement")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    set_thread_count(threads, "[bench_engine] --threads");
    const Device device = parse_device(device_name);
    std::fprintf(stderr, "%s\n", device_banner(device).c_str());
    set_poison_new_tensors(false);
    if (device == Device::cpu) {
      const int n = omp_get_max_threads();
      const bench::Fp32Peak one = bench::measure_fp32_peak(1);
      const bench::Fp32Peak all = n > 1 ? bench::measure_fp32_peak(n) : one;
      g_peak_gflops = all.gflops;
      g_peak_one_gflops = one.gflops;
      std::printf("fp32 peak of this CPU (%s loop): %.1f GFLOP/s on 1 thread", one.isa, one.gflops);
      if (n > 1) std::printf(", %.1f on %d threads", all.gflops, n);
      std::printf(" (the yardstick of the percentages below)\n");
      std::printf("Each rate below: the fastest of %d windows of its time budget (the peak: the best of 3 runs)\n",
                  kWindows);
      // OpenBLAS's rates below: on a CPU with full-width AVX-512 FMA units (this EPYC) its
      // AVX2 (Haswell) kernels reach at most half of the AVX-512 peak measured above.
      const char* coretype = std::getenv("OPENBLAS_CORETYPE");
      std::printf("OpenBLAS kernels: %s (OPENBLAS_CORETYPE%s%s); the engine's GEMM: %s\n",
                  openblas_get_corename(), coretype ? "=" : " ", coretype ? coretype : "unset: OpenBLAS's own choice",
                  kern::gemm_cpu_description().c_str());
    }
    Rng rng(42);
    std::printf("GEMM at batch 100 (the layers of FC and CONV, and FC CROWN's backsubstitution):\n");
    bench_gemm("linear 784->400  (100x784 x 784x400)", 100, 400, 784, true, device, budget, rng);
    bench_gemm("linear 3136->100 (100x3136 x 3136x100)", 100, 100, 3136, true, device, budget, rng);
    bench_gemm("linear 400->200", 100, 200, 400, true, device, budget, rng);
    // FC CROWN's largest product: layer 2's 200 rows of each of 100 images through W1.
    bench_gemm("CROWN FC rows x W1 (20000x400 x 400x784)", 20000, 784, 400, false, device, budget, rng);
    if (device == Device::cpu) {
      std::printf("Live-column products of one image on 1 thread (kernels/cpu/gemm_selected_rows.cpp; the DeepZ-trained "
                  "FC's shapes at eps 0.3):\n");
      bench_selected_rows("9 spec rows x 188 of 400 live x W1 (784)", 9, 188, 400, 784, budget, rng);
      bench_selected_rows("96 rows x 188 of 400 live x W1 (784)", 96, 188, 400, 784, budget, rng);
      bench_selected_rows("74 rows x 63 of 100 live x W3 (200)", 74, 63, 100, 200, budget, rng);
    }
    std::printf("Convolutions (forward, data gradient, filter gradient)%s:\n",
                device == Device::cpu ? ", each CPU path (kernels/cpu/conv.cpp; * marks the one by_size takes)" : "");
    bench_conv("CONV layer 1, batch 100", {100, 1, 28, 28, 16, 4, 4, 2, 1, 14, 14}, device, budget, rng);
    bench_conv("CONV layer 2, batch 100", {100, 16, 14, 14, 32, 4, 4, 2, 1, 7, 7}, device, budget, rng);
    bench_conv("CONV+ patch windows 3x10x10", {20000, 3, 10, 10, 16, 4, 4, 2, 0, 4, 4}, device, budget, rng);
    bench_conv("CONV+ rows through conv 2", {2000, 16, 15, 15, 32, 4, 4, 1, 0, 12, 12}, device, budget, rng);
    bench_conv("3x32x32 -> 32, 3x3 p1, batch 64", {64, 3, 32, 32, 32, 3, 3, 1, 1, 32, 32}, device, budget, rng);
    std::printf("Natural training step (forward, backward, Adam), batch 100:\n");
    bench_training_step("FC  784-400-200-100-100-10", make_fc(rng), false, device, budget * 2, rng);
    bench_training_step("CONV conv16(4x4,s2,p1)-100-10", make_conv_net(rng), false, device, budget * 2, rng);
    std::printf("Box training step (interval bounds of the margins at eps 0.1, certified loss, backward, Adam), "
                "batch 100:\n");
    bench_training_step("FC  784-400-200-100-100-10", make_fc(rng), true, device, budget * 2, rng);
    bench_training_step("CONV conv16(4x4,s2,p1)-100-10", make_conv_net(rng), true, device, budget * 2, rng);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
  return 0;
}
