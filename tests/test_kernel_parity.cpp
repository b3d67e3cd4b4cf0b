// Parity of the two kernel backends: every kernel of CTE_KERNELS (kernels/kernels.h)
// is run as name_cpu on host buffers and as name_cuda on device buffers with the
// same fixed-seed inputs, over sizes that hit the edge cases of a GPU launch
// (0, 1, 31, 257: not a multiple of a block, ~70,000: many blocks), and the
// outputs are compared element by element. Outputs start as NaN on both sides so
// an element a kernel forgets to write fails. One test case walks the X-macro
// list, so a kernel added to the table without a parity check here fails.
// Under the SIMT emulator (CTE_EMULATOR builds) this checks the CUDA code on
// the CPU; linked with real CUDA objects on a machine with a GPU it checks the
// real device. Without any CUDA device the checks are skipped with a message.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/gpu_runtime.h"
#include "kernels/kernels.h"

namespace {

using namespace cte::kern;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // float's u = 2^-24

// The sweep of element counts every element-wise kernel runs over.
const std::vector<int64_t> kSizes = {0, 1, 31, 257, 70001};
// More elements than one launch has threads (4096 blocks of 256), so each
// thread's grid-stride loop goes round more than once.
constexpr int64_t kGridWrapSize = (int64_t(1) << 20) + 3;

// The emulator runs a kernel's blocks one after another, an OS thread per CUDA
// thread, and a block with barriers costs milliseconds there. Shapes that need
// thousands of such blocks (to wrap a block-per-row grid-stride loop) run only
// on a real GPU; the emulated run covers the same code with fewer blocks.
bool on_real_gpu() { return cte::gpu::compiled_backend() == cte::gpu::Backend::real_cuda; }

// ---------------------------------------------------------------- inputs

// SplitMix64: a tiny, fully specified generator, so inputs are the same on
// every platform and standard library (std::uniform_real_distribution is not).
class TestRng {
 public:
  explicit TestRng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {  // in [lo, hi)
    const double unit = double(next() >> 11) * (1.0 / 9007199254740992.0);
    return float(lo + (hi - lo) * unit);
  }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }  // in [0, n)
  float integer(int lo, int hi) { return float(lo + below(hi - lo + 1)); }  // in [lo, hi]

 private:
  uint64_t state_;
};

std::vector<float> uniform_vector(TestRng& rng, size_t n, float lo, float hi) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}

// Small integers as floats: sums and products of these are exact in float, so
// both backends must agree bit for bit whatever order they add in.
std::vector<float> integer_vector(TestRng& rng, size_t n, int lo, int hi) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.integer(lo, hi);
  return v;
}

std::vector<float> nan_vector(size_t n) { return std::vector<float>(n, kNaN); }

// ---------------------------------------------------------------- device buffers

class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<float>& host)
      : count_(host.size()), ptr_(static_cast<float*>(cte::gpu::malloc_raw(bytes()))) {
    cte::gpu::copy_host_to_device(ptr_, host.data(), bytes());
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cte::gpu::free_raw(ptr_); }

  float* get() const { return ptr_; }
  std::vector<float> download() const {
    std::vector<float> host(count_);
    cte::gpu::synchronize();
    cte::gpu::copy_device_to_host(host.data(), ptr_, bytes());
    return host;
  }

 private:
  size_t bytes() const { return count_ * sizeof(float); }
  size_t count_;
  float* ptr_;
};

// ---------------------------------------------------------------- comparison

// |cuda - cpu| <= atol + rtol * |cpu| + sum_error * magnitude[i].
// magnitude[i] is the sum of the absolute values of the terms that make up
// output i (e.g. sum_k |a_ik b_kj| for a GEMM). Long sums are added in a
// different order by each backend (cuBLAS/cuDNN block them, the CPU runs
// OpenBLAS or a double accumulator), and the classic bound on that is
// gamma_k * sum |terms|, not a multiple of |result|: a result that cancels to
// ~0 still carries the rounding of its large terms.
struct Tolerance {
  double atol = 1e-5, rtol = 1e-4, sum_error = 0.0;
};
constexpr Tolerance kExact{0.0, 0.0, 0.0};
constexpr Tolerance kDefault{};

// A sum of `terms` products, each side with error <= gamma_(terms+2) * magnitude.
Tolerance sum_tolerance(int64_t terms) {
  return Tolerance{1e-5, 1e-4, 2.0 * double(terms + 2) * kUnitRoundoff};
}

size_t total_comparisons = 0;  // per kernel, read by the walk test: a check must compare something

// Fails (once, listing the first few mismatches) unless the outputs agree.
// NaN never matches, except where nan_ok and both sides are NaN (inputs
// chosen to produce NaN, or padding neither side may write).
void expect_close(const std::string& what, const std::vector<float>& cuda,
                  const std::vector<float>& cpu, Tolerance tol,
                  const std::vector<double>& magnitude = {}, bool nan_ok = false) {
  REQUIRE(cuda.size() == cpu.size());
  size_t failures = 0;
  std::ostringstream first;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double a = cuda[i], b = cpu[i];
    bool ok;
    if (std::isnan(a) || std::isnan(b)) {
      ok = nan_ok && std::isnan(a) && std::isnan(b);
    } else if (std::isinf(a) || std::isinf(b)) {
      ok = a == b;
    } else {
      const double mag = magnitude.empty() ? 0.0 : magnitude[i];
      ok = std::fabs(a - b) <= tol.atol + tol.rtol * std::fabs(b) + tol.sum_error * mag;
    }
    if (!ok && failures++ < 5)
      first << "\n  [" << i << "] cuda " << cuda[i] << " vs cpu " << cpu[i]
            << " (diff " << std::fabs(a - b) << ")";
  }
  total_comparisons += cpu.size() + 1;
  CHECK_MESSAGE(failures == 0, what << ": " << failures << " of " << cpu.size()
                                    << " elements differ" << first.str());
}

// ---------------------------------------------------------------- registry

using ParityCheck = void (*)();
std::map<std::string, ParityCheck>& parity_checks() {
  static std::map<std::string, ParityCheck> checks;
  return checks;
}
struct RegisterParityCheck {
  RegisterParityCheck(const char* kernel, ParityCheck check) { parity_checks()[kernel] = check; }
};
// Defines the parity check of one kernel of CTE_KERNELS, found by name by the walk test.
#define PARITY_CHECK(kernel)                                                       \
  void parity_##kernel();                                                          \
  const RegisterParityCheck register_parity_##kernel(#kernel, &parity_##kernel);   \
  void parity_##kernel()

std::string label(const char* kernel, std::initializer_list<int64_t> dims) {
  std::ostringstream s;
  s << kernel;
  const char* sep = " [";
  for (int64_t d : dims) s << sep << d, sep = ",";
  s << "]";
  return s.str();
}

// ================================================================ element-wise

// kSizes plus the grid-wrapping size, for kernels that are cheap everywhere.
std::vector<int64_t> sizes_with_grid_wrap() {
  std::vector<int64_t> sizes = kSizes;
  sizes.push_back(kGridWrapSize);
  return sizes;
}

PARITY_CHECK(fill) {
  for (int64_t n : sizes_with_grid_wrap()) {
    std::vector<float> cpu = nan_vector(size_t(n));
    DeviceBuffer cuda(cpu);
    fill_cpu(cpu.data(), n, 3.25f);
    fill_cuda(cuda.get(), n, 3.25f);
    expect_close(label("fill", {n}), cuda.download(), cpu, kExact);
  }
}

struct UnaryCase {
  UnaryOp op;
  const char* name;
  float lo, hi;     // input range
  bool exact;       // IEEE-exact on both sides (only exp and log are approximations)
};
const UnaryCase kUnaryCases[] = {
    {UnaryOp::relu, "relu", -4, 4, true},        {UnaryOp::abs, "abs", -4, 4, true},
    {UnaryOp::neg, "neg", -4, 4, true},          {UnaryOp::scale, "scale", -4, 4, true},
    {UnaryOp::add_scalar, "add_scalar", -4, 4, true},
    {UnaryOp::clamp, "clamp", -4, 4, true},      {UnaryOp::exp, "exp", -30, 30, false},
    {UnaryOp::log, "log", 1e-3f, 50, false},     {UnaryOp::sqrt, "sqrt", 0, 50, true},
    {UnaryOp::square, "square", -4, 4, true},    {UnaryOp::positive, "positive", -4, 4, true},
    {UnaryOp::sign, "sign", -4, 4, true},
};

PARITY_CHECK(unary) {
  TestRng rng(101);
  const float alpha = -0.5f, beta = 0.75f;  // clamp's bounds, scale's factor, add_scalar's term
  for (const UnaryCase& c : kUnaryCases) {
    const bool wrap = c.op == UnaryOp::relu;  // one op is enough for the launch shape
    for (int64_t n : wrap ? sizes_with_grid_wrap() : kSizes) {
      std::vector<float> x = uniform_vector(rng, size_t(n), c.lo, c.hi);
      for (size_t i = 0; i < x.size(); i += 7) x[i] = 0.0f;  // the kinks of relu, sign, positive
      DeviceBuffer x_cuda(x);
      std::vector<float> cpu = nan_vector(size_t(n));
      DeviceBuffer cuda(cpu);
      unary_cpu(c.op, x.data(), cpu.data(), n, alpha, beta);
      unary_cuda(c.op, x_cuda.get(), cuda.get(), n, alpha, beta);
      expect_close(std::string("unary ") + c.name + " n=" + std::to_string(n), cuda.download(),
                   cpu, c.exact ? kExact : kDefault);
    }
    // Special values: both backends must agree on NaN, infinities and signed zeros too.
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> special = {kNaN, inf, -inf, 0.0f, -0.0f, 1.0f, -1.0f, 1e-38f};
    DeviceBuffer x_cuda(special);
    std::vector<float> cpu = nan_vector(special.size());
    DeviceBuffer cuda(cpu);
    unary_cpu(c.op, special.data(), cpu.data(), int64_t(special.size()), alpha, beta);
    unary_cuda(c.op, x_cuda.get(), cuda.get(), int64_t(special.size()), alpha, beta);
    expect_close(std::string("unary ") + c.name + " special values", cuda.download(), cpu,
                 c.exact ? kExact : kDefault, {}, /*nan_ok=*/true);
  }
}

