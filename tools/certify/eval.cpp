// certify eval: accuracy, PGD accuracy and certified accuracy of a train
// checkpoint per relaxation (and the best and bab columns) and radius.
//
// certify eval --checkpoint runs/x/checkpoint.ckpt [--relaxations box,hbox,deepz,crown,crown-ibp]
//              [--eps 0.1,0.2,0.3] [--dataset D --data-dir DIR] [--test-subset N] [--pgd]
//              [--device cpu|cuda|auto] [--json]
//     loads a checkpoint written by `train` and prints certified accuracy
//     for every (relaxation, eps) pair, plus accuracy and (with --pgd) PGD
//     accuracy: the paper's table 7 (training x certification relaxation).
//     With --json the last stdout line is the same table as one JSON object.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "relaxations/relaxations.h"
#include "tools/certify/checkpoints.h"
#include "tools/certify/commands.h"
#include "tools/lib/cli_flags.h"
#include "train/config.h"
#include "train/trainer.h"

namespace cte::tools {

using nlohmann::json;
using namespace cte::train;

int certify_eval_command(int argc, char** argv) {
  CLI::App app{"certify eval: accuracy, PGD accuracy and certified accuracy of a train checkpoint for any "
               "relaxations at any radii (the paper's table 7)"};
  std::string checkpoint, dataset, data_dir, device_name = "auto";
  std::vector<std::string> relaxation_names;
  std::vector<double> eps_list;
  int64_t test_subset = 0;
  int batch_size = 100, threads = 0, pgd_steps = 100, pgd_restarts = 0, crown_tie = -1;
  double pgd_step_size = 0.01;
  std::string pgd_start = "random";
  bool pgd = false, want_json = false, unsound_fast = false;
  ElideFlags elide;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoint", checkpoint, "checkpoint written by train (runs/<name>/checkpoint.ckpt), or its run folder")
      ->required();
  app.add_option("--relaxations", relaxation_names,
                 "relaxations to certify with, any of " + relaxation_names_list() +
                     ", bab (branch and bound on the images the listed relaxations leave, --bab-timeout per "
                     "image) and best (the images any of them certifies, a row of its own; default: the run's "
                     "--certify-with)")
      ->delimiter(',');
  app.add_option("--eps", eps_list, "radii, e.g. 0.1,0.2,0.3 (default: the run's --eps-test)")->delimiter(',');
  app.add_option("--dataset", dataset, "data set (default: the one the checkpoint was trained on)");
  app.add_option("--data-dir", data_dir, "where the data set lives (default: the run's --data-dir, else the usual search)");
  app.add_option("--test-subset", test_subset, "evaluate on the first N test images (0: all)")->capture_default_str();
  app.add_option("--batch-size", batch_size, "evaluation batch size")->capture_default_str();
  app.add_flag("--pgd", pgd, "also run PGD (cross-entropy, clipped to the ball and, for pixel inputs, to [0, 1]; a --pca run's coordinates are not clipped)");
  app.add_option("--pgd-steps", pgd_steps, "PGD steps")->capture_default_str();
  app.add_option("--pgd-step-size", pgd_step_size, "PGD step size")->capture_default_str();
  app.add_option("--pgd-restarts", pgd_restarts, "extra PGD runs from random points of the ball")->capture_default_str();
  add_pgd_start_flag(app, pgd_start);
  add_elide_flags(app, elide);
  add_crown_tie_flag(app, crown_tie, "default: as the run trained");
  AlphaCrownOptions alpha;
  add_alpha_crown_flags(app, alpha);
  EvalOptions o;
  add_bound_memory_cap_flag(app, o.bound_memory_cap_bytes);
  add_bab_flags(app, o.bab_options);
  add_unsound_flag(app, unsound_fast);
  app.add_option("--device", device_name, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  app.add_flag("--json", want_json, "end with the results as one JSON line on stdout (the banner goes to stderr)");
  reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; usage errors: 2
  }
  checkpoint = resolve_checkpoint(checkpoint);
  const Device device = start_device(threads, device_name, std::cerr);
  if (batch_size < 1) throw std::invalid_argument("[certify] --batch-size " + std::to_string(batch_size) + " must be at least 1");
  if (test_subset < 0) throw std::invalid_argument("[certify] --test-subset " + std::to_string(test_subset) + " must be >= 0");
  check_pgd_flags("certify", pgd_steps, pgd_step_size, pgd_restarts);
  check_bab_flags(o.bab_options);
  const bool pgd_random = pgd_random_start("certify", pgd_start);
  for (double e : eps_list) {
    if (!(e >= 0) || !std::isfinite(e))
      throw std::invalid_argument("[certify] --eps " + format_number(e) + " must be a number >= 0");
    warn_if_eps_covers_inputs("certify", "--eps", e);
  }

  LoadedRun run = load_run(checkpoint, dataset, data_dir);
  Network& net = run.net;
  const json& meta = run.meta;
  const TrainConfig& trained = run.trained;
  dataset = run.dataset;
  const DatasetSplits& data = run.data;
  auto [relaxations, best, bab] = parse_certify_columns(relaxation_names);
  if (relaxations.empty() && !bab) {
    relaxations = certify_relaxations(trained);
    best = best || std::count(trained.certify_with.begin(), trained.certify_with.end(), kBestColumn) > 0;
    bab = std::count(trained.certify_with.begin(), trained.certify_with.end(), kBabColumn) > 0;
  }
  if (eps_list.empty()) eps_list.push_back(trained.eps_test);
  net.to(device);

  o.eps.clear();
  for (double e : eps_list) o.eps.push_back(float(e));
  o.relaxations = relaxations;
  o.best = best;
  o.bab = bab;
  o.bab_options.alpha = alpha;
  o.pgd = pgd && pgd_steps > 0;
  o.pgd_options.steps = pgd_steps;
  o.pgd_options.step_size = float(pgd_step_size);
  o.pgd_options.restarts = pgd_restarts;
  o.pgd_options.seed = trained.seed;
  o.pgd_random_start = pgd_random;
  o.elide = elide.resolve(trained.elide);
  o.crown_tie_slope = crown_tie >= 0 ? crown_tie : trained.crown_tie;
  o.alpha = alpha;
  o.sound = !unsound_fast;
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
  if (bab) row(kBabColumn, [](const EvalAtRadius& at) { return double(at.bab_certified); });
  if (best) row(kBestColumn, [](const EvalAtRadius& at) { return double(at.best_certified); });
  std::cout << "[certify] " << (o.sound ? "sound bounds (float32 rounding accounted for)" : "fast bounds (--unsound-fast)")
            << ", CROWN tie slope " << o.crown_tie_slope
            << (o.pgd ? std::string(", PGD from a ") + (pgd_random ? "random point of the ball" : "zero offset") : "")
            << "; smallest certified margin:";
  for (const EvalAtRadius& at : r.radii)
    for (size_t j = 0; j < relaxations.size(); ++j)
      std::cout << " " << relaxation_name(relaxations[j]) << "@" << format_number(at.eps) << " "
                << format_number(at.smallest_margin[j]);
  std::cout << "\n";
  if (bab) {
    std::cout << "[certify] bab: branch and bound on the correct images no listed relaxation certifies, "
              << format_number(o.bab_options.timeout_s) << " s each" << (o.bab_options.alpha_slopes ? ", alpha slopes" : "")
              << ":";
    for (const EvalAtRadius& at : r.radii)
      std::cout << " eps " << format_number(at.eps) << " " << at.bab_runs << " runs (" << at.bab_unsat << " unsat, "
                << at.bab_sat << " sat, " << at.bab_timeouts << " timeouts, " << at.bab_unknown << " unknown)";
    std::cout << "\n";
  }
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
}

}  // namespace cte::tools
