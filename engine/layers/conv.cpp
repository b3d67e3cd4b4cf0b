// Conv2d layer: weight (O, C, kh, kw), bias (O), one stride and one padding
// for both axes; its output extents come from ops::conv_geometry, the one
// conv shape rule.
#include "engine/layers/layer_rules.h"
#include "engine/ops.h"

namespace cte {
namespace {

constexpr const char* kKeys[] = {"W", "b", "stride", "padding", nullptr};

Shape output_shape(const Layer& layer, const Shape& in, const std::string& label) {
  const std::string where = "network";
  if (layer.weight.ndim() != 4)
    fail(where, label + ": weight " + layer.weight.shape().str() + " must be (O, C, kh, kw)");
  if (in.ndim() != 3) fail(where, label + ": input is " + in.str() + ", expected (C, H, W)");
  const Shape w = layer.weight.shape();
  if (layer.bias.defined() && layer.bias.shape() != Shape{w[0]})
    fail(where, label + ": bias " + layer.bias.shape().str() + " does not match weight " + w.str());
  const std::string op = "network] [" + label;  // the one conv shape rule, for one image
  const kern::ConvGeometry g = ops::conv_geometry(Shape{1, in[0], in[1], in[2]}, w, layer.stride, layer.padding,
                                                  op.c_str());
  return Shape{g.c_out, g.h_out, g.w_out};
}

void finish(Layer&, const std::string&) {}

Tensor forward(const Layer& layer, const Tensor& x) {
  return ops::conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding);
}

std::string describe(const Layer& layer) {
  const Shape w = layer.weight.shape();
  return "conv(" + std::to_string(w[1]) + "->" + std::to_string(w[0]) + ", " + std::to_string(w[2]) + "x" +
         std::to_string(w[3]) + ", s" + std::to_string(layer.stride) + ", p" + std::to_string(layer.padding) + ")";
}

std::vector<LayerTensor> tensors(Layer& layer) {
  return {{"weight", &layer.weight, true, false, Penalty::weight}, {"bias", &layer.bias, true, false, Penalty::bias}};
}

void write(const Layer& layer, LayerFieldWriter& out) {
  out.integer("stride", layer.stride);
  out.integer("padding", layer.padding);
  out.tensor("weight", layer.weight);
  out.tensor("bias", layer.bias);
}

Layer read(const LayerFieldReader& in) {
  Layer layer;
  layer.kind = LayerKind::conv;
  layer.weight = in.tensor("weight", 4, true);
  layer.bias = in.tensor("bias", 1, false);
  layer.stride = in.integer("stride", 1);
  layer.padding = in.integer("padding", 0);
  return layer;
}

}  // namespace

const LayerRules kLayerRules_conv{"conv", kKeys, output_shape, finish, forward, describe, tensors, write, read};

}  // namespace cte
