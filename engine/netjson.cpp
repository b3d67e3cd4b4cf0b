// Reading and writing the network JSON format (see netjson.h) with nlohmann::json.
#include "engine/netjson.h"

#include "engine/file_io.h"
#include "engine/layers/layer_rules.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

namespace cte {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& source, const std::string& where, const std::string& what) {
  fail("network json", source + ": " + where + ": " + what);
}

// Flattens a nested numeric array, recording its extents (must be rectangular).
void flatten_array(const json& value, std::vector<int64_t>& dims, size_t depth, std::vector<float>& out,
                   const std::string& source, const std::string& where) {
  if (value.is_number()) {
    if (depth != dims.size()) bad(source, where, "ragged array (a number where a list was expected)");
    const double v = value.get<double>();
    if (!std::isfinite(v)) bad(source, where, "non-finite value");
    out.push_back(float(v));
    return;
  }
  if (!value.is_array()) bad(source, where, "expected numbers or nested lists of numbers, got " + std::string(value.type_name()));
  if (depth == dims.size()) {
    if (!out.empty()) bad(source, where, "ragged array (a list where a number was expected)");
    dims.push_back(int64_t(value.size()));
  } else if (dims[depth] != int64_t(value.size())) {
    bad(source, where, "ragged array: rows of length " + std::to_string(dims[depth]) + " and " +
                           std::to_string(value.size()));
  }
  for (const json& item : value) flatten_array(item, dims, depth + 1, out, source, where);
  if (value.empty() && depth + 1 > dims.size()) dims.push_back(0);
}

Tensor tensor_from_json(const json& value, size_t rank, const std::string& source, const std::string& where) {
  std::vector<int64_t> dims;
  std::vector<float> values;
  flatten_array(value, dims, 0, values, source, where);
  if (dims.size() != rank)
    bad(source, where, "expected a " + std::to_string(rank) + "-D array, got " + std::to_string(dims.size()) + "-D");
  return Tensor::from_vector(values, Shape(dims), Device::cpu);
}

std::vector<float> floats_from_json(const json& value, const std::string& source, const std::string& where) {
  return tensor_from_json(value, 1, source, where).to_vector();
}

json tensor_to_json(const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  const Shape s = t.shape();
  std::function<json(int, size_t&)> build = [&](int axis, size_t& at) -> json {
    json arr = json::array();
    for (int64_t i = 0; i < s[axis]; ++i) {
      if (axis == s.ndim() - 1) arr.push_back(v[at++]);
      else arr.push_back(build(axis + 1, at));
    }
    return arr;
  };
  size_t at = 0;
  return build(0, at);
}

// json::parse keeps the last of two equal keys, so a repeated "type" would
// silently turn one layer into another. This parser callback sees every key
// as it is read and rejects a repeat within one object, naming the layer.
class DuplicateKeyCheck {
 public:
  explicit DuplicateKeyCheck(const std::string& source) : source_(source) {}
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        Frame frame;
        frame.is_object = event == json::parse_event_t::object_start;
        if (!frames_.empty()) {
          Frame& parent = frames_.back();
          frame.name = parent.is_object ? parent.pending_key : "";
          frame.layer = parent.name == "layers" && frames_.size() == 2 && !parent.is_object ? parent.children : -1;
          if (!parent.is_object) ++parent.children;
        }
        frames_.push_back(std::move(frame));
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case json::parse_event_t::key: {
        if (frames_.empty()) break;  // (keys only occur inside objects)
        Frame& frame = frames_.back();
        frame.pending_key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.pending_key).second) {
          std::string where = "top level";
          for (const Frame& f : frames_)
            if (f.layer >= 0) where = "layer " + std::to_string(f.layer) + (f.type.empty() ? "" : " (" + f.type + ")");
          bad(source_, where, "duplicate key \"" + frame.pending_key + "\"");
        }
        break;
      }
      case json::parse_event_t::value: {
        if (frames_.empty()) break;  // a document that is a bare number or string (found by fuzzing)
        Frame& frame = frames_.back();
        if (!frame.is_object) ++frame.children;
        else if (frame.layer >= 0 && frame.pending_key == "type" && parsed.is_string()) frame.type = parsed.get<std::string>();
        break;
      }
    }
    return true;
  }

 private:
  struct Frame {
    bool is_object = false;
    std::string name;         // the key this object or array sits under in its parent object
    int layer = -1;           // index in "layers" when this is a layer object
    std::string type;         // a layer's "type", once read
    std::string pending_key;  // the key whose value comes next
    std::set<std::string> keys;
    int children = 0;         // arrays: elements so far
  };
  const std::string& source_;
  std::vector<Frame> frames_;
};

// Rejects keys a layer (or the top level) does not know: a misspelt "strides"
// would otherwise silently leave the stride at 1.
void check_keys(const json& object, const std::vector<const char*>& allowed, const std::string& source,
                const std::string& where) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool known = false;
    std::string list;
    for (const char* name : allowed) {
      known = known || it.key() == name;
      list += std::string(list.empty() ? "" : ", ") + name;
    }
    if (!known) bad(source, where, "unknown key \"" + it.key() + "\" (expected " + list + ")");
  }
}

