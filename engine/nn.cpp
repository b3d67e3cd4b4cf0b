// Network construction, shape checking, PyTorch-default initialisation and
// the plain (non-relaxed) forward pass.
#include "engine/nn.h"

#include <cmath>
#include <sstream>

#include "engine/ops.h"

namespace cte {

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::linear: return "linear";
    case LayerKind::conv: return "conv";
    case LayerKind::relu: return "relu";
    case LayerKind::flatten: return "flatten";
    case LayerKind::normalize: return "normalize";
  }
  return "?";
}

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

Shape layer_output_shape(const Layer& layer, const Shape& in, size_t index) {
  const std::string where = "network";
  switch (layer.kind) {
    case LayerKind::linear: {
      if (layer.weight.ndim() != 2)
        fail(where, layer_label(layer, index) + ": weight " + layer.weight.shape().str() + " must be (out, in)");
      if (in.ndim() != 1 || in[0] != layer.weight.shape()[1])
        fail(where, layer_label(layer, index) + ": input is " + in.str() + " but weight " +
                        layer.weight.shape().str() + " expects (" + std::to_string(layer.weight.shape()[1]) +
                        ")" + (in.ndim() != 1 ? "; add a flatten layer before it" : ""));
      if (layer.bias.defined() && layer.bias.shape() != Shape{layer.weight.shape()[0]})
        fail(where, layer_label(layer, index) + ": bias " + layer.bias.shape().str() + " does not match weight " +
                        layer.weight.shape().str());
      return Shape{layer.weight.shape()[0]};
    }
    case LayerKind::conv: {
      if (layer.weight.ndim() != 4)
        fail(where, layer_label(layer, index) + ": weight " + layer.weight.shape().str() + " must be (O, C, kh, kw)");
      if (in.ndim() != 3)
        fail(where, layer_label(layer, index) + ": input is " + in.str() + ", expected (C, H, W)");
      const Shape w = layer.weight.shape();
      if (layer.bias.defined() && layer.bias.shape() != Shape{w[0]})
        fail(where, layer_label(layer, index) + ": bias " + layer.bias.shape().str() + " does not match weight " + w.str());
      // The one conv shape rule (ops::conv_geometry), for one image.
      const std::string op = where + "] [" + layer_label(layer, index);
      const kern::ConvGeometry g = ops::conv_geometry(Shape{1, in[0], in[1], in[2]}, w, layer.stride, layer.padding,
                                                      op.c_str());
      return Shape{g.c_out, g.h_out, g.w_out};
    }
    case LayerKind::relu: return in;
    case LayerKind::flatten: return Shape{in.numel()};
    case LayerKind::normalize: {
      const int64_t channels = int64_t(layer.mean_values.size());
      const int64_t in_channels = in.ndim() == 3 ? in[0] : 1;
      if (channels != in_channels && channels != 1)
        fail(where, layer_label(layer, index) + ": " + std::to_string(channels) +
                        " channel statistics for input " + in.str());
      return in;
    }
  }
  return in;
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
    if (layer.kind == LayerKind::normalize && shape.ndim() == 1) {
      // A flat input gets scalar statistics broadcast over every feature.
      if (layer.mean_values.size() != 1)
        fail("network", layer_label(layer, i) + ": a flat input takes one mean and one std");
      layer.mean = alias_with_shape(layer.mean, Shape{1});
      layer.inv_std = alias_with_shape(layer.inv_std, Shape{1});
    }
  }
}

Shape Network::output_shape() const { return layers_.empty() ? input_shape_ : layers_.back().out_shape; }

Tensor Network::forward(const Tensor& x) const {
  Tensor h = x;
  for (const Layer& layer : layers_) {
    switch (layer.kind) {
      case LayerKind::linear: h = ops::linear(h, layer.weight, layer.bias); break;
      case LayerKind::conv: h = ops::conv2d(h, layer.weight, layer.bias, layer.stride, layer.padding); break;
      case LayerKind::relu: h = ops::relu(h); break;
      case LayerKind::flatten: h = ops::flatten(h); break;
      case LayerKind::normalize: h = ops::mul(ops::sub(h, layer.mean), layer.inv_std); break;
    }
  }
  return h;
}

std::vector<Tensor> Network::parameters() const {
  std::vector<Tensor> params;
  for (const Layer& layer : layers_) {
    if (layer.weight.defined()) params.push_back(layer.weight);
    if (layer.bias.defined()) params.push_back(layer.bias);
  }
  return params;
}

std::vector<std::string> Network::parameter_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (layers_[i].weight.defined()) names.push_back("layers." + std::to_string(i) + ".weight");
    if (layers_[i].bias.defined()) names.push_back("layers." + std::to_string(i) + ".bias");
  }
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
  for (Layer& layer : layers_) {
    move(layer.weight);
    move(layer.bias);
    move(layer.mean);
    move(layer.inv_std);
  }
  device_ = device;
}

void Network::set_requires_grad(bool value) {
  for (Tensor& p : parameters()) p.set_requires_grad(value);
}

std::string Network::describe() const {
  std::ostringstream out;
  out << "input" << input_shape_.str();
  for (const Layer& layer : layers_) {
    out << " -> ";
    switch (layer.kind) {
      case LayerKind::linear: out << "linear(" << layer.weight.shape()[1] << "->" << layer.weight.shape()[0] << ")"; break;
      case LayerKind::conv: {
        const Shape w = layer.weight.shape();
        out << "conv(" << w[1] << "->" << w[0] << ", " << w[2] << "x" << w[3] << ", s" << layer.stride
            << ", p" << layer.padding << ")";
        break;
      }
      default: out << layer_kind_name(layer.kind);
    }
  }
  return out.str();
}

}  // namespace cte
