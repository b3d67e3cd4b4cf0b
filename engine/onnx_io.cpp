// ONNX import and export of networks (see onnx_io.h).
#include "engine/onnx_io.h"

#include <cmath>
#include <cstring>
#include <map>
// Debian ships the schema compiled with ONNX_ML (onnx-ml.pb.h); onnx_pb.h
// defines the ONNX_API export macro it needs.
#define ONNX_ML 1
#include <onnx/onnx_pb.h>
#include <vector>

#include "engine/file_io.h"
#include "engine/netjson.h"

namespace cte {
namespace {

// A constant of the graph (initialiser or Constant node) in double precision.
struct Constant {
  std::vector<int64_t> dims;
  std::vector<double> values;
};

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + ")";
}

class Importer {
 public:
  explicit Importer(std::string path) : path_(std::move(path)) {}

  Network run(const onnx::ModelProto& model) {
    const onnx::GraphProto& graph = model.graph();
    for (const onnx::TensorProto& t : graph.initializer()) consts_[t.name()] = read_tensor(t, "initialiser '" + t.name() + "'");
    for (const onnx::ValueInfoProto& input : graph.input()) {
      if (consts_.count(input.name())) continue;
      if (!data_.empty()) bad_graph("more than one data input ('" + data_ + "' and '" + input.name() + "')");
      data_ = input.name();
      const auto& dims = input.type().tensor_type().shape().dim();
      if (dims.size() < 2) bad_graph("input '" + data_ + "' must be (batch, features...), has " + std::to_string(dims.size()) + " dims");
      for (int i = 1; i < dims.size(); ++i) {
        if (!dims[i].has_dim_value() || dims[i].dim_value() < 1)
          bad_graph("input '" + data_ + "' dim " + std::to_string(i) + " has no fixed size");
        shape_.push_back(dims[i].dim_value());
      }
    }
    if (data_.empty()) bad_graph("no data input (every graph input is an initialiser)");
    // (C,H,W) stays as it is; every other per-sample shape is taken as flat.
    if (shape_.size() != 3) shape_ = {numel(shape_)};
    input_shape_ = shape_;
    for (const onnx::NodeProto& node : graph.node()) import_node(node);
    if (graph.output_size() != 1) bad_graph("expected one output, found " + std::to_string(graph.output_size()));
    if (graph.output(0).name() != data_)
      bad_graph("output '" + graph.output(0).name() + "' is not the end of the data path ('" + data_ + "')");
    try {
      return Network(Shape(input_shape_), layers_);
    } catch (const std::exception& e) {
      fail("onnx", path_ + ": " + e.what());
    }
  }

 private:
  std::string path_, data_;
  std::map<std::string, Constant> consts_;
  std::vector<int64_t> shape_, input_shape_;  // per sample, current and of the graph input
  std::vector<Layer> layers_;

  // The element count of a shape; a negative extent, or a count past 2^40 (no
  // network this project handles comes near it), is a malformed file rather
  // than an overflow (found by fuzz_onnx: dims whose product wraps int64).
  int64_t numel(const std::vector<int64_t>& dims) const {
    constexpr int64_t kMaxElements = int64_t(1) << 40;
    int64_t n = 1;
    for (int64_t d : dims) {
      if (d < 0 || (d > 0 && n > kMaxElements / d))
        bad_graph("shape " + dims_str(dims) + (d < 0 ? " has a negative extent" : " has more than 2^40 elements"));
      n *= d;
    }
    return n;
  }
  [[noreturn]] void bad_graph(const std::string& what) const { fail("onnx", path_ + ": " + what); }
  [[noreturn]] void bad(const onnx::NodeProto& node, const std::string& what) const {
    fail("onnx", path_ + ": node '" + node.name() + "' (" + node.op_type() + "): " + what);
  }

