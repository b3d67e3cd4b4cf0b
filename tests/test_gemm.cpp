// The CPU GEMM's own blocked AVX-512 kernel (kernels/cpu/gemm.cpp) against a
// plain float64 product, over shapes that cross every blocking edge: micro-tile
// rows (12) and columns (32), the k slice (256), the row block (96) and the
// column block (2048), with both transposes, alpha and beta, padded rows,
// batches with gaps and a shared B. C starts as NaN wherever it is not an input,
// so a tile written out of place, a padding column touched or a beta-0 C read
// all fail. A second case checks that the result is the same bit for bit on 1, 2
// and 3 threads, through each of the kernel's ways of sharing work; a third,
// that skipping a panel's all-zero k (dead neurons' coefficients) changes no
// bit. On a CPU without AVX-512 they are skipped with a message (gemm_cpu then
// is OpenBLAS, which the kernel parity suite covers). The last case checks the
// products over selected rows of B (gemm_selected_rows.cpp) on any CPU.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/gemm_cpu.h"

namespace {

using namespace cte::kern;

struct Product {
  bool trans_a, trans_b;
  int64_t m, n, k, batch;
  float alpha, beta;
  int64_t pad;          // extra floats at the end of every stored row
  bool shared_b;        // stride_b = 0: every product of the batch reads one B
};

struct Operands {
  GemmShape shape;
  std::vector<float> a, b, c;
};

float uniform(std::mt19937& rng) { return float(double(rng()) / 4294967296.0 * 2.0 - 1.0); }

Operands make_operands(const Product& p, std::mt19937& rng) {
  const int64_t a_rows = p.trans_a ? p.k : p.m, a_cols = p.trans_a ? p.m : p.k;
  const int64_t b_rows = p.trans_b ? p.n : p.k, b_cols = p.trans_b ? p.k : p.n;
  const int64_t lda = a_cols + p.pad, ldb = b_cols + p.pad, ldc = p.n + p.pad;
  // Gaps between the matrices of a batch, so a wrong stride reads or writes the wrong place.
  const int64_t stride_a = a_rows * lda + 5, stride_b = p.shared_b ? 0 : b_rows * ldb + 3, stride_c = p.m * ldc + 2;
  Operands o;
  o.shape = {p.trans_a, p.trans_b, p.m, p.n, p.k, lda, ldb, ldc, stride_a, stride_b, stride_c, p.batch};
  o.a.resize(size_t(p.batch * stride_a));
  o.b.resize(size_t((p.shared_b ? 1 : p.batch) * (b_rows * ldb + 3)));
  o.c.assign(size_t(p.batch * stride_c), std::numeric_limits<float>::quiet_NaN());
  for (float& x : o.a) x = uniform(rng);
  for (float& x : o.b) x = uniform(rng);
  if (p.beta != 0.0f)
    for (int64_t q = 0; q < p.batch; ++q)
      for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < p.n; ++j) o.c[size_t(q * stride_c + i * ldc + j)] = uniform(rng);
  return o;
}

std::string describe(const Product& p) {
  std::ostringstream s;
  s << (p.trans_a ? "T" : "N") << (p.trans_b ? "T" : "N") << " m=" << p.m << " n=" << p.n << " k=" << p.k
    << " batch=" << p.batch << " alpha=" << p.alpha << " beta=" << p.beta << " pad=" << p.pad
    << (p.shared_b ? " shared B" : "");
  return s.str();
}

