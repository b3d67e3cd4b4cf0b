// The helpers of tools/certify/figures.h.
#include "tools/certify/figures.h"

#include <cmath>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "tools/lib/curves.h"
#include "train/config.h"

namespace cte::tools {

using namespace cte::train;

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

void check_grid(const char* flag, double end, int points) {
  if (!(end > 0) || !std::isfinite(end))
    throw std::invalid_argument(std::string("[certify] ") + flag + " " + format_number(end) + " must be a number > 0");
  if (points < 2) throw std::invalid_argument("[certify] --points " + std::to_string(points) + " must be at least 2");
}

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

}  // namespace cte::tools
