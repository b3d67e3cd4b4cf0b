// This CPU's measured fp32 peak, the yardstick of `make bench`'s GFLOP/s lines:
// every thread runs fused multiply-adds on independent vector accumulators
// (enough of them to hide the FMA latency: 2 ports x 4-5 cycles), so the loop
// is bound by FMA throughput alone. Explicit FMA intrinsics, because the
// project compiles with -ffp-contract=off (a*b+c is never fused implicitly).
#pragma once
#include <omp.h>

#include <chrono>
#include <cstdint>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

namespace cte::bench {

struct Fp32Peak {
  double gflops = 0;  // all threads together
  int threads = 1;
  const char* isa = "";
};

namespace detail {

constexpr int kAccumulators = 12;

// FLOPs done by one thread in `iterations` rounds; the result feeds a sink so the loop is kept.
inline double fma_rounds(int64_t iterations, float* sink) {
#if defined(__AVX512F__)
  __m512 acc[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t r = 0; r < iterations; ++r)
    for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < kAccumulators; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it under -Werror)
  _mm512_storeu_ps(lanes, acc[0]);
  for (float v : lanes) *sink += v;
  return 2.0 * 16 * kAccumulators * double(iterations);
#elif defined(__FMA__)
  __m256 acc[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t r = 0; r < iterations; ++r)
    for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float lanes[8];
  for (int i = 1; i < kAccumulators; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  _mm256_storeu_ps(lanes, acc[0]);
  for (float v : lanes) *sink += v;
  return 2.0 * 8 * kAccumulators * double(iterations);
#else
  float acc[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) acc[i] = float(i) * 1e-3f;
  for (int64_t r = 0; r < iterations; ++r)
    for (int i = 0; i < kAccumulators; ++i) acc[i] = __builtin_fmaf(acc[i], 0.999999f, 1e-7f);
  for (float v : acc) *sink += v;
  return 2.0 * kAccumulators * double(iterations);
#endif
}

inline const char* isa_name() {
#if defined(__AVX512F__)
  return "AVX-512 FMA";
#elif defined(__FMA__)
  return "AVX2 FMA";
#else
  return "scalar fmaf";
#endif
}

}  // namespace detail

// The best of a few `seconds`-long runs on `threads` threads (OpenMP).
inline Fp32Peak measure_fp32_peak(int threads, double seconds = 0.3) {
  Fp32Peak best;
  best.threads = threads;
  best.isa = detail::isa_name();
  float sink = 0;
  for (int trial = 0; trial < 3; ++trial) {
    double flops = 0;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops, sink)
    {
      const auto t0 = std::chrono::steady_clock::now();
      while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds)
        flops += detail::fma_rounds(1 << 16, &sink);
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double gflops = flops / elapsed * 1e-9;
    if (gflops > best.gflops) best.gflops = gflops;
  }
  if (sink == 12345.0f) best.gflops += 0;  // keeps the sink alive
  return best;
}

}  // namespace cte::bench
