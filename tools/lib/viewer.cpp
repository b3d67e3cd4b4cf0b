// The relaxation viewer's page (see viewer.h).
#include "tools/lib/viewer.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/netjson.h"
#include "engine/tape.h"
#include "tools/lib/curves.h"

namespace cte::tools {
namespace {

// Replaces the one occurrence of marker in page; throws if it is missing (a broken template).
void fill(std::string& page, const std::string& marker, const std::string& text) {
  const size_t at = page.find(marker);
  if (at == std::string::npos || page.find(marker, at + 1) != std::string::npos)
    throw std::logic_error("[viewer] the page template must hold " + marker + " exactly once");
  page.replace(at, marker.size(), text);
}

}  // namespace

std::string section_4_1_network_json(double w) {
  char bias[64];
  std::snprintf(bias, sizeof bias, "%.17g", w);
  return std::string("{\"input_shape\": [1], \"layers\": [") + "{\"type\": \"linear\", \"W\": [[1], [1]], \"b\": [" +
         bias + ", " + bias + "]}, {\"type\": \"relu\"}, " +
         "{\"type\": \"linear\", \"W\": [[0, 1], [-1, 1]], \"b\": [1, 0]}]}";
}

ToyCurves section_4_1_curves(const std::vector<Relaxation>& relaxations, const std::vector<double>& w) {
  NoGrad no_grad;
  ToyCurves curves;
  curves.w = w;
  curves.relaxations = relaxations;
  curves.lower.assign(relaxations.size(), std::vector<std::vector<double>>(2));
  // x0 in [-1, 1], as `certify bounds --x {"x": [[0]]} --eps 1 --no-clip` gives it.
  const Tensor lower0 = Tensor::from_vector({-1.0f}, Shape{1, 1}, Device::cpu);
  const Tensor upper0 = Tensor::from_vector({1.0f}, Shape{1, 1}, Device::cpu);
  // The slope-optimised relaxations (alpha-crown, triangle, parallelogram) take
  // all their steps: an early stop would depend on what else is in the batch,
  // and the page must match `certify bounds --alpha-patience 0` on any batch.
  BoundOptions options;
  options.alpha.patience = 0;
  for (double at : w) {
    const Network net = network_from_json(section_4_1_network_json(at), "section 4.1 network");
    for (size_t r = 0; r < relaxations.size(); ++r) {
      const std::vector<float> lower =
          compute_bounds(net, lower0, upper0, Tensor(), relaxations[r], options).lower.to_vector();
      for (size_t o = 0; o < 2; ++o) curves.lower[r][o].push_back(double(lower.at(o)));
    }
  }
  return curves;
}

std::string viewer_page(const ViewerAssets& assets, const ToyCurves& curves) {
  nlohmann::json data;
  data["network"] = nlohmann::json::parse(section_4_1_network_json(0.0));
  data["w"] = curves.w;
  data["relaxations"] = nlohmann::json::array();
  for (size_t r = 0; r < curves.relaxations.size(); ++r)
    data["relaxations"].push_back(
        {{"name", relaxation_name(curves.relaxations[r])}, {"lower", curves.lower[r]}});
  std::string page = assets.html;
  // Order matters: the script and style must not be searched for the later markers.
  fill(page, "@@CTE_DATA@@", data.dump());
  fill(page, "@@CTE_WASM@@", assets.wasm_base64);
  fill(page, "@@CTE_STYLE@@", assets.style);
  fill(page, "@@CTE_SCRIPT@@", assets.script);
  return page;
}

}  // namespace cte::tools
