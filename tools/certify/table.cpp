// certify table: certified accuracy of several train checkpoints (rows)
// under several relaxations (columns): the paper's table 7.
//
// certify table --checkpoints a.ckpt,b.ckpt,... [--relaxations ...] [--eps E] [--test-subset N]
//               [--out table.md]
//     certified accuracy of each checkpoint (a row: how it was trained)
//     under each relaxation (a column), at its own eps_test or --eps: the
//     paper's table 7 (training x certification relaxation), as text and
//     as a Markdown table.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "relaxations/relaxations.h"
#include "tools/certify/checkpoints.h"
#include "tools/certify/commands.h"
#include "tools/lib/cli_flags.h"
#include "train/config.h"
#include "train/trainer.h"

namespace cte::tools {

using namespace cte::train;

int certify_table_command(int argc, char** argv) {
  CLI::App app{"certify table: certified accuracy of several train checkpoints (rows: how each was trained) under "
               "several relaxations (columns), each at its own eps_test or --eps: the paper's table 7"};
  std::vector<std::string> checkpoints;
  std::vector<std::string> relaxation_names{"box", "hbox", "crown-ibp", "deepz", "crown"};
  std::string out_path, device_name = "auto", data_dir;
  double eps = -1.0;
  int64_t test_subset = 0;
  int batch_size = 100, threads = 0, crown_tie = -1;
  bool unsound_fast = false;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--checkpoints", checkpoints, "checkpoints written by train (or their run folders), one row each")
      ->delimiter(',')
      ->required();
  app.add_option("--relaxations", relaxation_names,
                 "relaxations, one column each; bab adds branch and bound on the images they leave (--bab-timeout "
                 "per image), best a column of the images any of them certifies")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--eps", eps, "radius for every row (default: each run's --eps-test)");
  app.add_option("--test-subset", test_subset, "use the first N test images (0: all)")->capture_default_str();
  app.add_option("--batch-size", batch_size, "evaluation batch size")->capture_default_str();
  app.add_option("--data-dir", data_dir, "where the data sets live (default: each run's --data-dir, else the usual search)");
  app.add_option("--out", out_path, "also write the table as Markdown to this file");
  add_crown_tie_flag(app, crown_tie, "default: as each run trained; a column of the table");
  AlphaCrownOptions alpha;
  add_alpha_crown_flags(app, alpha);
  size_t bound_memory_cap_bytes = EvalOptions{}.bound_memory_cap_bytes;
  add_bound_memory_cap_flag(app, bound_memory_cap_bytes);
  verify::VerifyOptions bab_options = bab_column_defaults();
  add_bab_flags(app, bab_options);
  add_unsound_flag(app, unsound_fast);
  app.add_option("--device", device_name, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (app.count("--eps") && (!(eps >= 0) || !std::isfinite(eps)))
    throw std::invalid_argument("[certify] --eps " + format_number(eps) + " must be a number >= 0");
  if (app.count("--eps")) warn_if_eps_covers_inputs("certify", "--eps", eps);
  if (batch_size < 1) throw std::invalid_argument("[certify] --batch-size " + std::to_string(batch_size) + " must be at least 1");
  if (test_subset < 0) throw std::invalid_argument("[certify] --test-subset " + std::to_string(test_subset) + " must be >= 0");
  check_bab_flags(bab_options);
  const auto [relaxations, best, bab] = parse_certify_columns(relaxation_names);
  if (relaxations.empty() && !bab)
    throw std::invalid_argument("[certify] --relaxations names no relaxation besides best");
  const Device device = start_device(threads, device_name, std::cerr);

  // One row per checkpoint: its run (the folder train wrote, which tells two
  // Box rows apart), how it was trained, then a cell per relaxation.
  std::vector<std::string> header{"run", "net", "data set", "eps", "trained with", "crown tie"};
  const size_t first_relaxation = header.size();
  for (Relaxation r : relaxations) header.push_back(relaxation_name(r));
  if (bab) header.push_back(kBabColumn);
  if (best) header.push_back(kBestColumn);
  std::vector<std::vector<std::string>> rows;
  for (const std::string& given : checkpoints) {
    const std::string checkpoint = resolve_checkpoint(given);
    LoadedRun run = load_run(checkpoint, "", data_dir);
    run.net.to(device);
    EvalOptions o;
    o.eps = {float(eps >= 0 ? eps : run.trained.eps_test)};
    o.relaxations = relaxations;
    o.best = best;
    o.bab = bab;
    o.bab_options = bab_options;
    o.bab_options.alpha = alpha;
    o.pgd = false;
    o.elide = run.trained.elide;
    o.crown_tie_slope = crown_tie >= 0 ? crown_tie : run.trained.crown_tie;
    o.alpha = alpha;
    o.bound_memory_cap_bytes = bound_memory_cap_bytes;
    o.sound = !unsound_fast;
    o.batch_size = batch_size;
    o.subset = test_subset;
    const EvalReport r = evaluate(run.net, run.data.test, o);
    std::string run_name = std::filesystem::path(checkpoint).parent_path().filename().string();
    if (run_name.empty()) run_name = std::filesystem::path(checkpoint).stem().string();
    std::vector<std::string> row{run_name, run.trained.net, run.dataset, format_number(o.eps[0]), run.trained.method,
                                 std::to_string(o.crown_tie_slope)};
    auto percent_cell = [&](int64_t count) {
      char cell[32];
      std::snprintf(cell, sizeof cell, "%.2f%%", 100.0 * double(count) / double(std::max<int64_t>(1, r.n)));
      return std::string(cell);
    };
    for (size_t j = 0; j < relaxations.size(); ++j) row.push_back(percent_cell(r.radii[0].certified[j].second));
    if (bab) row.push_back(percent_cell(r.radii[0].bab_certified));
    if (best) row.push_back(percent_cell(r.radii[0].best_certified));
    rows.push_back(std::move(row));
    std::cerr << "[table] " << checkpoint << ": " << r.n << " test images, " << format_number(r.seconds) << " s";
    if (bab)
      std::cerr << "; bab: " << r.radii[0].bab_runs << " runs, " << r.radii[0].bab_timeouts << " timeouts, "
                << r.radii[0].bab_unknown << " unknown, " << r.radii[0].bab_sat << " sat";
    std::cerr << std::endl;
  }
  // Text: every column as wide as its widest cell; names left, percentages right.
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  auto text_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      const std::string pad(width[c] - cells[c].size(), ' ');
      line += (c ? "  " : "") + (c >= first_relaxation ? pad + cells[c] : cells[c] + (c + 1 < cells.size() ? pad : ""));
    }
    return line + "\n";
  };
  auto markdown_line = [](const std::vector<std::string>& cells) {
    std::string line = "|";
    for (const std::string& cell : cells) line += " " + cell + " |";
    return line + "\n";
  };
  std::string text = text_line(header), markdown = markdown_line(header) + "|";
  for (size_t c = 0; c < header.size(); ++c) markdown += c >= first_relaxation ? "---:|" : "---|";
  markdown += "\n";
  for (const auto& row : rows) {
    text += text_line(row);
    markdown += markdown_line(row);
  }
  std::cout << text;
  if (!out_path.empty()) {
    std::ofstream out(out_path);
    out << markdown;
    if (!out) throw std::runtime_error("[certify] --out " + out_path + ": cannot write");
    std::cout << "[table] wrote " << out_path << std::endl;
  }
  return 0;
}

}  // namespace cte::tools