// Every C element against sum_q alpha a b + beta c in float64, within
// gamma_(k+2) times the sum of the magnitudes (the bound of any summation
// order with fused or separate multiply-adds); every other element of C still NaN.
void check_against_float64(const Product& p, const Operands& in, const std::vector<float>& out) {
  const GemmShape& s = in.shape;
  const double u = 1.0 / double(1 << 24), gamma = double(p.k + 2) * u / (1.0 - double(p.k + 2) * u);
  int64_t wrong = 0, untouched_broken = 0;
  std::string first;
  std::vector<bool> is_output(out.size(), false);
  for (int64_t q = 0; q < p.batch; ++q)
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        const size_t at = size_t(q * s.stride_c + i * s.ldc + j);
        is_output[at] = true;
        double sum = p.beta != 0.0f ? double(p.beta) * in.c[at] : 0.0;
        double magnitude = std::fabs(sum);
        for (int64_t r = 0; r < p.k; ++r) {
          const double av = in.a[size_t(q * s.stride_a + (p.trans_a ? r * s.lda + i : i * s.lda + r))];
          const double bv = in.b[size_t(q * s.stride_b + (p.trans_b ? j * s.ldb + r : r * s.ldb + j))];
          sum += double(p.alpha) * av * bv;
          magnitude += std::fabs(double(p.alpha) * av * bv);
        }
        const double error = std::fabs(double(out[at]) - sum);
        if (!(error <= gamma * magnitude)) {
          if (wrong++ == 0) {
            std::ostringstream m;
            m << "C[" << q << "][" << i << "][" << j << "] = " << out[at] << ", float64 " << sum << ", error "
              << error << " > " << gamma * magnitude;
            first = m.str();
          }
        }
      }
  for (size_t at = 0; at < out.size(); ++at)
    if (!is_output[at] && !std::isnan(out[at])) ++untouched_broken;
  INFO(describe(p), ": ", first);
  CHECK(wrong == 0);
  CHECK(untouched_broken == 0);
}

std::vector<float> run_blocked(const Operands& in) {
  std::vector<float> c = in.c;
  gemm_blocked_cpu(in.shape, 1.0f, in.a.data(), in.b.data(), 0.0f, c.data());
  return c;
}

}  // namespace

TEST_CASE("gemm: the blocked AVX-512 kernel agrees with a float64 product across every blocking edge") {
  if (!gemm_blocked_available()) {
    MESSAGE("skipped: no AVX-512 on this CPU (or CTE_GEMM_OPENBLAS is set); gemm_cpu is OpenBLAS here");
    return;
  }
  struct Dims {
    int64_t m, n, k;
  };
  // 12 x 32 tiles (12 x 16 for a last panel of at most 16 columns), 16-deep
  // in-register transposes, 256-deep k slices, 96-row blocks, 2048-column
  // blocks: each size sits on, just past or well past one of them.
  const Dims dims[] = {{1, 1, 1},      {11, 31, 7},     {12, 32, 256},  {13, 33, 257}, {30, 16, 64},
                       {12, 48, 33},   {97, 65, 300},   {200, 100, 520}, {25, 2100, 40}};
  std::mt19937 rng(909);
  const int threads_before = omp_get_max_threads();
  for (int threads : {1, 3}) {
    omp_set_num_threads(threads);
    for (bool trans_a : {false, true})
      for (bool trans_b : {false, true})
        for (const Dims& d : dims)
          for (int variant = 0; variant < 3; ++variant) {
            // variant 0: plain; 1: alpha, beta, padded rows, a batch with gaps; 2: beta 1, shared B
            const Product p{trans_a, trans_b, d.m, d.n, d.k, variant == 0 ? 1 : 2,
                            variant == 1 ? 1.5f : 1.0f,
                            variant == 0 ? 0.0f : variant == 1 ? -0.75f : 1.0f,
                            variant == 1 ? 3 : 0, variant == 2};
            const Operands in = make_operands(p, rng);
            std::vector<float> out = in.c;
            gemm_blocked_cpu(in.shape, p.alpha, in.a.data(), in.b.data(), p.beta, out.data());
            INFO("threads=", threads);
            check_against_float64(p, in, out);
          }
  }
  omp_set_num_threads(threads_before);
}

TEST_CASE("gemm: the blocked kernel gives the same bits on 1, 2 and 3 threads") {
  if (!gemm_blocked_available()) {
    MESSAGE("skipped: no AVX-512 on this CPU (or CTE_GEMM_OPENBLAS is set)");
    return;
  }
  // Each way of sharing the work: one product split by column panels (40 rows:
  // one row block), by row blocks (500 rows, few columns), and a batch handed
  // out whole products per thread.
  const Product products[] = {{false, false, 40, 300, 600, 1, 1.0f, 0.0f, 0, false},
                              {true, true, 500, 70, 300, 1, 1.0f, 0.0f, 0, false},
                              {false, true, 30, 100, 280, 7, 1.0f, 0.0f, 0, false}};
  std::mt19937 rng(4242);
  const int threads_before = omp_get_max_threads();
  for (const Product& p : products) {
    const Operands in = make_operands(p, rng);
    omp_set_num_threads(1);
    const std::vector<float> one = run_blocked(in);
    check_against_float64(p, in, one);
    for (int threads : {2, 3}) {
      omp_set_num_threads(threads);
      const std::vector<float> many = run_blocked(in);
      INFO(describe(p), " threads=", threads);
      CHECK(std::memcmp(one.data(), many.data(), sizeof(float) * one.size()) == 0);
    }
  }
  omp_set_num_threads(threads_before);
}

