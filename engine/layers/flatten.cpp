// Flatten layer: (C, H, W) -> (C*H*W) per sample; no tensors, no arithmetic.
#include "engine/layers/layer_rules.h"
#include "engine/ops.h"

namespace cte {
namespace {

constexpr const char* kKeys[] = {nullptr};

Shape output_shape(const Layer&, const Shape& in, const std::string&) { return Shape{in.numel()}; }
void finish(Layer&, const std::string&) {}
Tensor forward(const Layer&, const Tensor& x) { return ops::flatten(x); }
std::string describe(const Layer&) { return "flatten"; }
std::vector<LayerTensor> tensors(Layer&) { return {}; }
void write(const Layer&, LayerFieldWriter&) {}
Layer read(const LayerFieldReader&) { return make_flatten(); }

}  // namespace

const LayerRules kLayerRules_flatten{"flatten", kKeys, output_shape, finish, forward, describe, tensors, write, read};

}  // namespace cte
