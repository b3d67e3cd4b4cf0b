// Correctness of the relaxations (relaxations/relaxations.h), through the
// public API only: the paper's worked examples (appendix A, section 4.1),
// soundness against sampled inputs, exactness where the true range is known
// by enumeration, the provable orderings (hBox never looser than Box, and
// hbox-fresh never looser than hBox), agreement of the float32 engine with
// the double-precision reference in tests/reference_bounds.h, finite-
// difference checks of the bounds' gradients, and the specification helpers
// (margin_spec, certified, worst_case_logits, input_box).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relaxations.h"
#include "tests/reference_bounds.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

// ------------------------------------------------------------------ networks

// doctest prints a const char* as a pointer; a std::string as text.
std::string name_of(Relaxation r) { return relaxation_name(r); }

// widths = {input, hidden..., logits}; ReLU after every hidden linear layer.
// With normalize_input, a normalize layer in front.
Network dense_network(const std::vector<int64_t>& widths, Rng& rng, bool normalize_input) {
  std::vector<Layer> front;
  if (normalize_input) front.push_back(make_normalize({0.2f}, {0.6f}));
  return dense_net(widths, rng, std::move(front));
}

// (2,4,4) -> normalize (per channel) -> conv 3x3 s1 p1 -> relu -> conv 3x3 s2 p1
// -> relu -> flatten -> linear -> relu -> linear: both paddings and strides.
Network conv_network(Rng& rng) {
  std::vector<Layer> layers{make_normalize({0.1f, -0.2f}, {0.5f, 2.0f}),
                            make_conv(2, 3, 3, 1, 1, rng),
                            make_relu(),
                            make_conv(3, 2, 3, 2, 1, rng),
                            make_relu(),
                            make_flatten(),
                            make_linear(8, 5, rng),
                            make_relu(),
                            make_linear(5, 4, rng)};
  return Network(Shape{2, 4, 4}, layers);
}

// A smaller conv net for the finite differences: one statistic broadcast over
// the channel, a strided padded conv, two dense layers.
Network small_conv_network(Rng& rng) {
  std::vector<Layer> layers{make_normalize({0.3f}, {0.7f}), make_conv(1, 2, 3, 2, 1, rng), make_relu(),
                            make_flatten(), make_linear(8, 4, rng), make_relu(), make_linear(4, 3, rng)};
  return Network(Shape{1, 4, 4}, layers);
}

// ------------------------------------------------------------------ boxes and specs

struct BoxBatch {
  int64_t count = 0, width = 0;
  std::vector<float> lower, upper;  // (count, width)
  std::vector<double> lower_of(int64_t n) const {
    return {lower.begin() + n * width, lower.begin() + (n + 1) * width};
  }
  std::vector<double> upper_of(int64_t n) const {
    return {upper.begin() + n * width, upper.begin() + (n + 1) * width};
  }
};

// Centres in [-1, 1]; each sample draws its own eps up to max_eps and each
// coordinate its own radius up to eps. Coordinate 0 of sample 0 has radius 0,
// so a degenerate interval is always exercised. No clipping.
BoxBatch random_boxes(int64_t count, int64_t width, Rng& rng, float max_eps) {
  BoxBatch box{count, width, {}, {}};
  for (int64_t n = 0; n < count; ++n) {
    const float eps = max_eps * rng.uniform(0.05f, 1.0f);
    for (int64_t i = 0; i < width; ++i) {
      const float centre = rng.uniform(-1.0f, 1.0f);
      const float radius = (n == 0 && i == 0) ? 0.0f : eps * rng.uniform(0.0f, 1.0f);
      box.lower.push_back(centre - radius);
      box.upper.push_back(centre + radius);
    }
  }
  return box;
}

enum class SpecKind { none, margin, random };

struct SpecBatch {
  SpecKind kind = SpecKind::none;
  int64_t rows = 0, logits = 0;
  std::vector<float> values;  // (count, rows, logits)
  std::vector<int> labels;    // margin specs only
};

// Rows e_{y'} - e_y for y' != y in increasing y', written out by hand so the
// reference never depends on the engine's margin_spec.
SpecBatch margin_spec_by_hand(const std::vector<int>& labels, int classes) {
  SpecBatch spec{SpecKind::margin, classes - 1, classes, {}, labels};
  for (int y : labels)
    for (int other = 0; other < classes; ++other) {
      if (other == y) continue;
      for (int j = 0; j < classes; ++j) spec.values.push_back(j == other ? 1.0f : j == y ? -1.0f : 0.0f);
    }
  return spec;
}

SpecBatch random_spec(int64_t count, int64_t rows, int64_t logits, Rng& rng) {
  SpecBatch spec{SpecKind::random, rows, logits, random_values(count * rows * logits, rng), {}};
  return spec;
}

std::vector<int> random_labels(int64_t count, int classes, Rng& rng) {
  std::vector<int> labels;
  for (int64_t n = 0; n < count; ++n) labels.push_back(int(rng.below(uint64_t(classes))));
  return labels;
}

SpecBatch make_spec(SpecKind kind, int64_t count, int64_t logits, Rng& rng) {
  switch (kind) {
    case SpecKind::none: return {};
    case SpecKind::margin: return margin_spec_by_hand(random_labels(count, int(logits), rng), int(logits));
    case SpecKind::random: return random_spec(count, 3, logits, rng);
  }
  return {};
}

ref::Matrix spec_matrix(const SpecBatch& spec, int64_t n) {
  if (spec.kind == SpecKind::none) return {};
  ref::Matrix c(spec.rows, spec.logits);
  for (int64_t i = 0; i < spec.rows * spec.logits; ++i)
    c.values[size_t(i)] = spec.values[size_t(n * spec.rows * spec.logits + i)];
  return c;
}

const char* spec_name(SpecKind kind) {
  switch (kind) {
    case SpecKind::none: return "no spec";
    case SpecKind::margin: return "margin spec";
    case SpecKind::random: return "random spec";
  }
  return "?";
}

struct Config {
  Relaxation relaxation;
  SpecKind spec;
  bool elide;
  std::string name() const {
    return std::string(relaxation_name(relaxation)) + ", " + spec_name(spec) +
           (spec == SpecKind::none ? "" : elide ? ", elided" : ", not elided");
  }
};

// Every relaxation with no spec, and with a margin and a random spec, each
// with and without last-layer elision.
std::vector<Config> all_configs() {
  std::vector<Config> configs;
  for (Relaxation r : all_relaxations()) {
    configs.push_back({r, SpecKind::none, true});
    for (SpecKind kind : {SpecKind::margin, SpecKind::random})
      for (bool elide : {true, false}) configs.push_back({r, kind, elide});
  }
  return configs;
}

// ------------------------------------------------------------------ running both sides

struct FlatBounds {
  int64_t count = 0, rows = 0;
  std::vector<float> lower, upper;  // (count, rows)
};

Tensor spec_tensor(const SpecBatch& spec, int64_t count, Device device) {
  if (spec.kind == SpecKind::none) return Tensor();
  // The margin spec goes through the public helper, so every comparison with
  // the reference (which uses the hand-written rows) also checks margin_spec.
  if (spec.kind == SpecKind::margin) return margin_spec(spec.labels, int(spec.logits), device);
  return Tensor::from_vector(spec.values, Shape{count, spec.rows, spec.logits}, device);
}

// Extra BoundOptions a test varies (the defaults are compute_bounds's own).
struct Variant {
  bool need_lower = true;
  float crown_ibp_beta = 1.0f;
  int crown_tie_slope = 0;
};

// With need_lower false the lower bounds come back undefined (checked here)
// and FlatBounds::lower is left empty.
FlatBounds engine_bounds(const Network& net, const BoxBatch& box, const SpecBatch& spec, Relaxation relaxation,
                         bool elide, Device device = Device::cpu, Variant variant = {}) {
  const Shape shape = with_batch(net.input_shape(), box.count);
  const Tensor lower0 = Tensor::from_vector(box.lower, shape, device);
  const Tensor upper0 = Tensor::from_vector(box.upper, shape, device);
  BoundOptions options;
  options.elide_last_layer = elide;
  options.need_lower = variant.need_lower;
  options.crown_ibp_beta = variant.crown_ibp_beta;
  options.crown_tie_slope = variant.crown_tie_slope;
  const Bounds b = compute_bounds(net, lower0, upper0, spec_tensor(spec, box.count, device), relaxation, options);
  REQUIRE(b.upper.ndim() == 2);
  REQUIRE(b.upper.size(0) == box.count);
  if (!variant.need_lower) {
    REQUIRE_FALSE(b.lower.defined());
    return {box.count, b.upper.size(1), {}, b.upper.to_vector()};
  }
  REQUIRE(b.upper.shape() == b.lower.shape());
  return {box.count, b.lower.size(1), b.lower.to_vector(), b.upper.to_vector()};
}

std::vector<ref::Interval> reference_bounds(const ref::DenseNetwork& net, const BoxBatch& box, const SpecBatch& spec,
                                            Relaxation relaxation, bool elide, ref::CaseTrace* trace = nullptr) {
  std::vector<ref::Interval> out;
  for (int64_t n = 0; n < box.count; ++n)
    out.push_back(ref::bounds(net, box.lower_of(n), box.upper_of(n), spec_matrix(spec, n), relaxation, elide, trace));
  return out;
}

bool close(double got, double want, double rtol) { return std::fabs(got - want) <= rtol * (1.0 + std::fabs(want)); }

