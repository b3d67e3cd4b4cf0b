// Sound mode (BoundOptions::sound, relaxations/sound.cpp): the bounds hold,
// with no tolerance at all, for the engine's own float32 forward pass and for
// the real-valued network (a float64 forward pass of the same weights).
//   * 10^6 sampled points per relaxation over 4 dense and 4 conv nets (corners, where the extremes of a
//     linear function lie, and uniform points), dense and conv nets, with and
//     without a leading normalize, with and without a margin spec, at radii
//     where every ReLU is stable (each relaxation is then exact up to
//     rounding, so a missing ulp shows) and where many are unstable: zero
//     violations in sound mode, for every relaxation. The same samples do
//     catch the fast mode outside its bounds (the test has teeth).
//   * A hand-made network where float32 rounding flips a naive certificate:
//     fast Box certifies it, the real network's margin is +2 (by hand), and
//     every relaxation's sound mode refuses it.
//   * The outward-rounded input box contains the real ball; the sound bounds
//     contain the fast ones and cost little on small nets; CPU and emulated
//     CUDA agree.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/layers/bound_rules.h"
#include "relaxations/relax_ops.h"
#include "relaxations/relaxations.h"
#include "tests/reference_bounds.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

// 6 -> [normalize] -> 10 -> 10 -> 4 (test_util.h's dense_net).
Network dense_net(Rng& rng, bool normalize) {
  std::vector<Layer> front;
  if (normalize) front.push_back(make_normalize({0.4f}, {0.3f}));
  return test::dense_net({6, 10, 10, 4}, rng, std::move(front));
}

// (1,5,5) -> [normalize] -> conv 2x3x3 s2 p1 -> relu -> flatten -> 18 -> 6 -> 3.
Network conv_net(Rng& rng, bool normalize) {
  std::vector<Layer> layers;
  if (normalize) layers.push_back(make_normalize({0.1307f}, {0.3081f}));
  layers.push_back(make_conv(1, 2, 3, 2, 1, rng));
  layers.push_back(make_relu());
  layers.push_back(make_flatten());
  layers.push_back(make_linear(18, 6, rng));
  layers.push_back(make_relu());
  layers.push_back(make_linear(6, 3, rng));
  return Network(Shape{1, 5, 5}, layers);
}

Shape batch_of(const Network& net, int64_t count) { return with_batch(net.input_shape(), count); }

struct Outcome {
  std::string name;
  std::vector<float> lower, upper;  // (boxes, rows)
  int64_t float_violations = 0, real_violations = 0;
  double worst = 0;  // largest distance outside the bounds
};

// Every relaxation's bounds (fast and sound) of C z over `boxes` input boxes
// around random centres in [0, 1] at radius eps, then `points` samples per
// box through the float32 engine and the float64 reference, counted outside.
struct Study {
  std::vector<Outcome> fast, sound;
  int64_t samples = 0;
};