struct Shape4 {
  int64_t d[4];
  int64_t numel() const { return d[0] * d[1] * d[2] * d[3]; }
};

// Numpy broadcasting of two 4-D shapes: contiguous strides, 0 where the extent is 1.
Broadcast4 make_broadcast(const Shape4& a, const Shape4& b) {
  Broadcast4 s{};
  int64_t a_stride = 1, b_stride = 1;
  for (int k = 3; k >= 0; --k) {
    s.out[k] = (a.d[k] == 0 || b.d[k] == 0) ? 0 : std::max(a.d[k], b.d[k]);
    s.a_stride[k] = a.d[k] == 1 ? 0 : a_stride;
    s.b_stride[k] = b.d[k] == 1 ? 0 : b_stride;
    a_stride *= a.d[k];
    b_stride *= b.d[k];
  }
  return s;
}

PARITY_CHECK(binary) {
  struct Case {
    Shape4 a, b;
  };
  std::vector<Case> cases;
  for (int64_t n : kSizes) cases.push_back({{{1, 1, 1, n}}, {{1, 1, 1, n}}});  // same shape
  cases.push_back({{{1, 1, 7, 33}}, {{1, 1, 1, 33}}});      // a row added to every row (bias)
  cases.push_back({{{1, 1, 7, 1}}, {{1, 1, 1, 33}}});       // outer product shape
  cases.push_back({{{2, 3, 5, 7}}, {{2, 1, 5, 1}}});        // mixed broadcast of b
  cases.push_back({{{1, 3, 1, 7}}, {{2, 3, 5, 7}}});        // broadcast of a
  cases.push_back({{{1, 1, 1, 1}}, {{1, 1, 1, 257}}});      // scalar op tensor
  cases.push_back({{{1, 1, 70, 1001}}, {{1, 1, 1, 1001}}}); // many blocks, broadcast
  cases.push_back({{{2, 1, 31, 1}}, {{1, 3, 1, 257}}});     // many blocks, both broadcast
  cases.push_back({{{4, 3, 5, 7}}, {{1, 3, 1, 1}}});        // a channel bias (NCHW): H, W merge
  cases.push_back({{{2, 3, 5, 7}}, {{1, 1, 1, 1}}});        // tensor op scalar: one merged row
  cases.push_back({{{2, 1, 5, 1}}, {{2, 3, 5, 1}}});        // a broadcast inside, b dense
  cases.push_back({{{1, 1, 1, 1}}, {{1, 1, 1, 1}}});        // a single element
  cases.push_back({{{1, 1, 0, 5}}, {{1, 1, 1, 5}}});        // empty output
  const Case grid_wrap{{{1, 1, 1025, 1024}}, {{1, 1, 1025, 1}}};
  const BinaryOp ops[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div,
                          BinaryOp::min, BinaryOp::max, BinaryOp::gt,  BinaryOp::ge,
                          BinaryOp::lt,  BinaryOp::le,  BinaryOp::eq,  BinaryOp::mul_positive,
                          BinaryOp::mul_sign};
  const char* names[] = {"add", "sub", "mul", "div", "min", "max", "gt", "ge", "lt", "le", "eq", "mul_positive",
                         "mul_sign"};
  TestRng rng(202);
  for (size_t o = 0; o < std::size(ops); ++o) {
    std::vector<Case> op_cases = cases;
    if (ops[o] == BinaryOp::add) op_cases.push_back(grid_wrap);  // one op is enough for it
    for (const Case& c : op_cases) {
      // Quarter-steps in [-2, 2]: ties for the comparisons and min/max; no zero divisors.
      std::vector<float> a(size_t(c.a.numel())), b(size_t(c.b.numel()));
      for (float& v : a) v = rng.integer(-8, 8) / 4.0f;
      for (float& v : b) {
        v = rng.integer(-8, 8) / 4.0f;
        if (ops[o] == BinaryOp::div && v == 0.0f) v = 1.0f;
      }
      const Broadcast4 shape = make_broadcast(c.a, c.b);
      const size_t n = size_t(shape.out[0] * shape.out[1] * shape.out[2] * shape.out[3]);
      DeviceBuffer a_cuda(a), b_cuda(b);
      std::vector<float> cpu = nan_vector(n);
      DeviceBuffer cuda(cpu);
      binary_cpu(ops[o], a.data(), b.data(), cpu.data(), shape);
      binary_cuda(ops[o], a_cuda.get(), b_cuda.get(), cuda.get(), shape);
      // Every binary op is a single IEEE operation (or a comparison): exact.
      expect_close(std::string("binary ") + names[o] +
                       label("", {shape.out[0], shape.out[1], shape.out[2], shape.out[3]}),
                   cuda.download(), cpu, kExact);
    }
  }
  // NaN operands: min/max propagate, comparisons give 0, on both sides alike.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> a = {kNaN, 1.0f, kNaN, inf, -inf, 0.0f, -0.0f};
  const std::vector<float> b = {1.0f, kNaN, kNaN, inf, 2.0f, -0.0f, 0.0f};
  const Broadcast4 shape = make_broadcast({{1, 1, 1, 7}}, {{1, 1, 1, 7}});
  for (size_t o = 0; o < std::size(ops); ++o) {
    DeviceBuffer a_cuda(a), b_cuda(b);
    std::vector<float> cpu = nan_vector(a.size());
    DeviceBuffer cuda(cpu);
    binary_cpu(ops[o], a.data(), b.data(), cpu.data(), shape);
    binary_cuda(ops[o], a_cuda.get(), b_cuda.get(), cuda.get(), shape);
    expect_close(std::string("binary ") + names[o] + " special values", cuda.download(), cpu,
                 kExact, {}, /*nan_ok=*/true);
  }
}

PARITY_CHECK(select) {
  TestRng rng(303);
  for (int64_t n : sizes_with_grid_wrap()) {
    std::vector<float> mask(static_cast<size_t>(n));
    for (float& m : mask) {
      const int64_t kind = rng.below(5);  // zeros, -0 (counts as zero), NaN (nonzero), values
      m = kind == 0 ? 0.0f : kind == 1 ? -0.0f : kind == 2 ? kNaN : rng.uniform(-2, 2);
    }
    const std::vector<float> a = uniform_vector(rng, size_t(n), -1, 1);
    const std::vector<float> b = uniform_vector(rng, size_t(n), 5, 6);
    DeviceBuffer mask_cuda(mask), a_cuda(a), b_cuda(b);
    std::vector<float> cpu = nan_vector(size_t(n));
    DeviceBuffer cuda(cpu);
    select_cpu(mask.data(), a.data(), b.data(), cpu.data(), n);
    select_cuda(mask_cuda.get(), a_cuda.get(), b_cuda.get(), cuda.get(), n);
    expect_close(label("select", {n}), cuda.download(), cpu, kExact);
  }
}

// ================================================================ reduce_sum

PARITY_CHECK(reduce_sum) {
  struct Case {
    int64_t outer, reduce, inner;
  };
  // Block per output: {3,257,7} {1,70001,1} {7,10000,1} {2,35,100} {100,70,1};
  // thread per output: the rest (short sums, or many outputs).
  std::vector<Case> cases = {
      {0, 5, 3},     {4, 0, 3},     {1, 1, 1},     {1, 31, 1},    {257, 31, 1},
      {3, 257, 7},   {31, 1, 257},  {1, 70001, 1}, {70001, 1, 1}, {7, 10000, 1},
      {2, 35, 100},  {100, 70, 1},  {70, 3, 1000}, {kGridWrapSize, 2, 1},
  };
  if (on_real_gpu()) {  // thousands of block-per-output blocks: more than one per block
    cases.push_back({5000, 40, 1});
    cases.push_back({2, 35, 1000});
  }
  const float scales[] = {1.0f, 0.5f, -2.0f};  // powers of two: scaling is exact
  TestRng rng(404);
  int which = 0;
  for (const Case& c : cases) {
    const float scale = scales[which++ % 3];
    const bool integer_case_too = c.outer * c.inner < 100000;  // keep the emulated run short
    const size_t in = size_t(c.outer * c.reduce * c.inner), out = size_t(c.outer * c.inner);
    for (bool integers : {false, true}) {
      if (integers && !integer_case_too) continue;
      const std::vector<float> x =
          integers ? integer_vector(rng, in, -8, 8) : uniform_vector(rng, in, -1, 1);
      std::vector<double> magnitude(out, 0.0);
      for (int64_t o = 0; o < c.outer; ++o)
        for (int64_t r = 0; r < c.reduce; ++r)
          for (int64_t i = 0; i < c.inner; ++i)
            magnitude[size_t(o * c.inner + i)] +=
                std::fabs(double(scale) * x[size_t((o * c.reduce + r) * c.inner + i)]);
      DeviceBuffer x_cuda(x);
      std::vector<float> cpu = nan_vector(out);
      DeviceBuffer cuda(cpu);
      reduce_sum_cpu(x.data(), cpu.data(), c.outer, c.reduce, c.inner, scale);
      reduce_sum_cuda(x_cuda.get(), cuda.get(), c.outer, c.reduce, c.inner, scale);
      // Sums of small integers are exact in any order, so they must match bit for bit.
      expect_close(label(integers ? "reduce_sum (integers)" : "reduce_sum",
                         {c.outer, c.reduce, c.inner}),
                   cuda.download(), cpu, integers ? kExact : sum_tolerance(c.reduce), magnitude);
    }
  }
}

