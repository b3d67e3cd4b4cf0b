// CPU twin of the gemm kernel: row-major, batched. The CUDA twin
// (kernels/cuda/gemm.cu) calls cuBLAS with the same semantics.
//
// Two paths. On a CPU with AVX-512 (checked at run time) our own blocked GEMM
// below; elsewhere OpenBLAS's sgemm. Why our own: OpenBLAS picks its kernels by
// CPU model, and where a machine pins OPENBLAS_CORETYPE=Haswell (as the AMD EPYC
// of the development sessions does, since older OpenBLAS builds misbehave on
// some processors) it runs 256-bit kernels at half of a 512-bit core's peak.
// The project never overrides that variable; it runs its own kernel instead.
//
// The blocked GEMM is the classic Goto/BLIS scheme, small enough to read:
//   for each kKc-deep slice of k:        pack op(B)[slice, :] into kNr-wide panels
//     for each kMc-high block of rows:   pack op(A)[block, slice] into kMr-high panels,
//                                        dropping each panel's all-zero k (ALivePanels)
//       for each (kMr x kNr) tile:       the micro-kernel: one rank-1 update per live k,
//                                        held in 24 zmm registers (12 for a last panel
//                                        of at most 16 columns), then one store
// Packing makes both operands contiguous in the order the micro-kernel reads them
// (and absorbs the transposes and the zero padding of ragged edges); a row-major
// A and a transposed B are packed through 16 x 16 in-register transposes. A B panel
// (kKc x kNr floats, 32 KiB) stays in L1 while the A panels of a block stream
// from L2. Each C element sums its k products in one fixed order (slice by
// slice, k ascending) whatever the thread count, so results are reproducible
// bit for bit across --threads. No reassociation beyond what any BLAS does: the
// sound mode's rounding bounds (gamma_k over k products) hold for any order.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cpu/gemm_cpu.h"
#include "kernels/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CTE_GEMM_AVX512 1
#endif

namespace cte::kern {
namespace {

void gemm_openblas(const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c) {
  for (int64_t i = 0; i < s.batch; ++i) {
    float* ci = c + i * s.stride_c;
    if (s.k == 0) {  // BLAS leaves C untouched in some builds; define it: C = beta * C
      for (int64_t r = 0; r < s.m; ++r)
        for (int64_t col = 0; col < s.n; ++col)
          ci[r * s.ldc + col] = beta == 0.0f ? 0.0f : beta * ci[r * s.ldc + col];
      continue;
    }
    cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans,
                int(s.m), int(s.n), int(s.k), alpha, a + i * s.stride_a, int(s.lda), b + i * s.stride_b,
                int(s.ldb), beta, ci, int(s.ldc));
  }
}

#ifdef CTE_GEMM_AVX512

constexpr int64_t kMr = 12;    // micro-tile rows: 12 x 2 accumulators + 2 B vectors + 1 broadcast <= 32 zmm
constexpr int64_t kNr = 32;    // micro-tile columns: two 16-float zmm vectors
constexpr int64_t kKc = 256;   // k slice: a packed B panel is kKc x kNr floats = 32 KiB (L1)
constexpr int64_t kMc = 96;    // rows per packed A block: kMc x kKc floats = 96 KiB (L2)
constexpr int64_t kNc = 2048;  // columns per packed B block: kKc x kNc floats = 2 MiB
static_assert(kMc % kMr == 0 && kNc % kNr == 0, "gemm: a packed block holds whole micro-panels");

// The k of a packed A panel whose kMr values are not all zero, and how many.
// A backsubstitution's coefficients after a ReLU step are zero in every column
// of a dead neuron (and, for hBox, of an unstable one) for all rows of an
// image, and an image's rows are contiguous: a panel skips those k outright.
// Skipping leaves out only exact zeros' products, so the sums are the values
// of the full ones where B is finite (a -0 may stay where the full sum's
// zeros would have made it +0; 0 x inf would be NaN, which the reference BLAS,
// skipping zero multipliers too, does not keep either; OpenBLAS, which takes
// small products here, does). Since 2026-12-07 products of 32 to 63 columns
// come here instead of OpenBLAS: their last bits differ from earlier runs'.
struct ALivePanels {
  int32_t k[kMc / kMr][kKc];
  int64_t count[kMc / kMr];
};

// Packing buffers, one pair per thread, 64-byte aligned, grown on demand.
struct PackBuffers {
  float* a = nullptr;  // [kMc / kMr][kKc][kMr]
  float* b = nullptr;  // [kNc / kNr][kKc][kNr]
  ALivePanels live;    // which k of each packed A panel are not all zero
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
  void reserve() {
    if (a) return;
    a = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMc * kKc));
    b = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kNc * kKc));
    if (!a || !b) std::abort();
  }
};
PackBuffers& thread_buffers() {
  thread_local PackBuffers buffers;
  buffers.reserve();
  return buffers;
}

