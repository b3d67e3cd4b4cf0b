// Helpers shared by the test suites: the devices to run on, seeded random
// tensors, and tolerant comparisons |a - b| <= atol + rtol * |b| that report
// the first offending element.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/nn.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "relaxations/relaxations.h"

namespace cte::test {

// CPU always; CUDA (real or emulated) when a device is visible.
inline std::vector<Device> devices() {
  std::vector<Device> d{Device::cpu};
  if (cuda_available()) d.push_back(Device::cuda);
  return d;
}

inline std::vector<float> random_values(int64_t n, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}

inline Tensor random_tensor(const Shape& shape, Rng& rng, Device device = Device::cpu, float lo = -1.0f,
                            float hi = 1.0f) {
  return Tensor::from_vector(random_values(shape.numel(), rng, lo, hi), shape, device);
}

// Returns "" when every element agrees, else a description of the worst one.
inline std::string mismatch(const std::vector<float>& got, const std::vector<float>& want, double atol,
                            double rtol) {
  if (got.size() != want.size())
    return "sizes differ: " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double a = got[i], b = want[i];
    const bool both_nan = std::isnan(a) && std::isnan(b);
    if (both_nan) continue;
    if (!(std::fabs(a - b) <= atol + rtol * std::fabs(b)))
      return "element " + std::to_string(i) + ": got " + std::to_string(a) + ", want " + std::to_string(b);
  }
  return "";
}

#define CHECK_CLOSE_VEC(got, want, atol, rtol)                                    \
  do {                                                                            \
    const std::string cte_why_ = ::cte::test::mismatch((got), (want), (atol), (rtol)); \
    CHECK_MESSAGE(cte_why_.empty(), cte_why_);                                    \
  } while (0)

// A linear layer from its weight rows and bias (the paper's small examples).
inline Layer linear_layer(const std::vector<std::vector<float>>& rows, const std::vector<float>& bias) {
  Layer layer;
  layer.kind = LayerKind::linear;
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  const int64_t out = int64_t(rows.size()), in = int64_t(rows.front().size());
  layer.weight = Tensor::from_vector(flat, Shape{out, in}, Device::cpu);
  layer.bias = Tensor::from_vector(bias, Shape{out}, Device::cpu);
  return layer;
}

// widths = {input, hidden..., logits}: `front` (e.g. a normalize layer), then
// linear layers with a ReLU after every hidden one, drawn from rng in order.
inline Network dense_net(const std::vector<int64_t>& widths, Rng& rng, std::vector<Layer> front = {}) {
  std::vector<Layer> layers = std::move(front);
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    if (i > 0) layers.push_back(make_relu());
    layers.push_back(make_linear(widths[i], widths[i + 1], rng));
  }
  return Network(Shape{widths.front()}, layers);
}

// A per-sample shape with the batch axis in front.
inline Shape with_batch(const Shape& per_sample, int64_t count) {
  std::vector<int64_t> dims{count};
  for (int64_t d : per_sample.dims()) dims.push_back(d);
  return Shape(dims);
}

// `count` flat inputs uniform in [0, 1], their L-inf ball of radius eps
// (input_box), and the margin spec of labels drawn after the inputs.
struct LabelledBox {
  Tensor lower, upper, spec;
};

inline LabelledBox random_labelled_box(const Network& net, int64_t count, float eps, Rng& rng,
                                       Device device = Device::cpu) {
  const Tensor x = random_tensor(Shape{count, net.input_shape().numel()}, rng, device, 0.0f, 1.0f);
  std::vector<int> labels;
  for (int64_t s = 0; s < count; ++s) labels.push_back(int(rng.below(uint64_t(net.output_shape().numel()))));
  const auto [lo, hi] = input_box(x, eps);
  return {lo, hi, margin_spec(labels, int(net.output_shape().numel()), device)};
}

}  // namespace cte::test