// sum |x| over a whole tensor: CPU and CUDA against a float64 sum of the
// magnitudes (the reference), within the summation tolerance; small integers
// bit for bit; a NaN anywhere is NaN, an infinity of either sign +inf.
PARITY_CHECK(reduce_sum_abs) {
  TestRng rng(406);
  const float inf = std::numeric_limits<float>::infinity();
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(31), int64_t(257), int64_t(70001)}) {
    for (bool integers : {false, true}) {
      const std::vector<float> x = integers ? integer_vector(rng, size_t(n), -8, 8) : uniform_vector(rng, size_t(n), -1, 1);
      double exact = 0;
      for (float v : x) exact += std::fabs(double(v)) * 0.5;
      DeviceBuffer x_cuda(x);
      std::vector<float> cpu = nan_vector(1);
      DeviceBuffer cuda(cpu);
      reduce_sum_abs_cpu(x.data(), cpu.data(), n, 0.5f);
      reduce_sum_abs_cuda(x_cuda.get(), cuda.get(), n, 0.5f);
      const std::string what = label(integers ? "reduce_sum_abs (integers)" : "reduce_sum_abs", {n});
      expect_close(what + " vs float64", cpu, {float(exact)}, integers ? kExact : sum_tolerance(n), {exact});
      expect_close(what, cuda.download(), cpu, integers ? kExact : sum_tolerance(n), {exact});
    }
  }
  // One special value, early in a short sum or in a late block of a long one (the CPU's
  // parallel blocks, the CUDA block's later strides).
  for (const int64_t n : {int64_t(1000), int64_t(70001)})
    for (const float special : {kNaN, inf, -inf}) {
      std::vector<float> x = uniform_vector(rng, size_t(n), -1, 1);
      x[size_t(n == 1000 ? 517 : 69000)] = special;
      DeviceBuffer x_cuda(x);
      std::vector<float> cpu = nan_vector(1);
      DeviceBuffer cuda(cpu);
      reduce_sum_abs_cpu(x.data(), cpu.data(), n, 1.0f);
      reduce_sum_abs_cuda(x_cuda.get(), cuda.get(), n, 1.0f);
      const std::vector<float> expected = {std::isnan(special) ? kNaN : inf};
      const std::string what = label("reduce_sum_abs", {n}) + " with " + std::to_string(special);
      expect_close(what + " vs expected", cpu, expected, kExact, {}, true);
      expect_close(what, cuda.download(), cpu, kExact, {}, true);
    }
}

// The fused backward ops against the two-op forms they replace (relu's
// mul(g, positive(x)), abs's mul(g, sign(x))), bit for bit, on special values
// in both operands: NaN, infinities, signed zeros.
TEST_CASE("binary mul_positive and mul_sign give the bits of mul with positive and with sign") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> values = {kNaN, inf, -inf, 0.0f, -0.0f, 1.5f, -2.25f, 1e-40f, -3e38f};
  std::vector<float> a, b;
  for (float u : values)
    for (float v : values) a.push_back(u), b.push_back(v);
  const int64_t n = int64_t(a.size());
  const Broadcast4 shape = make_broadcast({{1, 1, 1, n}}, {{1, 1, 1, n}});
  const std::pair<BinaryOp, UnaryOp> fused[] = {{BinaryOp::mul_positive, UnaryOp::positive},
                                                {BinaryOp::mul_sign, UnaryOp::sign}};
  for (const auto& [op, derivative] : fused) {
    std::vector<float> mask(a.size()), expected(a.size()), got(a.size());
    unary_cpu(derivative, b.data(), mask.data(), n, 0.0f, 0.0f);
    binary_cpu(BinaryOp::mul, a.data(), mask.data(), expected.data(), shape);
    binary_cpu(op, a.data(), b.data(), got.data(), shape);
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(a[i]);
      CAPTURE(b[i]);
      CHECK(std::memcmp(&got[i], &expected[i], sizeof(float)) == 0);
    }
  }
}

// A sum over a whole tensor is cut into fixed blocks summed in parallel
// (kernels/cpu/reduce.cpp): the result must not depend on the thread count, and
// must be the exact sum rounded once to float, give or take the double sums' error.
TEST_CASE("reduce_sum: a whole-tensor sum is the same for 1, 2 and 3 threads and within rounding of the exact sum") {
  TestRng rng(405);
  for (const int64_t n : {int64_t(100003), int64_t(1) << 18}) {
    std::vector<float> x = uniform_vector(rng, size_t(n), -1, 1);
    for (size_t i = 0; i < x.size(); i += 997) x[i] *= 4096.0f;  // a few large terms
    long double exact = 0, magnitude = 0;
    for (float v : x) exact += v, magnitude += std::fabs(v);
    const int threads_before = omp_get_max_threads();
    std::vector<float> sums;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      float y = std::numeric_limits<float>::quiet_NaN();
      reduce_sum_cpu(x.data(), &y, 1, n, 1, 1.0f);
      sums.push_back(y);
    }
    omp_set_num_threads(threads_before);
    CAPTURE(n);
    CHECK(sums[1] == sums[0]);
    CHECK(sums[2] == sums[0]);
    const double float_rounding = std::fabs(double(exact)) * std::numeric_limits<float>::epsilon() / 2;
    const double double_error = double(magnitude) * double(n) * std::numeric_limits<double>::epsilon();
    CHECK(std::fabs(double(sums[0]) - double(exact)) <= float_rounding + double_error);
  }
}

// ================================================================ gemm

struct GemmCase {
  bool trans_a, trans_b;
  int64_t m, n, k, batch;
  float alpha, beta;
  int64_t pad;    // leading dimensions exceed the row length by this much
  bool integers;  // exact inputs: the results must match bit for bit
};

void check_gemm(const GemmCase& g, TestRng& rng) {
  // Stored (row-major) shapes of A and B: op(A) is [m,k], op(B) is [k,n].
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  const int64_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.n + g.pad;
  // Gaps between the matrices of a batch, so a wrong stride reads or writes the wrong place.
  const int64_t stride_a = a_rows * lda + 5, stride_b = b_rows * ldb + 3, stride_c = g.m * ldc + 2;
  const size_t a_size = size_t(g.batch * stride_a), b_size = size_t(g.batch * stride_b);
  const size_t c_size = size_t(g.batch * stride_c);
  const std::vector<float> a =
      g.integers ? integer_vector(rng, a_size, -4, 4) : uniform_vector(rng, a_size, -1, 1);
  const std::vector<float> b =
      g.integers ? integer_vector(rng, b_size, -4, 4) : uniform_vector(rng, b_size, -1, 1);
  // C: NaN everywhere C is not an input (beta == 0, padding), real values where it is.
  std::vector<float> c = nan_vector(c_size);
  std::vector<double> magnitude(c_size, 0.0);
  for (int64_t p = 0; p < g.batch; ++p)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        const size_t at = size_t(p * stride_c + i * ldc + j);
        if (g.beta != 0.0f) c[at] = g.integers ? rng.integer(-4, 4) : rng.uniform(-1, 1);
        double sum = g.beta != 0.0f ? std::fabs(double(g.beta) * c[at]) : 0.0;
        for (int64_t q = 0; q < g.k; ++q) {
          const float av = a[size_t(p * stride_a + (g.trans_a ? q * lda + i : i * lda + q))];
          const float bv = b[size_t(p * stride_b + (g.trans_b ? j * ldb + q : q * ldb + j))];
          sum += std::fabs(double(g.alpha) * av * bv);
        }
        magnitude[at] = sum;
      }
  DeviceBuffer a_cuda(a), b_cuda(b), c_cuda(c);
  std::vector<float> cpu = c;
  const GemmShape shape{g.trans_a, g.trans_b, g.m, g.n, g.k, lda, ldb, ldc, stride_a, stride_b, stride_c, g.batch};
  gemm_cpu(shape, g.alpha, a.data(), b.data(), g.beta, cpu.data());
  gemm_cuda(shape, g.alpha, a_cuda.get(), b_cuda.get(), g.beta, c_cuda.get());
  std::ostringstream what;
  what << "gemm " << (g.trans_a ? "T" : "N") << (g.trans_b ? "T" : "N") << " m=" << g.m
       << " n=" << g.n << " k=" << g.k << " batch=" << g.batch << " alpha=" << g.alpha
       << " beta=" << g.beta << " pad=" << g.pad << (g.integers ? " (integers)" : "");
  // nan_ok: padding and gaps are NaN on both sides and must stay so; any element
  // of C either side wrote differently (or not at all) still fails.
  expect_close(what.str(), c_cuda.download(), cpu,
               g.integers ? kExact : sum_tolerance(g.k), magnitude, /*nan_ok=*/true);
}