// dst[p][r] = src[r][p] for p < 16 and r < dst_columns (<= 16), with rows
// r >= rows read as zero: the four-stage in-register transpose (pairs, quads,
// 128-bit lanes, 256-bit halves). The shuffles are the zero-masked forms with
// every lane kept: GCC 12's plain forms start from _mm512_undefined_ps, which
// -Werror=uninitialized rejects.
__attribute__((target("avx512f"))) void transpose_16x16(const float* src, int64_t ld_src, int64_t rows,
                                                        float* dst, int64_t ld_dst, int dst_columns = 16) {
  assert(dst_columns >= 1 && dst_columns <= 16);
  const __mmask16 kAll = 0xffff, kStore = __mmask16((1u << dst_columns) - 1u);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src + i * ld_src) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {  // t[i]: r[i][q], r[i+1][q] interleaved for q = 0, 1 of each quad
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + q]: element q of each 128-bit lane, from rows i .. i + 3
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)  // lanes 0, 2 and 1, 3 of the row groups i and i + 4
    for (int q = 0; q < 4; ++q) {
      t[h + q] = _mm512_maskz_shuffle_f32x4(kAll, r[h + q], r[h + q + 4], 0x88);
      t[h + q + 4] = _mm512_maskz_shuffle_f32x4(kAll, r[h + q], r[h + q + 4], 0xDD);
    }
  for (int p = 0; p < 8; ++p) {  // the two row halves side by side: columns p and p + 8
    _mm512_mask_storeu_ps(dst + p * ld_dst, kStore, _mm512_maskz_shuffle_f32x4(kAll, t[p], t[p + 8], 0x88));
    _mm512_mask_storeu_ps(dst + (p + 8) * ld_dst, kStore, _mm512_maskz_shuffle_f32x4(kAll, t[p], t[p + 8], 0xDD));
  }
}

// op(B)[p0 : p0 + kc, j0 : j0 + nc] -> panels of kNr columns; panel q holds, for
// each p, the kNr values of columns j0 + q kNr + [0, kNr), zero beyond n.
__attribute__((target("avx512f"))) void pack_b(const float* b, int64_t ldb, bool trans_b, int64_t p0, int64_t kc,
                                               int64_t j0, int64_t nc, int64_t panel_begin, int64_t panel_end,
                                               float* packed /* [panels][kc][kNr], 64-byte aligned */) {
  static_assert(kNr == 32, "pack_b: a panel's row is two zmm");
  for (int64_t q = panel_begin; q < panel_end; ++q) {
    float* dst = packed + q * kc * kNr;
    const int64_t j = j0 + q * kNr, width = std::min(kNr, nc - q * kNr);
    if (!trans_b) {  // rows of B are contiguous: two (masked) zmm per p, zero beyond n
      // (a memcpy of 128 bytes per p was 3% of the natural CONV step: a call per row)
      const __mmask16 low = __mmask16((1u << std::min<int64_t>(width, 16)) - 1u);
      const __mmask16 high = __mmask16((1u << std::clamp<int64_t>(width - 16, 0, 16)) - 1u);
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = b + (p0 + p) * ldb + j;
        _mm512_store_ps(dst + p * kNr, _mm512_maskz_loadu_ps(low, src));
        _mm512_store_ps(dst + p * kNr + 16, _mm512_maskz_loadu_ps(high, src + 16));
      }
    } else {  // op(B)[p][j] = B[j][p]: 16 x 16 blocks transposed in registers, the rest one by one
      const float* src = b + j * ldb + p0;
      int64_t p = 0;
      for (; p + 16 <= kc; p += 16)
        for (int64_t half = 0; half < 2; ++half)
          transpose_16x16(src + half * 16 * ldb + p, ldb, std::clamp<int64_t>(width - half * 16, 0, 16),
                          dst + p * kNr + half * 16, kNr);
      for (; p < kc; ++p)
        for (int64_t jj = 0; jj < kNr; ++jj) dst[p * kNr + jj] = jj < width ? src[jj * ldb + p] : 0.0f;
    }
  }
}

