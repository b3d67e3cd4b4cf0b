// certify: certification from the command line.
//
//   certify bounds ...   bounds of a network JSON on given inputs (relaxations/cli_bounds.h)
//   certify eval --checkpoint runs/x/checkpoint.ckpt [--relaxations box,hbox,deepz,crown,crown-ibp]
//                [--eps 0.1,0.2,0.3] [--dataset D --data-dir DIR] [--test-subset N] [--pgd]
//                [--device cpu|cuda|auto] [--json]
//       loads a checkpoint written by `train` and prints certified accuracy
//       for every (relaxation, eps) pair, plus accuracy and (with --pgd) PGD
//       accuracy: the paper's table 7 (training x certification relaxation).
//       With --json the last stdout line is the same table as one JSON object.
//   certify curve --checkpoint runs/x/checkpoint.ckpt --eps-max 0.07 [--points 100]
//                 [--relaxations box,hbox,crown-ibp,deepz,crown] [--test-subset N] [--out DIR]
//       CR curves (certified accuracy at eps evenly spaced over [0, eps-max])
//       and their areas, CR-AUC: the paper's tightness measure (figure 2,
//       tables 1 and 4). Writes DIR/cr_curve.csv, cr_curve.gp, cr_curve.png
//       (when gnuplot is installed) and cr_auc.json.
//   certify landscape --checkpoint runs/x/checkpoint.ckpt [--index I] [--eps E] [--neuron J]
//                     [--delta-max D] [--points P] [--relaxations ...] [--direction logit|R] [--out DIR]
//       the lower bound of output J on test image I under each relaxation as
//       the first layer's weights move by delta along a unit gradient
//       direction: continuity and sensitivity (the paper's figure 4). Writes
//       landscape.csv, landscape.gp, landscape.png.
//   certify table --checkpoints a.ckpt,b.ckpt,... [--relaxations ...] [--eps E] [--test-subset N]
//                 [--out table.md]
//       certified accuracy of each checkpoint (a row: how it was trained)
//       under each relaxation (a column), at its own eps_test or --eps: the
//       paper's table 7 (training x certification relaxation), as text and
//       as a Markdown table.
//   certify sgd [--seed S] [--search N] [--relaxations box,crown] [--lr 0.02] [--decay 0.99]
//               [--steps 20] [--out DIR]
//       the paper's section 4.4 experiment (figures 5 and 6, appendix F): a
//       random 1-D network with integer weights, gradient ascent on one
//       output's lower bound along the initial gradient direction of the
//       first layer's weights, per relaxation; the landscape along that line
//       with each relaxation's path on it. --search tries N networks and keeps
//       the one where the first relaxation ends highest above the second
//       although the second's landscape reaches higher. Writes
//       sgd_landscape.csv, sgd_path.csv, sgd_network.json, sgd.gp, sgd.png.
//   certify toy-jumps [--points 301] [--crown-tie 0|1] [--out DIR]
//       the paper's figure 3 (section 4.1): CROWN's and hBox's lower bounds on
//       the toy network as w sweeps [-1, 2], jumping at w = 0 and w = 1.
//       Writes toy_jumps.csv, toy_jumps.json, toy_jumps.gp, .png and .svg.
//   certify viewer [--out DIR] [--points N] [--relaxations ...]
//       the relaxation viewer: one self-contained HTML page (tools/lib/viewer.h).
//   certify export-inputs --dataset D [--data-dir DIR] [--split test|train] [--indices 0-9,15] [--out x.json]
//       images and labels as the x.json that certify bounds reads.
// A run folder (train's --out) stands for its checkpoint.ckpt wherever a
// checkpoint is asked for. Banners go to stderr, results to stdout; the
// gnuplot scripts name their files relative to their own folder.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/dataset.h"
#include "engine/device.h"
#include "engine/netjson.h"
#include "relaxations/cli_bounds.h"
#include "relaxations/relaxations.h"
#include "train/config.h"
#include "train/distributed.h"
#include "relaxations/relaxations.h"
#include "tools/certify/checkpoints.h"
#include "tools/certify/commands.h"
#include "tools/lib/cli_flags.h"
#include "tools/lib/curves.h"
#include "tools/lib/landscape.h"
#include "tools/lib/viewer.h"
#include "train/trainer.h"