PARITY_CHECK(gemm) {
  TestRng rng(505);
  struct Dims {
    int64_t m, n, k;
  };
  const Dims dims[] = {{1, 1, 1}, {31, 17, 13}, {65, 33, 129}};
  for (bool trans_a : {false, true})
    for (bool trans_b : {false, true})
      for (int64_t batch : {1, 3})
        for (const Dims& d : dims)
          for (int scaling = 0; scaling < 2; ++scaling) {
            const float alpha = scaling == 0 ? 1.0f : 1.5f, beta = scaling == 0 ? 0.0f : -0.75f;
            const int64_t pad = (d.m + batch + scaling) % 2 == 0 ? 3 : 0;
            check_gemm({trans_a, trans_b, d.m, d.n, d.k, batch, alpha, beta, pad, false}, rng);
          }
  // Integer inputs: exact, whatever order the products are summed in.
  check_gemm({false, true, 31, 17, 13, 1, 2.0f, 0.0f, 1, true}, rng);
  check_gemm({true, false, 65, 33, 129, 3, 1.0f, -1.0f, 2, true}, rng);
  // Many blocks' worth of outputs.
  check_gemm({false, false, 300, 240, 7, 1, 1.0f, 0.0f, 0, false}, rng);
  // Degenerate: k == 0 is C = beta * C; empty m, n or batch writes nothing.
  check_gemm({false, false, 300, 240, 0, 1, 1.0f, 0.0f, 0, false}, rng);
  check_gemm({true, true, 31, 17, 0, 3, 1.0f, 2.0f, 1, false}, rng);
  check_gemm({false, false, 0, 17, 5, 1, 1.0f, 0.0f, 0, false}, rng);
  check_gemm({false, false, 5, 0, 5, 2, 1.0f, 0.0f, 0, false}, rng);
  check_gemm({false, false, 5, 7, 5, 0, 1.0f, 0.0f, 0, false}, rng);
}

// ================================================================ convolution

ConvGeometry conv_geometry(int n, int c_in, int h_in, int w_in, int c_out, int kh, int kw,
                           int stride, int padding) {
  return {n,  c_in,   h_in,    w_in,
          c_out, kh, kw, stride, padding,
          (h_in + 2 * padding - kh) / stride + 1, (w_in + 2 * padding - kw) / stride + 1};
}

const ConvGeometry kConvGeometries[] = {
    conv_geometry(2, 1, 28, 28, 16, 4, 4, 2, 1),   // the paper's first layer (MNIST)
    conv_geometry(2, 16, 14, 14, 32, 4, 4, 2, 1),  // the paper's second layer
    conv_geometry(3, 3, 9, 11, 5, 3, 3, 1, 0),
    conv_geometry(1, 4, 8, 7, 2, 3, 3, 2, 2),
    conv_geometry(2, 2, 6, 6, 3, 5, 5, 1, 2),
    conv_geometry(1, 5, 7, 9, 4, 1, 1, 1, 0),      // 1x1
    conv_geometry(2, 3, 10, 9, 4, 3, 2, 2, 1),     // non-square kernel
    conv_geometry(1, 1, 1, 1, 1, 1, 1, 1, 0),      // one element
    conv_geometry(2, 8, 32, 32, 35, 3, 3, 1, 1),   // ~72,000 outputs: many blocks
    conv_geometry(13, 1, 28, 28, 16, 4, 4, 2, 1),  // the CPU threads split an odd batch of images
    conv_geometry(0, 3, 5, 5, 2, 3, 3, 1, 1),      // empty batch: the filter gradient is 0
    // Small images go through the CPU GEMMs a block at a time (CONV+'s patch
    // windows: 3x10x10 -> 4x4): blocks of 32 and a last one of 8; with padding,
    // blocks of 21 and 16.
    conv_geometry(40, 3, 10, 10, 16, 4, 4, 2, 0),
    conv_geometry(37, 3, 10, 10, 6, 4, 4, 2, 1),
    // Lane blocks of 16 small images: one full block and a last one of a
    // single image, 27 column rows and 5 channels (neither a multiple of the
    // register tiles), stride 1 with padding.
    conv_geometry(17, 3, 6, 5, 5, 3, 3, 1, 1),
    conv_geometry(17, 2, 2, 3, 3, 3, 3, 1, 1),  // a kernel larger than the image
    conv_geometry(17, 2, 3, 3, 4, 1, 1, 1, 1),  // border outputs that read only padding
};

struct ConvMagnitudes {
  std::vector<double> y, dx, dw;
};

// Sum of |terms| of every output of the three convolutions (a direct loop in double).
ConvMagnitudes conv_magnitudes(const std::vector<float>& x, const std::vector<float>& w,
                               const std::vector<float>& dy, const ConvGeometry& g) {
  ConvMagnitudes mag{std::vector<double>(dy.size(), 0.0), std::vector<double>(x.size(), 0.0),
                     std::vector<double>(w.size(), 0.0)};
  for (int img = 0; img < g.n; ++img)
    for (int co = 0; co < g.c_out; ++co)
      for (int oy = 0; oy < g.h_out; ++oy)
        for (int ox = 0; ox < g.w_out; ++ox) {
          const size_t yi = size_t(((int64_t(img) * g.c_out + co) * g.h_out + oy) * g.w_out + ox);
          for (int ci = 0; ci < g.c_in; ++ci)
            for (int ky = 0; ky < g.kh; ++ky)
              for (int kx = 0; kx < g.kw; ++kx) {
                const int iy = oy * g.stride - g.padding + ky, ix = ox * g.stride - g.padding + kx;
                if (iy < 0 || iy >= g.h_in || ix < 0 || ix >= g.w_in) continue;
                const size_t xi =
                    size_t(((int64_t(img) * g.c_in + ci) * g.h_in + iy) * g.w_in + ix);
                const size_t wi = size_t(((int64_t(co) * g.c_in + ci) * g.kh + ky) * g.kw + kx);
                mag.y[yi] += std::fabs(double(x[xi]) * w[wi]);
                mag.dx[xi] += std::fabs(double(dy[yi]) * w[wi]);
                mag.dw[wi] += std::fabs(double(x[xi]) * dy[yi]);
              }
        }
  return mag;
}

// The CPU path and thread count forced for a scope (restored even when a check throws).
struct ForcedConvPath {
  const int threads_before = omp_get_max_threads();
  ForcedConvPath(CpuConvPath path, int threads) {
    set_cpu_conv_path(path);
    omp_set_num_threads(threads);
  }
  ~ForcedConvPath() {
    set_cpu_conv_path(CpuConvPath::by_size);
    omp_set_num_threads(threads_before);
  }
  ForcedConvPath(const ForcedConvPath&) = delete;
  ForcedConvPath& operator=(const ForcedConvPath&) = delete;
};

// Leaves NaN in every row of the lane path's scratch blocks that the test
// geometries use, their zero rows included: a kernel that reads a row it did
// not write this call (a zero row left unset) then shows NaN.
void poison_lane_scratch() {
  const ConvGeometry big = conv_geometry(16, 32, 16, 16, 32, 1, 1, 1, 0);  // 8,192 features each way
  const std::vector<float> x = nan_vector(size_t(16) * 32 * 256), w = nan_vector(32 * 32);
  std::vector<float> y(x.size()), dw(w.size());
  conv2d_forward_cpu(x.data(), w.data(), nullptr, y.data(), big);
  conv2d_backward_data_cpu(x.data(), w.data(), y.data(), big);
  conv2d_backward_filter_cpu(x.data(), x.data(), dw.data(), big);
}

// One convolution kernel ("forward", "backward_data" or "backward_filter") on
// one geometry: the emulated cuDNN result once, against both CPU paths (im2col
// + sgemm, and the lanes of many small images, which by size would take only
// those with n >= 16), the lanes also on 3 threads (several threads split the
// blocks of the larger batches) and after poison_lane_scratch.
// The convolution kernels, each written once: which of x, w, the bias and dy
// it reads, what it writes (its size and the double-precision magnitudes of
// its sums) and how many terms each of its sums adds (the tolerance). The
// forward runs twice: without a bias and with one (biased).
using ConvCall = void (*)(const float* x, const float* w, const float* bias, const float* dy, float* out,
                          const ConvGeometry& g);