  Constant read_tensor(const onnx::TensorProto& t, const std::string& what) const {
    Constant c(Constant{{t.dims().begin(), t.dims().end()}, {}});
    const int64_t n = numel(c.dims);
    if (t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL) bad_graph(what + " uses external data");
    const std::string& raw = t.raw_data();
    auto from_raw = [&](auto sample) {
      using T = decltype(sample);
      if (int64_t(raw.size()) != n * int64_t(sizeof(T)))
        bad_graph(what + ": raw data has " + std::to_string(raw.size()) + " bytes for shape " + dims_str(c.dims));
      for (int64_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
        c.values.push_back(double(v));
      }
    };
    switch (t.data_type()) {
      case onnx::TensorProto_DataType_FLOAT:
        if (!raw.empty()) from_raw(float());
        else c.values.assign(t.float_data().begin(), t.float_data().end());
        break;
      case onnx::TensorProto_DataType_DOUBLE:
        if (!raw.empty()) from_raw(double());
        else c.values.assign(t.double_data().begin(), t.double_data().end());
        break;
      case onnx::TensorProto_DataType_INT64:
        if (!raw.empty()) from_raw(int64_t());
        else c.values.assign(t.int64_data().begin(), t.int64_data().end());
        break;
      default: bad_graph(what + ": data type " + std::to_string(t.data_type()) + " (only float, double, int64)");
    }
    if (int64_t(c.values.size()) != n)
      bad_graph(what + ": " + std::to_string(c.values.size()) + " values for shape " + dims_str(c.dims));
    for (double v : c.values)
      if (!std::isfinite(v)) bad_graph(what + ": non-finite value");
    return c;
  }