TEST_CASE("gemm: the blocked kernel's skipped all-zero k give the bits of the product without them") {
  if (!gemm_blocked_available()) {
    MESSAGE("skipped: no AVX-512 on this CPU (or CTE_GEMM_OPENBLAS is set)");
    return;
  }
  // A backsubstitution's shape: 6 images x 40 rows, each image with its own
  // dead neurons (all-zero columns of its rows), some of them -0. Against
  // float64; and, where the same columns are zero in every row, bit for bit
  // against the product with those columns of A and rows of B removed, which
  // is what skipping them must amount to. A NaN in a zero column still counts.
  const int64_t images = 6, rows = 40, m = images * rows, n = 100, k = 250;  // one k slice: one order
  std::mt19937 rng(77);
  for (bool trans_a : {false, true}) {
    for (bool same_for_all : {false, true}) {
      const Product p{trans_a, false, m, n, k, 1, 1.0f, 0.0f, 0, false};
      Operands in = make_operands(p, rng);
      std::vector<bool> dead(size_t(images * k), false);
      for (int64_t image = 0; image < images; ++image)
        for (int64_t q = 0; q < k; ++q)
          dead[size_t(image * k + q)] = same_for_all ? q % 3 != 1 : rng() % 2 == 0;
      auto at = [&](int64_t i, int64_t q) { return size_t(trans_a ? q * in.shape.lda + i : i * in.shape.lda + q); };
      for (int64_t i = 0; i < m; ++i)
        for (int64_t q = 0; q < k; ++q)
          if (dead[size_t((same_for_all ? 0 : i / rows) * k + q)]) in.a[at(i, q)] = q % 5 == 0 ? -0.0f : 0.0f;
      std::vector<float> out = in.c;
      gemm_blocked_cpu(in.shape, 1.0f, in.a.data(), in.b.data(), 0.0f, out.data());
      INFO("trans_a=", trans_a, " same_for_all=", same_for_all);
      check_against_float64(p, in, out);
      if (same_for_all) {
        std::vector<int64_t> live;
        for (int64_t q = 0; q < k; ++q)
          if (!dead[size_t(q)]) live.push_back(q);
        const int64_t kept = int64_t(live.size());
        std::vector<float> a_kept(size_t(m * kept)), b_kept(size_t(kept * n)), c_kept(size_t(m * n));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t t = 0; t < kept; ++t) a_kept[size_t(i * kept + t)] = in.a[at(i, live[size_t(t)])];
        for (int64_t t = 0; t < kept; ++t)
          for (int64_t j = 0; j < n; ++j) b_kept[size_t(t * n + j)] = in.b[size_t(live[size_t(t)] * in.shape.ldb + j)];
        const GemmShape kept_shape{false, false, m, n, kept, kept, n, n, 0, 0, 0, 1};
        gemm_blocked_cpu(kept_shape, 1.0f, a_kept.data(), b_kept.data(), 0.0f, c_kept.data());
        int64_t differ = 0;
        for (int64_t i = 0; i < m; ++i)
          differ += std::memcmp(&c_kept[size_t(i * n)], &out[size_t(i * in.shape.ldc)], sizeof(float) * n) != 0;
        CHECK(differ == 0);
      }
      // One NaN in a column that is otherwise zero for its image: that
      // column is live, and the NaN reaches every element of its row.
      in.a[at(rows + 3, 10)] = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> with_nan = in.c;
      gemm_blocked_cpu(in.shape, 1.0f, in.a.data(), in.b.data(), 0.0f, with_nan.data());
      int64_t nan_in_row = 0;
      for (int64_t j = 0; j < n; ++j) nan_in_row += std::isnan(with_nan[size_t((rows + 3) * in.shape.ldc + j)]);
      CHECK(nan_in_row == n);
    }
  }
}

