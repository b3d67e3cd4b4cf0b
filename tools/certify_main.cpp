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
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/dataset.h"
#include "engine/device.h"
#include "relaxations/cli_bounds.h"
#include "relaxations/relaxations.h"
#include "train/config.h"
#include "train/trainer.h"

namespace {

using nlohmann::json;
using namespace cte;
using namespace cte::train;

int usage(std::FILE* out) {
  std::fprintf(out,
               "usage: certify <command> [flags]\n"
               "  bounds   bounds of a network on given inputs (certify bounds --help)\n"
               "  eval     certified accuracy of a trained checkpoint per relaxation and radius (certify eval --help)\n");
  return out == stdout ? 0 : 2;
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
  std::optional<bool> elide;
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
  app.add_flag("--elide,!--no-elide", elide, "last-layer elision (default: as the run trained)");
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

    json meta;
    Network net = network_from_checkpoint(checkpoint, &meta);
    TrainConfig trained;
    apply_config_json(meta.value("config", json::object()), trained, checkpoint);
    if (dataset.empty()) dataset = meta.value("dataset", trained.dataset);
    if (data_dir.empty() && dataset == trained.dataset) data_dir = trained.data_dir;
    std::vector<Relaxation> relaxations;
    for (const std::string& name : relaxation_names) relaxations.push_back(parse_relaxation(name));
    if (relaxations.empty()) relaxations = certify_relaxations(trained);
    if (eps_list.empty()) eps_list.push_back(trained.eps_test);

    const DatasetSplits data = load_dataset(dataset, data_dir);
    if (Shape{data.test.channels, data.test.height, data.test.width}.numel() != net.input_shape().numel() ||
        data.test.num_classes != int(net.output_shape()[0]))
      throw std::invalid_argument("[certify] " + checkpoint + " holds " + net.describe() + " with " +
                                  std::to_string(net.output_shape()[0]) + " outputs, which does not fit " + dataset +
                                  " images (" + std::to_string(data.test.channels) + "x" +
                                  std::to_string(data.test.height) + "x" + std::to_string(data.test.width) + ", " +
                                  std::to_string(data.test.num_classes) + " classes)");
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
    o.elide = elide.value_or(trained.elide);
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") return usage(stdout);
  if (command == "bounds") return cte::certify_bounds_command(argc - 1, argv + 1);
  if (command == "eval") return certify_eval_command(argc - 1, argv + 1);
  std::fprintf(stderr, "[certify] unknown command '%s'\n", command.c_str());
  return usage(stderr);
}
