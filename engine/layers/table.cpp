// The layer table (layer_rules.h): one row per CTE_LAYER_KINDS entry, each
// defined in engine/layers/<kind>.cpp.
#include <array>

#include "engine/layers/layer_rules.h"

namespace cte {
namespace {

// Row i is the kind whose LayerKind value is i, in whatever order the list names them.
const std::array<const LayerRules*, kLayerKindCount> kTable = [] {
  std::array<const LayerRules*, kLayerKindCount> table{};
#define CTE_LAYER_RULES_ROW(kind) table[size_t(LayerKind::kind)] = &kLayerRules_##kind;
  CTE_LAYER_KINDS(CTE_LAYER_RULES_ROW)
#undef CTE_LAYER_RULES_ROW
  return table;
}();

}  // namespace

const LayerRules& layer_rules(LayerKind kind) {
  const size_t index = size_t(kind);
  if (index >= kTable.size()) fail("network", "layer kind " + std::to_string(index) + " is not in the layer table");
  return *kTable[index];
}

const char* layer_kind_name(LayerKind kind) { return layer_rules(kind).name; }

bool layer_kind_from_name(const std::string& name, LayerKind* kind) {
  for (size_t i = 0; i < kTable.size(); ++i)
    if (name == kTable[i]->name) {
      *kind = LayerKind(i);
      return true;
    }
  return false;
}

std::string layer_kind_names() {
  std::string list;
  for (const LayerRules* rules : kTable) list += std::string(list.empty() ? "" : ", ") + rules->name;
  return list;
}

std::vector<LayerTensor> layer_tensors(Layer& layer) {
  std::vector<LayerTensor> out;
  for (const LayerTensor& t : layer_rules(layer.kind).tensors(layer))
    if (t.tensor->defined()) out.push_back(t);
  return out;
}

std::vector<LayerTensorView> layer_tensors(const Layer& layer) {
  std::vector<LayerTensorView> out;
  // (the rule hands out pointers for the writers, Network::to; this view only reads them)
  for (const LayerTensor& t : layer_tensors(const_cast<Layer&>(layer))) out.push_back({t.name, *t.tensor, t.parameter, t.state, t.penalty});
  return out;
}

}  // namespace cte
