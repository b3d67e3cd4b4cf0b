// ReLU layer: y = max(x, 0), elementwise; no tensors.
#include "engine/layers/layer_rules.h"
#include "engine/ops.h"

namespace cte {
namespace {

constexpr const char* kKeys[] = {nullptr};

Shape output_shape(const Layer&, const Shape& in, const std::string&) { return in; }
void finish(Layer&, const std::string&) {}
Tensor forward(const Layer&, const Tensor& x) { return ops::relu(x); }
std::string describe(const Layer&) { return "relu"; }
std::vector<LayerTensor> tensors(Layer&) { return {}; }
void write(const Layer&, LayerFieldWriter&) {}
Layer read(const LayerFieldReader&) { return make_relu(); }

}  // namespace

const LayerRules kLayerRules_relu{"relu", kKeys, output_shape, finish, forward, describe, tensors, write, read};

}  // namespace cte