// "" when the engine's bounds match the reference's within rtol * (1 + |ref|)
// (only the upper ones when the engine computed no lower bounds).
std::string compare_with_reference(const FlatBounds& got, const std::vector<ref::Interval>& want, double rtol) {
  for (int64_t n = 0; n < got.count; ++n) {
    if (int64_t(want[size_t(n)].lower.size()) != got.rows) return "row counts differ";
    for (int64_t k = 0; k < got.rows; ++k) {
      const size_t i = size_t(n * got.rows + k);
      const bool has_lower = !got.lower.empty();  // need_lower false: only the upper bounds
      const double gl = has_lower ? got.lower[i] : NAN, gu = got.upper[i];
      const double wl = want[size_t(n)].lower[size_t(k)], wu = want[size_t(n)].upper[size_t(k)];
      if ((has_lower && !close(gl, wl, rtol)) || !close(gu, wu, rtol)) {
        std::ostringstream why;
        why << "sample " << n << " row " << k << ": engine [" << gl << ", " << gu << "], reference [" << wl << ", "
            << wu << "]";
        return why.str();
      }
    }
  }
  return "";
}

// A box batch whose every ReLU input bound, under every relaxation, keeps at
// least `margin` away from a rule switch (0 and -l = u), so that float32 and
// double take the same branch and finite differences stay on one piece.
// (ReLU input bounds depend neither on the spec nor on elision.)
BoxBatch boxes_away_from_switches(const ref::DenseNetwork& net, int64_t count, Rng& rng, float max_eps,
                                  double margin) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    BoxBatch box = random_boxes(count, net.input_size, rng, max_eps);
    ref::CaseTrace trace;
    for (Relaxation r : all_relaxations()) {
      reference_bounds(net, box, {}, r, true, &trace);
      if (trace.closest_to_switch < margin) break;
    }
    if (trace.closest_to_switch >= margin) return box;
  }
  FAIL("no box away from the relaxations' switches in 500 draws");
  return {};
}

std::vector<double> logits_times_spec(const std::vector<double>& z, const SpecBatch& spec, int64_t n) {
  if (spec.kind == SpecKind::none) return z;
  std::vector<double> out(size_t(spec.rows), 0.0);
  for (int64_t r = 0; r < spec.rows; ++r)
    for (int64_t j = 0; j < spec.logits; ++j)
      out[size_t(r)] += double(spec.values[size_t((n * spec.rows + r) * spec.logits + j)]) * z[size_t(j)];
  return out;
}

// ------------------------------------------------------------------ exact ranges by enumeration

// Exact range of each logit of a one-hidden-layer net (affine, relu, affine)
// over a box in one or two input dimensions. The net is piecewise linear with
// kinks on the hyperplanes where a hidden pre-activation is 0; on the box it is
// linear on each cell of that line arrangement, so its extremes lie at cell
// vertices: the box corners, the lines' crossings with the box edges and, in
// 2-D, the lines' pairwise crossings inside the box.
ref::Interval exact_range(const ref::DenseNetwork& net, const std::vector<double>& lo, const std::vector<double>& hi) {
  REQUIRE(net.layers.size() == 3);
  REQUIRE(net.layers[1].is_relu);
  const ref::Matrix& w = net.layers[0].weight;
  const std::vector<double>& b = net.layers[0].bias;
  const int64_t dims = net.input_size;
  REQUIRE((dims == 1 || dims == 2));
  auto inside = [&](const std::vector<double>& p) {
    for (int64_t d = 0; d < dims; ++d)
      if (p[size_t(d)] < lo[size_t(d)] || p[size_t(d)] > hi[size_t(d)]) return false;
    return true;
  };
  std::vector<std::vector<double>> candidates;
  if (dims == 1) {
    candidates = {{lo[0]}, {hi[0]}};
    for (int64_t j = 0; j < w.rows; ++j)
      if (w(j, 0) != 0.0) candidates.push_back({-b[size_t(j)] / w(j, 0)});
  } else {
    candidates = {{lo[0], lo[1]}, {lo[0], hi[1]}, {hi[0], lo[1]}, {hi[0], hi[1]}};
    for (int64_t j = 0; j < w.rows; ++j) {
      for (double x : {lo[0], hi[0]})
        if (w(j, 1) != 0.0) candidates.push_back({x, -(b[size_t(j)] + w(j, 0) * x) / w(j, 1)});
      for (double y : {lo[1], hi[1]})
        if (w(j, 0) != 0.0) candidates.push_back({-(b[size_t(j)] + w(j, 1) * y) / w(j, 0), y});
      for (int64_t k = j + 1; k < w.rows; ++k) {
        const double det = w(j, 0) * w(k, 1) - w(j, 1) * w(k, 0);
        if (std::fabs(det) < 1e-12) continue;
        const double x = (-b[size_t(j)] * w(k, 1) + b[size_t(k)] * w(j, 1)) / det;
        const double y = (-w(j, 0) * b[size_t(k)] + w(k, 0) * b[size_t(j)]) / det;
        candidates.push_back({x, y});
      }
    }
  }
  ref::Interval range;
  range.lower.assign(size_t(net.output_size()), INFINITY);
  range.upper.assign(size_t(net.output_size()), -INFINITY);
  for (const auto& p : candidates) {
    if (!inside(p)) continue;
    const std::vector<double> z = ref::forward(net, p);
    for (size_t k = 0; k < z.size(); ++k) {
      range.lower[k] = std::min(range.lower[k], z[k]);
      range.upper[k] = std::max(range.upper[k], z[k]);
    }
  }
  return range;
}

// The enumeration must agree with a dense grid (which can only see less).
void check_exact_range_against_grid(const ref::DenseNetwork& net, const std::vector<double>& lo,
                                    const std::vector<double>& hi, const ref::Interval& range) {
  const int steps = 200;
  const int64_t dims = net.input_size;
  std::vector<double> grid_lo(range.lower.size(), INFINITY), grid_hi(range.lower.size(), -INFINITY);
  for (int i = 0; i <= steps; ++i)
    for (int j = 0; j <= (dims == 2 ? steps : 0); ++j) {
      std::vector<double> p{lo[0] + (hi[0] - lo[0]) * i / steps};
      if (dims == 2) p.push_back(lo[1] + (hi[1] - lo[1]) * j / steps);
      const std::vector<double> z = ref::forward(net, p);
      for (size_t k = 0; k < z.size(); ++k) {
        grid_lo[k] = std::min(grid_lo[k], z[k]);
        grid_hi[k] = std::max(grid_hi[k], z[k]);
      }
    }
  for (size_t k = 0; k < grid_lo.size(); ++k) {
    CHECK(range.lower[k] <= grid_lo[k] + 1e-12);
    CHECK(range.upper[k] >= grid_hi[k] - 1e-12);
    // a 200-step grid comes within a few per cent of the range of a net this small
    CHECK(grid_lo[k] - range.lower[k] <= 0.05 * (1.0 + range.upper[k] - range.lower[k]));
    CHECK(range.upper[k] - grid_hi[k] <= 0.05 * (1.0 + range.upper[k] - range.lower[k]));
  }
}

BoxBatch single_box(const std::vector<double>& lo, const std::vector<double>& hi) {
  BoxBatch box{1, int64_t(lo.size()), {}, {}};
  for (size_t i = 0; i < lo.size(); ++i) {
    box.lower.push_back(float(lo[i]));
    box.upper.push_back(float(hi[i]));
  }
  return box;
}

enum class Expect { sound, exact, exact_upper };

// Checks one net and box against its exact range for every relaxation, in
// the engine (float, tolerance 1e-5 relative) and in the reference (1e-9).
void check_against_exact_range(const Network& net, const BoxBatch& box,
                               const std::vector<std::pair<Relaxation, Expect>>& expectations) {
  const ref::DenseNetwork dense = ref::to_dense(net);
  const ref::Interval range = exact_range(dense, box.lower_of(0), box.upper_of(0));
  check_exact_range_against_grid(dense, box.lower_of(0), box.upper_of(0), range);
  for (const auto& [relaxation, expect] : expectations) {
    CAPTURE(name_of(relaxation));
    const FlatBounds got = engine_bounds(net, box, {}, relaxation, true);
    const ref::Interval want = reference_bounds(dense, box, {}, relaxation, true).front();
    for (size_t k = 0; k < range.lower.size(); ++k) {
      CAPTURE(k);
      const double tol_lo = 1e-5 * (1.0 + std::fabs(range.lower[k])), tol_hi = 1e-5 * (1.0 + std::fabs(range.upper[k]));
      CHECK(got.lower[k] <= range.lower[k] + tol_lo);
      CHECK(got.upper[k] >= range.upper[k] - tol_hi);
      CHECK(want.lower[k] <= range.lower[k] + 1e-9);
      CHECK(want.upper[k] >= range.upper[k] - 1e-9);
      if (expect == Expect::exact) {
        CHECK(got.lower[k] >= range.lower[k] - tol_lo);
        CHECK(want.lower[k] >= range.lower[k] - 1e-9);
      }
      if (expect == Expect::exact || expect == Expect::exact_upper) {
        CHECK(got.upper[k] <= range.upper[k] + tol_hi);
        CHECK(want.upper[k] <= range.upper[k] + 1e-9);
      }
    }
  }
}

std::vector<std::pair<Relaxation, Expect>> all_expect(Expect expect) {
  std::vector<std::pair<Relaxation, Expect>> out;
  for (Relaxation r : all_relaxations()) out.push_back({r, expect});
  return out;
}

// ------------------------------------------------------------------ gradients

