// Networks: a Sequential of Linear, Conv2d, ReLU, Flatten, Normalize and
// BatchNorm layers, held as a flat list of plain Layer records so that the training
// forward pass and every relaxation in relaxations/ walk the same structure.
// Parameters are initialised as PyTorch does by default (kaiming-uniform with
// a = sqrt(5) for weights, U(+-1/sqrt(fan_in)) for biases), so results compare
// with published ones.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace cte {

enum class LayerKind { linear, conv, relu, flatten, normalize, batch_norm };
const char* layer_kind_name(LayerKind kind);

struct Layer {
  LayerKind kind = LayerKind::relu;
  Tensor weight, bias;        // linear: (out, in), (out); conv: (O, C, kh, kw), (O)
  int stride = 1, padding = 0;  // conv
  Tensor mean, inv_std;         // normalize: (C, 1, 1) each; y = (x - mean) * inv_std
  std::vector<float> mean_values, std_values;  // normalize, as given
  // batch_norm: weight and bias are gamma and beta (C); the running averages
  // (C) are state, updated by every training-mode forward pass and checkpointed.
  Tensor running_mean, running_var;
  float eps = 1e-5f, momentum = 0.1f;  // batch_norm, PyTorch's defaults
  bool training = false;               // batch_norm: batch statistics (Network::set_training)
  // batch_norm in training mode: false normalises with the batch's own
  // statistics but updates neither the running averages nor the statistics
  // slot below (PyTorch's track_running_stats; Network::set_track_running_stats).
  bool track_running_stats = true;
  // batch_norm in training mode: the statistics of the last forward pass (the
  // clean batch's), tape tensors; the relaxations' training-mode rule reads them.
  struct BatchStatistics {
    Tensor mean, var;
  };
  std::shared_ptr<BatchStatistics> batch_stats;
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
  // BatchNorm layers: batch statistics and running-average updates (true) or
  // the running averages as a fixed affine map (false, the default).
  void set_training(bool value);
  bool training() const;
  // BatchNorm layers in training mode: whether a forward pass updates the
  // running averages and the statistics the bounds read (true, the default).
  // False for a second pass over other inputs in the same step (the trainer's
  // adversarial batch, as eth-sri/SABR): one update per step, from the clean batch.
  void set_track_running_stats(bool value);
  // Tensors that training changes besides the parameters (BatchNorm's running
  // averages), for checkpoints: "layers.2.running_mean", ...
  std::vector<Tensor> state_tensors() const;
  std::vector<std::string> state_names() const;

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
// BatchNorm over `channels` channels (of (C, H, W) inputs) or features (flat
// inputs): gamma 1, beta 0, running mean 0 and variance 1, as PyTorch.
Layer make_batch_norm(int64_t channels);

// A batch_norm layer as y = scale x + shift per channel, (C) each: from the
// running averages in evaluation mode; in training mode from the statistics
// of the last forward pass (the clean batch's), on the tape, so a bound
// propagated through it trains gamma, beta and, through the statistics, the
// layers below (what eth-sri/SABR's certified training does).
struct ChannelAffine {
  Tensor scale, shift;
};
ChannelAffine batch_norm_affine(const Layer& layer);

// The network with every evaluation-mode batch_norm that directly follows a
// linear or conv layer folded into it (W' = scale W per output channel,
// b' = scale b + shift), for certification: the same function with fewer
// layers (verify/'s MILP knows no BatchNorm). Other layers are shared, the
// folded ones are new tensors; a batch_norm after anything else stays.
Network fold_batch_norm(const Network& net);

// "layer 3 (conv)": how every message names a layer.
std::string layer_label(const Layer& layer, size_t index);

// Parameter-free shape inference for one layer; throws "[network] layer i (...)".
Shape layer_output_shape(const Layer& layer, const Shape& in, size_t index);

}  // namespace cte