Study sample_study(const Network& net_cpu, float eps, bool with_spec, int64_t boxes, int64_t points, Rng& rng,
                   const std::vector<Relaxation>& relaxations, Device device = Device::cpu) {
  Network net = net_cpu;
  net.to(device);
  const int64_t width = net.input_shape().numel();
  const int64_t logits = net.output_shape().numel();
  const ref::DenseNetwork dense = ref::to_dense(net_cpu);
  const Tensor centres = random_tensor(batch_of(net, boxes), rng, Device::cpu, 0.0f, 1.0f);
  std::vector<int> labels;
  for (int64_t b = 0; b < boxes; ++b) labels.push_back(int(rng.below(uint64_t(logits))));
  const Tensor spec = with_spec ? margin_spec(labels, int(logits), device) : Tensor();
  const int64_t rows = with_spec ? logits - 1 : logits;

  NoGrad no_grad;
  const auto [lower0, upper0] = input_box(centres.to(device), eps, true, true);
  Study study;
  for (Relaxation r : relaxations) {
    for (bool sound : {false, true}) {
      BoundOptions options;
      options.sound = sound;
      const Bounds b = compute_bounds(net, lower0, upper0, spec, r, options);
      Outcome o{std::string(relaxation_name(r)), b.lower.to_vector(), b.upper.to_vector(), 0, 0, 0};
      (sound ? study.sound : study.fast).push_back(std::move(o));
    }
  }
  const std::vector<float> lo = lower0.to_vector(), hi = upper0.to_vector();
  const std::vector<float> spec_values = with_spec ? spec.to_vector() : std::vector<float>();
  const int64_t chunk = 10000;
  std::vector<float> inputs(size_t(chunk * width));
  for (int64_t b = 0; b < boxes; ++b) {
    for (int64_t done = 0; done < points; done += chunk) {
      const int64_t count = std::min(chunk, points - done);
      for (int64_t p = 0; p < count; ++p) {
        // Half corners (the extremes of every linear piece), half uniform.
        const bool corner = (done + p) % 2 == 0;
        for (int64_t i = 0; i < width; ++i) {
          const float l = lo[size_t(b * width + i)], h = hi[size_t(b * width + i)];
          inputs[size_t(p * width + i)] = corner ? (rng.below(2) ? h : l) : std::fmin(h, l + (h - l) * float(rng.uniform()));
        }
      }
      const Tensor x = Tensor::from_vector(std::vector<float>(inputs.begin(), inputs.begin() + count * width),
                                           batch_of(net, count), device);
      const std::vector<float> z32 = net.forward(x).to_vector();
      for (int64_t p = 0; p < count; ++p) {
        const std::vector<double> input(inputs.begin() + p * width, inputs.begin() + (p + 1) * width);
        const std::vector<double> z64 = ref::forward(dense, input);
        for (int64_t k = 0; k < rows; ++k) {
          // C z in double: exact for the float32 logits (C holds 0 and -+1).
          double c32 = 0, c64 = 0;
          for (int64_t j = 0; j < logits; ++j) {
            const double c = with_spec ? spec_values[size_t((b * rows + k) * logits + j)] : (j == k ? 1.0 : 0.0);
            c32 += c * z32[size_t(p * logits + j)];
            c64 += c * z64[size_t(j)];
          }
          for (std::vector<Outcome>* mode : {&study.fast, &study.sound})
            for (Outcome& o : *mode) {
              const double l = o.lower[size_t(b * rows + k)], u = o.upper[size_t(b * rows + k)];
              for (auto [value, count_of] : {std::pair{c32, &o.float_violations}, std::pair{c64, &o.real_violations}}) {
                if (value >= l && value <= u) continue;
                ++*count_of;
                o.worst = std::max(o.worst, std::max(l - value, value - u));
              }
            }
        }
      }
    }
  }
  study.samples = boxes * points;
  return study;
}

// Counts the fast mode's misses into *fast_violations and describes them in *fast_summary.
void check_study(const Study& study, int64_t* fast_violations, std::string* fast_summary) {
  for (const Outcome& o : study.sound) {
    CAPTURE(o.name);
    CHECK_MESSAGE(o.float_violations == 0, o.float_violations << " of " << study.samples
                                                                << " float32 samples outside, by up to " << o.worst);
    CHECK_MESSAGE(o.real_violations == 0, o.real_violations << " of " << study.samples
                                                              << " float64 samples outside, by up to " << o.worst);
  }
  for (size_t i = 0; i < study.fast.size(); ++i) {
    const Outcome &fast = study.fast[i], &sound = study.sound[i];
    CAPTURE(fast.name);
    *fast_violations += fast.float_violations + fast.real_violations;
    std::ostringstream line;
    line << fast.name << ": " << fast.float_violations << " float32 and " << fast.real_violations << " float64 of "
         << study.samples << " outside, by up to " << fast.worst << "\n";
    *fast_summary += line.str();
    // Sound bounds contain the fast ones, and on these small nets cost little.
    for (size_t j = 0; j < fast.lower.size(); ++j) {
      CHECK(sound.lower[j] <= fast.lower[j]);
      CHECK(sound.upper[j] >= fast.upper[j]);
      CHECK(fast.lower[j] - sound.lower[j] <= 1e-3 * (1.0 + std::fabs(fast.lower[j])));
      CHECK(sound.upper[j] - fast.upper[j] <= 1e-3 * (1.0 + std::fabs(fast.upper[j])));
    }
  }
}

