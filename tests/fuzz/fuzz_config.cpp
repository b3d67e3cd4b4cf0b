// The trainer's --config JSON: parse, apply to the defaults (the same code
// merges a checkpoint's stored configuration) and validate.
#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/fuzz/fuzz_util.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nlohmann::json j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data), size));
    cte::train::TrainConfig config;
    cte::train::apply_config_json(j, config, "config.json");
    cte::train::validate_config(config);
    (void)cte::train::config_to_json(config);
  } catch (const std::exception&) {
  }
  return 0;
}