// Gradient of sum(weights_lower * lower + weights_upper * upper) with respect
// to every parameter, through the engine's tape (without the lower term when
// the variant computes no lower bounds).
std::vector<std::vector<float>> engine_gradients(const Network& net, const BoxBatch& box, const SpecBatch& spec,
                                                 Relaxation relaxation, bool elide,
                                                 const std::vector<float>& weights_lower,
                                                 const std::vector<float>& weights_upper, Variant variant = {}) {
  std::vector<Tensor> params = net.parameters();
  for (Tensor& p : params) {
    p.set_requires_grad(true);
    p.zero_grad();
  }
  const Shape shape = with_batch(net.input_shape(), box.count);
  BoundOptions options;
  options.elide_last_layer = elide;
  options.need_lower = variant.need_lower;
  options.crown_ibp_beta = variant.crown_ibp_beta;
  const Bounds b = compute_bounds(net, Tensor::from_vector(box.lower, shape, Device::cpu),
                                  Tensor::from_vector(box.upper, shape, Device::cpu),
                                  spec_tensor(spec, box.count, Device::cpu), relaxation, options);
  Tensor loss = ops::sum(ops::mul(b.upper, Tensor::from_vector(weights_upper, b.upper.shape(), Device::cpu)));
  if (variant.need_lower)
    loss = ops::add(loss, ops::sum(ops::mul(b.lower, Tensor::from_vector(weights_lower, b.lower.shape(), Device::cpu))));
  backward(loss);
  std::vector<std::vector<float>> grads;
  for (Tensor& p : params) {
    grads.push_back(p.grad().defined() ? p.grad().to_vector() : std::vector<float>(size_t(p.numel()), 0.0f));
    p.zero_grad();
    p.set_requires_grad(false);
  }
  return grads;
}

double reference_loss(const ref::NetworkSpec& spec_net, const BoxBatch& box, const SpecBatch& spec,
                      Relaxation relaxation, bool elide, const std::vector<float>& weights_lower,
                      const std::vector<float>& weights_upper, ref::CaseTrace* trace) {
  const std::vector<ref::Interval> b = reference_bounds(ref::densify(spec_net), box, spec, relaxation, elide, trace);
  double loss = 0.0;
  size_t i = 0;
  for (const ref::Interval& sample : b)
    for (size_t k = 0; k < sample.lower.size(); ++k, ++i)
      loss += weights_lower[i] * sample.lower[k] + weights_upper[i] * sample.upper[k];
  return loss;
}

}  // namespace

// =================================================================== 1. worked examples

TEST_CASE("relaxations: appendix A worked example (DeepZ on the figure 8 network)") {
  // x1 = (x01 + x02, x01 - x02), x2 = relu(x1), x3 = (x21 + x22, x21 - x22), x0 in [-1, 1]^2.
  const Network net(Shape{2}, {linear_layer({{1, 1}, {1, -1}}, {0, 0}), make_relu(),
                               linear_layer({{1, 1}, {1, -1}}, {0, 0})});
  const BoxBatch box = single_box({-1, -1}, {1, 1});
  const FlatBounds deepz = engine_bounds(net, box, {}, Relaxation::deepz, true);
  CHECK_CLOSE_VEC(deepz.lower, (std::vector<float>{-1, -2}), 1e-6, 0);
  CHECK_CLOSE_VEC(deepz.upper, (std::vector<float>{3, 2}), 1e-6, 0);

  // Hand derivations on the same network for the other rules (both ReLUs
  // have l = -2, u = 2): Box and hBox give [0, 4] and [-2, 2]; CROWN has
  // -l >= u, so slope 0 below: l3 = (0, -2), u3 = (3, 2).
  const FlatBounds box_bounds = engine_bounds(net, box, {}, Relaxation::box, true);
  CHECK_CLOSE_VEC(box_bounds.lower, (std::vector<float>{0, -2}), 1e-6, 0);
  CHECK_CLOSE_VEC(box_bounds.upper, (std::vector<float>{4, 2}), 1e-6, 0);
  const FlatBounds hbox = engine_bounds(net, box, {}, Relaxation::hbox, true);
  CHECK_CLOSE_VEC(hbox.lower, (std::vector<float>{0, -2}), 1e-6, 0);
  CHECK_CLOSE_VEC(hbox.upper, (std::vector<float>{4, 2}), 1e-6, 0);
  const FlatBounds crown = engine_bounds(net, box, {}, Relaxation::crown, true);
  CHECK_CLOSE_VEC(crown.lower, (std::vector<float>{0, -2}), 1e-6, 0);
  CHECK_CLOSE_VEC(crown.upper, (std::vector<float>{3, 2}), 1e-6, 0);

  // The reference reproduces the appendix, and the engine matches the
  // reference for every rule.
  const ref::DenseNetwork dense = ref::to_dense(net);
  const ref::Interval ref_deepz = reference_bounds(dense, box, {}, Relaxation::deepz, true).front();
  CHECK(ref_deepz.lower == std::vector<double>{-1, -2});
  CHECK(ref_deepz.upper == std::vector<double>{3, 2});
  for (Relaxation r : all_relaxations()) {
    CAPTURE(name_of(r));
    const std::string why =
        compare_with_reference(engine_bounds(net, box, {}, r, true), reference_bounds(dense, box, {}, r, true), 1e-6);
    CHECK_MESSAGE(why.empty(), why);
  }
}

TEST_CASE("relaxations: section 4.1 discontinuities of CROWN (l31) and hBox (l32)") {
  // x0 in [-1, 1]; x11 = x12 = x0 + w; x2 = relu(x1); x31 = x22 + 1, x32 = x22 - x21.
  auto network = [](float w) {
    return Network(Shape{1}, {linear_layer({{1}, {1}}, {w, w}), make_relu(),
                              linear_layer({{0, 1}, {-1, 1}}, {1, 0})});
  };
  const BoxBatch box = single_box({-1}, {1});
  // CROWN: l31 = 1 for w in [-1, 0] (slope 0, or a dead ReLU at w = -1), = w for w in (0, 1].
  for (float w : {-1.0f, -0.75f, -0.5f, -0.25f, 0.0f, 0.01f, 0.25f, 0.5f, 0.75f, 1.0f}) {
    CAPTURE(w);
    const Network net = network(w);
    const double want = w <= 0.0f ? 1.0 : double(w);
    CHECK(engine_bounds(net, box, {}, Relaxation::crown, true).lower[0] == doctest::Approx(want).epsilon(1e-6));
    CHECK(reference_bounds(ref::to_dense(net), box, {}, Relaxation::crown, true)[0].lower[0] ==
          doctest::Approx(want).epsilon(1e-12));
  }
  // hBox: l32 = -1 - w for w in (-1, 1), 0 for w >= 1 (and 0 at w = -1, where both ReLUs are dead).
  // hbox-fresh makes the same choices here (one affine layer follows the ReLUs).
  for (float w : {-1.0f, -0.99f, -0.5f, 0.0f, 0.5f, 0.9f, 0.999f, 1.0f, 1.5f}) {
    CAPTURE(w);
    const Network net = network(w);
    const double want = (w > -1.0f && w < 1.0f) ? -1.0 - double(w) : 0.0;
    for (Relaxation r : {Relaxation::hbox, Relaxation::hbox_fresh}) {
      CAPTURE(name_of(r));
      CHECK(engine_bounds(net, box, {}, r, true).lower[1] == doctest::Approx(want).epsilon(1e-6));
      CHECK(reference_bounds(ref::to_dense(net), box, {}, r, true)[0].lower[1] == doctest::Approx(want).epsilon(1e-12));
    }
  }
  // Every rule, every w: the engine agrees with the reference.
  for (float w : {-1.0f, -0.5f, 0.0f, 0.01f, 0.5f, 1.0f, 1.5f}) {
    const Network net = network(w);
    for (Relaxation r : all_relaxations()) {
      CAPTURE(w);
      CAPTURE(name_of(r));
      const std::string why = compare_with_reference(engine_bounds(net, box, {}, r, true),
                                                     reference_bounds(ref::to_dense(net), box, {}, r, true), 1e-6);
      CHECK_MESSAGE(why.empty(), why);
    }
  }
}

TEST_CASE("relaxations: CROWN-0 (y >= 0 on every ReLU) and crown0-unstable by hand") {
  // x0 in [-1, 1]; h1 = x0 + 2 in [1, 3] (stable active), h2 = x0 in [-1, 1]
  // (unstable, lambda 1/2, chord (x0 + 1) / 2); z1 = y1 + y2, z2 = y1 - y2.
  const Network net(Shape{1}, {linear_layer({{1}, {1}}, {2, 0}), make_relu(), linear_layer({{1, 1}, {1, -1}}, {0, 0})});
  const BoxBatch box = single_box({-1}, {1});
  // crown0: y1 in [0, x0 + 2], y2 in [0, (x0 + 1) / 2]. z1 >= 0; z1 <= 1.5 x0 + 2.5 <= 4;
  // z2 >= -(x0 + 1) / 2 >= -1; z2 <= x0 + 2 <= 3.
  const FlatBounds crown0 = engine_bounds(net, box, {}, Relaxation::crown0, true);
  CHECK_CLOSE_VEC(crown0.lower, (std::vector<float>{0, -1}), 1e-6, 0);
  CHECK_CLOSE_VEC(crown0.upper, (std::vector<float>{4, 3}), 1e-6, 0);
  // crown0-unstable: y1 = x0 + 2 exactly. z1 >= x0 + 2 >= 1; z2 >= x0 + 2 - (x0 + 1) / 2 >= 1.
  const FlatBounds unstable = engine_bounds(net, box, {}, Relaxation::crown0_unstable, true);
  CHECK_CLOSE_VEC(unstable.lower, (std::vector<float>{1, 1}), 1e-6, 0);
  CHECK_CLOSE_VEC(unstable.upper, (std::vector<float>{4, 3}), 1e-6, 0);

  // Every ReLU stable active: x0 in [1, 2], z = relu(x0) - relu(2 x0) + 3 relu(x0) = 2 x0 in [2, 4].
  // crown0 keeps y >= 0 and y <= h: z >= 0 - 2 x0 + 0 = -4 and z <= x0 - 0 + 3 x0 = 8 (not the exact [2, 4]).
  const Network stable(Shape{1}, {linear_layer({{1}, {2}, {1}}, {0, 0, 0}), make_relu(),
                                   linear_layer({{1, -1, 3}}, {0})});
  const BoxBatch positive = single_box({1}, {2});
  const FlatBounds c0 = engine_bounds(stable, positive, {}, Relaxation::crown0, true);
  CHECK(c0.lower[0] == doctest::Approx(-4.0));
  CHECK(c0.upper[0] == doctest::Approx(8.0));
  const FlatBounds exact = engine_bounds(stable, positive, {}, Relaxation::crown0_unstable, true);
  CHECK(exact.lower[0] == doctest::Approx(2.0));
  CHECK(exact.upper[0] == doctest::Approx(4.0));
}

