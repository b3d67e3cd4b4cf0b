// `certify bounds` (see bounds.h): flag parsing with CLI11, reading the
// network and the inputs, input checks that name the flag or file at fault,
// compute_bounds without gradients, and the JSON answer on stdout.
#include "tools/certify/bounds.h"

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/file_io.h"
#include "engine/netjson.h"
#include "engine/onnx_io.h"
#include "engine/tape.h"
#include "relaxations/relaxations.h"
#include "tools/certify/commands.h"
#include "tools/lib/cli_flags.h"

namespace cte::tools {
namespace {

using nlohmann::json;

// An input error: printed as "<where>: <what>".
struct InputError : std::runtime_error {
  InputError(const std::string& where, const std::string& what) : std::runtime_error(where + ": " + what) {}
};

// Appends every number of a (possibly nested) list to `out`.
void flatten_numbers(const json& value, const std::string& path, const std::string& where, std::vector<float>& out) {
  if (value.is_number()) {
    const double v = value.get<double>();
    out.push_back(float(v));
    return;
  }
  if (!value.is_array()) throw InputError(path, where + " holds " + value.type_name() + ", expected numbers");
  for (const json& item : value) flatten_numbers(item, path, where, out);
}

}  // namespace

BoundsInputs bounds_inputs_from_json(const std::string& text, const std::string& path) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(path, std::string("not valid JSON: ") + e.what());
  }
  if (!doc.is_object() || !doc.contains("x"))
    throw InputError(path, "expected an object {\"x\": [[...], ...], \"y\": [...]}");
  const json& xs = doc["x"];
  if (!xs.is_array() || xs.empty()) throw InputError(path, "\"x\" must be a non-empty list of inputs");
  BoundsInputs inputs;
  for (size_t i = 0; i < xs.size(); ++i) {
    std::vector<float> row;
    flatten_numbers(xs[i], path, "x[" + std::to_string(i) + "]", row);
    inputs.x.push_back(std::move(row));
  }
  if (doc.contains("y")) {
    const json& ys = doc["y"];
    if (!ys.is_array()) throw InputError(path, "\"y\" must be a list of labels");
    for (size_t i = 0; i < ys.size(); ++i) {
      if (!ys[i].is_number_integer())
        throw InputError(path, "y[" + std::to_string(i) + "] = " + ys[i].dump() + " is not an integer label");
      inputs.y.push_back(ys[i].get<int>());
    }
    inputs.has_y = true;
  }
  return inputs;
}

namespace {

BoundsInputs read_inputs(const std::string& path) {
  return bounds_inputs_from_json(read_whole_file(path, "certify bounds"), path);
}

// The shortest decimal that reads back as the same value (a float prints as
// itself, not as the double it widens to); JSON has no NaN or infinity, so
// those print as null, and -0 prints as 0.
template <typename T>
std::string number_text(T v) {
  if (!std::isfinite(v)) return "null";
  if (v == T(0)) return "0";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return std::string(buffer, result.ptr);
}

std::string rows_json(const std::vector<float>& values, int64_t rows, int64_t cols) {
  std::string out = "[";
  for (int64_t r = 0; r < rows; ++r) {
    out += r ? ", [" : "[";
    for (int64_t c = 0; c < cols; ++c) {
      if (c) out += ", ";
      out += number_text(values[size_t(r * cols + c)]);
    }
    out += "]";
  }
  return out + "]";
}

std::string shape_text(const Shape& s) {
  std::string out;
  for (int d = 0; d < s.ndim(); ++d) out += (d ? "x" : "") + std::to_string(s[d]);
  return out;
}

}  // namespace

