// The layer table (engine/layers/layer_rules.h, relaxations/layers/bound_rules.h),
// walked kind by kind: a kind without a sample below fails to compile
// (-Wswitch), one without rules fails to link; each rule is checked against
// an independent computation on a tiny layer:
//  - name: the table finds the kind from its name, names are distinct;
//  - shape rule vs forward: the output has the shape the rule gives;
//  - text forms: describe starts with the name; JSON round trip gives the same forward;
//  - Box step vs brute force: for one layer an interval per output is exact,
//    so the step's [c - r, c + r] equals the min and max of the forward pass
//    over the input box's corners (every kind here is monotone in each input
//    between corners: affine maps, ReLU);
//  - backsub step vs forward: A layer(x) + q equals A' x + q' for random A,
//    q and x (affine kinds), or lies between A' x + q' + the lower and upper
//    intercepts for x in the ReLU's input box (activations, DeepZ's lines);
//  - hBox step: the centre, box radius and the surviving symbolic norm
//    contain the forward pass at every corner;
//  - sound mode: abs_image without bias equals the Box radius image (affine
//    kinds) or passes v on; no LP row has more terms than dot_terms;
//  - LP rows, and an elementwise kind's scale and shift, vs forward.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "engine/layers/layer_rules.h"
#include "engine/netjson.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/layers/bound_rules.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

using relax::BoundRules;
using relax::LayerRole;

// One tiny network per kind: its input shape and the layer.
Network sample_network(LayerKind kind, Rng& rng) {
  switch (kind) {
    case LayerKind::linear: return Network(Shape{4}, {make_linear(4, 3, rng)});
    case LayerKind::conv: return Network(Shape{1, 3, 3}, {make_conv(1, 2, 2, 1, 1, rng)});
    case LayerKind::relu: return Network(Shape{5}, {make_relu()});
    case LayerKind::flatten: return Network(Shape{2, 2, 2}, {make_flatten()});
    case LayerKind::normalize: return Network(Shape{2, 2, 2}, {make_normalize({0.1f, -0.2f}, {0.5f, 2.0f})});
    case LayerKind::batch_norm: {
      // Evaluation mode with running averages of its own and one negative gamma.
      Layer bn = make_batch_norm(2);
      bn.weight = Tensor::from_vector({1.5f, -0.7f}, Shape{2}, Device::cpu);
      bn.bias = Tensor::from_vector({0.2f, -0.1f}, Shape{2}, Device::cpu);
      bn.running_mean = Tensor::from_vector({0.3f, -0.4f}, Shape{2}, Device::cpu);
      bn.running_var = Tensor::from_vector({0.5f, 2.0f}, Shape{2}, Device::cpu);
      return Network(Shape{2, 2, 1}, {bn});
    }
  }
  FAIL("no sample network for layer kind " << int(kind));
  return Network();
}

// Every corner of the box [c - r, c + r] (one sample, flat n <= 12), as a batch (2^n, in_shape...).
Tensor corners(const std::vector<float>& c, const std::vector<float>& r, const Shape& in_shape) {
  const size_t n = c.size(), count = size_t(1) << n;
  std::vector<float> values(count * n);
  for (size_t k = 0; k < count; ++k)
    for (size_t j = 0; j < n; ++j) values[k * n + j] = (k >> j) & 1 ? c[j] + r[j] : c[j] - r[j];
  return Tensor::from_vector(values, with_batch(in_shape, int64_t(count)), Device::cpu);
}

// Per output, the min and max over the rows of y (count, m).
void column_range(const std::vector<float>& y, size_t m, std::vector<float>& lo, std::vector<float>& hi) {
  lo.assign(m, INFINITY);
  hi.assign(m, -INFINITY);
  for (size_t k = 0; k < y.size() / m; ++k)
    for (size_t j = 0; j < m; ++j) {
      lo[j] = std::min(lo[j], y[k * m + j]);
      hi[j] = std::max(hi[j], y[k * m + j]);
    }
}

// A kind's sample network and an input box for it (one sample, crossing
// zero for the ReLU): centre c, radius r, and its ends shaped (1, in_shape...).
struct Sample {
  Network net;
  std::vector<float> c, r;
  Tensor lower0, upper0;
  const Layer& layer() const { return net.layers()[0]; }
};

