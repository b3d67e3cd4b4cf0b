// certify curve --checkpoint runs/x/checkpoint.ckpt --eps-max 0.07 [--points 100]
//               [--relaxations box,hbox,crown-ibp,deepz,crown] [--test-subset N] [--out DIR]
//     CR curves (certified accuracy at eps evenly spaced over [0, eps-max])
//     and their areas, CR-AUC: the paper's tightness measure (figure 2,
//     tables 1 and 4). Writes DIR/cr_curve.csv, cr_curve.gp, cr_curve.png
//     (when gnuplot is installed) and cr_auc.json.
//     A long run saves its counts after every test batch in
//     DIR/cr_curve.partial.json; the same command run again (after a kill, a
//     session's end, or --batches-per-run) continues from there.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "relaxations/relaxations.h"
#include "tools/certify/commands.h"
#include "tools/certify/figures.h"
#include "tools/lib/cli_flags.h"
#include "tools/lib/curves.h"
#include "train/config.h"
#include "train/trainer.h"

namespace cte::tools {

using nlohmann::json;
using namespace cte::train;

namespace {

// The partial file: what the counts so far were measured with, the batches
// done, and the counts (certified per radius and relaxation, their smallest
// margins, null for +inf).
json partial_settings(const std::string& weights, const std::vector<float>& eps,
                      const std::vector<Relaxation>& relaxations, const EvalOptions& o) {
  json names = json::array();
  for (Relaxation r : relaxations) names.push_back(relaxation_name(r));
  return {{"weights_hash", weights}, {"eps", eps}, {"relaxations", names}, {"test_subset", o.subset},
          {"batch_size", o.batch_size}, {"sound", o.sound}, {"elide", o.elide}};
}

json partial_json(const json& settings, const EvalReport& r, int64_t batches) {
  json radii = json::array();
  for (const EvalAtRadius& at : r.radii) {
    json counts = json::array(), smallest = json::array();
    for (size_t k = 0; k < at.certified.size(); ++k) {
      counts.push_back(at.certified[k].second);
      smallest.push_back(std::isfinite(at.smallest_margin[k]) ? json(at.smallest_margin[k]) : json(nullptr));
    }
    radii.push_back({{"certified", counts}, {"smallest_margin", smallest}});
  }
  return {{"settings", settings}, {"batches", batches}, {"n", r.n}, {"correct", r.correct},
          {"seconds", r.seconds}, {"radii", radii}};
}

// The counts of a partial file into `report` (laid out by evaluate's options already).
int64_t read_partial(const std::string& path, const json& settings, EvalReport& report) {
  json j;
  try {
    std::ifstream in(path);
    j = json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("[curve] " + path + " is not a partial run's file (" + e.what() +
                             "); delete it to start over");
  }
  if (j.value("settings", json()) != settings)
    throw std::runtime_error("[curve] " + path + " holds a run with other settings (" +
                             j.value("settings", json()).dump() + ", now " + settings.dump() +
                             "): delete it to start over, or give the same checkpoint and flags");
  report.n = j.at("n").get<int64_t>();
  report.correct = j.at("correct").get<int64_t>();
  report.seconds = j.at("seconds").get<double>();
  const json& radii = j.at("radii");
  if (radii.size() != report.radii.size()) throw std::runtime_error("[curve] " + path + ": radii do not match");
  for (size_t i = 0; i < radii.size(); ++i) {
    EvalAtRadius& at = report.radii[i];
    const json& counts = radii[i].at("certified");
    const json& smallest = radii[i].at("smallest_margin");
    if (counts.size() != at.certified.size() || smallest.size() != at.certified.size())
      throw std::runtime_error("[curve] " + path + ": relaxations do not match");
    for (size_t k = 0; k < counts.size(); ++k) {
      at.certified[k].second = counts[k].get<int64_t>();
      at.smallest_margin[k] = smallest[k].is_null() ? std::numeric_limits<float>::infinity() : smallest[k].get<float>();
    }
  }
  return j.at("batches").get<int64_t>();
}

}  // namespace

int certify_curve_command(int argc, char** argv) {
  CLI::App app{"certify curve: CR curves (certified accuracy at eps evenly spaced over [0, eps-max]) of a train "
               "checkpoint under several relaxations, and their areas CR-AUC, the paper's tightness measure "
               "(figure 2, tables 1 and 4)"};
  FigureFlags f;
  double eps_max = 0.0;
  int points = 100, batch_size = 100;
  int64_t test_subset = 0, batches_per_run = 0;
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
  app.add_option("--batches-per-run", batches_per_run,
                 "evaluate at most this many test batches, save the counts in DIR/cr_curve.partial.json and exit "
                 "with status 3; the same command continues (0: to the end; a killed run continues too)")
      ->capture_default_str();
  add_elide_flags(app, elide);
  add_unsound_flag(app, unsound_fast);
  size_t bound_memory_cap_bytes = EvalOptions{}.bound_memory_cap_bytes;
  tools::add_bound_memory_cap_flag(app, bound_memory_cap_bytes);
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
  if (batches_per_run < 0)
    throw std::invalid_argument("[certify] --batches-per-run " + std::to_string(batches_per_run) + " must be >= 0");
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
  o.bound_memory_cap_bytes = bound_memory_cap_bytes;
  o.batch_size = batch_size;
  o.subset = test_subset;
  o.on_batch = [](int64_t done, int64_t total) {
    std::cerr << "[curve] " << done << "/" << total << " test images" << std::endl;
  };
  // Resumable: the counts after every batch go to the partial file (written
  // whole, then renamed over the old one, so a kill leaves one or the other).
  const std::string partial = (std::filesystem::path(f.out_dir) / "cr_curve.partial.json").string();
  const json settings = partial_settings(run.meta.value("weights_hash", ""), o.eps, relaxations, o);
  EvalReport resumed;
  if (std::filesystem::exists(partial)) {
    for (float eps : o.eps) {
      EvalAtRadius at;
      at.eps = eps;
      for (Relaxation relaxation : relaxations) at.certified.emplace_back(relaxation, 0);
      at.smallest_margin.assign(relaxations.size(), std::numeric_limits<float>::infinity());
      resumed.radii.push_back(at);
    }
    o.resume_batches = read_partial(partial, settings, resumed);
    o.resume_from = &resumed;
    std::cerr << "[curve] continuing from " << partial << ": " << o.resume_batches << " batches (" << resumed.n
              << " test images) done" << std::endl;
  }
  o.max_batches = batches_per_run;
  o.on_partial = [&](const EvalReport& so_far, int64_t batches) {
    const std::string tmp = partial + ".tmp";
    {
      std::ofstream out(tmp);
      out << partial_json(settings, so_far, batches).dump() << "\n";
      if (!out) throw std::runtime_error("[curve] cannot write " + tmp);
    }
    std::filesystem::rename(tmp, partial);
  };
  const EvalReport r = evaluate(run.net, run.data.test, o);
  if (!r.complete) {
    std::cout << "[curve] stopped after --batches-per-run " << batches_per_run << " (" << r.n
              << " test images so far, counts in " << partial << "); run the same command again to continue\n";
    return 3;
  }

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
  std::filesystem::remove(partial);
  finish_figure("curve", {csv, script, summary_path}, script, png, f.no_plot);
  return 0;
}

}  // namespace cte::tools
