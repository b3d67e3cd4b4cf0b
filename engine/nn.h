// Networks: a Sequential of Linear, Conv2d, ReLU, Flatten and Normalize
// layers, held as a flat list of plain Layer records so that the training
// forward pass and every relaxation in relaxations/ walk the same structure.
// Parameters are initialised as PyTorch does by default (kaiming-uniform with
// a = sqrt(5) for weights, U(+-1/sqrt(fan_in)) for biases), so results compare
// with published ones.
#pragma once
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace cte {

enum class LayerKind { linear, conv, relu, flatten, normalize };
const char* layer_kind_name(LayerKind kind);

struct Layer {
  LayerKind kind = LayerKind::relu;
  Tensor weight, bias;        // linear: (out, in), (out); conv: (O, C, kh, kw), (O)
  int stride = 1, padding = 0;  // conv
  Tensor mean, inv_std;         // normalize: (C, 1, 1) each; y = (x - mean) * inv_std
  std::vector<float> mean_values, std_values;  // normalize, as given
  Shape in_shape, out_shape;  // per sample (no batch axis), filled by Network::finalize
};

class Network {
 public:
  Network() = default;
  Network(Shape input_shape, std::vector<Layer> layers);  // checks shapes, fills in/out shapes

  // x: (N, input_shape...) -> logits (N, classes).
  Tensor forward(const Tensor& x) const;
  std::vector<Tensor> parameters() const;       // weights and biases, in layer order
  std::vector<std::string> parameter_names() const;  // "layers.3.weight", ...
  void to(Device device);                        // moves every tensor
  Device device() const { return device_; }
  void set_requires_grad(bool value);

  const Shape& input_shape() const { return input_shape_; }
  Shape output_shape() const;
  const std::vector<Layer>& layers() const { return layers_; }
  std::vector<Layer>& layers() { return layers_; }
  int64_t num_parameters() const;
  std::string describe() const;  // "normalize -> conv(1->16, 4x4, s2, p1) -> relu -> ..."

 private:
  Shape input_shape_;
  std::vector<Layer> layers_;
  Device device_ = Device::cpu;
};

// Layer builders; weights are initialised from rng, PyTorch-style.
Layer make_linear(int64_t in, int64_t out, Rng& rng);
Layer make_conv(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding, Rng& rng);
Layer make_relu();
Layer make_flatten();
Layer make_normalize(const std::vector<float>& mean, const std::vector<float>& std);

// "layer 3 (conv)": how every message names a layer.
std::string layer_label(const Layer& layer, size_t index);

// Parameter-free shape inference for one layer; throws "[network] layer i (...)".
Shape layer_output_shape(const Layer& layer, const Shape& in, size_t index);

}  // namespace cte