TEST_CASE("relaxations: without elision every relaxation takes the margins from the logits' bounds") {
  // Without elision a relaxation bounds the logits and applies C by interval
  // arithmetic: the margin y' - y lies in [l_y' - u_y, u_y' - l_y] (the
  // authors' --C eye). On the appendix A network with label 0 under DeepZ the
  // logits lie in [-1, 3] and [-2, 2], so z2 - z1 in [-2 - 3, 2 + 1] = [-5, 3].
  // Folding C into the last layer instead gives z2 - z1 = -2 x22 with
  // x12/2 <= x22 <= x12/2 + 1, x12 in [-2, 2]: [-4, 2].
  const Network net(Shape{2}, {linear_layer({{1, 1}, {1, -1}}, {0, 0}), make_relu(),
                               linear_layer({{1, 1}, {1, -1}}, {0, 0})});
  const BoxBatch box = single_box({-1, -1}, {1, 1});
  const SpecBatch spec = margin_spec_by_hand({0}, 2);
  for (bool elide : {true, false}) {
    CAPTURE(elide);
    const FlatBounds got = engine_bounds(net, box, spec, Relaxation::deepz, elide);
    CHECK(got.lower[0] == doctest::Approx(elide ? -4.0 : -5.0));
    CHECK(got.upper[0] == doctest::Approx(elide ? 2.0 : 3.0));
    const ref::Interval ref = reference_bounds(ref::to_dense(net), box, spec, Relaxation::deepz, elide).front();
    CHECK(ref.lower[0] == (elide ? -4.0 : -5.0));
    CHECK(ref.upper[0] == (elide ? 2.0 : 3.0));
  }
  // CROWN on the same network: logits (0, -2) .. (3, 2) (the worked example above), so
  // z2 - z1 in [-2 - 3, 2 - 0] = [-5, 2] without elision.
  const FlatBounds crown = engine_bounds(net, box, spec, Relaxation::crown, false);
  CHECK(crown.lower[0] == doctest::Approx(-5.0));
  CHECK(crown.upper[0] == doctest::Approx(2.0));

  // Every relaxation on a random net: the non-elided margins are exactly the
  // interval arithmetic of the engine's own logit bounds (in double here).
  Rng rng(3);
  const Network random_net = dense_network({4, 6, 6, 3}, rng, false);
  const BoxBatch boxes = random_boxes(4, 4, rng, 0.5f);
  const SpecBatch margins = margin_spec_by_hand({0, 2, 1, 2}, 3);
  int differ = 0;  // margins where elision changes the bound: the flag must do something
  for (Relaxation r : all_relaxations()) {
    CAPTURE(name_of(r));
    const FlatBounds logits = engine_bounds(random_net, boxes, {}, r, true);
    const FlatBounds elided = engine_bounds(random_net, boxes, margins, r, true);
    const FlatBounds got = engine_bounds(random_net, boxes, margins, r, false);
    for (int64_t n = 0; n < boxes.count; ++n) {
      const int y = margins.labels[size_t(n)];
      int64_t row = 0;
      for (int other = 0; other < 3; ++other) {
        if (other == y) continue;
        const size_t i = size_t(n * 2 + row++);
        const float* l = &logits.lower[size_t(n * 3)];
        const float* u = &logits.upper[size_t(n * 3)];
        CAPTURE(n);
        CAPTURE(other);
        CHECK(got.lower[i] == doctest::Approx(double(l[other]) - double(u[y])).epsilon(1e-5));
        CHECK(got.upper[i] == doctest::Approx(double(u[other]) - double(l[y])).epsilon(1e-5));
        differ += std::fabs(got.upper[i] - elided.upper[i]) > 1e-3f;
      }
    }
  }
  CHECK(differ > 0);
}

TEST_CASE("relaxations: CROWN's tie rule (-l = u) is selectable: slope 0 (the paper) or 1 (the authors' code)") {
  // The section 4.1 network at w = 0: both ReLUs have l = -1, u = 1, a tie.
  // x31 = x22 + 1: slope 0 gives l31 = 0 + 1 = 1; slope 1 gives x22 >= x0, l31 = -1 + 1 = 0.
  // x32 = x22 - x21: the upper side of x21 is the chord either way, (x0 + 1) / 2; lower
  // slope 0: l32 = 0 - (x0 + 1) / 2 >= -1; slope 1: x0 - (x0 + 1) / 2 = (x0 - 1) / 2 >= -1.
  const Network net(Shape{1}, {linear_layer({{1}, {1}}, {0, 0}), make_relu(), linear_layer({{0, 1}, {-1, 1}}, {1, 0})});
  const BoxBatch box = single_box({-1}, {1});
  for (Relaxation r : {Relaxation::crown, Relaxation::crown_ibp}) {
    CAPTURE(name_of(r));
    Variant tie0, tie1;
    tie1.crown_tie_slope = 1;
    CHECK(engine_bounds(net, box, {}, r, true, Device::cpu, tie0).lower[0] == doctest::Approx(1.0));
    CHECK(engine_bounds(net, box, {}, r, true, Device::cpu, tie1).lower[0] == doctest::Approx(0.0));
    CHECK(engine_bounds(net, box, {}, r, true, Device::cpu, tie1).lower[1] == doctest::Approx(-1.0));
  }
  // Off the tie the setting changes nothing (w = 0.25: -l = 0.75 < u = 1.25, slope 1 either way).
  const Network off(Shape{1}, {linear_layer({{1}, {1}}, {0.25f, 0.25f}), make_relu(),
                               linear_layer({{0, 1}, {-1, 1}}, {1, 0})});
  Variant tie1;
  tie1.crown_tie_slope = 1;
  CHECK(engine_bounds(off, box, {}, Relaxation::crown, true, Device::cpu, tie1).lower[0] == doctest::Approx(0.25));
  CHECK(engine_bounds(off, box, {}, Relaxation::crown, true).lower[0] == doctest::Approx(0.25));
  // Other values are refused.
  BoundOptions bad;
  bad.crown_tie_slope = 2;
  const Tensor lo = Tensor::from_vector({-1.0f}, Shape{1, 1}, Device::cpu), hi = Tensor::from_vector({1.0f}, Shape{1, 1}, Device::cpu);
  CHECK_THROWS_WITH_AS(compute_bounds(net, lo, hi, Tensor(), Relaxation::crown, bad),
                       doctest::Contains("crown_tie_slope must be 0 or 1, got 2"), std::runtime_error);
}

// =================================================================== 2. soundness

namespace {

// Samples `uniform_points` points of every box plus corners (all of them when
// there are at most 2^10, else `random_corners` random ones), pushes each
// through the double-precision forward pass, and checks C z against every
// configuration's engine bounds (tolerance 1e-5 relative).
void check_soundness(const Network& net, const BoxBatch& box, Rng& rng, int uniform_points, int random_corners,
                     Device device) {
  const ref::DenseNetwork dense = ref::to_dense(net);
  const int64_t logits = dense.output_size();
  struct Run {
    Config config;
    SpecBatch spec;
    FlatBounds bounds;
    int64_t violations = 0;
    std::string first;
  };
  std::vector<Run> runs;
  Network on_device = net;
  on_device.to(device);
  for (const Config& config : all_configs()) {
    Run run{config, make_spec(config.spec, box.count, logits, rng), {}, 0, ""};
    run.bounds = engine_bounds(on_device, box, run.spec, config.relaxation, config.elide, device);
    runs.push_back(std::move(run));
  }
  for (int64_t n = 0; n < box.count; ++n) {
    const std::vector<double> lo = box.lower_of(n), hi = box.upper_of(n);
    std::vector<std::vector<double>> points;
    const bool all_corners = box.width <= 10;
    const int64_t corners = all_corners ? (int64_t(1) << box.width) : random_corners;
    for (int64_t c = 0; c < corners; ++c) {
      std::vector<double> p(size_t(box.width));
      for (int64_t i = 0; i < box.width; ++i) {
        const bool high = all_corners ? ((c >> i) & 1) : (rng.below(2) == 1);
        p[size_t(i)] = high ? hi[size_t(i)] : lo[size_t(i)];
      }
      points.push_back(std::move(p));
    }
    for (int k = 0; k < uniform_points; ++k) {
      std::vector<double> p(size_t(box.width));
      for (int64_t i = 0; i < box.width; ++i) p[size_t(i)] = lo[size_t(i)] + (hi[size_t(i)] - lo[size_t(i)]) * rng.uniform();
      points.push_back(std::move(p));
    }
    for (const auto& p : points) {
      const std::vector<double> z = ref::forward(dense, p);
      for (Run& run : runs) {
        const std::vector<double> cz = logits_times_spec(z, run.spec, n);
        for (size_t k = 0; k < cz.size(); ++k) {
          const size_t i = size_t(n * run.bounds.rows) + k;
          const double lo_b = run.bounds.lower[i], hi_b = run.bounds.upper[i];
          if (cz[k] >= lo_b - 1e-5 * (1 + std::fabs(lo_b)) && cz[k] <= hi_b + 1e-5 * (1 + std::fabs(hi_b))) continue;
          if (run.violations++ == 0) {
            std::ostringstream why;
            why << "sample " << n << " row " << k << ": C z = " << cz[k] << " outside [" << lo_b << ", " << hi_b << "]";
            run.first = why.str();
          }
        }
      }
    }
  }
  for (const Run& run : runs) {
    CAPTURE(run.config.name());
    CHECK_MESSAGE(run.violations == 0, run.violations << " violations; first: " << run.first);
  }
}

}  // namespace