  const onnx::AttributeProto* attribute(const onnx::NodeProto& node, const std::string& name) const {
    for (const onnx::AttributeProto& a : node.attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  int64_t int_attribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) const {
    const onnx::AttributeProto* a = attribute(node, name);
    return a ? a->i() : fallback;
  }
  double float_attribute(const onnx::NodeProto& node, const std::string& name, double fallback) const {
    const onnx::AttributeProto* a = attribute(node, name);
    return a ? a->f() : fallback;
  }
  std::vector<int64_t> ints_attribute(const onnx::NodeProto& node, const std::string& name) const {
    const onnx::AttributeProto* a = attribute(node, name);
    return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
  }

  const Constant& constant(const onnx::NodeProto& node, int input) const {
    if (input >= node.input_size()) bad(node, "missing input " + std::to_string(input));
    auto it = consts_.find(node.input(input));
    if (it == consts_.end()) bad(node, "input '" + node.input(input) + "' must be a constant (initialiser or Constant)");
    return it->second;
  }
  // The constant broadcast (numpy rules, against (batch, shape_...)) to one value per feature.
  std::vector<double> per_feature(const onnx::NodeProto& node, const Constant& c) const {
    const int full_rank = int(shape_.size()) + 1;
    if (int(c.dims.size()) > full_rank) bad(node, "constant " + dims_str(c.dims) + " has more dims than the data");
    std::vector<int64_t> cd(full_rank - c.dims.size(), 1);
    cd.insert(cd.end(), c.dims.begin(), c.dims.end());
    if (cd[0] != 1) bad(node, "constant " + dims_str(c.dims) + " varies along the batch axis");
    for (int a = 1; a < full_rank; ++a)
      if (cd[a] != 1 && cd[a] != shape_[a - 1])
        bad(node, "constant " + dims_str(c.dims) + " does not broadcast to the data " + dims_str(shape_));
    std::vector<double> out(size_t(numel(shape_)));
    for (int64_t f = 0; f < int64_t(out.size()); ++f) {
      int64_t rest = f, index = 0, stride = 1;
      for (int a = full_rank - 1; a >= 1; --a) {
        const int64_t coord = rest % shape_[a - 1];
        rest /= shape_[a - 1];
        if (cd[a] != 1) index += coord * stride;
        stride *= cd[a];
      }
      out[size_t(f)] = c.values[size_t(index)];
    }
    return out;
  }
  // One value per channel (3-D data) or one in all (flat data), else an error.
  std::vector<double> per_channel(const onnx::NodeProto& node, const std::vector<double>& features) const {
    const int64_t channels = shape_.size() == 3 ? shape_[0] : 1;
    const int64_t block = int64_t(features.size()) / channels;
    std::vector<double> out;
    for (int64_t ch = 0; ch < channels; ++ch) {
      for (int64_t i = 0; i < block; ++i)
        if (features[size_t(ch * block + i)] != features[size_t(ch * block)])
          bad(node, "a per-feature constant here is not supported (only one value per channel)");
      out.push_back(features[size_t(ch * block)]);
    }
    return out;
  }

  // The layer the data path ends in, when it is linear or conv (constants fold into it).
  Layer* last_affine() {
    if (layers_.empty()) return nullptr;
    Layer& last = layers_.back();
    return last.kind == LayerKind::linear || last.kind == LayerKind::conv ? &last : nullptr;
  }
  bool before_any_affine() const {
    for (const Layer& l : layers_)
      if (l.kind != LayerKind::normalize && l.kind != LayerKind::flatten) return false;
    return true;
  }
  // out[o] := out[o] * scale[o] + shift[o] for the affine layer's every output unit.
  static void scale_shift_outputs(Layer& layer, const std::vector<double>& scale, const std::vector<double>& shift) {
    const int64_t outs = layer.weight.shape()[0], per_out = layer.weight.numel() / outs;
    std::vector<float> w = layer.weight.to_vector();
    std::vector<float> b = layer.bias.defined() ? layer.bias.to_vector() : std::vector<float>(size_t(outs), 0.0f);
    for (int64_t o = 0; o < outs; ++o) {
      for (int64_t i = 0; i < per_out; ++i) w[size_t(o * per_out + i)] = float(double(w[size_t(o * per_out + i)]) * scale[size_t(o)]);
      b[size_t(o)] = float(double(b[size_t(o)]) * scale[size_t(o)] + shift[size_t(o)]);
    }
    layer.weight = Tensor::from_vector(w, layer.weight.shape(), Device::cpu);
    layer.bias = Tensor::from_vector(b, Shape{outs}, Device::cpu);
  }

  std::string data_input(const onnx::NodeProto& node, int* which) const {
    for (int i = 0; i < node.input_size(); ++i)
      if (node.input(i) == data_) {
        *which = i;
        return data_;
      }
    bad(node, "reads none of the data path's tensor '" + data_ + "'");
  }

  void push(Layer layer) {
    layers_.push_back(std::move(layer));
    shape_ = layer_output_shape(layers_.back(), Shape(shape_), layers_.size() - 1).dims();
  }

  void import_node(const onnx::NodeProto& node) {
    const std::string& op = node.op_type();
    if (node.domain() != "" && node.domain() != "ai.onnx") bad(node, "domain '" + node.domain() + "' is not supported");
    if (op == "Constant") {
      const onnx::AttributeProto* value = attribute(node, "value");
      if (!value || !value->has_t()) bad(node, "only the 'value' tensor form is supported");
      consts_[node.output(0)] = read_tensor(value->t(), "node '" + node.name() + "' (Constant)");
      return;
    }
    int which = 0;
    data_input(node, &which);
    if (node.output_size() < 1) bad(node, "has no output");
    if (op == "Relu") {
      push(make_relu());
    } else if (op == "Flatten" || op == "Reshape") {
      if (op == "Flatten" && int_attribute(node, "axis", 1) != 1) bad(node, "only axis 1 is supported");
      if (op == "Reshape") {
        const Constant& target = constant(node, 1);
        const int64_t n = numel(shape_);
        const bool flat = target.values.size() == 2 && (target.values[1] == double(n) || target.values[1] == -1.0);
        if (!flat) bad(node, "only a reshape to (batch, " + std::to_string(n) + ") is supported, got " + dims_str(
                                 std::vector<int64_t>(target.values.begin(), target.values.end())));
      }
      if (shape_.size() != 1) push(make_flatten());
    } else if (op == "Gemm" || op == "MatMul") {
      if (which != 0) bad(node, "the data must be the first input");
      if (shape_.size() != 1) bad(node, "input " + dims_str(shape_) + " must be flat (batch, features)");
      if (int_attribute(node, "transA", 0) != 0) bad(node, "transA = 1 is not supported");
      const Constant& b = constant(node, 1);
      const bool trans_b = op == "Gemm" && int_attribute(node, "transB", 0) != 0;
      if (b.dims.size() != 2) bad(node, "weight " + dims_str(b.dims) + " must be 2-D");
      const int64_t in = trans_b ? b.dims[1] : b.dims[0], out = trans_b ? b.dims[0] : b.dims[1];
      if (in != shape_[0]) bad(node, "weight " + dims_str(b.dims) + " does not fit input " + dims_str(shape_));
      const double alpha = op == "Gemm" ? float_attribute(node, "alpha", 1.0) : 1.0;
      const double beta = op == "Gemm" ? float_attribute(node, "beta", 1.0) : 1.0;
      std::vector<float> w(size_t(in * out)), bias(size_t(out), 0.0f);
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i)
          w[size_t(o * in + i)] = float(alpha * b.values[size_t(trans_b ? o * in + i : i * out + o)]);
      if (op == "Gemm" && node.input_size() > 2 && !node.input(2).empty()) {
        const Constant& c = constant(node, 2);
        if (numel(c.dims) != 1 && numel(c.dims) != out) bad(node, "bias " + dims_str(c.dims) + " does not fit " + std::to_string(out) + " outputs");
        for (int64_t o = 0; o < out; ++o) bias[size_t(o)] = float(beta * c.values[size_t(numel(c.dims) == 1 ? 0 : o)]);
      }
      Layer layer;
      layer.kind = LayerKind::linear;
      layer.weight = Tensor::from_vector(w, Shape{out, in}, Device::cpu);
      layer.bias = Tensor::from_vector(bias, Shape{out}, Device::cpu);
      push(std::move(layer));
    } else if (op == "Conv") {
      if (which != 0) bad(node, "the data must be the first input");
      if (shape_.size() != 3) bad(node, "input " + dims_str(shape_) + " must be (batch, C, H, W)");
      const Constant& w = constant(node, 1);
      if (w.dims.size() != 4) bad(node, "weight " + dims_str(w.dims) + " must be (O, C, kh, kw)");
      if (int_attribute(node, "group", 1) != 1) bad(node, "only group 1 is supported");
      const onnx::AttributeProto* auto_pad = attribute(node, "auto_pad");
      if (auto_pad && auto_pad->s() != "NOTSET") bad(node, "auto_pad " + auto_pad->s() + " is not supported");
      for (int64_t d : ints_attribute(node, "dilations"))
        if (d != 1) bad(node, "dilation " + std::to_string(d) + " is not supported");
      const std::vector<int64_t> strides = ints_attribute(node, "strides"), pads = ints_attribute(node, "pads");
      for (int64_t s : strides)
        if (s != strides[0]) bad(node, "unequal strides " + dims_str(strides) + " are not supported");
      for (int64_t p : pads)
        if (p != pads[0]) bad(node, "unequal pads " + dims_str(pads) + " are not supported");
      Layer layer;
      layer.kind = LayerKind::conv;
      layer.stride = strides.empty() ? 1 : int(strides[0]);
      layer.padding = pads.empty() ? 0 : int(pads[0]);
      layer.weight = Tensor::from_vector(std::vector<float>(w.values.begin(), w.values.end()), Shape(w.dims), Device::cpu);
      std::vector<float> bias(size_t(w.dims[0]), 0.0f);
      if (node.input_size() > 2 && !node.input(2).empty()) {
        const Constant& c = constant(node, 2);
        if (numel(c.dims) != w.dims[0]) bad(node, "bias " + dims_str(c.dims) + " does not fit weight " + dims_str(w.dims));
        bias.assign(c.values.begin(), c.values.end());
      }
      layer.bias = Tensor::from_vector(bias, Shape{w.dims[0]}, Device::cpu);
      try {
        push(std::move(layer));
      } catch (const std::exception& e) {
        bad(node, e.what());
      }
    } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
      if (which != 0 && (op == "Sub" || op == "Div")) bad(node, "only data " + op + " constant is supported");
      const std::vector<double> v = per_feature(node, constant(node, 1 - which));
      const size_t n = v.size();
      std::vector<double> scale(n, 1.0), shift(n, 0.0);
      for (size_t f = 0; f < n; ++f) {
        if (op == "Add") shift[f] = v[f];
        if (op == "Sub") shift[f] = -v[f];
        if (op == "Mul") scale[f] = v[f];
        if (op == "Div") {
          if (v[f] == 0.0) bad(node, "division by zero");
          scale[f] = 1.0 / v[f];
        }
      }
      apply_scale_shift(node, scale, shift);
    } else if (op == "BatchNormalization") {
      if (node.output_size() > 1 && !node.output(1).empty()) bad(node, "the training form (running statistics outputs) is not supported");
      const double eps = float_attribute(node, "epsilon", 1e-5);
      const Constant &gamma = constant(node, 1), &beta = constant(node, 2), &mean = constant(node, 3), &var = constant(node, 4);
      const int64_t channels = shape_.size() == 3 ? shape_[0] : shape_[0];
      for (const Constant* c : {&gamma, &beta, &mean, &var})
        if (numel(c->dims) != channels) bad(node, "statistics " + dims_str(c->dims) + " do not fit " + std::to_string(channels) + " channels");
      const int64_t block = numel(shape_) / channels;
      std::vector<double> scale(size_t(numel(shape_))), shift(scale.size());
      for (int64_t ch = 0; ch < channels; ++ch) {
        if (!(var.values[size_t(ch)] + eps > 0.0)) bad(node, "variance + epsilon of channel " + std::to_string(ch) + " is not positive");
        const double s = gamma.values[size_t(ch)] / std::sqrt(var.values[size_t(ch)] + eps);
        for (int64_t i = 0; i < block; ++i) {
          scale[size_t(ch * block + i)] = s;
          shift[size_t(ch * block + i)] = beta.values[size_t(ch)] - mean.values[size_t(ch)] * s;
        }
      }
      apply_scale_shift(node, scale, shift);
    } else {
      bad(node, "operator not supported (supported: Gemm, MatMul, Add, Sub, Mul, Div, Conv, Relu, Flatten, "
                "Reshape, BatchNormalization, Constant)");
    }
    data_ = node.output(0);
  }

