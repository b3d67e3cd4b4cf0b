// The layer table: what each layer kind of engine/nn.h is, written once per
// kind in engine/layers/<kind>.cpp (its name, shape rule, forward pass, the
// tensors it holds, its text form). Network, the JSON and checkpoint formats
// and the messages ask this table instead of switching on the kind; the
// relaxations keep their own per-kind rules in relaxations/layers/ (engine/
// knows nothing of relaxations). tests/test_layer_table.cpp walks every row.
#pragma once
#include <string>
#include <vector>

#include "engine/nn.h"

namespace cte {

// Every layer kind of engine/nn.h's LayerKind, once. Each X(kind) needs
// engine/layers/<kind>.cpp defining kLayerRules_<kind> and
// relaxations/layers/<kind>.cpp defining kBoundRules_<kind> (the link fails
// without them); a LayerKind value missing here fails to compile
// (layer_kind_listed's switch, -Wswitch -Werror). README "Extending".
#define CTE_LAYER_KINDS(X) X(linear) X(conv) X(relu) X(flatten) X(normalize) X(batch_norm)

#define CTE_LAYER_KIND_COUNT(kind) +1
constexpr size_t kLayerKindCount = 0 CTE_LAYER_KINDS(CTE_LAYER_KIND_COUNT);
#undef CTE_LAYER_KIND_COUNT

constexpr bool layer_kind_listed(LayerKind kind) {
#define CTE_LAYER_KIND_CASE(kind) \
  case LayerKind::kind: return true;
  switch (kind) { CTE_LAYER_KINDS(CTE_LAYER_KIND_CASE) }
#undef CTE_LAYER_KIND_CASE
  return false;
}

// How a file format hands a layer kind its fields (keys as the network JSON
// names them: "stride", "mean", ...; tensors as "weight" and "bias"). Each
// format reports a missing or malformed field with its own context.
class LayerFieldReader {
 public:
  virtual ~LayerFieldReader() = default;
  virtual int integer(const char* key, int fallback) const = 0;
  virtual std::vector<float> floats(const char* key) const = 0;        // a number reads as one value
  virtual Tensor tensor(const char* key, int ndim, bool required) const = 0;  // undefined when absent
};

class LayerFieldWriter {
 public:
  virtual ~LayerFieldWriter() = default;
  virtual void integer(const char* key, int value) = 0;
  virtual void floats(const char* key, const std::vector<float>& values) = 0;
  virtual void tensor(const char* key, const Tensor& value) = 0;
};

// Which of the trainer's penalties (--l1, --l2) cover a tensor: weights both,
// biases the L1 one under --l1-bias, everything else (BatchNorm's gamma and
// beta, constants) neither.
enum class Penalty { none, weight, bias };

struct LayerTensor {
  const char* name;  // "weight", "bias", "statistics (mean)", ...
  Tensor* tensor;
  bool parameter;
  bool state = false;  // changed by training though not a parameter (BatchNorm's running averages): checkpointed
  Penalty penalty = Penalty::none;
};

struct LayerRules {
  const char* name;  // as JSON, checkpoints, messages and `describe` spell it
  // The JSON keys this kind takes besides "type" (nullptr-terminated).
  const char* const* keys;
  // The output shape per sample for input `in` (no batch axis); throws
  // "[network] <label>: ..." when the layer's tensors do not fit `in`.
  Shape (*output_shape)(const Layer& layer, const Shape& in, const std::string& label);
  // Called once its in_shape and out_shape are set: fields derived from them (normalize: flat statistics).
  void (*finish)(Layer& layer, const std::string& label);
  Tensor (*forward)(const Layer& layer, const Tensor& x);  // x: (N, in_shape...) -> (N, out_shape...)
  std::string (*describe)(const Layer& layer);             // "conv(1->16, 4x4, s2, p1)"
  // The layer's tensors: parameters (trained, checkpointed as layers.i.<name>) and constants.
  std::vector<LayerTensor> (*tensors)(Layer& layer);
  void (*write)(const Layer& layer, LayerFieldWriter& out);
  Layer (*read)(const LayerFieldReader& in);
};

const LayerRules& layer_rules(LayerKind kind);
// The kind spelt `name`, or false.
bool layer_kind_from_name(const std::string& name, LayerKind* kind);
std::string layer_kind_names();  // "linear, conv, relu, flatten, normalize, batch_norm"

// The defined tensors of a layer (LayerRules::tensors without the undefined ones).
struct LayerTensorView {
  const char* name;
  const Tensor& tensor;
  bool parameter;
  bool state;
  Penalty penalty;
};
std::vector<LayerTensor> layer_tensors(Layer& layer);
std::vector<LayerTensorView> layer_tensors(const Layer& layer);

#define CTE_DECLARE_LAYER_RULES(kind) extern const LayerRules kLayerRules_##kind;
CTE_LAYER_KINDS(CTE_DECLARE_LAYER_RULES)
#undef CTE_DECLARE_LAYER_RULES

}  // namespace cte
