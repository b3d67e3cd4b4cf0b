// Products whose second operand is a list of rows of a larger matrix, read in
// place: the backsubstitution's live columns (kernels/cpu/relax.cpp). Per image,
// a dozen coefficient rows meet the weight rows of that image's live neurons, a
// different subset for every image. Through gemm_cpu each image had to copy its
// live weight rows out and then pack them again for a product of a dozen rows:
// two passes over the weights to feed one. Here the micro-kernels load the
// selected rows where they lie.
//
// Both products run on the calling thread (relax.cpp calls them inside its
// per-image parallel loop). Each output element sums its products in one fixed
// order, written out in the portable twin at the bottom, which the AVX-512
// kernels reproduce bit for bit (tests/test_gemm.cpp checks both against
// float64 and against each other; a CPU without AVX-512 gathers the rows for
// gemm_cpu instead):
//   gemm_selected_rows:   c = fma(a[p], b[p], c) for p = 0, 1, ..., k-1, from c = 0.
//   gemm_selected_rows_t: sixteen lanes, lane l summing p = l, l+16, ... by fma
//                         from 0 (past k, fma(0, 0, .)); then lanes l and l+8
//                         added, then l and l+4, l and l+2, l and l+1.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm_cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CTE_SELECTED_AVX512 1
#endif

namespace cte::kern {
namespace {

const float* selected_row(const SelectedRowsShape& s, const float* b, int64_t p) {
  return b + (s.b_rows ? s.b_rows[p] : p) * s.ldb;
}

#ifdef CTE_SELECTED_AVX512

constexpr int kMaxRows = 6;     // A rows per tile
constexpr int kMaxVectors = 4;  // gemm_selected_rows: 16-float vectors of C per tile row (6 x 4 = 24 zmm)
constexpr int kMaxColumns = 4;  // gemm_selected_rows_t: selected B rows per tile (6 x 4 = 24 zmm)

__mmask16 lanes_mask(int64_t lanes) { return lanes >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << lanes) - 1u); }

// C[0..R) x [j0, j0 + 16 V) with the last vector masked to `last_mask`. The
// shape's fields are copied to locals and the loops unrolled by pragma: with
// the struct read through its reference in the loop, GCC 12 kept the
// accumulators in memory and stored all of them on every k (half the speed).
template <int R, int V>
__attribute__((target("avx512f"))) void rows_tile(const SelectedRowsShape& s, const float* a, const float* b,
                                                  float* c, int64_t j0, __mmask16 last_mask) {
  const int64_t k = s.k, lda = s.lda, ldb = s.ldb, ldc = s.ldc;
  const int64_t* b_rows = s.b_rows;
  __m512 acc[R][V];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    const float* row = b + (b_rows ? b_rows[p] : p) * ldb + j0;
    __m512 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      bv[v] = v + 1 < V ? _mm512_loadu_ps(row + 16 * v) : _mm512_maskz_loadu_ps(last_mask, row + 16 * v);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + i * ldc + j0 + 16 * v;
      if (v + 1 < V) _mm512_storeu_ps(out, acc[i][v]);
      else _mm512_mask_storeu_ps(out, last_mask, acc[i][v]);
    }
}

// The sixteen lanes' sum in the order the header gives. Both halves come
// through the zero-masked extract with every lane kept: GCC 12's plain forms
// (the cast included) start from an undefined vector, which
// -Werror=uninitialized rejects.
__attribute__((target("avx512f,avx512dq"))) float lanes_sum(__m512 v) {
  const __mmask8 all = 0xFF;
  const __m256 eight =
      _mm256_add_ps(_mm512_maskz_extractf32x8_ps(all, v, 0), _mm512_maskz_extractf32x8_ps(all, v, 1));
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)));
}

// C[0..R) x [j0, j0 + C): A's rows dotted with the selected rows j0 .. j0 + C - 1 of B
// (locals and pragmas as in rows_tile).
template <int R, int C>
__attribute__((target("avx512f,avx512dq"))) void dots_tile(const SelectedRowsShape& s, const float* a, const float* b,
                                                           float* c, int64_t j0) {
  const int64_t k = s.k, lda = s.lda, ldc = s.ldc;
  __m512 acc[R][C];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
  const float* rows[C];
#pragma GCC unroll 4
  for (int j = 0; j < C; ++j) rows[j] = selected_row(s, b, j0 + j);
  for (int64_t p = 0; p < k; p += 16) {
    const __mmask16 mask = lanes_mask(k - p);
    __m512 bv[C];
#pragma GCC unroll 4
    for (int j = 0; j < C; ++j) bv[j] = _mm512_maskz_loadu_ps(mask, rows[j] + p);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(mask, a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < C; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < C; ++j) c[i * ldc + j0 + j] = lanes_sum(acc[i][j]);
}

// Tables of the tile instances, [rows - 1][vectors or columns - 1].
using Tile = void (*)(const SelectedRowsShape&, const float*, const float*, float*, int64_t, __mmask16);
template <int R, int... V>
constexpr std::array<Tile, sizeof...(V)> rows_tiles_of(std::integer_sequence<int, V...>) {
  return {rows_tile<R, V + 1>...};
}
template <int R, int C>
void dots_tile_entry(const SelectedRowsShape& s, const float* a, const float* b, float* c, int64_t j0, __mmask16) {
  dots_tile<R, C>(s, a, b, c, j0);
}
template <int R, int... C>
constexpr std::array<Tile, sizeof...(C)> dots_tiles_of(std::integer_sequence<int, C...>) {
  return {dots_tile_entry<R, C + 1>...};
}
template <int... R>
constexpr std::array<std::array<Tile, kMaxVectors>, sizeof...(R)> rows_tile_table(std::integer_sequence<int, R...>) {
  return {rows_tiles_of<R + 1>(std::make_integer_sequence<int, kMaxVectors>())...};
}
template <int... R>
constexpr std::array<std::array<Tile, kMaxColumns>, sizeof...(R)> dots_tile_table(std::integer_sequence<int, R...>) {
  return {dots_tiles_of<R + 1>(std::make_integer_sequence<int, kMaxColumns>())...};
}
constexpr auto kRowsTiles = rows_tile_table(std::make_integer_sequence<int, kMaxRows>());
constexpr auto kDotsTiles = dots_tile_table(std::make_integer_sequence<int, kMaxRows>());

// As gemm.cpp's blocked kernel: AVX-512 present and CTE_GEMM_OPENBLAS unset
// (that variable sends every product to OpenBLAS, these through the gathered rows).
bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          std::getenv("CTE_GEMM_OPENBLAS") == nullptr;
  return has;
}