struct ConvKernelCase {
  const char* name;
  size_t (*out_size)(const ConvGeometry& g);
  int64_t (*sum_terms)(const ConvGeometry& g);
  std::vector<double> ConvMagnitudes::*magnitude;
  bool biased;
  ConvCall cpu, cuda;
};
int64_t conv_numel(int64_t a, int64_t b, int64_t c, int64_t d) { return a * b * c * d; }
size_t forward_size(const ConvGeometry& g) { return size_t(conv_numel(g.n, g.c_out, g.h_out, g.w_out)); }
const ConvKernelCase kConvKernels[] = {
    {"forward", forward_size, [](const ConvGeometry& g) { return int64_t(g.c_in) * g.kh * g.kw; }, &ConvMagnitudes::y,
     false,
     [](const float* x, const float* w, const float*, const float*, float* y, const ConvGeometry& g) {
       conv2d_forward_cpu(x, w, nullptr, y, g);
     },
     [](const float* x, const float* w, const float*, const float*, float* y, const ConvGeometry& g) {
       conv2d_forward_cuda(x, w, nullptr, y, g);
     }},
    {"forward_bias", forward_size, [](const ConvGeometry& g) { return int64_t(g.c_in) * g.kh * g.kw + 1; },
     &ConvMagnitudes::y, true,
     [](const float* x, const float* w, const float* bias, const float*, float* y, const ConvGeometry& g) {
       conv2d_forward_cpu(x, w, bias, y, g);
     },
     [](const float* x, const float* w, const float* bias, const float*, float* y, const ConvGeometry& g) {
       conv2d_forward_cuda(x, w, bias, y, g);
     }},
    {"backward_data", [](const ConvGeometry& g) { return size_t(conv_numel(g.n, g.c_in, g.h_in, g.w_in)); },
     [](const ConvGeometry& g) { return int64_t(g.c_out) * g.kh * g.kw; }, &ConvMagnitudes::dx, false,
     [](const float*, const float* w, const float*, const float* dy, float* dx, const ConvGeometry& g) {
       conv2d_backward_data_cpu(dy, w, dx, g);
     },
     [](const float*, const float* w, const float*, const float* dy, float* dx, const ConvGeometry& g) {
       conv2d_backward_data_cuda(dy, w, dx, g);
     }},
    {"backward_filter", [](const ConvGeometry& g) { return size_t(conv_numel(g.c_out, g.c_in, g.kh, g.kw)); },
     [](const ConvGeometry& g) { return int64_t(g.n) * g.h_out * g.w_out; }, &ConvMagnitudes::dw, false,
     [](const float* x, const float*, const float*, const float* dy, float* dw, const ConvGeometry& g) {
       conv2d_backward_filter_cpu(x, dy, dw, g);
     },
     [](const float* x, const float*, const float*, const float* dy, float* dw, const ConvGeometry& g) {
       conv2d_backward_filter_cuda(x, dy, dw, g);
     }},
};

void check_conv(const ConvGeometry& g, bool integers, TestRng& rng, const ConvKernelCase& kernel) {
  const size_t x_size = size_t(conv_numel(g.n, g.c_in, g.h_in, g.w_in));
  const size_t w_size = size_t(conv_numel(g.c_out, g.c_in, g.kh, g.kw));
  const size_t y_size = size_t(conv_numel(g.n, g.c_out, g.h_out, g.w_out));
  auto input = [&](size_t n) {
    return integers ? integer_vector(rng, n, -3, 3) : uniform_vector(rng, n, -1, 1);
  };
  const std::vector<float> x = input(x_size), w = input(w_size), dy = input(y_size), bias = input(size_t(g.c_out));
  const ConvMagnitudes mag = conv_magnitudes(x, w, dy, g);
  DeviceBuffer x_cuda(x), w_cuda(w), dy_cuda(dy), bias_cuda(bias);
  std::ostringstream what;
  what << " n=" << g.n << " c_in=" << g.c_in << " " << g.h_in << "x" << g.w_in
       << " c_out=" << g.c_out << " k=" << g.kh << "x" << g.kw << " stride=" << g.stride
       << " pad=" << g.padding << (integers ? " (integers)" : "") << " cpu path ";
  const size_t out_size = kernel.out_size(g);
  const Tolerance tolerance = integers ? kExact : sum_tolerance(kernel.sum_terms(g));
  std::vector<double> magnitude = mag.*kernel.magnitude;
  const int64_t spatial = int64_t(g.h_out) * g.w_out;
  if (kernel.biased)
    for (size_t i = 0; i < out_size; ++i) magnitude[i] += std::fabs(double(bias[size_t(int64_t(i) / spatial % g.c_out)]));
  DeviceBuffer cuda(nan_vector(out_size));
  kernel.cuda(x_cuda.get(), w_cuda.get(), kernel.biased ? bias_cuda.get() : nullptr, dy_cuda.get(), cuda.get(), g);
  const std::vector<float> reference = cuda.download();
  if (kernel.biased) {
    // The biased CUDA twin against its unbiased sums plus each output's
    // channel bias, added here: the CPU twins are then held to that too.
    DeviceBuffer plain(nan_vector(out_size));
    conv2d_forward_cuda(x_cuda.get(), w_cuda.get(), nullptr, plain.get(), g);
    std::vector<float> expected = plain.download();
    for (size_t i = 0; i < out_size; ++i) expected[i] += bias[size_t(int64_t(i) / spatial % g.c_out)];
    expect_close(std::string("conv2d_forward_bias (cuda) vs unbiased + bias") + what.str(), expected, reference,
                 tolerance, magnitude);
  }
  struct Run {
    CpuConvPath path;
    int threads;
    const char* name;
  };
  const int default_threads = omp_get_max_threads();
  for (const Run& run : {Run{CpuConvPath::gemm, default_threads, "gemm"}, Run{CpuConvPath::lanes, default_threads, "lanes"},
                         Run{CpuConvPath::lanes, 3, "lanes, 3 threads"}}) {
    const ForcedConvPath forced(run.path, run.threads);
    if (run.path == CpuConvPath::lanes) poison_lane_scratch();
    std::vector<float> cpu = nan_vector(out_size);
    kernel.cpu(x.data(), w.data(), kernel.biased ? bias.data() : nullptr, dy.data(), cpu.data(), g);
    expect_close(std::string("conv2d_") + kernel.name + what.str() + run.name, reference, cpu, tolerance, magnitude);
  }
}

void check_conv_all(const char* which, uint64_t seed) {
  const auto kernel = std::find_if(std::begin(kConvKernels), std::end(kConvKernels),
                                   [which](const ConvKernelCase& k) { return std::string(k.name) == which; });
  REQUIRE(kernel != std::end(kConvKernels));
  TestRng rng(seed);
  for (const ConvGeometry& g : kConvGeometries) check_conv(g, false, rng, *kernel);
  check_conv(kConvGeometries[0], true, rng, *kernel);
  check_conv(kConvGeometries[2], true, rng, *kernel);
}

PARITY_CHECK(conv2d_forward) {
  check_conv_all("forward", 606);
  check_conv_all("forward_bias", 609);
}
PARITY_CHECK(conv2d_backward_data) { check_conv_all("backward_data", 607); }
PARITY_CHECK(conv2d_backward_filter) { check_conv_all("backward_filter", 608); }

// ================================================================ transpose

PARITY_CHECK(transpose) {
  struct Case {
    int64_t batch, rows, cols;
  };
  // The grid is capped at 128 column tiles, 128 row tiles and 64 matrices;
  // {66,3,5} and the real-GPU-only shapes wrap those loops.
  std::vector<Case> cases = {{0, 3, 4},   {1, 0, 5},   {1, 1, 1},   {1, 31, 1},
                             {1, 1, 31},  {2, 31, 33}, {3, 257, 5}, {5, 64, 64},
                             {2, 33, 65}, {1, 257, 272}, {66, 3, 5}};
  if (on_real_gpu()) {
    cases.push_back({1, 1, 70001});
    cases.push_back({1, 70001, 1});
    cases.push_back({70, 257, 272});
  }
  TestRng rng(707);
  for (const Case& c : cases) {
    const size_t n = size_t(c.batch * c.rows * c.cols);
    const std::vector<float> x = uniform_vector(rng, n, -1, 1);
    DeviceBuffer x_cuda(x);
    std::vector<float> cpu = nan_vector(n);
    DeviceBuffer cuda(cpu);
    transpose_cpu(x.data(), cpu.data(), c.batch, c.rows, c.cols);
    transpose_cuda(x_cuda.get(), cuda.get(), c.batch, c.rows, c.cols);
    expect_close(label("transpose", {c.batch, c.rows, c.cols}), cuda.download(), cpu, kExact);
  }
}

// ================================================================ softmax family

struct RowsCols {
  int64_t rows, cols;
};
// {70, 1000} is ~70,000 elements; {7000, 10} has more rows than a launch has
// blocks (4096), so blocks go round the row loop more than once.
std::vector<RowsCols> row_shapes() {
  std::vector<RowsCols> shapes = {{0, 5},     {1, 1},    {3, 31},   {257, 10},
                                  {2, 257},   {1, 70001}, {4, 1000}, {70, 1000}};
  if (on_real_gpu()) shapes.push_back({7000, 10});
  return shapes;
}

// Logit distributions: moderate; all near 1e3 (exp overflows unless the max is
// subtracted); spread over [-1e3, 1e3] (one class dominates, the rest underflow).
enum class Logits { moderate, large, spread };
const Logits kLogitKinds[] = {Logits::moderate, Logits::large, Logits::spread};
const char* logit_name(Logits kind) {
  return kind == Logits::moderate ? "moderate" : kind == Logits::large ? "~1e3" : "+-1e3";
}

std::vector<float> logits(TestRng& rng, size_t n, Logits kind) {
  switch (kind) {
    case Logits::moderate: return uniform_vector(rng, n, -5, 5);
    case Logits::large: return uniform_vector(rng, n, 990, 1010);
    case Logits::spread: return uniform_vector(rng, n, -1000, 1000);
  }
  return {};
}

