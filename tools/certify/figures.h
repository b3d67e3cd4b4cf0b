// What certify curve, landscape and sgd share: the flags of the commands that
// plot a checkpoint (curve, landscape), loading it, and running gnuplot.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "engine/device.h"
#include "relaxations/relaxations.h"
#include "tools/certify/checkpoints.h"

namespace cte::tools {

// Flags that certify curve and certify landscape share.
struct FigureFlags {
  std::string checkpoint, dataset, data_dir, out_dir, device_name = "auto";
  std::vector<std::string> relaxation_names{"box", "hbox", "crown-ibp", "deepz", "crown"};
  int threads = 0;
  bool no_plot = false;
};

void add_figure_flags(CLI::App& app, FigureFlags& f, const std::string& outputs, const std::string& per_relaxation);

// Runs gnuplot on the script (unless --no-plot) and lists the files written.
void finish_figure(const char* tag, std::vector<std::string> written, const std::string& script,
                   const std::string& png, bool no_plot);

// A sampled axis: its end (flag) must be a number > 0 and --points at least 2.
void check_grid(const char* flag, double end, int points);

// What a figure command starts from: the loaded run on its device, and the
// relaxations of --relaxations.
struct FigureRun {
  LoadedRun run;
  Device device;
  std::vector<Relaxation> relaxations;
};

// Checks the shared flags, creates the output folder, starts the device and loads the run.
FigureRun start_figure(FigureFlags& f);

}  // namespace cte::tools