Sample make_sample(size_t kind, Rng& rng) {
  Sample s;
  s.net = sample_network(LayerKind(kind), rng);
  const int64_t n = s.net.input_shape().numel();
  s.c = random_values(n, rng, -0.5f, 0.5f);
  s.r = random_values(n, rng, 0.1f, 0.8f);
  std::vector<float> lower(static_cast<size_t>(n)), upper(static_cast<size_t>(n));
  for (size_t j = 0; j < size_t(n); ++j) {
    lower[j] = s.c[j] - s.r[j];
    upper[j] = s.c[j] + s.r[j];
  }
  const Shape in = with_batch(s.net.input_shape(), 1);
  s.lower0 = Tensor::from_vector(lower, in, Device::cpu);
  s.upper0 = Tensor::from_vector(upper, in, Device::cpu);
  return s;
}

TEST_CASE("layer table: names, shape rule vs forward, text forms, every kind") {
  Rng rng(7);
  std::set<std::string> names;
  for (size_t k = 0; k < kLayerKindCount; ++k) {
    const LayerKind kind = LayerKind(k);
    const LayerRules& rules = layer_rules(kind);
    CAPTURE(rules.name);
    CHECK(names.insert(rules.name).second);
    LayerKind found;
    REQUIRE(layer_kind_from_name(rules.name, &found));
    CHECK(found == kind);

    const Network net = sample_network(kind, rng);
    const Layer& layer = net.layers()[0];
    const Tensor x = random_tensor(with_batch(net.input_shape(), 3), rng);
    const Tensor y = net.forward(x);
    CHECK(y.shape() == with_batch(layer.out_shape, 3));
    CHECK(rules.output_shape(layer, layer.in_shape, "probe") == layer.out_shape);
    CHECK(rules.describe(layer).rfind(rules.name, 0) == 0);

    const Network back = network_from_json(network_to_json(net), "round trip");
    REQUIRE(back.layers().size() == 1);
    CHECK(back.layers()[0].kind == kind);
    CHECK(back.forward(x).to_vector() == y.to_vector());
  }
}

TEST_CASE("layer table: the trainer's penalties cover the linear and conv weights (and biases), not BatchNorm") {
  // --l2 and --l1 on the weights, --l1-bias on the biases (train/trainer.cpp);
  // BatchNorm's gamma and beta and every constant under neither.
  Rng rng(3);
  for (size_t k = 0; k < kLayerKindCount; ++k) {
    const LayerKind kind = LayerKind(k);
    CAPTURE(layer_rules(kind).name);
    const Network net = sample_network(kind, rng);
    const bool affine = kind == LayerKind::linear || kind == LayerKind::conv;
    for (const LayerTensorView& t : layer_tensors(net.layers()[0])) {
      CAPTURE(t.name);
      const Penalty want = !affine ? Penalty::none : std::string(t.name) == "weight" ? Penalty::weight : Penalty::bias;
      CHECK(int(t.penalty) == int(want));
    }
  }
}

TEST_CASE("layer table: Box step equals brute force over the corners, every kind") {
  Rng rng(11);
  NoGrad no_grad;
  for (size_t k = 0; k < kLayerKindCount; ++k) {
    const Sample sample = make_sample(k, rng);
    const Network& net = sample.net;
    const Layer& layer = sample.layer();
    const std::vector<float>& c = sample.c;
    const std::vector<float>& r = sample.r;
    CAPTURE(layer_kind_name(layer.kind));
    const Shape in = with_batch(layer.in_shape, 1);
    const relax::CentreRadiusPair box = relax::bound_rules(layer).box_step(
        layer, Tensor::from_vector(c, in, Device::cpu), Tensor::from_vector(r, in, Device::cpu), 1);
    const std::vector<float> bc = box.centre.to_vector(), br = box.radius.to_vector();
    const size_t m = size_t(layer.out_shape.numel());
    REQUIRE(bc.size() == m);
    std::vector<float> lo, hi;
    column_range(net.forward(corners(c, r, layer.in_shape)).to_vector(), m, lo, hi);
    for (size_t j = 0; j < m; ++j) {
      CHECK(bc[j] - br[j] == doctest::Approx(lo[j]).epsilon(1e-5));
      CHECK(bc[j] + br[j] == doctest::Approx(hi[j]).epsilon(1e-5));
    }
  }
}

