// certify toy-jumps: the paper's figure 3 (see toy_jumps.h).
#include "tools/certify/toy_jumps.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/tape.h"
#include "relaxations/relaxations.h"
#include "tools/certify/commands.h"
#include "tools/lib/cli_flags.h"
#include "tools/lib/curves.h"

namespace cte::tools {
namespace {

Layer toy_linear(const std::vector<float>& weight, const std::vector<float>& bias, int64_t in) {
  Layer layer;
  layer.kind = LayerKind::linear;
  const int64_t out = int64_t(bias.size());
  layer.weight = Tensor::from_vector(weight, Shape{out, in}, Device::cpu);
  layer.bias = Tensor::from_vector(bias, Shape{out}, Device::cpu);
  return layer;
}

// Neighbouring samples between which `y` moves further than a continuous
// piece of slope at most 1 can, plus 0.5 (the paper's jumps are 1 and 2).
void find_jumps(const std::string& series, const std::vector<double>& w, const std::vector<double>& y,
                std::vector<ToyJump>& out) {
  for (size_t i = 0; i + 1 < w.size(); ++i)
    if (std::fabs(y[i + 1] - y[i]) > (w[i + 1] - w[i]) + 0.5) out.push_back({series, w[i], w[i + 1], y[i], y[i + 1]});
}

std::string number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

// The gnuplot script: each series drawn piece by piece (no line across a
// jump), with both samples of every jump marked; PNG, then SVG of the same plot.
std::string toy_jumps_gnuplot(const ToyJumps& t, const std::vector<std::string>& names,
                              const std::vector<std::string>& legends) {
  const std::string csv = gnuplot_quoted("toy_jumps.csv");
  std::string plot = "plot ";
  bool first = true;
  for (size_t s = 0; s < names.size(); ++s) {
    const std::string column = std::to_string(s + 2);
    std::vector<size_t> cuts;  // row indices after which a jump of this series lies
    for (const ToyJump& j : t.jumps)
      if (j.series == names[s])
        cuts.push_back(size_t(std::find(t.w.begin(), t.w.end(), j.from_w) - t.w.begin()));
    size_t start = 0;
    cuts.push_back(t.w.size() - 1);
    for (size_t piece = 0; piece < cuts.size(); ++piece) {
      plot += std::string(first ? "" : ", \\\n     ") + csv + " skip 1 every ::" + std::to_string(start) +
              "::" + std::to_string(cuts[piece]) + " using 1:" + column + " with lines " +
              gnuplot_line_style(s, false, false) + " linewidth 2.5 " +
              (piece == 0 ? "title " + gnuplot_quoted(legends[s]) : std::string("notitle"));
      first = false;
      if (piece + 1 < cuts.size())  // the two samples either side of the jump
        plot += ", \\\n     " + csv + " skip 1 every ::" + std::to_string(cuts[piece]) + "::" +
                std::to_string(cuts[piece] + 1) + " using 1:" + column + " with points " +
                gnuplot_line_style(s, false, true) + " pointsize 1.2 notitle";
      start = cuts[piece] + 1;
    }
  }
  const std::string title = "Figure 3 (section 4.1): CROWN jumps at w = 0, hBox at w = 1\nx0 in [-1, 1], x11 = x12 = x0 + w, "
                            "x2 = relu(x1), x31 = x22 + 1, x32 = x22 - x21; CROWN tie slope " +
                            std::to_string(t.crown_tie_slope);
  return "# re-plot from this folder: gnuplot toy_jumps.gp\n"
         "set terminal pngcairo size 1000,680 font ',11'\n"
         "set output 'toy_jumps.png'\n"
         "set datafile separator ','\n" +
         gnuplot_title(title) +
         "set xlabel 'w' noenhanced\nset ylabel 'lower bound' noenhanced\n"
         "set xrange [-1:2]\nset yrange [-2.25:1.25]\nset key below horizontal noenhanced\nset grid\n" +
         plot +
         "\nset terminal svg size 1000,680 font ',11'\nset output 'toy_jumps.svg'\nreplot\n";
}

}  // namespace

Network section_4_1_network(float w) {
  Layer relu;
  relu.kind = LayerKind::relu;
  return Network(Shape{1}, {toy_linear({1, 1}, {w, w}, 1), relu, toy_linear({0, 1, -1, 1}, {1, 0}, 2)});
}

ToyJumps toy_jumps(int points, double near, int crown_tie_slope) {
  if (points < 2) throw std::invalid_argument("[toy-jumps] --points " + std::to_string(points) + " must be at least 2");
  if (!(near > 0 && near < 0.5))
    throw std::invalid_argument("[toy-jumps] --near " + number(near) + " must lie in (0, 0.5)");
  ToyJumps t;
  t.crown_tie_slope = crown_tie_slope;
  t.w = linspace(-1.0, 2.0, points);
  for (double at : {0.0, 1.0})
    for (double w : {at - near, at, at + near}) t.w.push_back(w);
  std::sort(t.w.begin(), t.w.end());
  t.w.erase(std::unique(t.w.begin(), t.w.end()), t.w.end());
  NoGrad no_grad;
  const Tensor lower0 = Tensor::from_vector({-1.0f}, Shape{1, 1}, Device::cpu);
  const Tensor upper0 = Tensor::from_vector({1.0f}, Shape{1, 1}, Device::cpu);
  BoundOptions options;
  options.crown_tie_slope = crown_tie_slope;
  for (double w : t.w) {
    const Network net = section_4_1_network(float(w));
    t.crown_l31.push_back(double(compute_bounds(net, lower0, upper0, Tensor(), Relaxation::crown, options).lower.to_vector()[0]));
    t.hbox_l32.push_back(double(compute_bounds(net, lower0, upper0, Tensor(), Relaxation::hbox, options).lower.to_vector()[1]));
  }
  find_jumps("crown_lower_x31", t.w, t.crown_l31, t.jumps);
  find_jumps("hbox_lower_x32", t.w, t.hbox_l32, t.jumps);
  return t;
}

int certify_toy_jumps_command(int argc, char** argv) {
  CLI::App app{"certify toy-jumps: the paper's figure 3. The section 4.1 toy network (x0 in [-1, 1], x11 = x12 = "
               "x0 + w, x2 = relu(x1), x31 = x22 + 1, x32 = x22 - x21) as w sweeps [-1, 2]: CROWN's lower bound of "
               "x31 jumps at w = 0, hBox's lower bound of x32 at w = 1. Writes toy_jumps.csv, toy_jumps.json (the "
               "jumps found), toy_jumps.gp and the figure toy_jumps.png and toy_jumps.svg"};
  int points = 301, crown_tie = 0;
  double near = 1e-3;
  std::string out_dir = "toy_jumps";
  bool no_plot = false;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--points", points, "values of w evenly spaced over [-1, 2]")->capture_default_str();
  app.add_option("--near", near, "also sample w = 0 and w = 1 and their neighbours this far away")->capture_default_str();
  add_crown_tie_flag(app, crown_tie, "default: 0; at w = 0 it decides which side of the jump CROWN is on");
  app.add_option("--out", out_dir, "folder for the files")->capture_default_str();
  app.add_flag("--no-plot", no_plot, "write the CSV, the JSON and the gnuplot script but do not run gnuplot");
  reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const ToyJumps t = toy_jumps(points, near, crown_tie);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw std::runtime_error("[toy-jumps] --out " + out_dir + ": " + ec.message());
  const std::filesystem::path dir(out_dir);
  const std::vector<std::string> names{"crown_lower_x31", "hbox_lower_x32"};
  const std::string csv = (dir / "toy_jumps.csv").string(), summary = (dir / "toy_jumps.json").string();
  const std::string script = (dir / "toy_jumps.gp").string();
  write_columns_csv(csv, "w", t.w, names, {t.crown_l31, t.hbox_l32});
  nlohmann::json j;
  j["crown_tie"] = t.crown_tie_slope;
  j["points"] = t.w.size();
  j["jumps"] = nlohmann::json::array();
  for (const ToyJump& jump : t.jumps) {
    j["jumps"].push_back({{"series", jump.series}, {"from_w", jump.from_w}, {"to_w", jump.to_w},
                          {"before", jump.before}, {"after", jump.after}});
    std::cout << "[toy-jumps] " << jump.series << " jumps between w = " << number(jump.from_w) << " and "
              << number(jump.to_w) << ": " << number(jump.before) << " -> " << number(jump.after) << "\n";
  }
  write_text_file(summary, j.dump(1) + "\n");
  write_text_file(script, toy_jumps_gnuplot(t, names, {"CROWN: lower bound of x31", "hBox: lower bound of x32"}));
  std::vector<std::string> written{csv, summary, script};
  std::string why;
  const bool plotted = !no_plot && run_gnuplot(script, &why);
  if (plotted) {
    written.push_back((dir / "toy_jumps.png").string());
    written.push_back((dir / "toy_jumps.svg").string());
  }
  std::cout << "[toy-jumps] wrote";
  for (size_t i = 0; i < written.size(); ++i) std::cout << (i ? ", " : " ") << written[i];
  std::cout << std::endl;
  if (!no_plot && !plotted) std::cerr << "[toy-jumps] no figure: " << why << std::endl;
  return 0;
}

}  // namespace cte::tools