TEST_CASE("relaxations: every relaxation is sound on sampled points (dense net with normalize)") {
  Rng rng(11);
  for (int trial = 0; trial < 2; ++trial) {
    const Network net = dense_network({6, 8, 8, 4}, rng, true);
    const BoxBatch box = random_boxes(3, 6, rng, trial == 0 ? 0.3f : 1.0f);
    check_soundness(net, box, rng, 10000, 0, Device::cpu);
  }
}

TEST_CASE("relaxations: every relaxation is sound on sampled points (conv net)") {
  Rng rng(12);
  const Network net = conv_network(rng);
  const BoxBatch box = random_boxes(2, 32, rng, 0.5f);
  check_soundness(net, box, rng, 10000, 2000, Device::cpu);
}

TEST_CASE("relaxations: soundness on CUDA (tiny net)") {
  if (!cuda_available()) return;
  Rng rng(13);
  const Network net = dense_network({3, 4, 3}, rng, false);
  const BoxBatch box = random_boxes(1, 3, rng, 0.5f);
  check_soundness(net, box, rng, 2000, 0, Device::cuda);
}

// =================================================================== 3. exactness

TEST_CASE("relaxations: exact on a single linear layer, sound on one hidden layer (1-D and 2-D inputs)") {
  Rng rng(21);
  // One linear layer: interval arithmetic of one affine map is exact, and so is every relaxation.
  for (int64_t dims : {1, 2}) {
    const Network linear_only(Shape{dims}, {make_linear(dims, 3, rng)});
    const ref::DenseNetwork dense = ref::to_dense(linear_only);
    const BoxBatch box = random_boxes(1, dims, rng, 1.0f);
    for (Relaxation r : all_relaxations()) {
      CAPTURE(name_of(r));
      const FlatBounds got = engine_bounds(linear_only, box, {}, r, true);
      for (size_t k = 0; k < 3; ++k) {
        // the corners of the box hold the extremes of an affine map
        double lo = INFINITY, hi = -INFINITY;
        for (int c = 0; c < (1 << dims); ++c) {
          std::vector<double> p;
          for (int64_t i = 0; i < dims; ++i) p.push_back((c >> i) & 1 ? box.upper[size_t(i)] : box.lower[size_t(i)]);
          const double z = ref::forward(dense, p)[k];
          lo = std::min(lo, z);
          hi = std::max(hi, z);
        }
        CHECK(got.lower[k] == doctest::Approx(lo).epsilon(1e-5));
        CHECK(got.upper[k] == doctest::Approx(hi).epsilon(1e-5));
      }
    }
  }
  // One hidden ReLU layer with unstable neurons: every relaxation contains the true range.
  for (int trial = 0; trial < 6; ++trial) {
    const int64_t dims = 1 + trial % 2;
    const Network net = dense_network({dims, 6, 3}, rng, false);
    check_against_exact_range(net, random_boxes(1, dims, rng, 1.0f), all_expect(Expect::sound));
  }
}

TEST_CASE("relaxations: with every ReLU stable, every relaxation but Box is exact") {
  Rng rng(22);
  for (int trial = 0; trial < 8; ++trial) {
    CAPTURE(trial);
    const int64_t dims = 1 + trial % 2;
    const Network net = dense_network({dims, 6, 3}, rng, false);
    const ref::DenseNetwork dense = ref::to_dense(net);
    // Draw boxes until no hidden pre-activation changes sign on the box (the
    // reference's case trace says so), keeping 0.02 away from 0.
    BoxBatch box;
    bool stable = false;
    for (int attempt = 0; attempt < 1000 && !stable; ++attempt) {
      box = random_boxes(1, dims, rng, attempt < 500 ? 0.2f : 0.05f);
      box.lower[0] -= 0.05f;  // random_boxes makes coordinate 0 of sample 0 degenerate; widen it
      box.upper[0] += 0.05f;
      ref::CaseTrace trace;
      reference_bounds(dense, box, {}, Relaxation::deepz, true, &trace);
      stable = std::all_of(trace.cases.begin(), trace.cases.end(), [](int c) { return c <= 1; }) &&
               trace.closest_to_switch > 0.02;
    }
    REQUIRE(stable);
    std::vector<std::pair<Relaxation, Expect>> expect;
    for (Relaxation r : all_relaxations())  // Box and CROWN-0 (y >= 0 on stable ReLUs too) are not exact
      expect.push_back({r, r == Relaxation::box || r == Relaxation::crown0 ? Expect::sound : Expect::exact});
    check_against_exact_range(net, box, expect);
  }
}

TEST_CASE("relaxations: 1-D input and nonnegative output weights: the chord upper bounds are exact") {
  // Each logit is a nonnegative sum of ReLUs of affine functions of x: convex,
  // so its maximum is at an end of the box. The chord x -> lambda (x - l)
  // meets each ReLU at both ends, so the backsubstituted upper bound (a
  // nonnegative sum of chords, identities and zeros) is affine and equals the
  // logit at both ends: DeepZ, CROWN, CROWN-0 and CROWN-IBP are exact above.
  Rng rng(23);
  int nets_with_unstable = 0;
  for (int trial = 0; trial < 6; ++trial) {
    Network net = dense_network({1, 6, 2}, rng, false);
    std::vector<float> w = net.layers()[2].weight.to_vector();
    for (float& v : w) v = std::fabs(v);
    net.layers()[2].weight = Tensor::from_vector(w, net.layers()[2].weight.shape(), Device::cpu);
    const BoxBatch box = single_box({-1.0}, {1.0});
    ref::CaseTrace trace;
    reference_bounds(ref::to_dense(net), box, {}, Relaxation::deepz, true, &trace);
    nets_with_unstable += std::any_of(trace.cases.begin(), trace.cases.end(), [](int c) { return c >= 2; });
    check_against_exact_range(net, box,
                              {{Relaxation::deepz, Expect::exact_upper},
                               {Relaxation::crown, Expect::exact_upper},
                               {Relaxation::crown0, Expect::exact_upper},
                               {Relaxation::crown_ibp, Expect::exact_upper},
                               {Relaxation::box, Expect::sound},
                               {Relaxation::hbox, Expect::sound},
                               {Relaxation::hbox_fresh, Expect::sound}});
  }
  CHECK(nets_with_unstable >= 4);  // the claim is only interesting with unstable ReLUs
}

// =================================================================== 4. orderings

