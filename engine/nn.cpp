// Network construction, shape checking, PyTorch-default initialisation and
// the plain (non-relaxed) forward pass.
#include "engine/nn.h"

#include <cmath>
#include <sstream>

#include "engine/layers/layer_rules.h"
#include "engine/ops.h"

namespace cte {

namespace {

Tensor uniform_tensor(const Shape& shape, float bound, Rng& rng) {
  std::vector<float> values(static_cast<size_t>(shape.numel()));
  for (float& v : values) v = rng.uniform(-bound, bound);
  return Tensor::from_vector(values, shape, Device::cpu);
}

}  // namespace

std::string layer_label(const Layer& layer, size_t index) {
  return "layer " + std::to_string(index) + " (" + layer_kind_name(layer.kind) + ")";
}

// kaiming_uniform_(a = sqrt(5)) gives bound = sqrt(6 / ((1 + a^2) fan_in)) = 1/sqrt(fan_in),
// the same bound PyTorch uses for the bias.
Layer make_linear(int64_t in, int64_t out, Rng& rng) {
  Layer layer;
  layer.kind = LayerKind::linear;
  const float bound = 1.0f / std::sqrt(float(in));
  layer.weight = uniform_tensor(Shape{out, in}, bound, rng);
  layer.bias = uniform_tensor(Shape{out}, bound, rng);
  return layer;
}

Layer make_conv(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding, Rng& rng) {
  Layer layer;
  layer.kind = LayerKind::conv;
  const float bound = 1.0f / std::sqrt(float(in_channels * kernel * kernel));
  layer.weight = uniform_tensor(Shape{out_channels, in_channels, kernel, kernel}, bound, rng);
  layer.bias = uniform_tensor(Shape{out_channels}, bound, rng);
  layer.stride = stride;
  layer.padding = padding;
  return layer;
}

Layer make_relu() {
  Layer layer;
  layer.kind = LayerKind::relu;
  return layer;
}
Layer make_flatten() {
  Layer layer;
  layer.kind = LayerKind::flatten;
  return layer;
}

Layer make_normalize(const std::vector<float>& mean, const std::vector<float>& std) {
  if (mean.empty() || mean.size() != std.size())
    fail("normalize", "mean has " + std::to_string(mean.size()) + " values and std " +
                          std::to_string(std.size()) + "; need one of each per channel");
  Layer layer;
  layer.kind = LayerKind::normalize;
  layer.mean_values = mean;
  layer.std_values = std;
  std::vector<float> inv(std.size());
  for (size_t c = 0; c < std.size(); ++c) {
    if (!(std[c] > 0.0f) || !std::isfinite(std[c]))
      fail("normalize", "std[" + std::to_string(c) + "] = " + std::to_string(std[c]) + " must be positive");
    inv[c] = 1.0f / std[c];
  }
  const int64_t channels = int64_t(mean.size());
  layer.mean = Tensor::from_vector(mean, Shape{channels, 1, 1}, Device::cpu);
  layer.inv_std = Tensor::from_vector(inv, Shape{channels, 1, 1}, Device::cpu);
  return layer;
}

Layer make_batch_norm(int64_t channels) {
  if (channels <= 0) fail("batch_norm", "channels = " + std::to_string(channels) + " must be positive");
  Layer layer;
  layer.kind = LayerKind::batch_norm;
  const Shape shape{channels};
  layer.weight = Tensor::full(shape, 1.0f, Device::cpu);
  layer.bias = Tensor::zeros(shape, Device::cpu);
  layer.running_mean = Tensor::zeros(shape, Device::cpu);
  layer.running_var = Tensor::full(shape, 1.0f, Device::cpu);
  return layer;
}

Shape layer_output_shape(const Layer& layer, const Shape& in, size_t index) {
  return layer_rules(layer.kind).output_shape(layer, in, layer_label(layer, index));
}

Network::Network(Shape input_shape, std::vector<Layer> layers)
    : input_shape_(input_shape), layers_(std::move(layers)) {
  if (input_shape_.ndim() != 1 && input_shape_.ndim() != 3)
    fail("network", "input_shape " + input_shape_.str() + " must be [C,H,W] or [N]");
  Shape shape = input_shape_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    layer.in_shape = shape;
    shape = layer_output_shape(layer, shape, i);
    layer.out_shape = shape;
    layer_rules(layer.kind).finish(layer, layer_label(layer, i));
  }
}

Shape Network::output_shape() const { return layers_.empty() ? input_shape_ : layers_.back().out_shape; }

Tensor Network::forward(const Tensor& x) const {
  Tensor h = x;
  for (const Layer& layer : layers_) h = layer_rules(layer.kind).forward(layer, h);
  return h;
}

std::vector<Tensor> Network::parameters() const {
  std::vector<Tensor> params;
  for (const Layer& layer : layers_)
    for (const LayerTensorView& t : layer_tensors(layer))
      if (t.parameter) params.push_back(t.tensor);
  return params;
}

std::vector<std::string> Network::parameter_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < layers_.size(); ++i)
    for (const LayerTensorView& t : layer_tensors(layers_[i]))
      if (t.parameter) names.push_back("layers." + std::to_string(i) + "." + t.name);
  return names;
}

int64_t Network::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Network::to(Device device) {
  auto move = [device](Tensor& t) {
    if (!t.defined() || t.device() == device) return;
    const bool grad = t.requires_grad();
    t = t.to(device);
    t.set_requires_grad(grad);
  };
  for (Layer& layer : layers_)
    for (const LayerTensor& t : layer_tensors(layer)) move(*t.tensor);
  device_ = device;
}

void Network::set_requires_grad(bool value) {
  for (Tensor& p : parameters()) p.set_requires_grad(value);
}

void Network::set_training(bool value) {
  for (Layer& layer : layers_) {
    if (layer.kind != LayerKind::batch_norm) continue;
    layer.training = value;
    // A fresh slot: the statistics of an earlier pass never reach a later bound.
    layer.batch_stats = value ? std::make_shared<Layer::BatchStatistics>() : nullptr;
  }
}

void Network::set_track_running_stats(bool value) {
  for (Layer& layer : layers_)
    if (layer.kind == LayerKind::batch_norm) layer.track_running_stats = value;
}

bool Network::training() const {
  for (const Layer& layer : layers_)
    if (layer.training) return true;
  return false;
}

std::vector<Tensor> Network::state_tensors() const {
  std::vector<Tensor> out;
  for (const Layer& layer : layers_)
    for (const LayerTensorView& t : layer_tensors(layer))
      if (t.state) out.push_back(t.tensor);
  return out;
}

std::vector<std::string> Network::state_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < layers_.size(); ++i)
    for (const LayerTensorView& t : layer_tensors(layers_[i]))
      if (t.state) names.push_back("layers." + std::to_string(i) + "." + t.name);
  return names;
}

std::string Network::describe() const {
  std::ostringstream out;
  out << "input" << input_shape_.str();
  for (const Layer& layer : layers_) out << " -> " << layer_rules(layer.kind).describe(layer);
  return out.str();
}

}  // namespace cte