const std::vector<Relaxation> kDifferentiable = all_relaxations();

struct Case {
  bool normalize, spec;
  float eps;
};

// One net per case (4 boxes x 62,500 samples each), every differentiable
// relaxation, plus the LP ones at radii above 0.01 when with_lp; then checks
// that the samples did find the fast mode outside its bounds somewhere (the
// issue measured 145-317 of 20,000 per relaxation), or they have no teeth.
void sample_cases(Network (*make_net)(Rng&, bool), uint64_t seed, const std::vector<Case>& cases, bool with_lp) {
  Rng rng(seed);
  int64_t fast_violations = 0;
  std::string fast_summary;
  for (const Case& c : cases) {
    CAPTURE(c.normalize);
    CAPTURE(c.spec);
    CAPTURE(c.eps);
    const Network net = make_net(rng, c.normalize);
    std::vector<Relaxation> relaxations = kDifferentiable;
    if (with_lp && c.eps > 0.01f) relaxations.insert(relaxations.end(), {Relaxation::triangle_lp, Relaxation::parallelogram_lp});
    check_study(sample_study(net, c.eps, c.spec, 4, 62500, rng, relaxations), &fast_violations, &fast_summary);
  }
  CHECK_MESSAGE(fast_violations > 0, fast_summary);
}

}  // namespace

// Stable radius (every relaxation exact up to rounding) and an unstable one,
// with and without normalize and spec: 4 nets x 4 boxes x 62,500 samples = 10^6.
TEST_CASE("soundness: 10^6 samples per dense net, every relaxation, float32 and float64 forward passes") {
  sample_cases(dense_net, 2026, {{false, false, 1e-3f}, {true, true, 1e-3f}, {false, true, 0.05f}, {true, false, 0.05f}},
               true);
}

TEST_CASE("soundness: 10^6 samples per conv net, every relaxation, float32 and float64 forward passes") {
  sample_cases(conv_net, 2027, {{true, true, 1e-3f}, {false, false, 1e-3f}, {true, false, 0.05f}, {false, true, 0.05f}},
               false);
}

// x = 1, eps = 0. Layer 1: h1 = 1e8 x + 3, h2 = 1e8 x (both > 0: ReLU is the
// identity); layer 2: z1 = h1 - h2, z0 = 0; layer 3: z1 - 1, z0. Real
// network: z1 = 3 - 1 = +2 > 0 = z0, so class 1 wins and label 0 is NOT
// robust. float32: 1e8 + 3 rounds to 1e8 (its spacing there is 8), so the
// engine computes z1 = 0 - 1 = -1 and a naive Box "certifies" label 0.
Network rounding_trap() {
  std::vector<Layer> layers{linear_layer({{1e8f}, {1e8f}}, {3.0f, 0.0f}), make_relu(),
                            linear_layer({{0.0f, 0.0f}, {1.0f, -1.0f}}, {0.0f, 0.0f}),
                            linear_layer({{1.0f, 0.0f}, {0.0f, 1.0f}}, {0.0f, -1.0f})};
  return Network(Shape{1}, layers);
}

TEST_CASE("soundness: a net where float32 rounding flips a naive certificate; sound mode refuses it") {
  const Network net = rounding_trap();
  NoGrad no_grad;
  const Tensor x = Tensor::from_vector({1.0f}, Shape{1, 1}, Device::cpu);
  // The real margin z1 - z0 = (1e8 + 3 - 1e8) - 1 = 2, in double by hand:
  const double real_margin = (1e8 * 1.0 + 3.0) - (1e8 * 1.0) - 1.0;
  CHECK(real_margin == 2.0);
  // The engine's float32 forward pass predicts class 0 (its margin is -1).
  const std::vector<float> z = net.forward(x).to_vector();
  CHECK(z[1] - z[0] == -1.0f);
  const Tensor spec = margin_spec({0}, 2, Device::cpu);
  const auto [lo, hi] = input_box(x, 0.0f, true, true);
  BoundOptions fast;
  CHECK(certified(compute_bounds(net, lo, hi, spec, Relaxation::box, fast))[0]);  // the false certificate
  std::vector<Relaxation> all = all_relaxations();
  all.insert(all.end(), {Relaxation::triangle_lp, Relaxation::parallelogram_lp});
  for (Relaxation r : all) {
    CAPTURE(std::string(relaxation_name(r)));
    BoundOptions sound;
    sound.sound = true;
    const Bounds b = compute_bounds(net, lo, hi, spec, r, sound);
    CHECK_FALSE(certified(b)[0]);
    // The bound covers both the real margin (+2) and the float32 one (-1).
    CHECK(b.upper.to_vector()[0] >= real_margin);
    CHECK(b.lower.to_vector()[0] <= -1.0);
  }
}