namespace {

using nlohmann::json;
using namespace cte;
using namespace cte::train;
using namespace cte::tools;  // the shared checkpoint helpers (tools/certify/checkpoints.h)

int usage(std::FILE* out) {
  std::fprintf(out,
               "usage: certify <command> [flags]\n"
               "  bounds   bounds of a network on given inputs (certify bounds --help)\n"
               "  eval     certified accuracy of a trained checkpoint per relaxation and radius (certify eval --help)\n"
               "  curve    CR curves and CR-AUC (tightness) of a trained checkpoint (certify curve --help)\n"
               "  landscape  one output bound per relaxation along a line in weight space: continuity and\n"
               "             sensitivity (certify landscape --help)\n"
               "  table    certified accuracy of several checkpoints under several relaxations: the paper's\n"
               "           table 7 (certify table --help)\n"
               "  sgd      gradient ascent on a relaxation's bound along a line: the paper's section 4.4\n"
               "           (certify sgd --help)\n"
               "  toy-jumps  the section 4.1 toy network's CROWN and hBox bounds as w sweeps [-1, 2]: the paper's\n"
               "             figure 3, jumps at w = 0 and w = 1 (certify toy-jumps --help)\n"
               "  viewer   the relaxation viewer: an HTML page with sliders for l and u and every relaxation\n"
               "           (certify viewer --help)\n"
               "  export-inputs  test images of a data set as the x.json that certify bounds reads\n"
               "                 (certify export-inputs --help)\n"
               "  verify   complete verification of VNNLIB properties on an ONNX network: PGD, then branch and\n"
               "           bound; VNN-COMP result format (certify verify --help)\n"
               "A run folder works wherever a --checkpoint is asked for (its checkpoint.ckpt is used).\n");
  return out == stdout ? 0 : 2;
}

// Flags that certify curve and certify landscape share.
struct FigureFlags {
  std::string checkpoint, dataset, data_dir, out_dir, device_name = "auto";
  std::vector<std::string> relaxation_names{"box", "hbox", "crown-ibp", "deepz", "crown"};
  int threads = 0;
  bool no_plot = false;
};

void add_figure_flags(CLI::App& app, FigureFlags& f, const std::string& outputs, const std::string& per_relaxation) {
  app.add_option("--checkpoint", f.checkpoint, "checkpoint written by train (runs/<name>/checkpoint.ckpt), or its run folder")
      ->required();
  app.add_option("--relaxations", f.relaxation_names, "relaxations, " + per_relaxation)
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--dataset", f.dataset, "data set (default: the one the checkpoint was trained on)");
  app.add_option("--data-dir", f.data_dir, "where the data set lives (default: the run's --data-dir, else the usual search)");
  app.add_option("--out", f.out_dir, "folder for " + outputs + " (default: the checkpoint's folder)");
  app.add_flag("--no-plot", f.no_plot, "write the CSV and the gnuplot script but do not run gnuplot");
  app.add_option("--device", f.device_name, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--threads", f.threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
}

// Runs gnuplot on the script (unless --no-plot) and lists the files written.
void finish_figure(const char* tag, std::vector<std::string> written, const std::string& script,
                   const std::string& png, bool no_plot) {
  std::string why;
  const bool plotted = !no_plot && tools::run_gnuplot(script, &why);
  if (plotted) written.push_back(png);
  std::cout << "[" << tag << "] wrote";
  for (size_t i = 0; i < written.size(); ++i) std::cout << (i ? ", " : " ") << written[i];
  std::cout << std::endl;
  if (!no_plot && !plotted) std::cerr << "[" << tag << "] no figure: " << why << std::endl;
}

// A sampled axis: its end (flag) must be a number > 0 and --points at least 2.
void check_grid(const char* flag, double end, int points) {
  if (!(end > 0) || !std::isfinite(end))
    throw std::invalid_argument(std::string("[certify] ") + flag + " " + format_number(end) + " must be a number > 0");
  if (points < 2) throw std::invalid_argument("[certify] --points " + std::to_string(points) + " must be at least 2");
}

// What a figure command starts from: the loaded run on its device, and the
// relaxations of --relaxations.
struct FigureRun {
  LoadedRun run;
  Device device;
  std::vector<Relaxation> relaxations;
};

// Checks the shared flags, creates the output folder, starts the device and loads the run.
FigureRun start_figure(FigureFlags& f) {
  if (f.relaxation_names.empty()) throw std::invalid_argument("[certify] --relaxations is empty");
  FigureRun out;
  for (const std::string& name : f.relaxation_names) out.relaxations.push_back(parse_relaxation(name));
  f.checkpoint = resolve_checkpoint(f.checkpoint);
  if (f.out_dir.empty()) f.out_dir = std::filesystem::path(f.checkpoint).parent_path().string();
  if (f.out_dir.empty()) f.out_dir = ".";
  std::error_code ec;
  std::filesystem::create_directories(f.out_dir, ec);
  if (ec) throw std::runtime_error("[certify] --out " + f.out_dir + ": " + ec.message());
  out.device = start_device(f.threads, f.device_name, std::cerr);
  out.run = load_run(f.checkpoint, f.dataset, f.data_dir);
  out.run.net.to(out.device);
  return out;
}

int certify_curve_command(int argc, char** argv) {
  CLI::App app{"certify curve: CR curves (certified accuracy at eps evenly spaced over [0, eps-max]) of a train "
               "checkpoint under several relaxations, and their areas CR-AUC, the paper's tightness measure "
               "(figure 2, tables 1 and 4)"};
  FigureFlags f;
  double eps_max = 0.0;
  int points = 100, batch_size = 100;
  int64_t test_subset = 0;
  ElideFlags elide;
  bool unsound_fast = false;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_figure_flags(app, f, "cr_curve.csv, cr_curve.gp, cr_curve.png, cr_auc.json", "one curve each");
  app.add_option("--eps-max", eps_max,
                 "largest radius (the paper: 0.07 for standard training, 0.15 and 0.4 for PGD 0.1 and 0.3)")
      ->required();
  app.add_option("--points", points, "number of radii, 0 and eps-max included")->capture_default_str();
  app.add_option("--test-subset", test_subset, "use the first N test images (0: all)")->capture_default_str();
  app.add_option("--batch-size", batch_size, "evaluation batch size")->capture_default_str();
  add_elide_flags(app, elide);
  add_unsound_flag(app, unsound_fast);
  tools::reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  check_grid("--eps-max", eps_max, points);
  tools::warn_if_eps_covers_inputs("certify", "--eps-max", eps_max);
  if (batch_size < 1) throw std::invalid_argument("[certify] --batch-size " + std::to_string(batch_size) + " must be at least 1");
  if (test_subset < 0) throw std::invalid_argument("[certify] --test-subset " + std::to_string(test_subset) + " must be >= 0");
  auto [run, device, relaxations] = start_figure(f);

  tools::CrCurves curves;
  curves.eps = tools::linspace(0.0, eps_max, points);
  EvalOptions o;
  o.eps.clear();
  for (double e : curves.eps) o.eps.push_back(float(e));
  o.relaxations = relaxations;
  o.pgd = false;
  o.elide = elide.resolve(run.trained.elide);
  o.sound = !unsound_fast;
  o.batch_size = batch_size;
  o.subset = test_subset;
  o.on_batch = [](int64_t done, int64_t total) {
    std::cerr << "[curve] " << done << "/" << total << " test images" << std::endl;
  };
  const EvalReport r = evaluate(run.net, run.data.test, o);

  const double n = double(std::max<int64_t>(1, r.n));
  for (size_t j = 0; j < relaxations.size(); ++j) {
    curves.names.push_back(relaxation_name(relaxations[j]));
    std::vector<double> curve;
    for (const EvalAtRadius& at : r.radii) curve.push_back(100.0 * double(at.certified[j].second) / n);
    curves.percent.push_back(curve);
  }
  const std::string csv = (std::filesystem::path(f.out_dir) / "cr_curve.csv").string();
  const std::string png = (std::filesystem::path(f.out_dir) / "cr_curve.png").string();
  tools::write_curves_csv(csv, curves);
  tools::PlotLabels labels;
  labels.title = "CR curves: " + run.trained.method + "-trained, " + run.dataset + ", " + std::to_string(r.n) +
                 " test images\nnetwork: " + run.net.describe();
  labels.xlabel = "eps (L-inf radius)";
  labels.ylabel = "certified accuracy (%)";
  labels.percent = true;
  labels.x_max = eps_max;
  for (size_t j = 0; j < relaxations.size(); ++j) {
    char entry[96];
    std::snprintf(entry, sizeof entry, "%s (CR-AUC %.4g)", curves.names[j].c_str(),
                  tools::trapezoid_area(curves.eps, curves.percent[j]));
    labels.legend.push_back(entry);
  }
  const std::string script = tools::write_lines_gnuplot(csv, png, curves.names, labels);

  json auc = json::object();
  std::cout << "[curve] " << f.checkpoint << ": " << r.n << " test images of " << run.dataset << ", accuracy "
            << format_number(100.0 * r.accuracy()) << "%, " << points << " radii in [0, " << format_number(eps_max)
            << "], " << format_number(r.seconds) << " s\n";
  std::cout << "relaxation      CR-AUC   certified at eps-max\n";
  for (size_t j = 0; j < relaxations.size(); ++j) {
    const double area = tools::trapezoid_area(curves.eps, curves.percent[j]);
    auc[curves.names[j]] = area;
    char line[96];
    std::snprintf(line, sizeof line, "%-12s %9.4f   %6.2f%%\n", curves.names[j].c_str(), area, curves.percent[j].back());
    std::cout << line;
  }
  json summary;
  summary["checkpoint"] = f.checkpoint;
  summary["dataset"] = run.dataset;
  summary["network"] = run.net.describe();
  summary["trained_with"] = run.trained.method;
  summary["n"] = r.n;
  summary["accuracy"] = r.accuracy();
  summary["eps_max"] = eps_max;
  summary["points"] = points;
  summary["cr_auc"] = auc;
  const std::string summary_path = (std::filesystem::path(f.out_dir) / "cr_auc.json").string();
  {
    std::ofstream out(summary_path);
    out << summary.dump(2) << "\n";
    if (!out) throw std::runtime_error("[certify] cannot write " + summary_path);
  }
  finish_figure("curve", {csv, script, summary_path}, script, png, f.no_plot);
  return 0;
}

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


// One sampled appendix F experiment: the network, the box, the direction, each
// relaxation's ascent path and its landscape over the deltas the paths cover.
struct SgdExperiment {
  uint64_t seed = 0;
  Network net;
  double x = 0, eps = 0;
  std::vector<std::vector<double>> path_delta;
  std::vector<std::vector<tools::ValueAndSlope>> path;
  std::vector<double> deltas;
  std::vector<std::vector<double>> landscape;
  bool usable = false;  // the direction exists (some ReLU is alive)
};

SgdExperiment run_sgd_experiment(uint64_t seed, const std::vector<Relaxation>& relaxations, int64_t neuron, double lr,
                                 double decay, int steps, int points) {
  SgdExperiment e;
  e.seed = seed;
  Rng rng(seed);
  e.net = tools::random_integer_network(rng, 2, 10, 2, 4);
  e.x = double(int64_t(rng.below(9)) - 4);
  e.eps = 0.1 + 4.0 * double(rng.uniform(0.0f, 1.0f));
  const Tensor x = Tensor::from_vector({float(e.x)}, Shape{1, 1}, Device::cpu);
  const Tensor lower0 = Tensor::from_vector({float(e.x - e.eps)}, Shape{1, 1}, Device::cpu);
  const Tensor upper0 = Tensor::from_vector({float(e.x + e.eps)}, Shape{1, 1}, Device::cpu);
  tools::ParameterDirection direction;
  try {
    direction = tools::gradient_direction(e.net, x, lower0, upper0, neuron, relaxations.front());
  } catch (const std::runtime_error&) {
    return e;  // a dead network: no gradient to follow
  }
  e.usable = true;
  double lo = 0.0, hi = 0.0;
  for (Relaxation r : relaxations) {
    std::vector<double> deltas;
    e.path.push_back(tools::ascend(e.net, lower0, upper0, neuron, r, direction, lr, decay, steps, &deltas));
    for (double d : deltas) lo = std::min(lo, d), hi = std::max(hi, d);
    e.path_delta.push_back(deltas);
  }
  const double margin = std::max(0.5, 0.25 * (hi - lo));
  e.deltas = tools::linspace(lo - margin, hi + margin, points);
  e.landscape = tools::bound_landscape(e.net, lower0, upper0, neuron, relaxations, e.deltas, direction);
  return e;
}

// How well the experiment shows the paper's point: relaxation 0 ends above
// relaxation 1 although relaxation 1's landscape reaches higher (else -inf).
double paradox_score(const SgdExperiment& e) {
  if (!e.usable || e.path.size() < 2) return -INFINITY;
  const double best0 = *std::max_element(e.landscape[0].begin(), e.landscape[0].end());
  const double best1 = *std::max_element(e.landscape[1].begin(), e.landscape[1].end());
  const double gap = e.path[0].back().value - e.path[1].back().value;
  return best1 > best0 && gap > 0 ? gap : -INFINITY;
}

int certify_sgd_command(int argc, char** argv) {
  CLI::App app{"certify sgd: the paper's section 4.4 experiment. A random 1-D network (2 hidden layers of 10, 2 "
               "outputs, integer weights in [-4, 4], input an integer in [-4, 4], eps in [0.1, 4.1]); gradient "
               "ascent on one output's lower bound, moving the first layer's weights along the initial gradient "
               "direction (of the first relaxation's bound); per relaxation, its path and its landscape"};
  std::vector<std::string> relaxation_names{"box", "crown"};
  std::string out_dir = "sgd";
  uint64_t seed = 0;
  int search = 1, steps = 20, points = 401;
  int64_t neuron = 0;
  double lr = 0.02, decay = 0.99;
  bool no_plot = false;
  int threads = 0;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--relaxations", relaxation_names, "relaxations to ascend with (the paper: box,crown for figure 5, "
                 "box,deepz for figure 6)")->delimiter(',')->capture_default_str();
  app.add_option("--seed", seed, "seed of the first network sampled")->capture_default_str();
  app.add_option("--search", search, "networks to sample (seed, seed+1, ...); keeps the most telling one")
      ->capture_default_str();
  app.add_option("--neuron", neuron, "output whose lower bound is maximised (0 or 1)")->capture_default_str();
  app.add_option("--lr", lr, "initial step size (the paper: 0.02 for figure 5, 0.005 for figure 6)")->capture_default_str();
  app.add_option("--decay", decay, "step size factor per step")->capture_default_str();
  app.add_option("--steps", steps, "ascent steps (the paper: 20 for figure 5, 100 for figure 6)")->capture_default_str();
  app.add_option("--points", points, "landscape points")->capture_default_str();
  app.add_option("--out", out_dir, "folder for sgd_landscape.csv, sgd_path.csv, sgd.gp, sgd.png")->capture_default_str();
  app.add_flag("--no-plot", no_plot, "write the CSVs and the gnuplot script but do not run gnuplot");
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  tools::reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // The networks are tiny: the CPU, whatever the machine has.
  start_device(threads, "cpu", std::cerr);
  if (relaxation_names.empty()) throw std::invalid_argument("[certify] --relaxations is empty");
  if (search < 1) throw std::invalid_argument("[certify] --search " + std::to_string(search) + " must be at least 1");
  if (steps < 1) throw std::invalid_argument("[certify] --steps " + std::to_string(steps) + " must be at least 1");
  if (points < 2) throw std::invalid_argument("[certify] --points " + std::to_string(points) + " must be at least 2");
  if (neuron < 0 || neuron > 1) throw std::invalid_argument("[certify] --neuron " + std::to_string(neuron) + " must be 0 or 1");
  if (!(lr > 0) || !std::isfinite(lr)) throw std::invalid_argument("[certify] --lr " + format_number(lr) + " must be > 0");
  if (!(decay > 0) || !std::isfinite(decay))
    throw std::invalid_argument("[certify] --decay " + format_number(decay) + " must be > 0");
  std::vector<Relaxation> relaxations;
  for (const std::string& name : relaxation_names) relaxations.push_back(parse_relaxation(name));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw std::runtime_error("[certify] --out " + out_dir + ": " + ec.message());

  SgdExperiment best;
  double best_score = -INFINITY;
  for (int k = 0; k < search; ++k) {
    SgdExperiment e = run_sgd_experiment(seed + uint64_t(k), relaxations, neuron, lr, decay, steps, points);
    const double score = paradox_score(e);
    if (k == 0 || (e.usable && (!best.usable || score > best_score))) {
      best_score = score;
      best = std::move(e);
    }
  }
  if (!best.usable)
    throw std::runtime_error("[certify] every sampled network is dead at its input (no gradient): try other seeds");

  std::vector<std::string> names;
  for (Relaxation r : relaxations) names.push_back(relaxation_name(r));
  const std::filesystem::path dir(out_dir);
  const std::string landscape_csv = (dir / "sgd_landscape.csv").string(), path_csv = (dir / "sgd_path.csv").string();
  tools::write_columns_csv(landscape_csv, "delta", best.deltas, names, best.landscape);
  std::string text = "step";
  for (const std::string& name : names) text += ",delta_" + name + ",bound_" + name;
  text += "\n";
  for (size_t t = 0; t < best.path.front().size(); ++t) {
    text += std::to_string(t);
    for (size_t r = 0; r < names.size(); ++r) {
      char cells[64];
      std::snprintf(cells, sizeof cells, ",%.9g,%.9g", best.path_delta[r][t], best.path[r][t].value);
      text += cells;
    }
    text += "\n";
  }
  tools::write_text_file(path_csv, text);
  const std::string png = (dir / "sgd.png").string(), script = (dir / "sgd.gp").string();
  // Paths relative to the script's folder (run_gnuplot runs it from there).
  const std::string direction_of = relaxation_name(relaxations.front());
  std::string gp = "# re-plot from this folder: gnuplot sgd.gp\nset terminal pngcairo size 1000,680 font ',11'\n"
                   "set output 'sgd.png'\nset datafile separator ','\n" +
                   tools::gnuplot_title("Gradient ascent on the lower bound of output " + std::to_string(neuron) +
                                        ", per relaxation\nalong first-layer weights + delta * d, d = the initial "
                                        "gradient of the " + direction_of + " bound (the same line for every "
                                        "relaxation); random 1-D network, seed " + std::to_string(best.seed) +
                                        ", x = " + format_number(best.x) + ", eps = " + format_number(best.eps)) +
                   "set xlabel 'delta (distance along d)'\nset ylabel " +
                   tools::gnuplot_quoted("lower bound of output " + std::to_string(neuron)) +
                   " noenhanced\nset key below horizontal noenhanced\nset grid\nplot ";
  for (size_t r = 0; r < names.size(); ++r) {
    if (r) gp += ", \\\n     ";
    gp += "'sgd_landscape.csv' using 1:" + std::to_string(r + 2) + " with lines " +
          tools::gnuplot_line_style(r, true, false) + " linewidth 2 title " +
          tools::gnuplot_quoted(names[r] + ": bound on the line") + ", \\\n     'sgd_path.csv' using " +
          std::to_string(2 * r + 2) + ":" + std::to_string(2 * r + 3) + " with linespoints " +
          tools::gnuplot_line_style(r, false, true) + " linewidth 1 pointsize 1.2 title " +
          tools::gnuplot_quoted(names[r] + ": ascent steps");
  }
  tools::write_text_file(script, gp + "\n");
  const std::string net_json = (dir / "sgd_network.json").string();
  save_network_json(net_json, best.net);

  std::cout << "[sgd] network seed " << best.seed << " (" << search << " sampled): x = " << format_number(best.x)
            << ", eps = " << format_number(best.eps) << ", output " << neuron << "\n";
  std::cout << "relaxation        start        end   end delta   best on the line\n";
  for (size_t r = 0; r < names.size(); ++r) {
    char line[128];
    std::snprintf(line, sizeof line, "%-12s %10.4g %10.4g %11.4g %14.4g\n", names[r].c_str(),
                  best.path[r].front().value, best.path[r].back().value, best.path_delta[r].back(),
                  *std::max_element(best.landscape[r].begin(), best.landscape[r].end()));
    std::cout << line;
  }
  finish_figure("sgd", {landscape_csv, path_csv, net_json, script}, script, png, no_plot);
  return 0;
}

// "0-9,15,20-22" as the list of indices it names, in order; each below `size`.
std::vector<int64_t> parse_indices(const std::string& text, int64_t size) {
  std::vector<int64_t> out;
  std::stringstream items(text);
  std::string item;
  auto number = [&](const std::string& part) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || v < 0)
      throw std::invalid_argument("[certify] --indices '" + text + "': '" + item +
                                  "' is not an index or a range A-B of indices");
    if (v >= size)
      throw std::invalid_argument("[certify] --indices: " + std::to_string(v) + " is outside the " +
                                  std::to_string(size) + " images of the split");
    return v;
  };
  while (std::getline(items, item, ',')) {
    const size_t dash = item.find('-');
    const int64_t first = number(item.substr(0, dash));
    const int64_t last = dash == std::string::npos ? first : number(item.substr(dash + 1));
    if (last < first)
      throw std::invalid_argument("[certify] --indices: the range " + item + " runs backwards");
    for (int64_t i = first; i <= last; ++i) out.push_back(i);
  }
  if (out.empty()) throw std::invalid_argument("[certify] --indices '" + text + "' names no image");
  return out;
}