  // x := x * scale + shift per feature: folded into the preceding linear/conv
  // layer, or a normalize layer before any affine layer.
  void apply_scale_shift(const onnx::NodeProto& node, const std::vector<double>& scale, const std::vector<double>& shift) {
    if (Layer* affine = last_affine()) {
      if (affine->kind == LayerKind::conv) {
        const std::vector<double> s = per_channel(node, scale), t = per_channel(node, shift);
        scale_shift_outputs(*affine, s, t);
      } else {
        scale_shift_outputs(*affine, scale, shift);
      }
      return;
    }
    if (!before_any_affine()) bad(node, "a constant here must follow a linear, conv or input layer (it follows " +
                                            std::string(layer_kind_name(layers_.back().kind)) + ")");
    // y = x * s + t = (x - m) / d with m = -t / s, d = 1 / s.
    const std::vector<double> s = per_channel(node, scale), t = per_channel(node, shift);
    std::vector<float> mean, std;
    for (size_t c = 0; c < s.size(); ++c) {
      if (!(s[c] > 0.0)) bad(node, "a non-positive scale " + std::to_string(s[c]) + " cannot be an input normalisation");
      mean.push_back(float(-t[c] / s[c]));
      std.push_back(float(1.0 / s[c]));
    }
    // Sub then Div (what export writes) becomes one normalize layer again.
    if (!layers_.empty() && layers_.back().kind == LayerKind::normalize && layers_.back().mean_values.size() == s.size()) {
      Layer& last = layers_.back();
      bool plain_shift = true, plain_scale = true;
      for (size_t c = 0; c < s.size(); ++c) {
        plain_shift = plain_shift && last.std_values[c] == 1.0f;
        plain_scale = plain_scale && t[c] == 0.0;
      }
      if (plain_shift && plain_scale) {
        layers_.back() = make_normalize(last.mean_values, std);
        return;
      }
    }
    push(make_normalize(mean, std));
  }
};