TEST_CASE("soundness: the outward-rounded input box contains the real ball; the plain one does not always") {
  Rng rng(5);
  int64_t plain_misses = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const float eps = rng.uniform(1e-4f, 0.3f);
    const Tensor x = random_tensor(Shape{50, 3}, rng, Device::cpu, 0.0f, 1.0f);
    const std::vector<float> xs = x.to_vector();
    NoGrad no_grad;
    const auto [lo, hi] = input_box(x, eps, false, true);
    const auto [plain_lo, plain_hi] = input_box(x, eps, false, false);
    const std::vector<float> l = lo.to_vector(), h = hi.to_vector(), pl = plain_lo.to_vector(), ph = plain_hi.to_vector();
    for (size_t i = 0; i < xs.size(); ++i) {
      const double real_lo = double(xs[i]) - double(eps), real_hi = double(xs[i]) + double(eps);  // exact in double
      CHECK(double(l[i]) <= real_lo);
      CHECK(double(h[i]) >= real_hi);
      CHECK(double(h[i]) - real_hi <= 1e-6);  // and only just
      plain_misses += double(pl[i]) > real_lo || double(ph[i]) < real_hi;
    }
  }
  CHECK(plain_misses > 0);
}

TEST_CASE("soundness: sound bounds agree on CPU and CUDA and hold there") {
  if (!cuda_available()) return;
  Rng rng(9);
  {  // the CUDA forward pass (cuBLAS, cuDNN: other summation orders) against the CUDA sound bounds
    int64_t fast_violations = 0;
    std::string fast_summary;
    check_study(sample_study(dense_net(rng, true), 1e-3f, false, 1, 10000, rng, all_relaxations(), Device::cuda),
                &fast_violations, &fast_summary);
    check_study(sample_study(conv_net(rng, true), 1e-3f, true, 1, 10000, rng, all_relaxations(), Device::cuda),
                &fast_violations, &fast_summary);
    CHECK_MESSAGE(fast_violations > 0, fast_summary);
  }
  const Network net = conv_net(rng, true);
  Network on_cuda = net;
  on_cuda.to(Device::cuda);
  const Tensor x = random_tensor(Shape{3, 1, 5, 5}, rng, Device::cpu, 0.0f, 1.0f);
  const Tensor spec = margin_spec({0, 2, 1}, 3, Device::cpu);
  NoGrad no_grad;
  const auto [lo, hi] = input_box(x, 0.02f, true, true);
  for (Relaxation r : all_relaxations()) {
    CAPTURE(std::string(relaxation_name(r)));
    BoundOptions sound;
    sound.sound = true;
    const Bounds cpu = compute_bounds(net, lo, hi, spec, r, sound);
    const Bounds gpu = compute_bounds(on_cuda, lo.to(Device::cuda), hi.to(Device::cuda), spec.to(Device::cuda), r, sound);
    CHECK_CLOSE_VEC(gpu.lower.to_vector(), cpu.lower.to_vector(), 1e-5, 1e-4);
    CHECK_CLOSE_VEC(gpu.upper.to_vector(), cpu.upper.to_vector(), 1e-5, 1e-4);
  }
}