int int_field(const json& layer, const char* name, int fallback, const std::string& source, const std::string& where) {
  if (!layer.contains(name)) return fallback;
  if (!layer[name].is_number_integer()) bad(source, where, std::string("\"") + name + "\" must be an integer");
  return layer[name].get<int>();
}

// A layer's fields as this format spells them: tensors "W" and "b", a missing
// bias read as zeros; every problem reported with the file and the layer.
class JsonFieldReader : public LayerFieldReader {
 public:
  JsonFieldReader(const json& layer, const std::string& source, const std::string& where)
      : layer_(layer), source_(source), where_(where) {}
  int integer(const char* key, int fallback) const override { return int_field(layer_, key, fallback, source_, where_); }
  std::vector<float> floats(const char* key) const override {
    if (!layer_.contains(key)) bad(source_, where_, std::string("missing \"") + key + "\"");
    const json values = layer_[key].is_number() ? json::array({layer_[key]}) : layer_[key];
    return floats_from_json(values, source_, where_ + " " + key);
  }
  Tensor tensor(const char* key, int ndim, bool required) const override {
    const std::string name = json_name(key);
    if (!layer_.contains(name)) {
      if (required) bad(source_, where_, "missing \"" + name + "\"");
      return Tensor();
    }
    return tensor_from_json(layer_[name], ndim, source_, where_ + " " + name);
  }
  static std::string json_name(const char* key) {
    const std::string k = key;
    return k == "weight" ? "W" : k == "bias" ? "b" : k;
  }

 private:
  const json& layer_;
  const std::string& source_;
  std::string where_;
};

class JsonFieldWriter : public LayerFieldWriter {
 public:
  explicit JsonFieldWriter(json& layer) : layer_(layer) {}
  void integer(const char* key, int value) override { layer_[key] = value; }
  void floats(const char* key, const std::vector<float>& values) override { layer_[key] = values; }
  void tensor(const char* key, const Tensor& value) override {
    layer_[JsonFieldReader::json_name(key)] = tensor_to_json(value);
  }

 private:
  json& layer_;
};

}  // namespace

Network network_from_json(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text, DuplicateKeyCheck(source));
  } catch (const json::parse_error& e) {
    bad(source, "parse error", e.what());
  }
  if (!doc.is_object()) bad(source, "top level", "expected an object with input_shape and layers");
  if (!doc.contains("input_shape")) bad(source, "top level", "missing \"input_shape\"");
  if (!doc.contains("layers") || !doc["layers"].is_array()) bad(source, "top level", "missing \"layers\" array");
  check_keys(doc, {"input_shape", "layers"}, source, "top level");
  if (!doc["input_shape"].is_array()) bad(source, "input_shape", "must be a list, [C,H,W] or [N]");
  std::vector<int64_t> input_dims;
  for (const json& d : doc["input_shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0) bad(source, "input_shape", "extents must be positive integers");
    input_dims.push_back(d.get<int64_t>());
  }
  if (input_dims.size() != 1 && input_dims.size() != 3) bad(source, "input_shape", "must be [C,H,W] or [N]");

  std::vector<Layer> layers;
  for (size_t i = 0; i < doc["layers"].size(); ++i) {
    const json& l = doc["layers"][i];
    const std::string where = "layer " + std::to_string(i);
    if (!l.is_object() || !l.contains("type") || !l["type"].is_string())
      bad(source, where, "each layer needs a \"type\" string");
    const std::string type = l["type"];
    const std::string where_type = where + " (" + type + ")";
    LayerKind kind;
    if (!layer_kind_from_name(type, &kind))
      bad(source, where, "unknown layer type \"" + type + "\" (expected " + layer_kind_names() + ")");
    const LayerRules& rules = layer_rules(kind);
    std::vector<const char*> keys{"type"};
    for (const char* const* key = rules.keys; *key; ++key) keys.push_back(*key);
    check_keys(l, keys, source, where_type);
    Layer layer = rules.read(JsonFieldReader(l, source, where_type));
    if (layer.weight.defined() && !layer.bias.defined()) layer.bias = Tensor::zeros(Shape{layer.weight.shape()[0]}, Device::cpu);
    layers.push_back(std::move(layer));
  }
  try {
    return Network(Shape(input_dims), std::move(layers));
  } catch (const std::exception& e) {
    bad(source, "shapes", e.what());
  }
}

Network load_network_json(const std::string& path) {
  return network_from_json(read_whole_file(path, "network json"), path);
}

std::string network_to_json(const Network& net) {
  json doc;
  doc["input_shape"] = net.input_shape().dims();
  doc["layers"] = json::array();
  for (const Layer& layer : net.layers()) {
    json l;
    l["type"] = layer_kind_name(layer.kind);
    JsonFieldWriter writer(l);
    layer_rules(layer.kind).write(layer, writer);
    doc["layers"].push_back(l);
  }
  return doc.dump();
}

void save_network_json(const std::string& path, const Network& net) {
  write_file_atomically(path, network_to_json(net) + "\n", "network json");
}

}  // namespace cte