void gemm_selected_rows_avx512(const SelectedRowsShape& s, const float* a, const float* b, float* c) {
  // Column blocks outer: a block's k x 64 floats of B are read once per 6 rows of A.
  for (int64_t j0 = 0; j0 < s.n; j0 += 16 * kMaxVectors) {
    const int64_t vectors = std::min<int64_t>(kMaxVectors, (s.n - j0 + 15) / 16);
    const __mmask16 last_mask = lanes_mask(s.n - j0 - 16 * (vectors - 1));
    for (int64_t i0 = 0; i0 < s.m; i0 += kMaxRows) {
      const int64_t rows = std::min<int64_t>(kMaxRows, s.m - i0);
      kRowsTiles[size_t(rows - 1)][size_t(vectors - 1)](s, a + i0 * s.lda, b, c + i0 * s.ldc, j0, last_mask);
    }
  }
}

void gemm_selected_rows_t_avx512(const SelectedRowsShape& s, const float* a, const float* b, float* c) {
  for (int64_t j0 = 0; j0 < s.n; j0 += kMaxColumns) {
    const int64_t columns = std::min<int64_t>(kMaxColumns, s.n - j0);
    for (int64_t i0 = 0; i0 < s.m; i0 += kMaxRows) {
      const int64_t rows = std::min<int64_t>(kMaxRows, s.m - i0);
      kDotsTiles[size_t(rows - 1)][size_t(columns - 1)](s, a + i0 * s.lda, b, c + i0 * s.ldc, j0, 0);
    }
  }
}

#endif  // CTE_SELECTED_AVX512

}  // namespace

void gemm_selected_rows_portable(const SelectedRowsShape& s, const float* a, const float* b, float* c) {
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < s.k; ++p) sum = std::fma(a[i * s.lda + p], selected_row(s, b, p)[j], sum);
      c[i * s.ldc + j] = sum;
    }
}

void gemm_selected_rows_t_portable(const SelectedRowsShape& s, const float* a, const float* b, float* c) {
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      const float* row = selected_row(s, b, j);
      float lanes[16] = {};
      for (int64_t p = 0; p < (s.k + 15) / 16 * 16; ++p) {
        const bool inside = p < s.k;
        lanes[p % 16] = std::fma(inside ? a[i * s.lda + p] : 0.0f, inside ? row[p] : 0.0f, lanes[p % 16]);
      }
      for (int half = 8; half >= 1; half /= 2)
        for (int l = 0; l < half; ++l) lanes[l] += lanes[l + half];
      c[i * s.ldc + j] = lanes[0];
    }
}

namespace {

// Without AVX-512: the selected rows copied into a per-thread buffer, then
// gemm_cpu (OpenBLAS there), far faster than the portable twins' scalar loops
// (which stay the tests' reference). Other last bits than the twins'.
void gemm_selected_rows_gathered(const SelectedRowsShape& s, const float* a, const float* b, float* c,
                                 bool transposed) {
  thread_local std::vector<float> rows;
  const int64_t count = transposed ? s.n : s.k, width = transposed ? s.k : s.n;
  rows.resize(size_t(count * width));
  for (int64_t p = 0; p < count; ++p) std::copy_n(selected_row(s, b, p), width, rows.begin() + p * width);
  GemmShape g = dense_gemm(false, transposed, s.m, s.n, s.k);
  g.lda = s.lda;
  g.ldb = width;
  g.ldc = s.ldc;
  gemm_cpu(g, 1.0f, a, rows.data(), 0.0f, c);
}

}  // namespace

bool gemm_selected_rows_vectorized() {
#ifdef CTE_SELECTED_AVX512
  return cpu_has_avx512();
#else
  return false;
#endif
}

namespace {

void dispatch(const SelectedRowsShape& s, const float* a, const float* b, float* c, bool transposed) {
  if (s.m == 0 || s.n == 0) return;
#ifdef CTE_SELECTED_AVX512
  if (cpu_has_avx512())
    return transposed ? gemm_selected_rows_t_avx512(s, a, b, c) : gemm_selected_rows_avx512(s, a, b, c);
#endif
  gemm_selected_rows_gathered(s, a, b, c, transposed);
}

}  // namespace

void gemm_selected_rows_cpu(const SelectedRowsShape& s, const float* a, const float* b, float* c) {
  dispatch(s, a, b, c, false);
}

void gemm_selected_rows_t_cpu(const SelectedRowsShape& s, const float* a, const float* b, float* c) {
  dispatch(s, a, b, c, true);
}

}  // namespace cte::kern