// ---------------------------------------------------------------- export

void add_float_initialiser(onnx::GraphProto& graph, const std::string& name, const std::vector<int64_t>& dims,
                           const std::vector<float>& values) {
  onnx::TensorProto* t = graph.add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto_DataType_FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
}

onnx::NodeProto* add_node(onnx::GraphProto& graph, const std::string& op, const std::string& name,
                          const std::vector<std::string>& inputs, const std::string& output) {
  onnx::NodeProto* node = graph.add_node();
  node->set_op_type(op);
  node->set_name(name);
  for (const std::string& in : inputs) node->add_input(in);
  node->add_output(output);
  return node;
}

void add_int_attribute(onnx::NodeProto* node, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INT);
  a->set_i(value);
}

void add_ints_attribute(onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t v : values) a->add_ints(v);
}

void set_value_info(onnx::ValueInfoProto* info, const std::string& name, const std::vector<int64_t>& per_sample) {
  info->set_name(name);
  onnx::TypeProto_Tensor* type = info->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto_DataType_FLOAT);
  type->mutable_shape()->add_dim()->set_dim_param("batch");
  for (int64_t d : per_sample) type->mutable_shape()->add_dim()->set_dim_value(d);
}

}  // namespace

Network load_network_onnx(const std::string& path) {
  const std::string bytes = read_whole_file(path, "onnx");
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) fail("onnx", path + ": not an ONNX model (protobuf parse failed)");
  return Importer(path).run(model);
}