int certify_bounds_command(int argc, char** argv) {
  CLI::App app{"certify bounds: lower and upper bounds of a network's logits (or, with --spec label, of the "
               "margins z_y' - z_y) over the L-inf ball of radius eps around each input, by one convex relaxation"};
  std::string net_path, x_path, spec, device_arg = "auto";
  std::vector<std::string> relaxation_args;
  double eps = 0.0;
  int threads = 0;
  bool no_clip = false, no_elide = false, unsound_fast = false;
  int crown_tie = 0;
  AlphaCrownOptions alpha;
  size_t memory_cap_bytes = BoundOptions{}.memory_cap_bytes;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--net", net_path, "network JSON (engine/netjson.h format) or ONNX (.onnx, engine/onnx_io.h)")->required();
  app.add_option("--x", x_path,
                 "inputs JSON: {\"x\": [[values in C,H,W order, in [0, 1]], ...], \"y\": [labels]} "
                 "(\"y\" only needed with --spec label)")
      ->required();
  app.add_option("--eps", eps, "L-inf radius of the ball around each input (>= 0)")->required();
  // --relaxations as in every other command; --relaxation, the old name, still works.
  app.add_option("--relaxations,--relaxation", relaxation_args,
                 "one or more of " + relaxation_names_list() + " (comma-separated: one output line each)")
      ->delimiter(',')
      ->required();
  app.add_option("--spec", spec,
                 "label: bound the margins z_y' - z_y for every y' != y (increasing y') instead of the logits")
      ->check(CLI::IsMember({"label"}));
  app.add_flag("--no-clip", no_clip,
               "inputs may lie outside [0, 1] and the box [x - eps, x + eps] is not clipped to [0, 1] (networks "
               "that take other inputs, e.g. the ones certify sgd writes)");
  app.add_flag("--no-elide", no_elide,
               "bound the logits first and apply the spec afterwards, instead of folding it into the last layer");
  tools::add_crown_tie_flag(app, crown_tie, "default: 0; printed as \"crown_tie\" on every line");
  tools::add_alpha_crown_flags(app, alpha);
  tools::add_bound_memory_cap_flag(app, memory_cap_bytes);
  app.add_flag("--unsound-fast", unsound_fast,
               "the fast bounds of training instead of the sound ones (which hold for the real network and the "
               "float32 forward pass, every rounding accounted for: relaxations/sound.cpp)");
  app.add_option("--device", device_arg, "cpu, cuda or auto (CUDA when a GPU is present)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  tools::reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (!std::isfinite(eps) || eps < 0.0)
      throw InputError("--eps", "must be a finite number >= 0, got " + (std::isnan(eps) ? std::string("nan") : number_text(eps)));
    tools::warn_if_eps_covers_inputs("certify bounds", "--eps", eps);
    std::vector<Relaxation> relaxations;
    for (const std::string& name : relaxation_args) {
      try {
        relaxations.push_back(parse_relaxation(name));
      } catch (const std::exception& e) {
        throw InputError("--relaxations", e.what());
      }
    }
    try {
      set_thread_count(threads);
    } catch (const std::exception& e) {
      throw InputError("--threads", e.what());
    }
    Device device;
    try {
      device = parse_device(device_arg);
    } catch (const std::exception& e) {
      throw InputError("--device", e.what());
    }
    std::fprintf(stderr, "%s\n", device_banner(device).c_str());

    Network net;
    try {
      net = fold_batch_norm(load_network_file(net_path));  // BatchNorm into the layer before it
    } catch (const std::exception& e) {
      throw InputError(net_path, e.what());
    }
    const BoundsInputs inputs = read_inputs(x_path);
    const Shape input_shape = net.input_shape();
    const int64_t n0 = input_shape.numel(), batch = int64_t(inputs.x.size());
    std::vector<float> flat;
    flat.reserve(size_t(batch * n0));
    for (size_t i = 0; i < inputs.x.size(); ++i) {
      const std::vector<float>& row = inputs.x[i];
      if (int64_t(row.size()) != n0)
        throw InputError(x_path, "x[" + std::to_string(i) + "] has " + std::to_string(row.size()) +
                                     " values but the network takes " + std::to_string(n0) + " (" +
                                     shape_text(input_shape) + ")");
      for (size_t j = 0; j < row.size(); ++j)
        if (!std::isfinite(row[j]) || (!no_clip && !(row[j] >= 0.0f && row[j] <= 1.0f)))
          throw InputError(x_path, "x[" + std::to_string(i) + "][" + std::to_string(j) + "] = " +
                                       number_text(row[j]) +
                                       (std::isfinite(row[j]) ? " is outside [0, 1] (--no-clip accepts it)"
                                                              : " is not a finite number"));
      flat.insert(flat.end(), row.begin(), row.end());
    }
    const int64_t classes = net.output_shape().numel();
    Tensor spec_tensor;
    if (spec == "label") {
      if (!inputs.has_y) throw InputError("--spec label", x_path + " has no \"y\" labels");
      if (int64_t(inputs.y.size()) != batch)
        throw InputError(x_path, "\"y\" has " + std::to_string(inputs.y.size()) + " labels for " +
                                     std::to_string(batch) + " inputs");
      for (size_t i = 0; i < inputs.y.size(); ++i)
        if (inputs.y[i] < 0 || inputs.y[i] >= classes)
          throw InputError(x_path, "y[" + std::to_string(i) + "] = " + std::to_string(inputs.y[i]) +
                                       " is outside [0, " + std::to_string(classes) + ")");
      spec_tensor = margin_spec(inputs.y, int(classes), device);
    }

    net.to(device);
    std::vector<int64_t> dims{batch};
    for (int64_t d : input_shape.dims()) dims.push_back(d);
    const Tensor x = Tensor::from_vector(flat, Shape(dims), device);
    NoGrad no_grad;
    const auto [lower0, upper0] = input_box(x, float(eps), !no_clip, !unsound_fast);
    BoundOptions options;
    options.elide_last_layer = !no_elide;
    options.sound = !unsound_fast;
    options.crown_tie_slope = crown_tie;
    options.alpha = alpha;
    options.memory_cap_bytes = memory_cap_bytes;
    for (Relaxation relaxation : relaxations) {
      Bounds bounds;
      try {
        bounds = compute_bounds(net, lower0, upper0, spec_tensor, relaxation, options);
      } catch (const std::exception& e) {
        throw InputError(net_path, e.what());  // unsupported layers, NaN weights: the network's fault
      }
      const int64_t cols = bounds.lower.size(1);
      std::printf("{\"relaxation\": \"%s\", \"sound\": %s, \"crown_tie\": %d, \"lower\": %s, \"upper\": %s}\n",
                  relaxation_name(relaxation), options.sound ? "true" : "false", crown_tie,
                  rows_json(bounds.lower.to_vector(), batch, cols).c_str(),
                  rows_json(bounds.upper.to_vector(), batch, cols).c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

}  // namespace cte::tools
