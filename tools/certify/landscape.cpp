// certify landscape --checkpoint runs/x/checkpoint.ckpt [--index I] [--eps E] [--neuron J]
//                   [--delta-max D] [--points P] [--relaxations ...] [--direction logit|R] [--out DIR]
//     the lower bound of output J on test image I under each relaxation as
//     the first layer's weights move by delta along a unit gradient
//     direction: continuity and sensitivity (the paper's figure 4). Writes
//     landscape.csv, landscape.gp, landscape.png.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "relaxations/relaxations.h"
#include "tools/certify/commands.h"
#include "tools/certify/figures.h"
#include "tools/lib/cli_flags.h"
#include "tools/lib/curves.h"
#include "tools/lib/landscape.h"
#include "train/config.h"

namespace cte::tools {

using nlohmann::json;
using namespace cte::train;

int certify_landscape_command(int argc, char** argv) {
  CLI::App app{"certify landscape: the lower bound of one output under each relaxation, for one test image, as "
               "the first layer's weights move by delta along a unit-norm gradient direction (the paper's figure "
               "4: jumps show discontinuity, curvature sensitivity)"};
  FigureFlags f;
  std::string direction_name = "logit";
  int64_t index = 0, neuron = -1;
  double eps = -1.0, delta_max = 1.0;
  int points = 201;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_figure_flags(app, f, "landscape.csv, landscape.gp, landscape.png", "one line each");
  app.add_option("--index", index, "test image index")->capture_default_str();
  app.add_option("--eps", eps, "L-inf radius (default: the run's --eps-test)");
  app.add_option("--neuron", neuron, "output neuron whose lower bound is followed (default: the image's label)");
  app.add_option("--delta-max", delta_max, "delta runs over [-delta-max, delta-max] (the direction has unit norm)")
      ->capture_default_str();
  app.add_option("--points", points, "number of deltas")->capture_default_str();
  app.add_option("--direction", direction_name,
                 "logit: the gradient of the clean logit z_j(x); or a relaxation: the gradient of its lower bound")
      ->capture_default_str();
  tools::reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  check_grid("--delta-max", delta_max, points);
  std::optional<Relaxation> direction_relaxation;
  if (direction_name != "logit") {
    try {
      direction_relaxation = parse_relaxation(direction_name);
    } catch (const std::exception&) {
      throw std::invalid_argument("[certify] --direction '" + direction_name + "' is neither logit nor a relaxation");
    }
  }
  auto [run, device, relaxations] = start_figure(f);
  const Dataset& test = run.data.test;
  if (index < 0 || index >= int64_t(test.size()))
    throw std::invalid_argument("[certify] --index " + std::to_string(index) + " is outside the " +
                                std::to_string(test.size()) + " test images");
  if (eps < 0) eps = run.trained.eps_test;
  if (!std::isfinite(eps)) throw std::invalid_argument("[certify] --eps must be a finite number >= 0");
  tools::warn_if_eps_covers_inputs("certify", "--eps", eps);
  const int label = test.labels[size_t(index)];
  if (neuron < 0) neuron = label;

  const size_t numel = test.image_numel();
  std::vector<float> pixels(numel);
  for (size_t i = 0; i < numel; ++i)
    pixels[i] = test.has_features() ? test.features[size_t(index) * numel + i]  // a --pca run's coordinates
                                    : float(test.images[size_t(index) * numel + i]) / 255.0f;
  std::vector<int64_t> dims{1};
  for (int64_t d : run.net.input_shape().dims()) dims.push_back(d);
  const Tensor x = Tensor::from_vector(pixels, Shape(dims), device);
  const auto [lower0, upper0] = input_box(x, float(eps), !test.has_features());

  const tools::ParameterDirection direction =
      tools::gradient_direction(run.net, x, lower0, upper0, neuron, direction_relaxation);
  const std::vector<double> deltas = tools::linspace(-delta_max, delta_max, points);
  const std::vector<std::vector<double>> lower =
      tools::bound_landscape(run.net, lower0, upper0, neuron, relaxations, deltas, direction);

  std::vector<std::string> names;
  for (Relaxation r : relaxations) names.push_back(relaxation_name(r));
  const std::filesystem::path dir(f.out_dir);
  const std::string csv = (dir / "landscape.csv").string(), png = (dir / "landscape.png").string();
  tools::write_columns_csv(csv, "delta", deltas, names, lower);
  // Each relaxation's bound minus its own value at delta 0: the bounds differ
  // by orders of magnitude, and on one shared axis every line looked flat.
  const std::vector<std::vector<double>> at_zero =
      tools::bound_landscape(run.net, lower0, upper0, neuron, relaxations, {0.0}, direction);
  tools::PlotLabels labels;
  labels.title =
      "Bound landscape: lower bound of output " + std::to_string(neuron) + " on test image " + std::to_string(index) +
          " (label " + std::to_string(label) + "), eps " + format_number(eps) + ", " + run.trained.method +
          "-trained\nfirst-layer weights + delta * unit gradient of " +
          (direction_relaxation ? std::string("the ") + relaxation_name(*direction_relaxation) + " lower bound"
                                : "the logit z_" + std::to_string(neuron)) +
          "; network: " + run.net.describe();
  labels.xlabel = "delta (step along the unit direction)";
  labels.ylabel = "lower bound minus its value at delta = 0";
  for (size_t r = 0; r < relaxations.size(); ++r) {
    labels.y_offsets.push_back(at_zero[r][0]);
    labels.legend.push_back(names[r] + " (" + format_number(at_zero[r][0]) + " at delta 0)");
  }
  labels.x_min = -delta_max;
  labels.x_max = delta_max;
  const std::string script = tools::write_lines_gnuplot(csv, png, names, labels);

  std::cout << "[landscape] " << f.checkpoint << ": output " << neuron << " on test image " << index << " of "
            << run.dataset << ", eps " << format_number(eps) << ", " << points << " deltas in ["
            << format_number(-delta_max) << ", " << format_number(delta_max) << "]\n";
  std::cout << "relaxation    at delta=0        min        max   largest step / median step\n";
  const size_t middle = size_t(points / 2);
  for (size_t r = 0; r < relaxations.size(); ++r) {
    const auto [lo, hi] = std::minmax_element(lower[r].begin(), lower[r].end());
    char line[128];
    std::snprintf(line, sizeof line, "%-12s %11.5g %10.5g %10.5g   %10.3g\n", names[r].c_str(),
                  points % 2 ? lower[r][middle] : NAN, *lo, *hi, tools::largest_step_ratio(lower[r]));
    std::cout << line;
  }
  finish_figure("landscape", {csv, script}, script, png, f.no_plot);
  return 0;
}

}  // namespace cte::tools
