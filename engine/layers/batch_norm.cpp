// BatchNorm layer over the channels of a (C, H, W) input (BatchNorm2d) or the
// features of a flat one (BatchNorm1d), as PyTorch defines it: weight and bias
// are gamma and beta (C), eps 1e-5 inside the root, momentum 0.1. Training
// mode normalises with the batch's mean and biased variance and updates the
// running averages (running = (1 - momentum) running + momentum batch, the
// variance unbiased: times m / (m - 1) for m values per channel) unless
// track_running_stats is off; evaluation
// mode is the per-channel affine map of the running averages (batch_norm_affine).
#include "engine/layers/layer_rules.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/common/batch_norm_math.h"

namespace cte {
namespace {

// The JSON keys. gamma and beta are the fields "weight" and "bias" (PyTorch's
// state_dict names, and the tensors' names in checkpoints, which
// network_from_checkpoint reads by field name), spelt "W" and "b" in the
// network JSON as every layer's are (netjson.cpp).
constexpr const char* kKeys[] = {"W", "b", "running_mean", "running_var", "eps", "momentum", nullptr};

Shape output_shape(const Layer& layer, const Shape& in, const std::string& label) {
  if (in.ndim() != 1 && in.ndim() != 3) fail("network", label + ": input is " + in.str() + ", expected (C, H, W) or (F)");
  const Shape channels{in[0]};
  const std::pair<const char*, const Tensor*> tensors[] = {
      {"weight (gamma)", &layer.weight}, {"bias (beta)", &layer.bias}, {"running_mean", &layer.running_mean}, {"running_var", &layer.running_var}};
  for (const auto& [name, t] : tensors)
    if (!t->defined() || t->shape() != channels)
      fail("network", label + ": " + name + " is " + (t->defined() ? t->shape().str() : std::string("missing")) +
                          " but input " + in.str() + " has " + std::to_string(in[0]) + " channels");
  if (!(layer.eps > 0.0f) || !(layer.momentum >= 0.0f && layer.momentum <= 1.0f))
    fail("network", label + ": eps " + std::to_string(layer.eps) + " must be positive and momentum " +
                        std::to_string(layer.momentum) + " in [0, 1]");
  return in;
}

void finish(Layer&, const std::string&) {}

// x (N, C, H, W) or (N, F).
Tensor forward(const Layer& layer, const Tensor& x) {
  if (!layer.training) return ops::batch_norm(x, layer.weight, layer.bias, layer.running_mean, layer.running_var, layer.eps);
  if (!layer.track_running_stats) return ops::batch_norm_train(x, layer.weight, layer.bias, layer.eps).y;
  if (!layer.batch_stats)
    fail("batch_norm", "training mode without its statistics slot: set it with Network::set_training");
  const ops::BatchNormTrainResult r = ops::batch_norm_train(x, layer.weight, layer.bias, layer.eps);
  *layer.batch_stats = {r.mean, r.var};
  {
    NoGrad no_grad;
    const int64_t m = x.numel() / x.size(1);
    const float keep = 1.0f - layer.momentum;
    Tensor running_mean = layer.running_mean, running_var = layer.running_var;  // handles: the layer's storage
    running_mean.copy_from(ops::add(ops::scale(running_mean, keep), ops::scale(r.mean.detach(), layer.momentum)));
    const float unbiased = float(double(m) / double(m - 1));
    running_var.copy_from(ops::add(ops::scale(running_var, keep), ops::scale(r.var.detach(), layer.momentum * unbiased)));
  }
  return r.y;
}

std::string describe(const Layer& layer) { return "batch_norm(" + std::to_string(layer.weight.numel()) + ")"; }

// gamma and beta are not penalised (Penalty::none): --l1 and --l2 cover the linear and conv layers only.
std::vector<LayerTensor> tensors(Layer& layer) {
  return {{"weight", &layer.weight, true},
          {"bias", &layer.bias, true},
          {"running_mean", &layer.running_mean, false, true},
          {"running_var", &layer.running_var, false, true}};
}

void write(const Layer& layer, LayerFieldWriter& out) {
  out.tensor("weight", layer.weight);
  out.tensor("bias", layer.bias);
  out.tensor("running_mean", layer.running_mean);
  out.tensor("running_var", layer.running_var);
  out.floats("eps", {layer.eps});
  out.floats("momentum", {layer.momentum});
}

Layer read(const LayerFieldReader& in) {
  Layer layer;
  layer.kind = LayerKind::batch_norm;
  layer.weight = in.tensor("weight", 1, true);
  layer.bias = in.tensor("bias", 1, true);
  layer.running_mean = in.tensor("running_mean", 1, true);
  layer.running_var = in.tensor("running_var", 1, true);
  const std::vector<float> eps = in.floats("eps"), momentum = in.floats("momentum");
  if (eps.size() != 1 || momentum.size() != 1) fail("batch_norm", "eps and momentum are one number each");
  layer.eps = eps[0];
  layer.momentum = momentum[0];
  return layer;
}

}  // namespace

ChannelAffine batch_norm_affine(const Layer& layer) {
  if (layer.kind != LayerKind::batch_norm) fail("batch_norm", std::string("layer is ") + layer_kind_name(layer.kind));
  if (layer.training) {
    // Training mode: the statistics of the clean batch's forward pass (as
    // eth-sri/SABR's BatchNorm does when it propagates a box), on the tape.
    if (!layer.batch_stats || !layer.batch_stats->mean.defined())
      fail("batch_norm", "training mode: no batch statistics yet (run the clean forward pass before bounding)");
    const Tensor inv_std = ops::div(Tensor::scalar(1.0f, layer.weight.device()),
                                    ops::sqrt(ops::add_scalar(layer.batch_stats->var, layer.eps)));
    const Tensor scale = ops::mul(layer.weight, inv_std);
    return {scale, ops::sub(layer.bias, ops::mul(layer.batch_stats->mean, scale))};
  }
  // Evaluation mode: the running averages are constants; the same inv_std the kernels compute.
  std::vector<float> inv_std = layer.running_var.to_vector();
  for (float& v : inv_std) v = kern::batch_norm_inv_std(v, layer.eps);
  const Tensor scale =
      ops::mul(layer.weight, Tensor::from_vector(inv_std, layer.weight.shape(), layer.weight.device()));
  return {scale, ops::sub(layer.bias, ops::mul(layer.running_mean, scale))};
}

Network fold_batch_norm(const Network& net) {
  std::vector<Layer> layers;
  for (const Layer& layer : net.layers()) {
    Layer* before = layers.empty() ? nullptr : &layers.back();
    if (layer.kind != LayerKind::batch_norm || layer.training || !before ||
        (before->kind != LayerKind::linear && before->kind != LayerKind::conv)) {
      layers.push_back(layer);
      continue;
    }
    NoGrad no_grad;
    const ChannelAffine a = batch_norm_affine(layer);
    const int64_t out = before->weight.size(0);
    std::vector<int64_t> dims(size_t(before->weight.ndim()), 1);
    dims[0] = out;  // scale broadcast over each output channel's row or filter
    const Tensor bias = before->bias.defined() ? before->bias : Tensor::zeros(Shape{out}, a.scale.device());
    Layer folded = *before;
    folded.weight = ops::mul(before->weight.detach(), ops::reshape(a.scale, Shape(dims))).clone();
    folded.bias = ops::add(ops::mul(bias.detach(), a.scale), a.shift).clone();
    *before = folded;
  }
  Network result(net.input_shape(), std::move(layers));
  result.to(net.device());
  return result;
}

const LayerRules kLayerRules_batch_norm{"batch_norm", kKeys, output_shape, finish, forward, describe, tensors, write, read};

}  // namespace cte
