// Network JSON parser (engine/netjson.h), in memory; a network it accepts
// must also run a forward pass on a zero input and serialise back.
#include <exception>
#include <string>

#include "engine/netjson.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cte::Network net;
  try {
    net = cte::network_from_json(text, "fuzz.json");
  } catch (const std::exception&) {
    return 0;
  }
  // Keep the forward pass cheap: skip networks too large to matter here.
  if (net.input_shape().numel() > (1 << 16) || net.num_parameters() > (1 << 20)) return 0;
  std::vector<int64_t> dims{1};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  try {
    (void)net.forward(cte::Tensor::zeros(cte::Shape(dims), cte::Device::cpu));
  } catch (const std::exception&) {
    // shape errors the constructor did not catch are reported as messages too
  }
  (void)cte::network_to_json(net);
  return 0;
}