// Row-wise logsumexp in double (to size tolerances and to feed the backward kernels).
std::vector<double> reference_logsumexp(const std::vector<float>& x, RowsCols s) {
  std::vector<double> lse(static_cast<size_t>(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) {
    double max_value = -INFINITY, sum = 0.0;
    const float* row = x.data() + r * s.cols;
    for (int64_t j = 0; j < s.cols; ++j) max_value = std::max(max_value, double(row[j]));
    for (int64_t j = 0; j < s.cols; ++j) sum += std::exp(row[j] - max_value);
    lse[size_t(r)] = max_value + std::log(sum);
  }
  return lse;
}

std::string softmax_label(const char* kernel, RowsCols s, Logits kind) {
  return label(kernel, {s.rows, s.cols}) + " logits " + logit_name(kind);
}

// x - lse is exact-ish but lse is rounded to float at its own magnitude, so an
// output near 0 can differ by an ulp of |lse| (6e-5 at 1e3): the tolerance
// scales with |x| + |lse| rather than with the (small) result.
constexpr double kShiftError = 4.0 * kUnitRoundoff;

PARITY_CHECK(log_softmax) {
  TestRng rng(808);
  for (RowsCols s : row_shapes())
    for (Logits kind : kLogitKinds) {
      const size_t n = size_t(s.rows * s.cols);
      const std::vector<float> x = logits(rng, n, kind);
      const std::vector<double> lse = reference_logsumexp(x, s);
      std::vector<double> magnitude(n);
      for (size_t i = 0; i < n; ++i)
        magnitude[i] = std::fabs(x[i]) + std::fabs(lse[i / size_t(s.cols)]);
      DeviceBuffer x_cuda(x);
      std::vector<float> cpu = nan_vector(n);
      DeviceBuffer cuda(cpu);
      log_softmax_cpu(x.data(), cpu.data(), s.rows, s.cols);
      log_softmax_cuda(x_cuda.get(), cuda.get(), s.rows, s.cols);
      expect_close(softmax_label("log_softmax", s, kind), cuda.download(), cpu,
                   {1e-5, 1e-4, kShiftError}, magnitude);
    }
}

PARITY_CHECK(log_softmax_backward) {
  TestRng rng(809);
  for (RowsCols s : row_shapes())
    for (Logits kind : kLogitKinds) {
      const size_t n = size_t(s.rows * s.cols);
      const std::vector<float> x = logits(rng, n, kind);
      const std::vector<double> lse = reference_logsumexp(x, s);
      std::vector<float> y(n);  // a genuine log-softmax output, so exp(y) <= 1
      for (size_t i = 0; i < n; ++i) y[i] = float(x[i] - lse[i / size_t(s.cols)]);
      const std::vector<float> dy = uniform_vector(rng, n, -1, 1);
      // dx = dy - exp(y) * sum_j dy: the row sum carries the ordering error.
      std::vector<double> magnitude(n);
      for (int64_t r = 0; r < s.rows; ++r) {
        double abs_sum = 0.0;
        for (int64_t j = 0; j < s.cols; ++j) abs_sum += std::fabs(dy[size_t(r * s.cols + j)]);
        for (int64_t j = 0; j < s.cols; ++j) {
          const size_t i = size_t(r * s.cols + j);
          magnitude[i] = std::fabs(dy[i]) + std::exp(double(y[i])) * abs_sum;
        }
      }
      DeviceBuffer dy_cuda(dy), y_cuda(y);
      std::vector<float> cpu = nan_vector(n);
      DeviceBuffer cuda(cpu);
      log_softmax_backward_cpu(dy.data(), y.data(), cpu.data(), s.rows, s.cols);
      log_softmax_backward_cuda(dy_cuda.get(), y_cuda.get(), cuda.get(), s.rows, s.cols);
      expect_close(softmax_label("log_softmax_backward", s, kind), cuda.download(), cpu,
                   sum_tolerance(s.cols), magnitude);
    }
}

PARITY_CHECK(logsumexp) {
  TestRng rng(810);
  for (RowsCols s : row_shapes())
    for (Logits kind : kLogitKinds) {
      const std::vector<float> x = logits(rng, size_t(s.rows * s.cols), kind);
      DeviceBuffer x_cuda(x);
      std::vector<float> cpu = nan_vector(size_t(s.rows));
      DeviceBuffer cuda(cpu);
      logsumexp_cpu(x.data(), cpu.data(), s.rows, s.cols);
      logsumexp_cuda(x_cuda.get(), cuda.get(), s.rows, s.cols);
      expect_close(softmax_label("logsumexp", s, kind), cuda.download(), cpu, kDefault);
    }
}

PARITY_CHECK(logsumexp_backward) {
  TestRng rng(811);
  for (RowsCols s : row_shapes())
    for (Logits kind : kLogitKinds) {
      const size_t n = size_t(s.rows * s.cols);
      const std::vector<float> x = logits(rng, n, kind);
      const std::vector<double> lse = reference_logsumexp(x, s);
      std::vector<float> y(static_cast<size_t>(s.rows));
      for (size_t r = 0; r < y.size(); ++r) y[r] = float(lse[r]);
      const std::vector<float> dy = uniform_vector(rng, size_t(s.rows), -2, 2);
      DeviceBuffer dy_cuda(dy), x_cuda(x), y_cuda(y);
      std::vector<float> cpu = nan_vector(n);
      DeviceBuffer cuda(cpu);
      logsumexp_backward_cpu(dy.data(), x.data(), y.data(), cpu.data(), s.rows, s.cols);
      logsumexp_backward_cuda(dy_cuda.get(), x_cuda.get(), y_cuda.get(), cuda.get(), s.rows,
                              s.cols);
      expect_close(softmax_label("logsumexp_backward", s, kind), cuda.download(), cpu, kDefault);
    }
}

PARITY_CHECK(softmax_xent) {
  TestRng rng(812);
  for (RowsCols s : row_shapes())
    for (Logits kind : kLogitKinds) {
      const size_t n = size_t(s.rows * s.cols);
      const std::vector<float> x = logits(rng, n, kind);
      const std::vector<double> lse = reference_logsumexp(x, s);
      std::vector<float> labels(static_cast<size_t>(s.rows));
      for (float& l : labels) l = float(rng.below(s.cols));
      // loss = lse - x[label] cancels; probs = exp(x - lse) turns lse's rounding
      // into a relative error: both scale with |x| + |lse| (see kShiftError).
      std::vector<double> loss_magnitude(size_t(s.rows)), probs_magnitude(n);
      for (int64_t r = 0; r < s.rows; ++r) {
        const float label_logit = x[size_t(r * s.cols + int64_t(labels[size_t(r)]))];
        loss_magnitude[size_t(r)] = std::fabs(lse[size_t(r)]) + std::fabs(label_logit);
        for (int64_t j = 0; j < s.cols; ++j) {
          const size_t i = size_t(r * s.cols + j);
          probs_magnitude[i] =
              std::exp(x[i] - lse[size_t(r)]) * (std::fabs(x[i]) + std::fabs(lse[size_t(r)]));
        }
      }
      DeviceBuffer x_cuda(x), labels_cuda(labels);
      std::vector<float> loss_cpu = nan_vector(size_t(s.rows)), probs_cpu = nan_vector(n);
      DeviceBuffer loss_cuda(loss_cpu), probs_cuda(probs_cpu);
      softmax_xent_cpu(x.data(), labels.data(), loss_cpu.data(), probs_cpu.data(), s.rows, s.cols);
      softmax_xent_cuda(x_cuda.get(), labels_cuda.get(), loss_cuda.get(), probs_cuda.get(),
                        s.rows, s.cols);
      expect_close(softmax_label("softmax_xent loss", s, kind), loss_cuda.download(), loss_cpu,
                   {1e-5, 1e-4, kShiftError}, loss_magnitude);
      expect_close(softmax_label("softmax_xent probs", s, kind), probs_cuda.download(),
                   probs_cpu, {1e-5, 1e-4, kShiftError}, probs_magnitude);
    }
}

// Labels with every class, plus labels that name none (NaN rows / no hit).
std::vector<float> labels_with_invalid(TestRng& rng, int64_t rows, int64_t classes) {
  std::vector<float> labels(static_cast<size_t>(rows));
  for (float& l : labels) l = float(rng.below(classes));
  const float invalid[] = {-1.0f, float(classes), 0.5f, NAN};
  for (size_t i = 0; i < labels.size(); i += 7) labels[i] = invalid[(i / 7) % 4];
  return labels;
}

PARITY_CHECK(margin_spec) {
  TestRng rng(814);
  for (int64_t classes : {2, 3, 10, 100})
    for (int64_t n : {int64_t(1), int64_t(9), int64_t(kGridWrapSize / (classes * classes) + 1)}) {
      const std::vector<float> labels = labels_with_invalid(rng, n, classes);
      DeviceBuffer labels_cuda(labels);
      std::vector<float> cpu = nan_vector(size_t(n * (classes - 1) * classes));
      DeviceBuffer cuda(std::vector<float>(cpu.size(), 7.0f));
      margin_spec_cpu(labels.data(), cpu.data(), n, classes);
      margin_spec_cuda(labels_cuda.get(), cuda.get(), n, classes);
      // Rows of the invalid labels are NaN on both sides.
      expect_close(label("margin_spec", {n, classes - 1, classes}), cuda.download(), cpu, kExact, {}, /*nan_ok=*/true);
    }
}

// A per-row rule over logits and labels (argmax_hits, misclassified_rows): rows
// with ties between the first and last class, NaN entries, invalid labels.
using LabelRowKernel = void (*)(const float*, const float*, float*, int64_t, int64_t);
void check_label_row_kernel(const char* name, uint64_t seed, LabelRowKernel cpu_kernel, LabelRowKernel cuda_kernel) {
  TestRng rng(seed);
  for (RowsCols s : row_shapes()) {
    if (s.cols < 2) continue;
    std::vector<float> x = logits(rng, size_t(s.rows * s.cols), Logits::moderate);
    for (int64_t r = 0; r < s.rows; r += 5) x[size_t(r * s.cols + s.cols - 1)] = x[size_t(r * s.cols)] = 50.0f;
    for (int64_t r = 2; r < s.rows; r += 11) x[size_t(r * s.cols + rng.below(s.cols))] = NAN;
    const std::vector<float> labels = labels_with_invalid(rng, s.rows, s.cols);
    DeviceBuffer x_cuda(x), labels_cuda(labels);
    std::vector<float> cpu = nan_vector(size_t(s.rows));
    DeviceBuffer cuda(cpu);
    cpu_kernel(x.data(), labels.data(), cpu.data(), s.rows, s.cols);
    cuda_kernel(x_cuda.get(), labels_cuda.get(), cuda.get(), s.rows, s.cols);
    expect_close(label(name, {s.rows, s.cols}), cuda.download(), cpu, kExact);
  }
}

PARITY_CHECK(argmax_hits) { check_label_row_kernel("argmax_hits", 815, argmax_hits_cpu, argmax_hits_cuda); }

PARITY_CHECK(misclassified_rows) {
  check_label_row_kernel("misclassified_rows", 817, misclassified_rows_cpu, misclassified_rows_cuda);
}

PARITY_CHECK(softmax_xent_backward) {
  TestRng rng(813);
  for (RowsCols s : row_shapes()) {
    const size_t n = size_t(s.rows * s.cols);
    const std::vector<float> probs = uniform_vector(rng, n, 0, 1);
    const std::vector<float> dloss = uniform_vector(rng, size_t(s.rows), -2, 2);
    std::vector<float> labels(static_cast<size_t>(s.rows));
    for (float& l : labels) l = float(rng.below(s.cols));
    DeviceBuffer probs_cuda(probs), dloss_cuda(dloss), labels_cuda(labels);
    std::vector<float> cpu = nan_vector(n);
    DeviceBuffer cuda(cpu);
    softmax_xent_backward_cpu(dloss.data(), probs.data(), labels.data(), cpu.data(), s.rows,
                              s.cols);
    softmax_xent_backward_cuda(dloss_cuda.get(), probs_cuda.get(), labels_cuda.get(),
                               cuda.get(), s.rows, s.cols);
    expect_close(label("softmax_xent_backward", {s.rows, s.cols}), cuda.download(), cpu,
                 kDefault);
  }
}

// ================================================================ optimizers

// In place: three consecutive steps on real (not NaN) state, compared after each.
// ================================================================ BatchNorm

// (n, channels, plane): one value per channel pair, flat features, many
// channels, and channels longer than a block (the block loops over them).
struct BatchNormShape {
  int64_t n, channels, plane;
};
const BatchNormShape kBatchNormShapes[] = {{2, 1, 1}, {3, 4, 5}, {7, 70, 1}, {16, 3, 300}};

std::string batch_norm_label(const char* kernel, const BatchNormShape& s) { return label(kernel, {s.n, s.channels, s.plane}); }

// Per channel of x: mean |x| and the mean square of |x| + |mean| (the magnitudes the sums round at).
void batch_norm_magnitudes(const std::vector<float>& x, const BatchNormShape& s, std::vector<double>& mean_abs,
                           std::vector<double>& square_abs) {
  mean_abs.assign(size_t(s.channels), 0.0);
  square_abs.assign(size_t(s.channels), 0.0);
  const double m = double(s.n * s.plane);
  for (size_t i = 0; i < x.size(); ++i) mean_abs[(i / size_t(s.plane)) % size_t(s.channels)] += std::fabs(x[i]) / m;
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = (i / size_t(s.plane)) % size_t(s.channels);
    square_abs[c] += (std::fabs(x[i]) + mean_abs[c]) * (std::fabs(x[i]) + mean_abs[c]) / m;
  }
}

