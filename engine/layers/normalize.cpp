// Normalize layer: y = (x - mean) * inv_std per channel (the authors' code
// puts it first); mean and inv_std are constants (C, 1, 1), or (1) broadcast
// over a flat input. The std given is kept for the text forms.
#include "engine/layers/layer_rules.h"
#include "engine/ops.h"

namespace cte {
namespace {

constexpr const char* kKeys[] = {"mean", "std", nullptr};

Shape output_shape(const Layer& layer, const Shape& in, const std::string& label) {
  const int64_t channels = int64_t(layer.mean_values.size());
  const int64_t in_channels = in.ndim() == 3 ? in[0] : 1;
  if (channels != in_channels && channels != 1)
    fail("network", label + ": " + std::to_string(channels) + " channel statistics for input " + in.str());
  // The tensors (what the passes read) fit too: layers() hands the list out for editing.
  const int64_t given = layer.mean.defined() ? layer.mean.numel() : -1;
  if (!layer.inv_std.defined() || (given != in_channels && given != 1) || layer.inv_std.numel() != given)
    fail("network", label + ": statistics do not fit input " + in.str());
  return in;
}

void finish(Layer& layer, const std::string&) {
  // A flat input gets scalar statistics broadcast over every feature.
  if (layer.in_shape.ndim() == 1) {
    layer.mean = alias_with_shape(layer.mean, Shape{1});
    layer.inv_std = alias_with_shape(layer.inv_std, Shape{1});
  }
}

Tensor forward(const Layer& layer, const Tensor& x) { return ops::mul(ops::sub(x, layer.mean), layer.inv_std); }
std::string describe(const Layer&) { return "normalize"; }

std::vector<LayerTensor> tensors(Layer& layer) {
  return {{"statistics (mean)", &layer.mean, false}, {"statistics (inv_std)", &layer.inv_std, false}};
}

void write(const Layer& layer, LayerFieldWriter& out) {
  out.floats("mean", layer.mean_values);
  out.floats("std", layer.std_values);
}

Layer read(const LayerFieldReader& in) { return make_normalize(in.floats("mean"), in.floats("std")); }

}  // namespace

const LayerRules kLayerRules_normalize{"normalize", kKeys, output_shape, finish, forward, describe, tensors, write, read};

}  // namespace cte