// A' x + q' (+ intercepts) for a form over flat x (N, n): coeffs (K, n) or (N, K, n); returns (N, K).
std::vector<float> evaluate(const relax::LinearForm& f, const Tensor& x, const Tensor& intercepts) {
  Tensor v;
  if (f.shared()) {
    v = ops::matmul(x, f.coeffs, false, true);
  } else {
    const int64_t batch = f.coeffs.size(0), rows = f.coeffs.size(1), n = f.coeffs.size(2);
    v = ops::reshape(ops::matmul(f.coeffs, ops::reshape(x, Shape{batch, n, 1})), Shape{batch, rows});
  }
  if (f.bias.defined()) v = ops::add(v, f.bias.ndim() == 1 ? ops::reshape(f.bias, Shape{1, f.bias.numel()}) : f.bias);
  if (intercepts.defined()) v = ops::add(v, intercepts);
  return v.to_vector();
}

TEST_CASE("layer table: backsubstitution step vs forward on random linear forms, every kind") {
  Rng rng(13);
  NoGrad no_grad;
  const int64_t rows = 3;
  for (size_t k = 0; k < kLayerKindCount; ++k) {
    const Sample sample = make_sample(k, rng);
    const Network& net = sample.net;
    const Layer& layer = sample.layer();
    const BoundRules& rules = relax::bound_rules(layer);
    CAPTURE(layer_kind_name(layer.kind));
    const int64_t n_in = layer.in_shape.numel(), n_out = layer.out_shape.numel();
    const Tensor& lower0 = sample.lower0;
    const Tensor& upper0 = sample.upper0;
    relax::BacksubContext ctx = relax::make_backsub_context(net, lower0, upper0, kern::ReluRule::deepz,
                                                            relax::BacksubMode::bounds_symmetric, size_t(1) << 24);
    ctx.relu_lower[0] = ops::reshape(lower0, Shape{1, n_in});
    ctx.relu_upper[0] = ops::reshape(upper0, Shape{1, n_in});
    relax::LinearForm f;
    f.coeffs = random_tensor(Shape{rows, n_out}, rng);
    f.bias = random_tensor(Shape{rows}, rng);
    const relax::LinearForm top = f;
    rules.backsub_step(ctx, 0, f);
    REQUIRE(f.coeffs.size(f.coeffs.ndim() - 1) == n_in);
    // Points of the input box: its corners and random interior points.
    const Tensor points = corners(sample.c, sample.r, layer.in_shape);
    for (int64_t s = 0; s < points.size(0); ++s) {
      const Tensor x = ops::slice_batch(points, s, s + 1);
      const std::vector<float> want = evaluate(top, ops::reshape(net.forward(x), Shape{1, n_out}), Tensor());
      const Tensor flat_x = ops::reshape(x, Shape{1, n_in});
      if (rules.role == LayerRole::activation) {
        const std::vector<float> lo = evaluate(f, flat_x, f.relu_lower), hi = evaluate(f, flat_x, f.relu_upper);
        for (int64_t j = 0; j < rows; ++j) {
          CHECK(lo[size_t(j)] <= want[size_t(j)] + 1e-5f);
          CHECK(want[size_t(j)] <= hi[size_t(j)] + 1e-5f);
        }
      } else {
        const std::vector<float> got = evaluate(f, flat_x, Tensor());
        for (int64_t j = 0; j < rows; ++j) CHECK(got[size_t(j)] == doctest::Approx(want[size_t(j)]).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("layer table: hBox step contains the forward pass, every kind") {
  Rng rng(17);
  NoGrad no_grad;
  for (size_t k = 0; k < kLayerKindCount; ++k) {
    const Sample sample = make_sample(k, rng);
    const Network& net = sample.net;
    const Layer& layer = sample.layer();
    const std::vector<float>& c = sample.c;
    const std::vector<float>& r = sample.r;
    CAPTURE(layer_kind_name(layer.kind));
    const Shape in = with_batch(layer.in_shape, 1);
    relax::BacksubContext ctx = relax::make_backsub_context(net, sample.lower0, sample.upper0, kern::ReluRule::hbox_symbolic,
                                                            relax::BacksubMode::generator_norm, size_t(1) << 24);
    // The input box as a hybrid zonotope: all of it symbolic (the generator
    // norms come from ctx), no box part; a box part of 0.1 on top of it.
    const Tensor box = Tensor::from_vector(std::vector<float>(c.size(), 0.1f), in, Device::cpu);
    const relax::HboxState out = relax::bound_rules(layer).hbox_step(ctx, 0, {Tensor::from_vector(c, in, Device::cpu), box});
    const size_t m = size_t(layer.out_shape.numel());
    const std::vector<float> oc = ops::reshape(out.centre, Shape{1, int64_t(m)}).to_vector();
    const std::vector<float> ob = ops::reshape(out.box, Shape{1, int64_t(m)}).to_vector();
    // The symbolic part's reach after the layer: |layer| r (affine kinds), r
    // where the ReLU keeps the row (l >= 0), else nothing.
    std::vector<float> reach(m, 0.0f);
    if (relax::bound_rules(layer).role == LayerRole::activation) {
      const std::vector<float> l = ctx.relu_lower[0].to_vector();
      for (size_t j = 0; j < m; ++j) reach[j] = l[j] >= 0.0f ? r[j] : 0.0f;
    } else {
      reach = relax::bound_rules(layer).abs_image(layer, Tensor::from_vector(r, Shape{1, int64_t(r.size())}, Device::cpu), 1,
                                                   false).to_vector();
    }
    std::vector<float> widened_r = r;
    for (float& v : widened_r) v += 0.1f;
    std::vector<float> lo, hi;
    column_range(net.forward(corners(c, widened_r, layer.in_shape)).to_vector(), m, lo, hi);
    for (size_t j = 0; j < m; ++j) {
      CHECK(oc[j] - ob[j] - reach[j] <= lo[j] + 1e-5f);
      CHECK(hi[j] <= oc[j] + ob[j] + reach[j] + 1e-5f);
    }
  }
}

TEST_CASE("layer table: sound-mode images and LP rows vs forward, every kind") {
  Rng rng(19);
  NoGrad no_grad;
  for (size_t k = 0; k < kLayerKindCount; ++k) {
    const Network net = sample_network(LayerKind(k), rng);
    const Layer& layer = net.layers()[0];
    const BoundRules& rules = relax::bound_rules(layer);
    CAPTURE(layer_kind_name(layer.kind));
    const int64_t n_in = layer.in_shape.numel(), n_out = layer.out_shape.numel();
    const std::vector<float> v = random_values(n_in, rng, 0.0f, 1.0f);
    const Tensor flat_v = Tensor::from_vector(v, Shape{1, n_in}, Device::cpu);
    const std::vector<float> image = rules.abs_image(layer, flat_v, 1, false).to_vector();
    REQUIRE(image.size() == size_t(n_out));
    if (rules.role == LayerRole::affine || rules.role == LayerRole::elementwise) {
      const Tensor shaped = ops::reshape(flat_v, with_batch(layer.in_shape, 1));
      const std::vector<float> radius = rules.box_step(layer, Tensor(), shaped, 1).radius.to_vector();
      for (size_t j = 0; j < image.size(); ++j) CHECK(image[j] == doctest::Approx(radius[j]).epsilon(1e-6));
    } else {
      CHECK(image == v);
    }

    const relax::LpAffineMap map = rules.lp_rows(layer);
    if (rules.role == LayerRole::affine || rules.role == LayerRole::elementwise) {
      REQUIRE(map.rows.size() == size_t(n_out));
      const std::vector<float> x = random_values(n_in, rng);
      const std::vector<float> y =
          net.forward(Tensor::from_vector(x, with_batch(layer.in_shape, 1), Device::cpu)).to_vector();
      for (size_t o = 0; o < map.rows.size(); ++o) {
        CHECK(int64_t(map.rows[o].size()) <= rules.dot_terms(layer));
        double sum = map.constant[o];
        for (const auto& [j, coef] : map.rows[o]) sum += coef * x[size_t(j)];
        CHECK(sum == doctest::Approx(y[o]).epsilon(1e-5));
      }
      CHECK(map.diagonal == (rules.role == LayerRole::elementwise));
    } else {
      CHECK(map.rows.empty());
    }

    // Elementwise kinds: scale x + shift is the forward pass.
    REQUIRE((rules.scale_shift != nullptr) == (rules.role == LayerRole::elementwise));
    if (rules.scale_shift) {
      const relax::NormalizeExpansion e = rules.scale_shift(layer, Device::cpu);
      const std::vector<float> x = random_values(n_in, rng), scale = e.scale.to_vector(), shift = e.shift.to_vector();
      const std::vector<float> y =
          net.forward(Tensor::from_vector(x, with_batch(layer.in_shape, 1), Device::cpu)).to_vector();
      for (size_t j = 0; j < x.size(); ++j) CHECK(scale[j] * x[j] + shift[j] == doctest::Approx(y[j]).epsilon(1e-5));
    }
  }
}

}  // namespace
}  // namespace cte::test