PARITY_CHECK(batch_norm_stats) {
  TestRng rng(901);
  for (const BatchNormShape& s : kBatchNormShapes) {
    const std::vector<float> x = uniform_vector(rng, size_t(s.n * s.channels * s.plane), -2, 3);
    std::vector<float> mean = nan_vector(size_t(s.channels)), var = mean;
    DeviceBuffer x_cuda(x), mean_cuda(mean), var_cuda(var);
    batch_norm_stats_cpu(x.data(), mean.data(), var.data(), s.n, s.channels, s.plane);
    batch_norm_stats_cuda(x_cuda.get(), mean_cuda.get(), var_cuda.get(), s.n, s.channels, s.plane);
    std::vector<double> mean_abs, square_abs;
    batch_norm_magnitudes(x, s, mean_abs, square_abs);
    const Tolerance tol = sum_tolerance(s.n * s.plane);
    expect_close(batch_norm_label("batch_norm_stats mean", s), mean_cuda.download(), mean, tol, mean_abs);
    expect_close(batch_norm_label("batch_norm_stats var", s), var_cuda.download(), var, tol, square_abs);
  }
}

PARITY_CHECK(batch_norm_apply) {
  TestRng rng(902);
  for (const BatchNormShape& s : kBatchNormShapes) {
    const size_t n = size_t(s.n * s.channels * s.plane), c = size_t(s.channels);
    const std::vector<float> x = uniform_vector(rng, n, -2, 3), mean = uniform_vector(rng, c, -1, 1);
    const std::vector<float> var = uniform_vector(rng, c, 0.1f, 2), gamma = uniform_vector(rng, c, -2, 2);
    const std::vector<float> beta = uniform_vector(rng, c, -1, 1);
    std::vector<float> cpu = nan_vector(n);
    DeviceBuffer x_cuda(x), mean_cuda(mean), var_cuda(var), gamma_cuda(gamma), beta_cuda(beta), cuda(cpu);
    batch_norm_apply_cpu(x.data(), mean.data(), var.data(), gamma.data(), beta.data(), cpu.data(), s.n, s.channels,
                         s.plane, 1e-5f);
    batch_norm_apply_cuda(x_cuda.get(), mean_cuda.get(), var_cuda.get(), gamma_cuda.get(), beta_cuda.get(), cuda.get(),
                          s.n, s.channels, s.plane, 1e-5f);
    expect_close(batch_norm_label("batch_norm_apply", s), cuda.download(), cpu, kDefault);
  }
}

PARITY_CHECK(batch_norm_backward) {
  TestRng rng(903);
  for (const BatchNormShape& s : kBatchNormShapes)
    for (int batch_stats : {0, 1}) {
      const size_t n = size_t(s.n * s.channels * s.plane), c = size_t(s.channels);
      const std::vector<float> dy = uniform_vector(rng, n, -1, 1), x = uniform_vector(rng, n, -2, 3);
      const std::vector<float> mean = uniform_vector(rng, c, -1, 1), var = uniform_vector(rng, c, 0.1f, 2);
      const std::vector<float> gamma = uniform_vector(rng, c, -2, 2), dmean = uniform_vector(rng, c, -1, 1);
      const std::vector<float> dvar = uniform_vector(rng, c, -1, 1);
      std::vector<float> dx = nan_vector(n), dgamma = nan_vector(c), dbeta = nan_vector(c);
      DeviceBuffer dy_cuda(dy), x_cuda(x), mean_cuda(mean), var_cuda(var), gamma_cuda(gamma), dmean_cuda(dmean),
          dvar_cuda(dvar), dx_cuda(dx), dgamma_cuda(dgamma), dbeta_cuda(dbeta);
      batch_norm_backward_cpu(dy.data(), x.data(), mean.data(), var.data(), gamma.data(), dmean.data(), dvar.data(),
                              dx.data(), dgamma.data(), dbeta.data(), s.n, s.channels, s.plane, 1e-5f, batch_stats);
      batch_norm_backward_cuda(dy_cuda.get(), x_cuda.get(), mean_cuda.get(), var_cuda.get(), gamma_cuda.get(),
                               dmean_cuda.get(), dvar_cuda.get(), dx_cuda.get(), dgamma_cuda.get(), dbeta_cuda.get(),
                               s.n, s.channels, s.plane, 1e-5f, batch_stats);
      // The channel sums of |dy| and |dy xhat| bound what their ordering can change.
      std::vector<double> sum_dy(c, 0.0), sum_dy_xhat(c, 0.0), dx_magnitude(n);
      for (size_t i = 0; i < n; ++i) {
        const size_t ch = (i / size_t(s.plane)) % c;
        const double inv_std = 1.0 / std::sqrt(double(var[ch]) + 1e-5);
        sum_dy[ch] += std::fabs(dy[i]);
        sum_dy_xhat[ch] += std::fabs(dy[i] * (x[i] - mean[ch]) * inv_std);
      }
      const double m = double(s.n * s.plane);
      for (size_t i = 0; i < n; ++i) {
        const size_t ch = (i / size_t(s.plane)) % c;
        const double inv_std = 1.0 / std::sqrt(double(var[ch]) + 1e-5);
        const double xhat = std::fabs((x[i] - mean[ch]) * inv_std);
        dx_magnitude[i] = std::fabs(gamma[ch]) * inv_std * (std::fabs(dy[i]) + (sum_dy[ch] + xhat * sum_dy_xhat[ch]) / m) +
                          (std::fabs(dmean[ch]) + 2.0 * std::fabs(dvar[ch]) * std::fabs(x[i] - mean[ch])) / m;
      }
      const Tolerance tol = sum_tolerance(s.n * s.plane);
      const std::string mode = batch_stats ? " batch" : " fixed";
      expect_close(batch_norm_label(("batch_norm_backward dx" + mode).c_str(), s), dx_cuda.download(), dx, tol,
                   dx_magnitude);
      expect_close(batch_norm_label(("batch_norm_backward dgamma" + mode).c_str(), s), dgamma_cuda.download(), dgamma,
                   tol, sum_dy_xhat);
      expect_close(batch_norm_label(("batch_norm_backward dbeta" + mode).c_str(), s), dbeta_cuda.download(), dbeta,
                   tol, sum_dy);
    }
}