// op(A)[i0 : i0 + mc, p0 : p0 + kc] -> panels of kMr rows; panel r holds, for
// each p, the kMr values of rows i0 + r kMr + [0, kMr), zero beyond m.
// Then each panel's all-zero k are dropped: its live k move to the front, in
// order, and `live` lists them (count == kc: none dropped).
__attribute__((target("avx512f"))) void pack_a(const float* a, int64_t lda, bool trans_a, int64_t i0, int64_t mc,
                                               int64_t p0, int64_t kc, float* packed /* [panels][kc][kMr] */,
                                               ALivePanels& live) {
  static_assert(kMr <= 16, "pack_a: a panel's k-th values fit one zmm");
  const __mmask16 kPanel = __mmask16((1u << kMr) - 1u);
  for (int64_t r = 0; r * kMr < mc; ++r) {
    float* dst = packed + r * kc * kMr;
    const int64_t i = i0 + r * kMr, height = std::min(kMr, mc - r * kMr);
    const __mmask16 rows_mask = __mmask16((1u << height) - 1u);
    if (trans_a) {  // op(A)[i][p] = A[p][i]: the kMr values of one p are contiguous in A
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(dst + p * kMr, kPanel, _mm512_maskz_loadu_ps(rows_mask, a + (p0 + p) * lda + i));
    } else {  // the panel's rows of A, 16 k at a time, transposed in registers
      const float* src = a + i * lda + p0;
      int64_t p = 0;
      for (; p + 16 <= kc; p += 16) transpose_16x16(src + p, lda, height, dst + p * kMr, kMr, int(kMr));
      for (; p < kc; ++p)
        for (int64_t ii = 0; ii < kMr; ++ii) dst[p * kMr + ii] = ii < height ? src[ii * lda + p] : 0.0f;
    }
    int64_t count = 0;
    for (int64_t p = 0; p < kc; ++p) {
      // All kMr values 0 (-0 too; NaN compares unequal, so it stays live).
      const __m512 values = _mm512_maskz_loadu_ps(kPanel, dst + p * kMr);
      if (_mm512_mask_cmp_ps_mask(kPanel, values, _mm512_setzero_ps(), _CMP_EQ_OQ) == kPanel) continue;
      if (count != p) _mm512_mask_storeu_ps(dst + count * kMr, kPanel, values);
      live.k[r][count++] = int32_t(p);
    }
    live.count[r] = count;
  }
}

