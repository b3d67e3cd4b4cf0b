// The relaxation viewer's page (see viewer.h).
#include "tools/lib/viewer.h"

#include <CLI/CLI.hpp>

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

int certify_viewer_command(int argc, char** argv, const ViewerAssets& assets) {
  CLI::App app{"certify viewer: a self-contained HTML page (open it from disk) with sliders for one ReLU's l and u "
               "and every relaxation's region, the paper's section 4.1 network's bounds over w (figure 3), and a "
               "file picker for the CSVs of certify curve, landscape and sgd"};
  std::string out_dir = "viewer";
  int points = 601;
  std::vector<std::string> relaxation_names;  // default: every relaxation of the table
  for (const RelaxationInfo& row : kRelaxationTable) relaxation_names.push_back(row.name);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--out", out_dir, "folder for index.html")->capture_default_str();
  app.add_option("--points", points, "values of w evenly spaced over [-1, 2] for the section 4.1 curves")
      ->capture_default_str();
  app.add_option("--relaxations", relaxation_names, "relaxations of the section 4.1 curves")
      ->delimiter(',')
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (points < 2) throw std::invalid_argument("[certify] --points " + std::to_string(points) + " must be at least 2");
  if (relaxation_names.empty()) throw std::invalid_argument("[certify] --relaxations is empty");
  std::vector<Relaxation> relaxations;
  for (const std::string& name : relaxation_names) relaxations.push_back(parse_relaxation(name));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw std::runtime_error("[certify] --out " + out_dir + ": " + ec.message());
  const ToyCurves curves = section_4_1_curves(relaxations, linspace(-1.0, 2.0, points));
  const std::string path = (std::filesystem::path(out_dir) / "index.html").string();
  write_text_file(path, viewer_page(assets, curves));
  std::cout << "[viewer] wrote " << path << " (" << points << " values of w, " << relaxations.size()
            << " relaxations); open it in a browser: file://" << std::filesystem::absolute(path).string() << "\n";
  return 0;
}

}  // namespace cte::tools