void save_network_onnx(const std::string& path, const Network& net) {
  onnx::ModelProto model;
  model.set_ir_version(7);
  model.set_producer_name("cte");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name("cte");
  std::string data = "input";
  set_value_info(graph.add_input(), data, net.input_shape().dims());
  const std::vector<Layer>& layers = net.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& layer = layers[i];
    const std::string prefix = "layers." + std::to_string(i);
    const std::string out = prefix + ".out";
    switch (layer.kind) {
      case LayerKind::linear:
      case LayerKind::conv: {
        add_float_initialiser(graph, prefix + ".weight", layer.weight.shape().dims(), layer.weight.to_vector());
        const std::vector<float> bias = layer.bias.defined() ? layer.bias.to_vector()
                                                             : std::vector<float>(size_t(layer.weight.shape()[0]), 0.0f);
        add_float_initialiser(graph, prefix + ".bias", {layer.weight.shape()[0]}, bias);
        const std::vector<std::string> inputs{data, prefix + ".weight", prefix + ".bias"};
        if (layer.kind == LayerKind::linear) {
          add_int_attribute(add_node(graph, "Gemm", prefix + ".gemm", inputs, out), "transB", 1);
        } else {
          onnx::NodeProto* node = add_node(graph, "Conv", prefix + ".conv", inputs, out);
          add_ints_attribute(node, "kernel_shape", {layer.weight.shape()[2], layer.weight.shape()[3]});
          add_ints_attribute(node, "strides", {layer.stride, layer.stride});
          add_ints_attribute(node, "pads", {layer.padding, layer.padding, layer.padding, layer.padding});
        }
        break;
      }
      case LayerKind::relu: add_node(graph, "Relu", prefix + ".relu", {data}, out); break;
      case LayerKind::flatten: add_int_attribute(add_node(graph, "Flatten", prefix + ".flatten", {data}, out), "axis", 1); break;
      case LayerKind::batch_norm: {
        // Evaluation mode (the running averages); the importer folds it into the layer before it.
        const std::vector<int64_t> dims{layer.weight.numel()};
        add_float_initialiser(graph, prefix + ".weight", dims, layer.weight.to_vector());
        add_float_initialiser(graph, prefix + ".bias", dims, layer.bias.to_vector());
        add_float_initialiser(graph, prefix + ".running_mean", dims, layer.running_mean.to_vector());
        add_float_initialiser(graph, prefix + ".running_var", dims, layer.running_var.to_vector());
        onnx::NodeProto* node = add_node(graph, "BatchNormalization", prefix + ".batch_norm",
                                         {data, prefix + ".weight", prefix + ".bias", prefix + ".running_mean",
                                          prefix + ".running_var"},
                                         out);
        onnx::AttributeProto* a = node->add_attribute();
        a->set_name("epsilon");
        a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
        a->set_f(layer.eps);
        break;
      }
      case LayerKind::normalize: {
        const int64_t channels = int64_t(layer.mean_values.size());
        const std::vector<int64_t> dims = layer.in_shape.ndim() == 3 ? std::vector<int64_t>{channels, 1, 1}
                                                                    : std::vector<int64_t>{channels};
        add_float_initialiser(graph, prefix + ".mean", dims, layer.mean_values);
        add_float_initialiser(graph, prefix + ".std", dims, layer.std_values);
        add_node(graph, "Sub", prefix + ".sub", {data, prefix + ".mean"}, prefix + ".centred");
        add_node(graph, "Div", prefix + ".div", {prefix + ".centred", prefix + ".std"}, out);
        break;
      }
    }
    data = out;
  }
  set_value_info(graph.add_output(), data, net.output_shape().dims());
  std::string bytes;
  if (!model.SerializeToString(&bytes)) fail("onnx", path + ": serialisation failed");
  write_file_atomically(path, bytes, "onnx");
}

Network load_network_file(const std::string& path) {
  const std::string ext = ".onnx";
  if (path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return load_network_onnx(path);
  return load_network_json(path);
}

}  // namespace cte