TEST_CASE("relaxations: hBox is never looser than Box; hbox-fresh never looser than hBox (statistics)") {
  // Appendix C: every hBox constraint is contained in Box's, so its bounds
  // are too. hbox-fresh backsubstitutes each unstable ReLU as a fresh variable
  // in [0, u]: given the same input bounds it bounds the same abstract model
  // exactly, where hBox additionally decorrelates the box terms at every
  // affine layer (|W| b), and its own intermediate bounds are at least as
  // tight, so it can never be looser; it is tighter once two affine layers
  // follow an unstable ReLU. The reference and the engine are both counted.
  Rng rng(31);
  const int nets = 150;
  int ref_fresh_looser = 0, ref_fresh_tighter = 0, engine_fresh_looser = 0, engine_fresh_tighter = 0;
  int engine_hbox_looser_than_box = 0, ref_hbox_looser_than_box = 0, ref_hbox_tighter_than_box = 0;
  std::string first_counterexample;
  for (int t = 0; t < nets; ++t) {
    std::vector<int64_t> widths{int64_t(3 + rng.below(4))};
    const int hidden = 2 + int(rng.below(2));
    for (int h = 0; h < hidden; ++h) widths.push_back(int64_t(3 + rng.below(6)));
    widths.push_back(int64_t(2 + rng.below(4)));
    const Network net = dense_network(widths, rng, false);
    const ref::DenseNetwork dense = ref::to_dense(net);
    const BoxBatch box = random_boxes(3, widths.front(), rng, float(0.05 + rng.uniform() * 1.5));
    for (SpecKind kind : {SpecKind::none, SpecKind::margin}) {
      const SpecBatch spec = make_spec(kind, box.count, widths.back(), rng);
      const FlatBounds e_box = engine_bounds(net, box, spec, Relaxation::box, true);
      const FlatBounds e_hbox = engine_bounds(net, box, spec, Relaxation::hbox, true);
      const FlatBounds e_fresh = engine_bounds(net, box, spec, Relaxation::hbox_fresh, true);
      const auto r_box = reference_bounds(dense, box, spec, Relaxation::box, true);
      const auto r_hbox = reference_bounds(dense, box, spec, Relaxation::hbox, true);
      const auto r_fresh = reference_bounds(dense, box, spec, Relaxation::hbox_fresh, true);
      bool e_looser = false, e_tighter = false, e_hbox_looser = false;
      bool r_looser = false, r_tighter = false, r_hbox_looser = false, r_hbox_tighter = false;
      for (int64_t n = 0; n < box.count; ++n)
        for (int64_t k = 0; k < e_box.rows; ++k) {
          const size_t i = size_t(n * e_box.rows + k);
          auto tol = [](double v) { return 1e-5 * (1 + std::fabs(v)); };
          e_hbox_looser |= e_hbox.lower[i] < e_box.lower[i] - tol(e_box.lower[i]) ||
                           e_hbox.upper[i] > e_box.upper[i] + tol(e_box.upper[i]);
          e_looser |= e_fresh.lower[i] < e_hbox.lower[i] - tol(e_hbox.lower[i]) ||
                      e_fresh.upper[i] > e_hbox.upper[i] + tol(e_hbox.upper[i]);
          e_tighter |= e_fresh.lower[i] > e_hbox.lower[i] + tol(e_hbox.lower[i]) ||
                       e_fresh.upper[i] < e_hbox.upper[i] - tol(e_hbox.upper[i]);
          const ref::Interval &rb = r_box[size_t(n)], &rh = r_hbox[size_t(n)], &rf = r_fresh[size_t(n)];
          const size_t kk = size_t(k);
          r_hbox_looser |= rh.lower[kk] < rb.lower[kk] - 1e-9 || rh.upper[kk] > rb.upper[kk] + 1e-9;
          r_hbox_tighter |= rh.lower[kk] > rb.lower[kk] + 1e-5 || rh.upper[kk] < rb.upper[kk] - 1e-5;
          const bool looser = rf.lower[kk] < rh.lower[kk] - 1e-5 || rf.upper[kk] > rh.upper[kk] + 1e-5;
          r_looser |= looser;
          r_tighter |= rf.lower[kk] > rh.lower[kk] + 1e-5 || rf.upper[kk] < rh.upper[kk] - 1e-5;
          if (looser && first_counterexample.empty()) first_counterexample = net.describe();
        }
      engine_hbox_looser_than_box += e_hbox_looser;
      engine_fresh_looser += e_looser;
      engine_fresh_tighter += e_tighter;
      ref_hbox_looser_than_box += r_hbox_looser;
      ref_hbox_tighter_than_box += r_hbox_tighter;
      ref_fresh_looser += r_looser;
      ref_fresh_tighter += r_tighter;
    }
  }
  const int cases = nets * 2;
  MESSAGE("hbox vs box over " << cases << " (net, spec) cases: hbox looser in " << ref_hbox_looser_than_box
                              << " (reference) / " << engine_hbox_looser_than_box << " (engine); strictly tighter in "
                              << ref_hbox_tighter_than_box << " (reference)");
  MESSAGE("hbox-fresh vs hbox over " << cases << " (net, spec) cases, 2-3 hidden layers: hbox-fresh looser by > 1e-5 in "
                                     << ref_fresh_looser << " (reference) / " << engine_fresh_looser
                                     << " (engine); tighter by > 1e-5 in " << ref_fresh_tighter << " (reference) / "
                                     << engine_fresh_tighter << " (engine)"
                                     << (first_counterexample.empty() ? "" : "; first: " + first_counterexample));
  CHECK(ref_hbox_looser_than_box == 0);
  CHECK(engine_hbox_looser_than_box == 0);
  CHECK(ref_fresh_looser == 0);
  CHECK(engine_fresh_looser == 0);
  CHECK(ref_fresh_tighter > 0);  // the two really differ on deeper nets
  CHECK(engine_fresh_tighter > 0);
}

TEST_CASE("relaxations: hbox and hbox-fresh agree when one affine layer follows each unstable ReLU") {
  // A single hidden ReLU layer: both represent the first layer exactly and
  // each unstable ReLU as an independent value in [0, u] entering one affine
  // map, so they give the same bounds, without a spec or with an elided one.
  // (Without elision hBox applies a spec by interval arithmetic to the
  // logits' bounds, while hbox-fresh starts backsubstitution from it, so
  // there the two legitimately differ.)
  Rng rng(32);
  for (int t = 0; t < 20; ++t) {
    CAPTURE(t);
    const int64_t in = int64_t(2 + rng.below(5)), hidden = int64_t(3 + rng.below(8)), out = int64_t(2 + rng.below(4));
    const Network net = dense_network({in, hidden, out}, rng, t % 2 == 0);
    const ref::DenseNetwork dense = ref::to_dense(net);
    const BoxBatch box = random_boxes(3, in, rng, 1.0f);
    for (SpecKind kind : {SpecKind::none, SpecKind::margin, SpecKind::random})
      for (bool elide : {true, false}) {
        CAPTURE(std::string(spec_name(kind)));
        CAPTURE(elide);
        const SpecBatch spec = make_spec(kind, box.count, out, rng);
        if (!elide && kind != SpecKind::none) continue;
        const FlatBounds hbox = engine_bounds(net, box, spec, Relaxation::hbox, elide);
        const FlatBounds fresh = engine_bounds(net, box, spec, Relaxation::hbox_fresh, elide);
        CHECK_CLOSE_VEC(fresh.lower, hbox.lower, 1e-5, 1e-5);
        CHECK_CLOSE_VEC(fresh.upper, hbox.upper, 1e-5, 1e-5);
        const auto r_hbox = reference_bounds(dense, box, spec, Relaxation::hbox, elide);
        const auto r_fresh = reference_bounds(dense, box, spec, Relaxation::hbox_fresh, elide);
        for (size_t n = 0; n < r_hbox.size(); ++n)
          for (size_t k = 0; k < r_hbox[n].lower.size(); ++k) {
            CHECK(r_fresh[n].lower[k] == doctest::Approx(r_hbox[n].lower[k]).epsilon(1e-9));
            CHECK(r_fresh[n].upper[k] == doctest::Approx(r_hbox[n].upper[k]).epsilon(1e-9));
          }
      }
  }
}

// =================================================================== 5. engine vs reference

namespace {

void check_agreement(const Network& net, Rng& rng, int64_t count, float max_eps, Device device) {
  const ref::DenseNetwork dense = ref::to_dense(net);
  Network on_device = net;
  on_device.to(device);
  const BoxBatch box = boxes_away_from_switches(dense, count, rng, max_eps, 1e-4);
  for (const Config& config : all_configs()) {
    CAPTURE(config.name());
    const SpecBatch spec = make_spec(config.spec, count, dense.output_size(), rng);
    const std::vector<ref::Interval> want = reference_bounds(dense, box, spec, config.relaxation, config.elide);
    const FlatBounds got = engine_bounds(on_device, box, spec, config.relaxation, config.elide, device);
    std::string why = compare_with_reference(got, want, 1e-4);
    CHECK_MESSAGE(why.empty(), why);
    // Only the upper bounds (what certification and the certified loss read):
    // CROWN-style rules then walk -C instead of [C; -C].
    const FlatBounds upper_only = engine_bounds(on_device, box, spec, config.relaxation, config.elide, device,
                                                Variant{false, 1.0f});
    why = compare_with_reference(upper_only, want, 1e-4);
    CHECK_MESSAGE(why.empty(), "need_lower false: " << why);
  }
  // CROWN-IBP with beta: beta * CROWN-IBP + (1 - beta) * Box, from the reference's two bounds.
  for (float beta : {0.0f, 0.3f, 0.75f}) {
    for (bool need_lower : {true, false}) {
      CAPTURE(beta);
      CAPTURE(need_lower);
      const SpecBatch spec = make_spec(SpecKind::margin, count, dense.output_size(), rng);
      const std::vector<ref::Interval> crown = reference_bounds(dense, box, spec, Relaxation::crown_ibp, true);
      const std::vector<ref::Interval> ibp = reference_bounds(dense, box, spec, Relaxation::box, true);
      std::vector<ref::Interval> want = crown;
      for (size_t n = 0; n < want.size(); ++n)
        for (size_t k = 0; k < want[n].lower.size(); ++k) {
          want[n].lower[k] = beta * crown[n].lower[k] + (1 - beta) * ibp[n].lower[k];
          want[n].upper[k] = beta * crown[n].upper[k] + (1 - beta) * ibp[n].upper[k];
        }
      const FlatBounds got = engine_bounds(on_device, box, spec, Relaxation::crown_ibp, true, device,
                                           Variant{need_lower, beta});
      const std::string why = compare_with_reference(got, want, 1e-4);
      CHECK_MESSAGE(why.empty(), why);
    }
  }
}

}  // namespace

TEST_CASE("relaxations: the reference's network readout matches the engine's forward pass") {
  Rng rng(40);
  for (const Network& net : {dense_network({5, 7, 6, 3}, rng, true), conv_network(rng), small_conv_network(rng)}) {
    const ref::DenseNetwork dense = ref::to_dense(net);
    const Tensor x = random_tensor(with_batch(net.input_shape(), 4), rng);
    const std::vector<float> engine = net.forward(x).to_vector(), xs = x.to_vector();
    std::vector<float> reference;
    for (int64_t n = 0; n < 4; ++n) {
      const std::vector<double> z = ref::forward(
          dense, std::vector<double>(xs.begin() + n * dense.input_size, xs.begin() + (n + 1) * dense.input_size));
      reference.insert(reference.end(), z.begin(), z.end());
    }
    CHECK_CLOSE_VEC(engine, reference, 1e-5, 1e-5);
  }
}

