// bench_data: how fast the data sets load and batch. For each of mnist,
// fashion-mnist, svhn and cifar10 that find_data_dir can locate (flag unset,
// so $CTE_DATA_DIR, ./data or Debian's FashionMNIST), it times load_dataset,
// then runs BatchLoader over the training split with the data set's default
// augmentation at batch 100 for one epoch or about 3 seconds, whichever comes
// first, and prints batches/s. A synthetic CIFAR-sized set (crop 4 + flip) is
// always measured too, so augmentation cost is visible even without CIFAR-10.
// Usage: bench_data [--seconds S per loader] [--threads N] [--device cpu|cuda|auto]
// (the flags of the other benchmarks; loading runs on the host whatever --device).
#include <CLI/CLI.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "engine/device.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string describe(const cte::Augment& a) {
  if (a.crop_padding == 0 && !a.horizontal_flip) return "no augmentation";
  std::string s;
  if (a.crop_padding) s = "crop pad " + std::to_string(a.crop_padding);
  if (a.horizontal_flip) s += std::string(s.empty() ? "" : " + ") + "flip";
  return s;
}

// Runs one epoch (or until the time limit) and prints batches/s and images/s.
void bench_loader(const std::string& label, const cte::Dataset& data, const cte::Augment& augment,
                  double max_seconds) {
  constexpr int kBatch = 100;
  cte::BatchLoader loader(data, kBatch, /*seed=*/1, /*shuffle=*/true, augment);
  std::vector<float> images;
  std::vector<int> labels;
  size_t batches = 0, samples = 0;
  double checksum = 0;  // keeps the conversion from being optimised away
  const auto start = Clock::now();
  double elapsed = 0;
  while (loader.next(images, labels)) {
    ++batches;
    samples += labels.size();
    checksum += images[batches % images.size()];
    elapsed = seconds_since(start);
    if (elapsed >= max_seconds) break;
  }
  std::printf(
      "%-18s batches/s  %9.1f  (%s, batch %d, %zu of %zu batches in %.2f s, %.0f images/s, checksum %.3f)\n",
      label.c_str(), double(batches) / elapsed, describe(augment).c_str(), kBatch, batches,
      loader.batches_per_epoch(), elapsed, double(samples) / elapsed, checksum);
}

cte::Dataset synthetic_cifar(size_t n) {
  cte::Dataset d;
  d.name = "synthetic";
  d.channels = 3;
  d.height = d.width = 32;
  d.num_classes = 10;
  d.images.resize(n * d.image_numel());
  uint32_t x = 1;
  for (auto& p : d.images) p = uint8_t((x = x * 1664525u + 1013904223u) >> 24);
  for (size_t i = 0; i < n; ++i) d.labels.push_back(uint8_t(i % 10));
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_data: load time and batches/s of each data set found, with its default augmentation"};
  double max_seconds = 3.0;
  int threads = 0;
  std::string device_name = "cpu";
  app.add_option("--seconds", max_seconds, "time per loader (at most one epoch)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  app.add_option("--device", device_name,
                 "cpu, cuda or auto: checked and named in the banner; data loading runs on the host either way")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    cte::set_thread_count(threads, "[bench_data] --threads");
    std::fprintf(stderr, "%s\n", cte::device_banner(cte::parse_device(device_name)).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
#ifdef _OPENMP
  const int threads_used = omp_get_max_threads();
#else
  const int threads_used = 1;
#endif
  std::printf("bench_data: %d OpenMP threads, up to %.1f s per loader\n", threads_used, max_seconds);
  for (const char* name : {"mnist", "fashion-mnist", "svhn", "cifar10"}) {
    std::string dir;
    try {
      dir = cte::find_data_dir(name, "");
    } catch (const std::exception& e) {
      std::string why = e.what();  // on one line: the places tried, separated by "|"
      for (size_t at; (at = why.find("\n  ")) != std::string::npos;) why.replace(at, 3, " | ");
      for (size_t at; (at = why.find('\n')) != std::string::npos;) why.replace(at, 1, " ");
      std::printf("%-18s skipped: %s\n", name, why.c_str());
      continue;
    }
    try {
      const auto start = Clock::now();
      const cte::DatasetSplits splits = cte::load_dataset(name, "");
      const double load_s = seconds_since(start);
      const cte::Dataset& t = splits.train;
      std::printf(
          "%-18s load       %9.2f s (train %zu + test %zu images of %dx%dx%d, %.0f MB as uint8, from %s)\n",
          name, load_s, t.size(), splits.test.size(), t.channels, t.height, t.width,
          double(t.images.size() + splits.test.images.size()) / 1e6, splits.dir.c_str());
      bench_loader(name, t, cte::default_augment(name), max_seconds);
    } catch (const std::exception& e) {
      std::printf("%-18s FAILED: %s\n", name, e.what());
    }
  }
  const cte::Dataset synth = synthetic_cifar(50000);
  bench_loader("synthetic-3x32x32", synth, cte::Augment{4, true}, max_seconds);
  bench_loader("synthetic-3x32x32", synth, cte::Augment{}, max_seconds);
  return 0;
}
