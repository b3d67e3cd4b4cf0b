// certify viewer: writes the relaxation viewer's page (tools/lib/viewer.h) to DIR/index.html.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "relaxations/relaxations.h"
#include "tools/certify/commands.h"
#include "tools/lib/curves.h"
#include "tools/lib/viewer.h"

namespace cte::tools {

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