TEST_CASE("relaxations: the float32 engine agrees with the double reference (dense nets)") {
  Rng rng(41);
  check_agreement(dense_network({5, 8, 8, 4}, rng, true), rng, 3, 0.5f, Device::cpu);
  check_agreement(dense_network({4, 10, 6, 7, 3}, rng, false), rng, 2, 0.3f, Device::cpu);
}

TEST_CASE("relaxations: the float32 engine agrees with the double reference (conv nets)") {
  Rng rng(42);
  check_agreement(conv_network(rng), rng, 2, 0.3f, Device::cpu);
  check_agreement(small_conv_network(rng), rng, 2, 0.5f, Device::cpu);
}

TEST_CASE("relaxations: the CUDA engine agrees with the double reference (tiny net)") {
  if (!cuda_available()) return;
  Rng rng(43);
  check_agreement(dense_network({3, 4, 3}, rng, true), rng, 1, 0.5f, Device::cuda);
}

// =================================================================== 6. gradients

namespace {

// Central differences of the reference (double, step 1e-3) against the
// engine's backward pass for every bias entry and up to 8 entries of each
// weight, at boxes at least 0.01 from every ReLU case switch. The bounds are
// only piecewise smooth (a backsubstitution coefficient or an interval-
// arithmetic weight changing sign is a kink), so entries whose +-step changes
// the reference's case and sign pattern are skipped and counted.
void check_gradients(const Network& net, Rng& rng, int64_t count) {
  const ref::DenseNetwork dense = ref::to_dense(net);
  int checked = 0, skipped = 0;
  for (Relaxation relaxation : all_relaxations())
    for (SpecKind kind : {SpecKind::none, SpecKind::margin})
      for (bool elide : {true, false}) {
        if (kind == SpecKind::none && !elide) continue;
        const Config config{relaxation, kind, elide};
        CAPTURE(config.name());
        const SpecBatch spec = make_spec(kind, count, dense.output_size(), rng);
        const BoxBatch box = boxes_away_from_switches(dense, count, rng, 0.4f, 0.01);
        const int64_t rows = kind == SpecKind::none ? dense.output_size() : spec.rows;
        const std::vector<float> wl = random_values(count * rows, rng), wu = random_values(count * rows, rng);
        const std::vector<std::vector<float>> grads = engine_gradients(net, box, spec, relaxation, elide, wl, wu);

        ref::NetworkSpec spec_net = ref::describe_network(net);
        ref::CaseTrace base_trace;
        reference_loss(spec_net, box, spec, relaxation, elide, wl, wu, &base_trace);
        const std::vector<std::vector<double>*> params = spec_net.parameters();
        REQUIRE(params.size() == grads.size());
        const double h = 1e-3;
        for (size_t p = 0; p < params.size(); ++p) {
          std::vector<double>& values = *params[p];
          std::vector<size_t> entries;
          const bool is_bias = p % 2 == 1;  // every layer here has weight and bias
          for (size_t i = 0; i < values.size(); ++i) entries.push_back(i);
          if (!is_bias && entries.size() > 8) {
            for (size_t i = 0; i < 8; ++i) std::swap(entries[i], entries[i + rng.below(entries.size() - i)]);
            entries.resize(8);
          }
          for (size_t i : entries) {
            const double original = values[i];
            ref::CaseTrace plus_trace, minus_trace;
            values[i] = original + h;
            const double plus = reference_loss(spec_net, box, spec, relaxation, elide, wl, wu, &plus_trace);
            values[i] = original - h;
            const double minus = reference_loss(spec_net, box, spec, relaxation, elide, wl, wu, &minus_trace);
            values[i] = original;
            // A step that crosses a kink (a coefficient changing sign, a
            // ReLU changing case) makes the central difference meaningless.
            if (!plus_trace.same_pieces(base_trace) || !minus_trace.same_pieces(base_trace)) {
              ++skipped;
              continue;
            }
            ++checked;
            const double fd = (plus - minus) / (2 * h), got = grads[p][i];
            CAPTURE(net.parameter_names()[p]);
            CAPTURE(i);
            CHECK_MESSAGE(std::fabs(got - fd) <= 1e-3 * (1 + std::fabs(fd)),
                          "engine gradient " << got << ", finite difference " << fd);
          }
        }
      }
  MESSAGE(net.describe() << ": " << checked << " gradient entries checked, " << skipped
                         << " skipped (the step crossed a kink)");
  CHECK(skipped * 10 <= checked);  // the check must not quietly skip most entries
}

}  // namespace

TEST_CASE("relaxations: gradients of the bounds match finite differences (dense net)") {
  Rng rng(51);
  check_gradients(dense_network({3, 5, 5, 3}, rng, true), rng, 2);
}

TEST_CASE("relaxations: gradients of the bounds match finite differences (conv net)") {
  Rng rng(52);
  check_gradients(small_conv_network(rng), rng, 2);
}

// =================================================================== 7. spec helpers

TEST_CASE("relaxations: margin_spec rows are e_y' - e_y in increasing y'") {
  const Tensor spec = margin_spec({2, 0, 3}, 4, Device::cpu);
  REQUIRE(spec.shape() == Shape{3, 3, 4});
  const std::vector<float> want{
      1, 0, -1, 0, 0, 1, -1, 0, 0, 0, -1, 1,  // y = 2: rows for y' = 0, 1, 3
      -1, 1, 0, 0, -1, 0, 1, 0, -1, 0, 0, 1,  // y = 0: y' = 1, 2, 3
      1, 0, 0, -1, 0, 1, 0, -1, 0, 0, 1, -1,  // y = 3: y' = 0, 1, 2
  };
  CHECK(spec.to_vector() == want);
  CHECK(margin_spec_by_hand({2, 0, 3}, 4).values == want);
  for (Device device : devices()) CHECK(margin_spec({1}, 2, device).to_vector() == std::vector<float>{1, -1});
}

TEST_CASE("relaxations: certified means every margin's upper bound is below 0") {
  Bounds b;
  b.lower = Tensor::from_vector({-5, -5, -5, -5, -5, -5, -5, -5, -5}, Shape{3, 3}, Device::cpu);
  b.upper = Tensor::from_vector({-1, -0.5f, -2, -1, 0, -1, 0.3f, -1, -1}, Shape{3, 3}, Device::cpu);
  CHECK(certified(b) == std::vector<bool>{true, false, false});

  // And on real bounds: a point box of a net certifies exactly where the
  // label is the argmax of the logits (samples whose top two logits are
  // within 1e-3 are left out: float rounding may decide those either way).
  Rng rng(71);
  const Network net = dense_network({4, 6, 3}, rng, false);
  const Tensor x = random_tensor(Shape{16, 4}, rng);
  const std::vector<float> z = net.forward(x).to_vector();
  std::vector<int> labels;
  std::vector<int> want;  // 1 certified, 0 not, -1 too close to call
  for (int n = 0; n < 16; ++n) {
    const int y = int(rng.below(3));
    labels.push_back(y);
    double gap = INFINITY;  // z_y - max_{j != y} z_j
    for (int j = 0; j < 3; ++j)
      if (j != y) gap = std::min(gap, double(z[size_t(n * 3 + y)]) - z[size_t(n * 3 + j)]);
    want.push_back(std::fabs(gap) < 1e-3 ? -1 : gap > 0 ? 1 : 0);
  }
  CHECK(std::count(want.begin(), want.end(), 1) > 0);
  CHECK(std::count(want.begin(), want.end(), 0) > 0);
  for (Relaxation r : all_relaxations()) {
    CAPTURE(name_of(r));
    const std::vector<bool> got = certified(compute_bounds(net, x, x, margin_spec(labels, 3, Device::cpu), r));
    REQUIRE(got.size() == want.size());
    for (size_t n = 0; n < got.size(); ++n)
      if (want[n] >= 0) CHECK(int(got[n]) == want[n]);
  }
}

TEST_CASE("relaxations: worst_case_logits puts 0 at the label and the margin upper bounds elsewhere") {
  Bounds b;
  b.lower = Tensor::from_vector({-9, -8, -7, -6, -5, -4}, Shape{2, 3}, Device::cpu).set_requires_grad(true);
  b.upper = Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3}, Device::cpu).set_requires_grad(true);
  const std::vector<int> labels{2, 0};
  const Tensor worst = worst_case_logits(b, labels, 4);
  REQUIRE(worst.shape() == Shape{2, 4});
  CHECK(worst.to_vector() == std::vector<float>{1, 2, 0, 3, 0, 4, 5, 6});

  // Its gradient reaches the upper bounds, entry for entry (and the lower ones not at all).
  const Tensor weights = Tensor::from_vector({0.5f, -1, 7, 2, 9, 3, -4, 0.25f}, Shape{2, 4}, Device::cpu);
  backward(ops::sum(ops::mul(worst, weights)));
  REQUIRE(b.upper.grad().defined());
  CHECK(b.upper.grad().to_vector() == std::vector<float>{0.5f, -1, 2, 3, -4, 0.25f});
  if (b.lower.grad().defined()) CHECK(b.lower.grad().to_vector() == std::vector<float>(6, 0.0f));

  // End to end: the certified-training loss on real bounds has a nonzero
  // gradient in the first layer's weights.
  Rng rng(72);
  const Network net = dense_network({4, 6, 3}, rng, false);
  net.parameters()[0].set_requires_grad(true);
  const Tensor x = random_tensor(Shape{2, 4}, rng, Device::cpu, 0, 1);
  const auto [lo, hi] = input_box(x, 0.1f);
  const std::vector<int> y{1, 2};
  const Bounds margins = compute_bounds(net, lo, hi, margin_spec(y, 3, Device::cpu), Relaxation::crown);
  const Tensor labels_tensor = Tensor::from_vector({1, 2}, Shape{2}, Device::cpu);
  backward(ops::sum(ops::softmax_cross_entropy(worst_case_logits(margins, y, 3), labels_tensor)));
  const Tensor g = net.parameters()[0].grad();
  REQUIRE(g.defined());
  const std::vector<float> gv = g.to_vector();
  CHECK(std::any_of(gv.begin(), gv.end(), [](float v) { return v != 0.0f; }));
  net.parameters()[0].zero_grad();
  net.parameters()[0].set_requires_grad(false);
}