// C[0 : rows, 0 : cols] = alpha * (packed A panel x packed B panel) + beta * C,
// rows <= kMr, cols <= 16 kVectors; C is read only where beta != 0 (it may
// hold NaN). kVectors: the zmm columns computed, 2 (a whole kNr panel) or 1 (a
// ragged last panel of at most 16 columns, which then costs half the FMAs).
// The A panel holds `count` k; kSkips: they are the k listed in live_k (the
// panel dropped its all-zero k), else 0 .. count - 1.
template <bool kSkips, int kVectors>
__attribute__((target("avx512f"))) void micro_kernel(int64_t count, const float* a_panel /* [count][kMr] */,
                                                     const int32_t* live_k /* [count] */,
                                                     const float* b_panel /* [kc][kNr] */, float* c, int64_t ldc,
                                                     int64_t rows, int64_t cols, float alpha, float beta) {
  static_assert(kVectors == 1 || kVectors == 2, "micro_kernel: a panel is two zmm wide");
  __m512 acc[kMr][kVectors];
  for (int64_t i = 0; i < kMr; ++i)
    for (int h = 0; h < kVectors; ++h) acc[i][h] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t t = 0; t < count; ++t) {
    const float* bp = b_panel + (kSkips ? int64_t(live_k[t]) : t) * kNr;
    __m512 bv[kVectors];
    for (int h = 0; h < kVectors; ++h) bv[h] = _mm512_load_ps(bp + 16 * h);
    const float* ap = a_panel + t * kMr;
#pragma GCC unroll 12
    for (int64_t i = 0; i < kMr; ++i) {
      const __m512 ai = _mm512_set1_ps(ap[i]);
      for (int h = 0; h < kVectors; ++h) acc[i][h] = _mm512_fmadd_ps(ai, bv[h], acc[i][h]);
    }
  }
  const __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    for (int h = 0; h < kVectors; ++h) {
      const int64_t live_cols = std::clamp<int64_t>(cols - 16 * h, 0, 16);
      const __mmask16 mask = live_cols == 16 ? __mmask16(0xffff) : __mmask16((1u << live_cols) - 1u);
      __m512 r = alpha == 1.0f ? acc[i][h] : _mm512_mul_ps(valpha, acc[i][h]);
      if (beta != 0.0f) {
        const __m512 old = _mm512_maskz_loadu_ps(mask, ci + 16 * h);
        r = beta == 1.0f ? _mm512_add_ps(r, old) : _mm512_fmadd_ps(vbeta, old, r);
      }
      _mm512_mask_storeu_ps(ci + 16 * h, mask, r);
    }
  }
}

// One tile: the micro-kernel instance for its A panel's zero skips and its width.
void tile(int64_t count, int64_t kc, const float* a_panel, const int32_t* live_k, const float* b_panel, float* c,
          int64_t ldc, int64_t rows, int64_t cols, float alpha, float beta) {
  const bool skips = count != kc, narrow = cols <= 16;
  if (!skips && !narrow) micro_kernel<false, 2>(count, a_panel, live_k, b_panel, c, ldc, rows, cols, alpha, beta);
  else if (!skips) micro_kernel<false, 1>(count, a_panel, live_k, b_panel, c, ldc, rows, cols, alpha, beta);
  else if (!narrow) micro_kernel<true, 2>(count, a_panel, live_k, b_panel, c, ldc, rows, cols, alpha, beta);
  else micro_kernel<true, 1>(count, a_panel, live_k, b_panel, c, ldc, rows, cols, alpha, beta);
}

// One C = alpha op(A) op(B) + beta C. `parallel`: the OpenMP team shares the
// work, in one parallel region for the whole product (otherwise the calling
// thread does everything).
void gemm_blocked(const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c,
                  bool parallel) {
  const int64_t m = s.m, n = s.n, k = s.k;
  float* packed_b = thread_buffers().b;  // the calling thread's buffer, shared with its team
  (void)parallel;                        // builds without OpenMP (ThreadSanitizer's) ignore the pragma
#pragma omp parallel if (parallel)
  {
    const int threads = omp_get_num_threads(), me = omp_get_thread_num();
    float* packed_a = thread_buffers().a;
    ALivePanels& live = thread_buffers().live;
    for (int64_t j0 = 0; j0 < n; j0 += kNc) {
      const int64_t nc = std::min(kNc, n - j0), b_panels = (nc + kNr - 1) / kNr;
      for (int64_t p0 = 0; p0 < k; p0 += kKc) {
        const int64_t kc = std::min(kKc, k - p0);
        const float slice_beta = p0 == 0 ? beta : 1.0f;  // later slices add to the first one's result
#pragma omp barrier
        pack_b(b, s.ldb, s.trans_b, p0, kc, j0, nc, b_panels * me / threads, b_panels * (me + 1) / threads,
               packed_b);
#pragma omp barrier
        // Each thread owns whole kMc-row blocks when there are enough of them to
        // share evenly, else a group of kNr columns in every block (each thread
        // then packs every A block for itself): either way a tile is one thread's,
        // and no two threads write the same C element.
        const int64_t row_blocks = (m + kMc - 1) / kMc;
        const bool split_rows = row_blocks >= 4 * threads || b_panels < 2 * threads;
        for (int64_t block = split_rows ? me : 0; block < row_blocks; block += split_rows ? threads : 1) {
          const int64_t i0 = block * kMc, mc = std::min(kMc, m - i0), a_panels = (mc + kMr - 1) / kMr;
          pack_a(a, s.lda, s.trans_a, i0, mc, p0, kc, packed_a, live);
          const int64_t q_begin = split_rows ? 0 : b_panels * me / threads;
          const int64_t q_end = split_rows ? b_panels : b_panels * (me + 1) / threads;
          for (int64_t q = q_begin; q < q_end; ++q)
            for (int64_t r = 0; r < a_panels; ++r) {
              const float* a_panel = packed_a + r * kc * kMr;
              const float* b_panel = packed_b + q * kc * kNr;
              float* c_tile = c + (i0 + r * kMr) * s.ldc + j0 + q * kNr;
              const int64_t rows = std::min(kMr, mc - r * kMr), cols = std::min(kNr, nc - q * kNr);
              tile(live.count[r], kc, a_panel, live.k[r], b_panel, c_tile, s.ldc, rows, cols, alpha, slice_beta);
            }
        }
      }
    }
  }
}

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

