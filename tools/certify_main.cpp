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
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/dataset.h"
#include "engine/device.h"
#include "relaxations/cli_bounds.h"
#include "relaxations/relaxations.h"
#include "train/config.h"
#include "tools/lib/curves.h"
#include "train/trainer.h"

namespace {

using nlohmann::json;
using namespace cte;
using namespace cte::train;

int usage(std::FILE* out) {
  std::fprintf(out,
               "usage: certify <command> [flags]\n"
               "  bounds   bounds of a network on given inputs (certify bounds --help)\n"
               "  eval     certified accuracy of a trained checkpoint per relaxation and radius (certify eval --help)\n"
               "  curve    CR curves and CR-AUC (tightness) of a trained checkpoint (certify curve --help)\n");
  return out == stdout ? 0 : 2;
}

// --elide / --no-elide, defaulting to what the run trained with. (A CLI11 flag
// pair bound to std::optional<bool> came back as false when neither flag was
// given, which silently certified without elision.)
struct ElideFlags {
  bool on = false, off = false;
  bool resolve(bool trained) const { return off ? false : on ? true : trained; }
};

void add_elide_flags(CLI::App& app, ElideFlags& flags) {
  CLI::Option* on = app.add_flag("--elide", flags.on,
                                 "fold the margin specification into the last layer (default: as the run trained)");
  app.add_flag("--no-elide", flags.off, "bound the logits first, then apply the specification")->excludes(on);
}

// A checkpoint with its training configuration and the test data it is evaluated on.
struct LoadedRun {
  Network net;
  json meta;
  TrainConfig trained;
  std::string dataset;
  DatasetSplits data;
};

// Loads the checkpoint and its data set (default: the one it was trained on)
// and checks that the network fits the images.
LoadedRun load_run(const std::string& checkpoint, std::string dataset, std::string data_dir) {
  LoadedRun run;
  run.net = network_from_checkpoint(checkpoint, &run.meta);
  apply_config_json(run.meta.value("config", json::object()), run.trained, checkpoint);
  if (dataset.empty()) dataset = run.meta.value("dataset", run.trained.dataset);
  if (data_dir.empty() && dataset == run.trained.dataset) data_dir = run.trained.data_dir;
  run.dataset = dataset;
  run.data = load_dataset(dataset, data_dir);
  const Dataset& test = run.data.test;
  const Network& net = run.net;
  if (Shape{test.channels, test.height, test.width}.numel() != net.input_shape().numel() ||
      test.num_classes != int(net.output_shape()[0]))
    throw std::invalid_argument("[certify] " + checkpoint + " holds " + net.describe() + " with " +
                                std::to_string(net.output_shape()[0]) + " outputs, which does not fit " + dataset +
                                " images (" + std::to_string(test.channels) + "x" + std::to_string(test.height) +
                                "x" + std::to_string(test.width) + ", " + std::to_string(test.num_classes) +
                                " classes)");
  return run;
}

int certify_eval_command(int argc, char** argv) {
  CLI::App app{"certify eval: accuracy, PGD accuracy and certified accuracy of a train checkpoint for any "
               "relaxations at any radii (the paper's table 7)"};
  std::string checkpoint, dataset, data_dir, device_name = "auto";
  std::vector<std::string> relaxation_names;
  std::vector<double> eps_list;
  int64_t test_subset = 0;
  int batch_size = 100, threads = 0, pgd_steps = 100, pgd_restarts = 0;
  double pgd_step_size = 0.01;
  bool pgd = false, want_json = false;
  ElideFlags elide;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoint", checkpoint, "checkpoint written by train (runs/<name>/checkpoint.ckpt)")->required();
  app.add_option("--relaxations", relaxation_names,
                 "relaxations to certify with, e.g. box,hbox,deepz,crown,crown-ibp (default: the run's --certify-with)")
      ->delimiter(',');
  app.add_option("--eps", eps_list, "radii, e.g. 0.1,0.2,0.3 (default: the run's --eps-test)")->delimiter(',');
  app.add_option("--dataset", dataset, "data set (default: the one the checkpoint was trained on)");
  app.add_option("--data-dir", data_dir, "where the data set lives (default: the run's --data-dir, else the usual search)");
  app.add_option("--test-subset", test_subset, "evaluate on the first N test images (0: all)");
  app.add_option("--batch-size", batch_size, "evaluation batch size");
  app.add_flag("--pgd", pgd, "also run PGD (cross-entropy, clipped to the ball and [0, 1])");
  app.add_option("--pgd-steps", pgd_steps, "PGD steps");
  app.add_option("--pgd-step-size", pgd_step_size, "PGD step size");
  app.add_option("--pgd-restarts", pgd_restarts, "extra PGD runs from random points of the ball");
  add_elide_flags(app, elide);
  app.add_option("--device", device_name, "cpu | cuda | auto");
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)");
  app.add_flag("--json", want_json, "end with the results as one JSON line on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; usage errors: 2
  }
  try {
    TrainConfig runtime;
    runtime.threads = threads;
    runtime.device = device_name;
    if (threads < 0) throw std::invalid_argument("[certify] --threads " + std::to_string(threads) + " must be >= 0");
    const Device device = prepare_runtime(runtime);
    std::cout << device_banner(device) << std::endl;
    if (batch_size < 1) throw std::invalid_argument("[certify] --batch-size " + std::to_string(batch_size) + " must be at least 1");
    if (test_subset < 0) throw std::invalid_argument("[certify] --test-subset " + std::to_string(test_subset) + " must be >= 0");
    if (pgd_steps < 0) throw std::invalid_argument("[certify] --pgd-steps must be >= 0");
    for (double e : eps_list)
      if (!(e >= 0) || !std::isfinite(e))
        throw std::invalid_argument("[certify] --eps " + format_number(e) + " must be a number >= 0");

    LoadedRun run = load_run(checkpoint, dataset, data_dir);
    Network& net = run.net;
    const json& meta = run.meta;
    const TrainConfig& trained = run.trained;
    dataset = run.dataset;
    const DatasetSplits& data = run.data;
    std::vector<Relaxation> relaxations;
    for (const std::string& name : relaxation_names) relaxations.push_back(parse_relaxation(name));
    if (relaxations.empty()) relaxations = certify_relaxations(trained);
    if (eps_list.empty()) eps_list.push_back(trained.eps_test);
    net.to(device);

    EvalOptions o;
    o.eps.clear();
    for (double e : eps_list) o.eps.push_back(float(e));
    o.relaxations = relaxations;
    o.pgd = pgd && pgd_steps > 0;
    o.pgd_options.steps = pgd_steps;
    o.pgd_options.step_size = float(pgd_step_size);
    o.pgd_options.restarts = pgd_restarts;
    o.pgd_options.seed = trained.seed;
    o.elide = elide.resolve(trained.elide);
    o.batch_size = batch_size;
    o.subset = test_subset;
    const EvalReport r = evaluate(net, data.test, o);

    std::cout << "[certify] " << checkpoint << ": " << net.describe() << ", trained with " << trained.method
              << " (eps_train " << format_number(trained.eps_train) << ") for " << meta.value("epoch", 0)
              << " epochs\n";
    char cell[64];
    std::snprintf(cell, sizeof cell, "%.2f%%", 100.0 * r.accuracy());
    std::cout << "[certify] " << r.n << " test images of " << dataset << ", accuracy " << cell << ", "
              << format_number(r.seconds) << " s\n";
    std::string header = "relaxation  ";
    for (double e : eps_list) {
      std::snprintf(cell, sizeof cell, "  eps=%-8s", format_number(e).c_str());
      header += cell;
    }
    std::cout << header << "\n";
    auto row = [&](const std::string& name, auto value_at) {
      std::snprintf(cell, sizeof cell, "%-12s", name.c_str());
      std::string line = cell;
      for (size_t k = 0; k < r.radii.size(); ++k) {
        std::snprintf(cell, sizeof cell, "  %11.2f%%", 100.0 * value_at(r.radii[k]) / double(std::max<int64_t>(1, r.n)));
        line += cell;
      }
      std::cout << line << "\n";
    };
    if (o.pgd) row("pgd", [](const EvalAtRadius& at) { return double(at.pgd_robust); });
    for (size_t j = 0; j < relaxations.size(); ++j)
      row(relaxation_name(relaxations[j]), [j](const EvalAtRadius& at) { return double(at.certified[j].second); });
    if (want_json) {
      json j = r.to_json();
      j["checkpoint"] = checkpoint;
      j["dataset"] = dataset;
      j["network"] = net.describe();
      j["trained_with"] = trained.method;
      j["epoch"] = meta.value("epoch", 0);
      j["weights_hash"] = meta.value("weights_hash", "");
      std::cout << j.dump() << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << e.what() << std::endl;
    return 1;
  }
}

int certify_curve_command(int argc, char** argv) {
  CLI::App app{"certify curve: CR curves (certified accuracy at eps evenly spaced over [0, eps-max]) of a train "
               "checkpoint under several relaxations, and their areas CR-AUC, the paper's tightness measure "
               "(figure 2, tables 1 and 4)"};
  std::string checkpoint, dataset, data_dir, out_dir, device_name = "auto";
  std::vector<std::string> relaxation_names{"box", "hbox", "crown-ibp", "deepz", "crown"};
  double eps_max = 0.0;
  int points = 100, batch_size = 100, threads = 0;
  int64_t test_subset = 0;
  bool no_plot = false;
  ElideFlags elide;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoint", checkpoint, "checkpoint written by train (runs/<name>/checkpoint.ckpt)")->required();
  app.add_option("--eps-max", eps_max,
                 "largest radius (the paper: 0.07 for standard training, 0.15 and 0.4 for PGD 0.1 and 0.3)")
      ->required();
  app.add_option("--points", points, "number of radii, 0 and eps-max included")->capture_default_str();
  app.add_option("--relaxations", relaxation_names, "relaxations, one curve each")->delimiter(',')->capture_default_str();
  app.add_option("--dataset", dataset, "data set (default: the one the checkpoint was trained on)");
  app.add_option("--data-dir", data_dir, "where the data set lives (default: the run's --data-dir, else the usual search)");
  app.add_option("--test-subset", test_subset, "use the first N test images (0: all)");
  app.add_option("--batch-size", batch_size, "evaluation batch size")->capture_default_str();
  add_elide_flags(app, elide);
  app.add_option("--out", out_dir, "folder for cr_curve.csv, cr_curve.gp, cr_curve.png, cr_auc.json (default: the checkpoint's folder)");
  app.add_flag("--no-plot", no_plot, "write the CSV and the gnuplot script but do not run gnuplot");
  app.add_option("--device", device_name, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (!(eps_max > 0) || !std::isfinite(eps_max))
      throw std::invalid_argument("[certify] --eps-max " + format_number(eps_max) + " must be a number > 0");
    if (points < 2) throw std::invalid_argument("[certify] --points " + std::to_string(points) + " must be at least 2");
    if (batch_size < 1) throw std::invalid_argument("[certify] --batch-size " + std::to_string(batch_size) + " must be at least 1");
    if (test_subset < 0) throw std::invalid_argument("[certify] --test-subset " + std::to_string(test_subset) + " must be >= 0");
    if (threads < 0) throw std::invalid_argument("[certify] --threads " + std::to_string(threads) + " must be >= 0");
    if (relaxation_names.empty()) throw std::invalid_argument("[certify] --relaxations is empty");
    std::vector<Relaxation> relaxations;
    for (const std::string& name : relaxation_names) relaxations.push_back(parse_relaxation(name));
    if (out_dir.empty()) out_dir = std::filesystem::path(checkpoint).parent_path().string();
    if (out_dir.empty()) out_dir = ".";
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) throw std::runtime_error("[certify] --out " + out_dir + ": " + ec.message());

    TrainConfig runtime;
    runtime.threads = threads;
    runtime.device = device_name;
    const Device device = prepare_runtime(runtime);
    std::cerr << device_banner(device) << std::endl;
    LoadedRun run = load_run(checkpoint, dataset, data_dir);
    run.net.to(device);

    tools::CrCurves curves;
    curves.eps = tools::linspace(0.0, eps_max, points);
    EvalOptions o;
    o.eps.clear();
    for (double e : curves.eps) o.eps.push_back(float(e));
    o.relaxations = relaxations;
    o.pgd = false;
    o.elide = elide.resolve(run.trained.elide);
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
    const std::string csv = (std::filesystem::path(out_dir) / "cr_curve.csv").string();
    const std::string png = (std::filesystem::path(out_dir) / "cr_curve.png").string();
    tools::write_curves_csv(csv, curves);
    const std::string title = run.net.describe() + " on " + run.dataset + ", trained with " + run.trained.method +
                              " (" + std::to_string(r.n) + " test images)";
    const std::string script = tools::write_curves_gnuplot(csv, png, curves, title);
    std::string why;
    const bool plotted = !no_plot && tools::run_gnuplot(script, &why);

    json auc = json::object();
    std::cout << "[curve] " << checkpoint << ": " << r.n << " test images of " << run.dataset << ", accuracy "
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
    summary["checkpoint"] = checkpoint;
    summary["dataset"] = run.dataset;
    summary["network"] = run.net.describe();
    summary["trained_with"] = run.trained.method;
    summary["n"] = r.n;
    summary["accuracy"] = r.accuracy();
    summary["eps_max"] = eps_max;
    summary["points"] = points;
    summary["cr_auc"] = auc;
    const std::string summary_path = (std::filesystem::path(out_dir) / "cr_auc.json").string();
    {
      std::ofstream out(summary_path);
      out << summary.dump(2) << "\n";
      if (!out) throw std::runtime_error("[certify] cannot write " + summary_path);
    }
    std::cout << "[curve] wrote " << csv << ", " << script << ", " << summary_path;
    if (plotted) std::cout << ", " << png;
    std::cout << std::endl;
    if (!no_plot && !plotted) std::cerr << "[curve] no figure: " << why << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << e.what() << std::endl;
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") return usage(stdout);
  if (command == "bounds") return cte::certify_bounds_command(argc - 1, argv + 1);
  if (command == "eval") return certify_eval_command(argc - 1, argv + 1);
  if (command == "curve") return certify_curve_command(argc - 1, argv + 1);
  std::fprintf(stderr, "[certify] unknown command '%s'\n", command.c_str());
  return usage(stderr);
}
