// Linear layer: y = x W^T + b, weight (out, in), bias (out).
#include "engine/layers/layer_rules.h"
#include "engine/ops.h"

namespace cte {
namespace {

constexpr const char* kKeys[] = {"W", "b", nullptr};

Shape output_shape(const Layer& layer, const Shape& in, const std::string& label) {
  const std::string where = "network";
  if (layer.weight.ndim() != 2) fail(where, label + ": weight " + layer.weight.shape().str() + " must be (out, in)");
  if (in.ndim() != 1 || in[0] != layer.weight.shape()[1])
    fail(where, label + ": input is " + in.str() + " but weight " + layer.weight.shape().str() + " expects (" +
                    std::to_string(layer.weight.shape()[1]) + ")" +
                    (in.ndim() != 1 ? "; add a flatten layer before it" : ""));
  if (layer.bias.defined() && layer.bias.shape() != Shape{layer.weight.shape()[0]})
    fail(where, label + ": bias " + layer.bias.shape().str() + " does not match weight " + layer.weight.shape().str());
  return Shape{layer.weight.shape()[0]};
}

void finish(Layer&, const std::string&) {}

Tensor forward(const Layer& layer, const Tensor& x) { return ops::linear(x, layer.weight, layer.bias); }

std::string describe(const Layer& layer) {
  return "linear(" + std::to_string(layer.weight.shape()[1]) + "->" + std::to_string(layer.weight.shape()[0]) + ")";
}

std::vector<LayerTensor> tensors(Layer& layer) {
  return {{"weight", &layer.weight, true, false, Penalty::weight}, {"bias", &layer.bias, true, false, Penalty::bias}};
}

void write(const Layer& layer, LayerFieldWriter& out) {
  out.tensor("weight", layer.weight);
  out.tensor("bias", layer.bias);
}

Layer read(const LayerFieldReader& in) {
  Layer layer;
  layer.kind = LayerKind::linear;
  layer.weight = in.tensor("weight", 2, true);
  layer.bias = in.tensor("bias", 1, false);
  return layer;
}

}  // namespace

const LayerRules kLayerRules_linear{"linear", kKeys, output_shape, finish, forward, describe, tensors, write, read};

}  // namespace cte