// gemm_selected_rows(_t) (kernels/cpu/gemm_selected_rows.cpp), the products of
// the backsubstitution's live columns: against float64 within gamma_(k+2) of
// the magnitudes, and the vectorized kernels against their portable twins bit
// for bit (the file states one summation order for both). Shapes cross the
// tiles' edges (6 rows; 4 x 16 columns of the row kernel; 4 selected rows of
// the dot kernel; 16-wide k vectors); B's rows are picked out of order with a
// repeat, or in order (null list); rows are padded; C outside the product
// stays NaN.
TEST_CASE("gemm: the selected-rows products agree with float64 and, bit for bit, with their portable twins") {
  struct Dims {
    int64_t m, n, k;
  };
  const Dims dims[] = {{1, 1, 1}, {5, 15, 3}, {6, 16, 16}, {7, 17, 17}, {13, 70, 40}, {12, 64, 33}, {9, 130, 100},
                       {3, 5, 0}};
  std::mt19937 rng(5150);
  for (bool transposed : {false, true})
    for (bool listed : {true, false})
      for (const Dims& d : dims) {
        const int64_t selected = transposed ? d.n : d.k, width = transposed ? d.k : d.n;
        const int64_t b_height = selected + 7, lda = d.k + 3, ldb = width + 5, ldc = d.n + 2;
        std::vector<int64_t> rows(static_cast<size_t>(selected));
        for (int64_t p = 0; p < selected; ++p) rows[size_t(p)] = listed ? (p * 5 + 3) % b_height : p;
        if (listed && selected > 2) rows[size_t(selected - 1)] = rows[0];  // a row picked twice
        std::vector<float> a(size_t(d.m * lda)), b(size_t(b_height * ldb));
        for (float& x : a) x = uniform(rng);
        for (float& x : b) x = uniform(rng);
        const SelectedRowsShape s{d.m, d.n, d.k, lda, ldb, ldc, listed ? rows.data() : nullptr};
        std::vector<float> fast(size_t(d.m * ldc), std::numeric_limits<float>::quiet_NaN()), portable = fast;
        if (transposed) {
          gemm_selected_rows_t_cpu(s, a.data(), b.data(), fast.data());
          gemm_selected_rows_t_portable(s, a.data(), b.data(), portable.data());
        } else {
          gemm_selected_rows_cpu(s, a.data(), b.data(), fast.data());
          gemm_selected_rows_portable(s, a.data(), b.data(), portable.data());
        }
        INFO((transposed ? "gemm_selected_rows_t" : "gemm_selected_rows"), " m=", d.m, " n=", d.n, " k=", d.k,
             (listed ? " listed rows" : " rows in order"));
        if (gemm_selected_rows_vectorized())  // else gemm_cpu on gathered rows: other last bits
          CHECK(std::memcmp(fast.data(), portable.data(), sizeof(float) * fast.size()) == 0);
        const double u = 1.0 / double(1 << 24), gamma = double(d.k + 2) * u / (1.0 - double(d.k + 2) * u);
        // Elements of `out` off float64 by more than gamma_(k+2) of the magnitudes, and written outside the product.
        auto count_wrong = [&](const std::vector<float>& out, int64_t& outside_written) {
          int64_t wrong = 0;
          outside_written = 0;
          for (int64_t i = 0; i < d.m; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const float got = out[size_t(i * ldc + j)];
              if (j >= d.n) {
                outside_written += !std::isnan(got);
                continue;
              }
              double sum = 0.0, magnitude = 0.0;
              for (int64_t p = 0; p < d.k; ++p) {
                const double bv =
                    transposed ? b[size_t(rows[size_t(j)] * ldb + p)] : b[size_t(rows[size_t(p)] * ldb + j)];
                sum += double(a[size_t(i * lda + p)]) * bv;
                magnitude += std::fabs(double(a[size_t(i * lda + p)]) * bv);
              }
              wrong += !(std::fabs(double(got) - sum) <= gamma * magnitude);
            }
          return wrong;
        };
        // The twin too, so a CPU without AVX-512 still checks it.
        for (const std::vector<float>* out : {&fast, &portable}) {
          int64_t outside_written = 0;
          CHECK(count_wrong(*out, outside_written) == 0);
          CHECK(outside_written == 0);
        }
      }
  if (!gemm_selected_rows_vectorized())
    MESSAGE("no AVX-512 on this CPU: the selected-rows products gather for gemm_cpu, checked against float64 only");
}