TEST_CASE("relaxations: input_box is [x - eps, x + eps], clipped to [0, 1] unless told not to") {
  const Tensor x = Tensor::from_vector({0.05f, 0.5f, 0.97f}, Shape{1, 3}, Device::cpu);
  const auto [lo, hi] = input_box(x, 0.1f);
  CHECK_CLOSE_VEC(lo.to_vector(), (std::vector<float>{0.0f, 0.4f, 0.87f}), 1e-6, 0);
  CHECK_CLOSE_VEC(hi.to_vector(), (std::vector<float>{0.15f, 0.6f, 1.0f}), 1e-6, 0);
  const auto [lo2, hi2] = input_box(x, 0.1f, false);
  CHECK_CLOSE_VEC(lo2.to_vector(), (std::vector<float>{-0.05f, 0.4f, 0.87f}), 1e-6, 0);
  CHECK_CLOSE_VEC(hi2.to_vector(), (std::vector<float>{0.15f, 0.6f, 1.07f}), 1e-6, 0);
}

TEST_CASE("relaxations: upper-only and mixed CROWN-IBP bounds have the gradients of the full computation") {
  // The full two-sided computation's gradients are checked against finite
  // differences above; the upper-only path (-C instead of [C; -C]) and the
  // beta mix (one shared Box pass) must give the same gradients.
  Rng rng(44);
  for (const Network& net : {dense_network({6, 9, 7, 4}, rng, true), small_conv_network(rng)}) {
    const ref::DenseNetwork dense = ref::to_dense(net);
    const BoxBatch box = boxes_away_from_switches(dense, 3, rng, 0.4f, 0.01);
    const SpecBatch spec = make_spec(SpecKind::margin, 3, dense.output_size(), rng);
    const std::vector<float> wu = random_values(3 * spec.rows, rng);
    const std::vector<float> zero(wu.size(), 0.0f);
    auto grads_of = [&](Relaxation r, Variant v) {  // all parameters' gradients, concatenated
      std::vector<float> all;
      for (const std::vector<float>& g : engine_gradients(net, box, spec, r, true, zero, wu, v))
        all.insert(all.end(), g.begin(), g.end());
      return all;
    };
    for (Relaxation r : all_relaxations()) {
      CAPTURE(name_of(r));
      const std::vector<float> full = grads_of(r, Variant{true, 1.0f});
      const std::vector<float> upper = grads_of(r, Variant{false, 1.0f});
      CHECK_CLOSE_VEC(upper, full, 1e-5, 1e-5);
    }
    const float beta = 0.4f;
    std::vector<float> mixed = grads_of(Relaxation::crown_ibp, Variant{false, beta});
    const std::vector<float> crown = grads_of(Relaxation::crown_ibp, Variant{true, 1.0f});
    const std::vector<float> ibp = grads_of(Relaxation::box, Variant{true, 1.0f});
    std::vector<float> want(crown.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = beta * crown[i] + (1 - beta) * ibp[i];
    CHECK_CLOSE_VEC(mixed, want, 1e-5, 1e-5);
  }
}

TEST_CASE("relaxations: a NaN or infinite parameter is refused, naming its layer (CPU and CUDA)") {
  std::vector<Device> devices{Device::cpu};
  if (cuda_available()) devices.push_back(Device::cuda);
  for (Device device : devices) {
    CAPTURE(device_name(device));
    struct Poison {
      size_t layer;
      bool bias;
      float value;
      const char* message;
    };
    for (const Poison& p : {Poison{3, true, NAN, "layer 3 (conv): bias contains NaN or infinite values"},
                            Poison{6, false, INFINITY, "layer 6 (linear): weight contains NaN or infinite values"},
                            Poison{0, false, NAN, "layer 0 (normalize): statistics (mean) contains NaN"}}) {
      Rng rng(46);
      Network net = conv_network(rng);
      Layer& layer = net.layers()[p.layer];
      Tensor& target = layer.kind == LayerKind::normalize ? layer.mean : p.bias ? layer.bias : layer.weight;
      std::vector<float> values = target.to_vector();
      values.back() = p.value;
      target = Tensor::from_vector(values, target.shape(), Device::cpu);
      net.to(device);
      const Tensor x = Tensor::full(with_batch(net.input_shape(), 2), 0.5f, device);
      for (Relaxation r : {Relaxation::box, Relaxation::crown}) {
        CAPTURE(name_of(r));
        CHECK_THROWS_WITH_AS(compute_bounds(net, x, x, Tensor(), r), doctest::Contains(p.message), std::runtime_error);
      }
    }
  }
}

TEST_CASE("relaxations: crown_ibp_beta outside [0, 1] is refused") {
  Rng rng(45);
  const Network net = dense_network({3, 4, 2}, rng, false);
  const Tensor x = Tensor::full(Shape{1, 3}, 0.5f, Device::cpu);
  for (float beta : {-0.1f, 1.5f, NAN}) {
    BoundOptions options;
    options.crown_ibp_beta = beta;
    CHECK_THROWS_WITH_AS(compute_bounds(net, x, x, Tensor(), Relaxation::crown_ibp, options),
                         doctest::Contains("crown_ibp_beta must lie in [0, 1]"), std::runtime_error);
  }
}

TEST_CASE("relaxations: names round-trip through parse_relaxation") {
  CHECK(all_relaxations().size() == 8);
  for (Relaxation r : all_relaxations()) CHECK(parse_relaxation(relaxation_name(r)) == r);
  CHECK(parse_relaxation("hbox_fresh") == Relaxation::hbox_fresh);
  CHECK(parse_relaxation("crown-ibp-r") == Relaxation::crown_ibp);
  CHECK(parse_relaxation("crown0-unstable") == Relaxation::crown0_unstable);
  CHECK(std::string(relaxation_name(Relaxation::crown0)) == "crown0");
  CHECK_THROWS_WITH_AS(parse_relaxation("zonotope"), doctest::Contains("[relaxation] unknown"), std::runtime_error);
}

namespace {
void tape_reset_after(const Bounds&) { tape_reset(); }
}  // namespace

TEST_CASE("relaxations: the table's rows agree with the kernels' rules and the LP refuses gradients") {
  // Each backsubstitution row's rule, checked on one unstable neuron (l = -1,
  // u = 3, lambda 3/4) against the slopes written in relaxations.h's summaries.
  const struct {
    Relaxation relaxation;
    float lower_slope, upper_slope;
  } expected[] = {{Relaxation::deepz, 0.75f, 0.75f},
                  {Relaxation::crown, 1.0f, 0.75f},
                  {Relaxation::crown0, 0.0f, 0.75f},
                  {Relaxation::hbox_fresh, 0.0f, 0.0f},
                  {Relaxation::crown_ibp, 1.0f, 0.75f}};
  for (const auto& e : expected) {
    const RelaxationInfo& row = relaxation_info(e.relaxation);
    CAPTURE(row.name);
    CHECK(row.engine == BoundsEngine::backsub);
    const kern::ReluLinearBounds b = kern::relu_linear_bounds(row.relu_rule, -1.0f, 3.0f);
    CHECK(b.lower_slope == e.lower_slope);
    CHECK(b.upper_slope == e.upper_slope);
  }
  CHECK(relaxation_info(Relaxation::crown_ibp).intermediate == IntermediateBounds::box_pass);
  CHECK(relaxation_info(Relaxation::crown).intermediate == IntermediateBounds::backsub_pass);
  // Gradient availability: the LP rows refuse a recording tape, the others do not.
  Rng rng(46);
  Network net = dense_network({2, 3, 2}, rng, false);
  net.set_requires_grad(true);
  const Tensor lo = Tensor::full(Shape{1, 2}, 0.25f, Device::cpu), hi = Tensor::full(Shape{1, 2}, 0.75f, Device::cpu);
  for (const RelaxationInfo& row : kRelaxationTable) {
    CAPTURE(row.name);
    if (row.has_gradient())
      CHECK_NOTHROW(tape_reset_after(compute_bounds(net, lo, hi, Tensor(), row.id)));
    else
      CHECK_THROWS_WITH_AS(compute_bounds(net, lo, hi, Tensor(), row.id), doctest::Contains("without gradients"),
                           std::runtime_error);
  }
}

TEST_CASE("relaxations: the README's relaxation table is the one the code generates") {
  std::ifstream in("README.md");
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const std::string begin = "<!-- relaxation table: generated by relaxation_table_markdown() -->\n";
  const std::string end = "<!-- end of relaxation table -->";
  const size_t from = readme.find(begin), to = readme.find(end);
  REQUIRE(from != std::string::npos);
  REQUIRE(to != std::string::npos);
  const std::string in_readme = readme.substr(from + begin.size(), to - from - begin.size());
  if (in_readme != relaxation_table_markdown()) MESSAGE("paste this into README.md:\n" << relaxation_table_markdown());
  CHECK(in_readme == relaxation_table_markdown());
}

}  // namespace cte::test
