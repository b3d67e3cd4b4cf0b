// ONNX import (engine/onnx_io.h) from a file: a network it accepts must run a
// forward pass on a zero input, export, and import again to a network that
// computes the same logits (a mismatch aborts: the round trip is part of
// what the harness checks, not only the absence of crashes).
#include <cmath>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "engine/onnx_io.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cte::fuzz::write_scratch("in.onnx", data, size);
  cte::Network net;
  try {
    net = cte::load_network_onnx(path);
  } catch (const std::exception&) {
    return 0;
  }
  // Keep the forward pass cheap: skip networks too large to matter here.
  if (net.input_shape().numel() > (1 << 16) || net.num_parameters() > (1 << 20)) return 0;
  std::vector<int64_t> dims{1};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  const cte::Tensor zero = cte::Tensor::zeros(cte::Shape(dims), cte::Device::cpu);
  std::vector<float> logits;
  try {
    logits = net.forward(zero).to_vector();
  } catch (const std::exception&) {
    return 0;  // shape errors the importer did not catch are reported as messages too
  }
  const std::string out = (cte::fuzz::scratch_dir() / "out.onnx").string();
  cte::save_network_onnx(out, net);
  const std::vector<float> again = cte::load_network_onnx(out).forward(zero).to_vector();
  if (again.size() != logits.size()) std::abort();
  for (size_t i = 0; i < logits.size(); ++i)
    if (!(again[i] == logits[i]) && !(std::isnan(again[i]) && std::isnan(logits[i]))) std::abort();
  return 0;
}
