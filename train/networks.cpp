// Builders of FC, CONV, CONV+, FC-SMALL and CNN7, data set statistics, and the
// parameter hash used to compare runs bit for bit.
#include "train/networks.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "engine/netjson.h"
#include "engine/onnx_io.h"
#include "engine/random.h"

namespace cte::train {

Normalization dataset_normalization(const std::string& dataset, const Dataset* train) {
  if (dataset == "mnist") return {{0.1307f}, {0.3081f}};
  if (dataset == "fashion-mnist") return {{0.2861f}, {0.3530f}};
  if (dataset == "svhn") return {{0.4377f, 0.4438f, 0.4728f}, {0.1980f, 0.2011f, 0.1970f}};
  if (dataset == "cifar10") return {{0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f}};
  const int channels = train && train->channels > 0 ? train->channels : 1;
  Normalization n{std::vector<float>(size_t(channels), 0.0f), std::vector<float>(size_t(channels), 1.0f)};
  if (!train || train->size() == 0) return n;
  // Per-channel mean and std of byte/255 over the training split.
  const size_t plane = size_t(train->height) * train->width;
  for (int c = 0; c < channels; ++c) {
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < train->size(); ++i) {
      const uint8_t* p = train->images.data() + i * train->image_numel() + size_t(c) * plane;
      for (size_t k = 0; k < plane; ++k) {
        const double v = p[k] / 255.0;
        sum += v;
        sum2 += v * v;
      }
    }
    const double count = double(train->size()) * double(plane);
    const double mean = sum / count;
    const double var = std::max(0.0, sum2 / count - mean * mean);
    n.mean[size_t(c)] = float(mean);
    n.std[size_t(c)] = var > 1e-12 ? float(std::sqrt(var)) : 1.0f;
  }
  return n;
}

const std::vector<std::string>& builtin_networks() {
  static const std::vector<std::string> names = {"fc", "conv", "conv+", "fc-small", "fc-2x20", "cnn7"};
  return names;
}

bool is_builtin_network(const std::string& name) {
  for (const auto& n : builtin_networks())
    if (n == name) return true;
  return false;
}

namespace {

constexpr uint64_t kInitTag = 0x494E4954ull;     // "INIT"
constexpr uint64_t kIbpInitTag = 0x49425049ull;  // "IBPI"

// Linear layers of the given widths, ReLUs between, from an input of `in` values.
void add_mlp(std::vector<Layer>& layers, int64_t in, const std::vector<int64_t>& widths, Rng& rng) {
  for (size_t i = 0; i < widths.size(); ++i) {
    layers.push_back(make_linear(in, widths[i], rng));
    if (i + 1 < widths.size()) layers.push_back(make_relu());
    in = widths[i];
  }
}

}  // namespace

Network build_network(const std::string& name, const Shape& input_shape, int num_classes,
                      const Normalization& norm, uint64_t seed) {
  if (input_shape.ndim() != 3) throw std::invalid_argument("[net] input shape " + input_shape.str() + " must be (C,H,W)");
  if (!is_builtin_network(name)) {
    Network net = load_network_file(name);
    if (net.input_shape().numel() != input_shape.numel())
      throw std::invalid_argument("[net] " + name + " takes input " + net.input_shape().str() +
                                  " but the data set's images are " + input_shape.str());
    if (net.output_shape() != Shape{num_classes})
      throw std::invalid_argument("[net] " + name + " has output " + net.output_shape().str() + " but the data set has " +
                                  std::to_string(num_classes) + " classes");
    return net;
  }
  Rng rng(mix_seed(seed, kInitTag));
  const int64_t channels = input_shape[0];
  std::vector<Layer> layers;
  layers.push_back(make_normalize(norm.mean, norm.std));
  const int64_t k = num_classes;
  if (name == "fc" || name == "fc-small" || name == "fc-2x20") {
    layers.push_back(make_flatten());
    const std::vector<int64_t> widths = name == "fc"         ? std::vector<int64_t>{400, 200, 100, 100, k}
                                        : name == "fc-small" ? std::vector<int64_t>{100, 100, k}
                                                             : std::vector<int64_t>{20, 20, k};
    add_mlp(layers, input_shape.numel(), widths, rng);
  } else if (name == "conv") {
    layers.push_back(make_conv(channels, 16, 4, 2, 1, rng));
    layers.push_back(make_relu());
    layers.push_back(make_flatten());
    const Shape conv_out = layer_output_shape(layers[1], input_shape, 1);
    add_mlp(layers, conv_out.numel(), {100, k}, rng);
  } else if (name == "cnn7") {
    // SABR's and Shi et al.'s CNN7: 3x3 convs 64-64-128-128-128 with strides
    // 1, 1, 2, 1, 1 and padding 1, each followed by BatchNorm and ReLU, then
    // FC 512 + BatchNorm + ReLU and FC k.
    const int64_t widths[] = {64, 64, 128, 128, 128};
    const int strides[] = {1, 1, 2, 1, 1};
    Shape shape = input_shape;
    int64_t in = channels;
    for (size_t i = 0; i < 5; ++i) {
      layers.push_back(make_conv(in, widths[i], 3, strides[i], 1, rng));
      shape = layer_output_shape(layers.back(), shape, layers.size() - 1);
      layers.push_back(make_batch_norm(widths[i]));
      layers.push_back(make_relu());
      in = widths[i];
    }
    layers.push_back(make_flatten());
    layers.push_back(make_linear(shape.numel(), 512, rng));
    layers.push_back(make_batch_norm(512));
    layers.push_back(make_relu());
    layers.push_back(make_linear(512, k, rng));
  } else {  // conv+
    layers.push_back(make_conv(channels, 16, 4, 2, 0, rng));
    layers.push_back(make_relu());
    const Shape s1 = layer_output_shape(layers[1], input_shape, 1);
    layers.push_back(make_conv(16, 32, 4, 1, 0, rng));
    layers.push_back(make_relu());
    const Shape s2 = layer_output_shape(layers[3], s1, 3);
    layers.push_back(make_flatten());
    add_mlp(layers, s2.numel(), {100, k}, rng);
  }
  return Network(input_shape, std::move(layers));
}

uint64_t tensors_hash(const std::vector<Tensor>& tensors, uint64_t h) {
  for (const Tensor& t : tensors) {
    const std::vector<float> values = t.to_vector();
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(values.data());
    for (size_t i = 0; i < values.size() * sizeof(float); ++i) {
      h ^= bytes[i];
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

uint64_t parameter_hash(const Network& net) { return tensors_hash(net.parameters()); }

std::string hex64(uint64_t value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

void ibp_initialise(Network& net, uint64_t seed) {
  std::vector<Tensor*> weights;
  for (Layer& layer : net.layers())
    if (layer.weight.defined() && layer.weight.ndim() > 1) weights.push_back(&layer.weight);
  Rng rng(mix_seed(seed, kIbpInitTag));
  for (size_t i = 0; i + 1 < weights.size(); ++i) {
    Tensor& w = *weights[i];
    const int64_t fan_in = w.numel() / w.shape()[0];
    const double sigma = std::sqrt(2.0 * M_PI) / double(fan_in);
    std::vector<float> values(size_t(w.numel()));
    for (float& v : values) v = float(sigma * rng.normal());
    w = Tensor::from_vector(values, w.shape(), w.device());
  }
}

}  // namespace cte::train