#endif  // CTE_GEMM_AVX512

}  // namespace

bool gemm_blocked_available() {
#ifdef CTE_GEMM_AVX512
  static const bool available = cpu_has_avx512() && std::getenv("CTE_GEMM_OPENBLAS") == nullptr;
  return available;
#else
  return false;
#endif
}

bool gemm_cpu_takes_blocked(const GemmShape& s) {
  // Thresholds from timings on the 2-core AMD EPYC (1 thread, this kernel vs
  // OpenBLAS's Haswell kernels): under 32 columns (100 x 16 x 784: 67 vs 85
  // GFLOP/s) packing A dominates a narrow tile; at 32 they are even, at 48 this
  // one wins (115 vs 96); with fewer than 10 rows or a k below 32, packing dominates.
  return gemm_blocked_available() && s.m >= 10 && s.n >= 32 && s.k >= 32;
}

void gemm_blocked_cpu(GemmShape s, float alpha, const float* a, const float* b, float beta, float* c) {
#ifdef CTE_GEMM_AVX512
  if (s.m == 0 || s.n == 0 || s.batch == 0) return;
  if (s.k == 0) return gemm_openblas(s, alpha, a, b, beta, c);  // C = beta C, defined there
  // Many products: whole products per thread. Few: every thread on each one,
  // where it is large enough to pay for waking the team.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
  const bool by_batch = threads > 1 && s.batch >= 2 * threads;
  const bool inner_parallel = threads > 1 && !by_batch && flops > 4e6;
  // Two loops, not one with an if clause: an inactive outer region would make
  // each product's own region a nested one, for which libgomp starts threads anew.
  if (by_batch) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < s.batch; ++i)
      gemm_blocked(s, alpha, a + i * s.stride_a, b + i * s.stride_b, beta, c + i * s.stride_c, false);
  } else {
    for (int64_t i = 0; i < s.batch; ++i)
      gemm_blocked(s, alpha, a + i * s.stride_a, b + i * s.stride_b, beta, c + i * s.stride_c, inner_parallel);
  }
#else
  (void)s, (void)alpha, (void)a, (void)b, (void)beta, (void)c;
  std::abort();  // callers check gemm_blocked_available()
#endif
}

std::string gemm_cpu_description() {
  const std::string openblas = std::string("OpenBLAS sgemm (") + openblas_get_corename() + " kernels)";
  return gemm_blocked_available() ? "own AVX-512 GEMM, " + openblas + " for small shapes" : openblas;
}

void gemm_cpu(GemmShape s, float alpha, const float* a, const float* b, float beta, float* c) {
  if (s.m == 0 || s.n == 0 || s.batch == 0) return;
  if (gemm_cpu_takes_blocked(s)) return gemm_blocked_cpu(s, alpha, a, b, beta, c);
  gemm_openblas(s, alpha, a, b, beta, c);
}

}  // namespace cte::kern