TEST_CASE("soundness: certified_margins is -max upper bound per sample, NaN stays NaN") {
  Bounds b;
  b.upper = Tensor::from_vector({-0.5f, -2.0f, 0.25f, -1.0f, NAN, -3.0f}, Shape{3, 2}, Device::cpu);
  const std::vector<float> m = certified_margins(b);
  CHECK(m[0] == 0.5f);
  CHECK(m[1] == -0.25f);
  CHECK(std::isnan(m[2]));
}

}  // namespace cte::test

namespace cte::test {

// The most terms any one dot product sums when a backsubstitution steps
// through a conv (the data gradient's, as cuDNN's backward-data computes it in
// one accumulation): for each input pixel, the (output channel, output
// position, tap) triples that read it, counted one by one.
int64_t brute_force_backsub_terms(int64_t c_out, int64_t kernel, int64_t stride, int64_t padding, int64_t h_in,
                                  int64_t h_out) {
  int64_t most = 0;
  for (int64_t y = 0; y < h_in; ++y)
    for (int64_t x = 0; x < h_in; ++x) {
      int64_t terms = 0;
      for (int64_t oy = 0; oy < h_out; ++oy)
        for (int64_t ox = 0; ox < h_out; ++ox)
          for (int64_t ky = 0; ky < kernel; ++ky)
            for (int64_t kx = 0; kx < kernel; ++kx)
              terms += oy * stride - padding + ky == y && ox * stride - padding + kx == x;
      most = std::max(most, terms * c_out);
    }
  return most;
}

TEST_CASE("soundness: a walk step's gamma counts the longest dot product through the layer, forward or back") {
  // A conv from few channels to many sums more terms per backsubstituted
  // coefficient (c_out x taps reaching a pixel) than per forward output
  // (c_in x taps): the walk's slack must be gamma of the longer one.
  struct Geometry {
    int64_t c_in, c_out;
    int kernel, stride, padding;
    int64_t h_in;
  };
  Rng rng(31);
  for (const Geometry& g : {Geometry{1, 64, 3, 1, 1, 8}, Geometry{1, 16, 4, 2, 1, 28}, Geometry{3, 8, 5, 3, 2, 11},
                            Geometry{16, 4, 4, 1, 0, 7}}) {
    const Network net(Shape{g.c_in, g.h_in, g.h_in}, {make_conv(g.c_in, g.c_out, g.kernel, g.stride, g.padding, rng)});
    const Layer& layer = net.layers()[0];
    const int64_t h_out = layer.out_shape[1];
    const int64_t backward = brute_force_backsub_terms(g.c_out, g.kernel, g.stride, g.padding, g.h_in, h_out);
    const int64_t forward = g.c_in * g.kernel * g.kernel;
    const relax::BoundRules& rules = relax::bound_rules(layer);
    INFO("conv ", g.c_in, "->", g.c_out, " ", g.kernel, "x", g.kernel, " s", g.stride, " p", g.padding);
    CHECK(rules.dot_terms(layer) >= forward);
    CHECK(rules.backsub_terms(layer) >= backward);
    // The slack itself: every walk's rounding kind charges gamma of the longer count.
    const int64_t n_in = layer.in_shape.numel();
    const Tensor magnitude = Tensor::from_vector(std::vector<float>(size_t(n_in), 1.0f), Shape{1, n_in}, Device::cpu);
    const std::vector<float> image = relax::abs_layer_image(layer, magnitude, 1, false).to_vector();
    const double gamma = relax::rounding_gamma(std::max(forward, backward) + 1);
    for (const relax::AffineRoundings kind :
         {relax::AffineRoundings::backsubstitution, relax::AffineRoundings::generator_norm}) {
      const std::vector<float> slack = relax::affine_slack(layer, magnitude, 1, 0, kind, false).to_vector();
      int64_t short_of = 0;
      for (size_t i = 0; i < slack.size(); ++i)
        short_of += double(slack[i]) < double(relax::rounding_count(kind)) * gamma * double(image[i]) * (1 - 1e-6);
      CHECK(short_of == 0);
    }
  }
  // A linear layer's backsubstituted coefficient sums over its outputs.
  const Network wide(Shape{3}, {make_linear(3, 50, rng)});
  CHECK(relax::bound_rules(wide.layers()[0]).backsub_terms(wide.layers()[0]) >= 50);
}

TEST_CASE("soundness: hBox's walk bounds its residuals over the symbolic parts, 0 where a ReLU drops them") {
  // x in [0.4, 0.6]^2 -> linear(2 -> 3) -> relu -> linear(3 -> 2). Hidden neuron 0
  // is active (kept), 1 dead and 2 unstable (both dropped). The symbolic part's
  // bound S (BacksubContext::symbolic_magnitude) is, by hand in float64: r0 at
  // the input, |W1| r0 after the first layer (no bias: the symbolic part has
  // none, and b1 is large here), |W1| r0 where kept and 0 where dropped after the
  // ReLU, then |W2| of that. S must cover it and exceed it by roundings only.
  Rng rng(5);
  Network net(Shape{2}, {make_linear(2, 3, rng), make_relu(), make_linear(3, 2, rng)});
  const std::vector<double> w1 = {1.0, 0.5, -1.0, -0.5, 0.3, -0.4}, b1 = {2.0, -2.0, 0.05};
  const std::vector<double> w2 = {0.7, -1.2, 0.4, -0.3, 0.9, 2.0}, b2 = {10.0, -10.0};
  auto floats = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  net.layers()[0].weight = Tensor::from_vector(floats(w1), Shape{3, 2}, Device::cpu);
  net.layers()[0].bias = Tensor::from_vector(floats(b1), Shape{3}, Device::cpu);
  net.layers()[2].weight = Tensor::from_vector(floats(w2), Shape{2, 3}, Device::cpu);
  net.layers()[2].bias = Tensor::from_vector(floats(b2), Shape{2}, Device::cpu);
  NoGrad no_grad;
  const Tensor lower0 = Tensor::from_vector({0.4f, 0.4f}, Shape{1, 2}, Device::cpu);
  const Tensor upper0 = Tensor::from_vector({0.6f, 0.6f}, Shape{1, 2}, Device::cpu);
  relax::BacksubContext ctx =
      relax::make_backsub_context(net, lower0, upper0, kern::ReluRule::hbox_symbolic,
                                  relax::BacksubMode::generator_norm, size_t(1) << 24, /*sound=*/true);
  relax::HboxState h{ops::scale(ops::add(upper0, lower0), 0.5f), Tensor()};
  for (size_t i = 0; i < 2; ++i) h = relax::bound_rules(net.layers()[i]).hbox_step(ctx, i, h);
  REQUIRE(ctx.symbolic_magnitude.size() == 4);
  const std::vector<float> l1 = ctx.relu_lower[1].to_vector(), u1 = ctx.relu_upper[1].to_vector();
  REQUIRE(l1[0] > 0.0f);  // the case each hidden neuron was built for
  REQUIRE(u1[1] < 0.0f);
  REQUIRE((l1[2] < 0.0f && u1[2] > 0.0f));
  const double r0 = double(0.6f - 0.4f) / 2.0;
  std::vector<std::vector<double>> want(4);
  want[0] = {r0, r0};
  for (int j = 0; j < 3; ++j) want[1].push_back(std::fabs(w1[size_t(2 * j)]) * r0 + std::fabs(w1[size_t(2 * j + 1)]) * r0);
  want[2] = {want[1][0], 0.0, 0.0};
  for (int k = 0; k < 2; ++k) {
    double sum = 0.0;
    for (int j = 0; j < 3; ++j) sum += std::fabs(w2[size_t(3 * k + j)]) * want[2][size_t(j)];
    want[3].push_back(sum);
  }
  for (size_t level = 0; level < 4; ++level) {
    const std::vector<float> got = ctx.symbolic_magnitude[level].to_vector();
    REQUIRE(got.size() == want[level].size());
    for (size_t j = 0; j < got.size(); ++j) {
      INFO("level ", level, " neuron ", j, ": S ", got[j], ", by hand ", want[level][j]);
      CHECK(double(got[j]) >= want[level][j]);
      CHECK(double(got[j]) <= want[level][j] * (1.0 + 1e-5));
    }
  }
}

}  // namespace cte::test
