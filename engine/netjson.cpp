// Reading and writing the network JSON format (see netjson.h) with nlohmann::json.
#include "engine/netjson.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

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

int int_field(const json& layer, const char* name, int fallback, const std::string& source, const std::string& where) {
  if (!layer.contains(name)) return fallback;
  if (!layer[name].is_number_integer()) bad(source, where, std::string("\"") + name + "\" must be an integer");
  return layer[name].get<int>();
}

}  // namespace

Network network_from_json(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    bad(source, "parse error", e.what());
  }
  if (!doc.is_object()) bad(source, "top level", "expected an object with input_shape and layers");
  if (!doc.contains("input_shape")) bad(source, "top level", "missing \"input_shape\"");
  if (!doc.contains("layers") || !doc["layers"].is_array()) bad(source, "top level", "missing \"layers\" array");
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
    Layer layer;
    if (type == "linear" || type == "conv") {
      layer.kind = type == "linear" ? LayerKind::linear : LayerKind::conv;
      if (!l.contains("W")) bad(source, where + " (" + type + ")", "missing \"W\"");
      layer.weight = tensor_from_json(l["W"], type == "linear" ? 2 : 4, source, where + " (" + type + ") W");
      if (l.contains("b")) layer.bias = tensor_from_json(l["b"], 1, source, where + " (" + type + ") b");
      else layer.bias = Tensor::zeros(Shape{layer.weight.shape()[0]}, Device::cpu);
      layer.stride = int_field(l, "stride", 1, source, where);
      layer.padding = int_field(l, "padding", 0, source, where);
    } else if (type == "relu") {
      layer.kind = LayerKind::relu;
    } else if (type == "flatten") {
      layer.kind = LayerKind::flatten;
    } else if (type == "normalize") {
      if (!l.contains("mean") || !l.contains("std")) bad(source, where + " (normalize)", "needs \"mean\" and \"std\"");
      const json mean = l["mean"].is_number() ? json::array({l["mean"]}) : l["mean"];
      const json std_ = l["std"].is_number() ? json::array({l["std"]}) : l["std"];
      layer = make_normalize(floats_from_json(mean, source, where + " mean"),
                             floats_from_json(std_, source, where + " std"));
    } else {
      bad(source, where, "unknown layer type \"" + type + "\" (expected linear, conv, relu, flatten, normalize)");
    }
    layers.push_back(std::move(layer));
  }
  try {
    return Network(Shape(input_dims), std::move(layers));
  } catch (const std::exception& e) {
    bad(source, "shapes", e.what());
  }
}

Network load_network_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("network json", path + ": cannot open (missing or unreadable)");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return network_from_json(text, path);
}

std::string network_to_json(const Network& net) {
  json doc;
  doc["input_shape"] = net.input_shape().dims();
  doc["layers"] = json::array();
  for (const Layer& layer : net.layers()) {
    json l;
    l["type"] = layer_kind_name(layer.kind);
    switch (layer.kind) {
      case LayerKind::conv:
        l["stride"] = layer.stride;
        l["padding"] = layer.padding;
        [[fallthrough]];
      case LayerKind::linear:
        l["W"] = tensor_to_json(layer.weight);
        l["b"] = tensor_to_json(layer.bias);
        break;
      case LayerKind::normalize:
        l["mean"] = layer.mean_values;
        l["std"] = layer.std_values;
        break;
      default: break;
    }
    doc["layers"].push_back(l);
  }
  return doc.dump();
}

void save_network_json(const std::string& path, const Network& net) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) fail("network json", tmp + ": cannot create");
    out << network_to_json(net) << "\n";
    if (!out.flush()) fail("network json", tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("network json", "cannot rename " + tmp + " to " + path);
}

}  // namespace cte