PARITY_CHECK(adam_step) {
  TestRng rng(909);
  const float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  for (int64_t n : sizes_with_grid_wrap()) {
    std::vector<float> param = uniform_vector(rng, size_t(n), -1, 1);
    for (size_t i = 0; i < size_t(n); i += 7) param[i] = 0.0f;  // sign 0: no L1 term
    std::vector<float> m = uniform_vector(rng, size_t(n), -0.1f, 0.1f);
    std::vector<float> v = uniform_vector(rng, size_t(n), 0, 0.01f);
    DeviceBuffer param_cuda(param), m_cuda(m), v_cuda(v);
    for (int step = 1; step <= 3; ++step) {
      const std::vector<float> grad = uniform_vector(rng, size_t(n), -1, 1);
      DeviceBuffer grad_cuda(grad);
      // Step 2 is skipped by the flag: both twins must leave everything as it was.
      const std::vector<float> skip = {step == 2 ? 1.0f : 0.0f};
      DeviceBuffer skip_cuda(skip);
      const float bc1 = 1.0f - std::pow(beta1, float(step));
      const float bc2 = 1.0f - std::pow(beta2, float(step));
      const float l1 = step == 3 ? 0.0f : 0.25f;  // the folded L1 penalty, then none
      const std::vector<float> param_before = param;
      adam_step_cpu(param.data(), grad.data(), m.data(), v.data(), n, lr, beta1, beta2, eps, bc1,
                    bc2, l1, skip.data());
      adam_step_cuda(param_cuda.get(), grad_cuda.get(), m_cuda.get(), v_cuda.get(), n, lr, beta1,
                     beta2, eps, bc1, bc2, l1, skip_cuda.get());
      if (step == 2) expect_close(label("adam_step skipped", {n}), param, param_before, kExact);
      const std::string what = label("adam_step", {n}) + " step " + std::to_string(step);
      expect_close(what + " param", param_cuda.download(), param, kDefault);
      expect_close(what + " m", m_cuda.download(), m, kDefault);
      expect_close(what + " v", v_cuda.download(), v, kDefault);
    }
  }
}

// Three Adam steps from random states, each against the textbook formula in
// float64 (m/bc1 over sqrt(v/bc2) + eps) applied to the step's float inputs:
// m and v within two roundings of their terms' magnitudes, the parameter
// within a few ulps of the update plus its own rounding. The float kernel
// folds the step's scalars (lr/bc1, 1/sqrt(bc2)), which moves only last bits;
// a dropped bias correction or a wrong beta moves them by orders more.
// Steps 2 and 3 fold in an L1 penalty: the gradient is grad + l1 sign(p), with
// p = 0 on five elements (sign 0) and a penalty as large as the gradients, so a
// dropped, doubled or sign-flipped term moves m by far more than its rounding.
TEST_CASE("adam_step: three steps against a float64 Adam, L1 folded in on two") {
  TestRng rng(911);
  // The float constants the kernel gets, exactly, in float64.
  const double lr = double(1e-3f), beta1 = double(0.9f), beta2 = double(0.999f), eps = double(1e-8f);
  const double u = std::numeric_limits<float>::epsilon() / 2;
  const int64_t n = 1000;
  std::vector<float> param = uniform_vector(rng, size_t(n), -1, 1);
  std::vector<float> m = uniform_vector(rng, size_t(n), -0.1f, 0.1f);
  std::vector<float> v = uniform_vector(rng, size_t(n), 0, 0.01f);
  // Five elements in the m / eps regime (v and g 0): there eps alone is the denominator.
  for (size_t i = 0; i < 5; ++i) v[i] = 0.0f;
  for (int step = 1; step <= 3; ++step) {
    std::vector<float> grad = uniform_vector(rng, size_t(n), -1, 1);
    for (size_t i = 0; i < 5; ++i) grad[i] = 0.0f;
    for (size_t i = 5; i < 10; ++i) param[i] = 0.0f;
    const double l1 = step == 1 ? 0.0 : 0.5;
    const std::vector<float> param_before = param, m_before = m, v_before = v;
    const float bc1 = float(1.0 - std::pow(beta1, step)), bc2 = float(1.0 - std::pow(beta2, step));
    adam_step_cpu(param.data(), grad.data(), m.data(), v.data(), n, float(lr), float(beta1), float(beta2),
                  float(eps), bc1, bc2, float(l1), nullptr);
    size_t wrong = 0;
    for (size_t i = 0; i < size_t(n); ++i) {
      const double sign = param_before[i] > 0 ? 1.0 : param_before[i] < 0 ? -1.0 : 0.0;
      const double g = double(grad[i]) + l1 * sign;
      const double m_ref = beta1 * m_before[i] + (1 - beta1) * g;
      const double v_ref = beta2 * v_before[i] + (1 - beta2) * g * g;
      const double m_terms = std::fabs(beta1 * m_before[i]) + std::fabs((1 - beta1) * g);
      const double v_terms = beta2 * v_before[i] + (1 - beta2) * g * g;
      const double update = lr * (double(m[i]) / bc1) / (std::sqrt(double(v[i]) / bc2) + eps);
      const double p_ref = double(param_before[i]) - update;
      const bool ok = std::fabs(m[i] - m_ref) <= 4 * u * m_terms && std::fabs(v[i] - v_ref) <= 4 * u * v_terms &&
                      std::fabs(param[i] - p_ref) <= 10 * u * std::fabs(update) + 2 * u * std::fabs(p_ref);
      if (!ok && wrong++ == 0)
        MESSAGE("element ", i, ": m ", m[i], " vs ", m_ref, ", v ", v[i], " vs ", v_ref, ", p ", param[i], " vs ", p_ref);
    }
    CAPTURE(step);
    CHECK(wrong == 0);
  }
}

PARITY_CHECK(sgd_step) {
  TestRng rng(910);
  const float lr = 0.01f, momentum = 0.9f;
  for (int64_t n : sizes_with_grid_wrap()) {
    std::vector<float> param = uniform_vector(rng, size_t(n), -1, 1);
    for (size_t i = 0; i < size_t(n); i += 7) param[i] = 0.0f;  // sign 0: no L1 term
    std::vector<float> buf = uniform_vector(rng, size_t(n), -0.5f, 0.5f);
    DeviceBuffer param_cuda(param), buf_cuda(buf);
    for (int step = 1; step <= 3; ++step) {
      const std::vector<float> grad = uniform_vector(rng, size_t(n), -1, 1);
      DeviceBuffer grad_cuda(grad);
      const std::vector<float> skip = {step == 2 ? 1.0f : 0.0f};  // step 2 skipped
      DeviceBuffer skip_cuda(skip);
      const float l1 = step == 1 ? 0.0f : 0.25f;
      const std::vector<float> param_before = param;
      sgd_step_cpu(param.data(), grad.data(), buf.data(), n, lr, momentum, l1, step == 3 ? nullptr : skip.data());
      sgd_step_cuda(param_cuda.get(), grad_cuda.get(), buf_cuda.get(), n, lr, momentum, l1,
                    step == 3 ? nullptr : skip_cuda.get());
      if (step == 2) expect_close(label("sgd_step skipped", {n}), param, param_before, kExact);
      const std::string what = label("sgd_step", {n}) + " step " + std::to_string(step);
      expect_close(what + " param", param_cuda.download(), param, kDefault);
      expect_close(what + " buf", buf_cuda.download(), buf, kDefault);
    }
  }
}

}  // namespace

// ================================================================ the walk

TEST_CASE("parity: every kernel of CTE_KERNELS matches its CPU twin") {
  std::vector<std::string> listed;
#define CTE_LIST_KERNEL_NAME(name, params) listed.push_back(#name);
  CTE_KERNELS(CTE_LIST_KERNEL_NAME)
#undef CTE_LIST_KERNEL_NAME

  // Coverage first (needs no device): each listed kernel has a check, and no
  // check is left over from a kernel that was renamed or removed.
  const std::set<std::string> listed_set(listed.begin(), listed.end());
  for (const std::string& name : listed)
    CHECK_MESSAGE(parity_checks().count(name) == 1, "kernel " << name << " has no parity check");
  for (const auto& [name, check] : parity_checks())
    CHECK_MESSAGE(listed_set.count(name) == 1,
                  "parity check " << name << " names no kernel of CTE_KERNELS");

  cte::gpu::enable_emulator();
  if (cte::gpu::device_count() == 0) {
    MESSAGE("CUDA backend absent (no device): kernel parity checks skipped");
    return;
  }
  MESSAGE(cte::gpu::describe_device());
  for (const std::string& name : listed) {
    const auto found = parity_checks().find(name);
    if (found == parity_checks().end()) continue;
    INFO("kernel: " << name);
    total_comparisons = 0;
    try {
      found->second();
    } catch (const std::exception& e) {
      FAIL_CHECK("parity check of " << name << " threw: " << e.what());
    }
    CHECK_MESSAGE(total_comparisons > 0, "parity check of " << name << " compared nothing");
  }
}