int certify_export_inputs_command(int argc, char** argv) {
  CLI::App app{"certify export-inputs: images of a data set (pixels / 255, in C,H,W order) and their labels as the "
               "x.json that certify bounds --x reads: {\"x\": [[...], ...], \"y\": [...]}"};
  std::string dataset, data_dir, split = "test", indices = "0-9", out_path = "x.json";
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--dataset", dataset, "mnist | fashion-mnist | svhn | cifar10 | folder")->required();
  app.add_option("--data-dir", data_dir, "where the data set lives (default: the usual search, as train)");
  app.add_option("--split", split, "test | train")->capture_default_str()->check(CLI::IsMember({"test", "train"}));
  app.add_option("--indices", indices, "images to export: indices and ranges, e.g. 0-9,15")->capture_default_str();
  app.add_option("--out", out_path, "the JSON file to write")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const DatasetSplits data = load_dataset(dataset, data_dir);
  const Dataset& images = split == "test" ? data.test : data.train;
  const std::vector<int64_t> chosen = parse_indices(indices, int64_t(images.size()));
  const size_t numel = images.image_numel();
  json x = json::array(), y = json::array();
  for (int64_t i : chosen) {
    json row = json::array();
    // The float that train and certify landscape feed the network (pixel / 255 in float).
    for (size_t k = 0; k < numel; ++k) row.push_back(double(float(images.images[size_t(i) * numel + k]) / 255.0f));
    x.push_back(std::move(row));
    y.push_back(int(images.labels[size_t(i)]));
  }
  tools::write_text_file(out_path, json{{"x", x}, {"y", y}}.dump() + "\n");
  std::cout << "[export-inputs] wrote " << out_path << ": " << chosen.size() << " " << split << " images of " << dataset
            << " (" << images.channels << "x" << images.height << "x" << images.width << ", labels in y)" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cte::dist::Session mpi(argc, argv);
  if (argc < 2) return usage(stderr);
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") return usage(stdout);
  // Under mpirun, `eval` splits the test set across the ranks (rank 0 prints);
  // the other commands would only repeat the same work N times.
  if (cte::dist::world().size() > 1 && command != "eval") {
    if (cte::dist::world().is_root())
      std::fprintf(stderr, "[certify] under mpirun only 'certify eval' runs distributed; run '%s' as one process\n",
                   command.c_str());
    return 2;
  }
  if (!cte::dist::world().is_root() && !std::freopen("/dev/null", "w", stdout)) return cte::dist::exit_after_error(1);
  if (command == "bounds") return cte::certify_bounds_command(argc - 1, argv + 1);
  // The other commands throw on bad input or failure: one message, exit 1.
  try {
    if (command == "eval") return tools::certify_eval_command(argc - 1, argv + 1);
    if (command == "curve") return certify_curve_command(argc - 1, argv + 1);
    if (command == "landscape") return certify_landscape_command(argc - 1, argv + 1);
    if (command == "table") return tools::certify_table_command(argc - 1, argv + 1);
    if (command == "sgd") return certify_sgd_command(argc - 1, argv + 1);
    if (command == "toy-jumps") return tools::certify_toy_jumps_command(argc - 1, argv + 1);
    if (command == "viewer") return tools::certify_viewer_command(argc - 1, argv + 1, tools::viewer_assets());
    if (command == "export-inputs") return certify_export_inputs_command(argc - 1, argv + 1);
    if (command == "verify") return tools::certify_verify_command(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << e.what() << std::endl;
    return cte::dist::exit_after_error(1);
  }
  std::fprintf(stderr, "[certify] unknown command '%s'\n", command.c_str());
  return usage(stderr);
}
