// The shared flag checks of cli_flags.h.
#include "tools/lib/cli_flags.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "relaxations/relaxations.h"

namespace cte::tools {
namespace {

std::string number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

}  // namespace

void reject_empty_numbers(CLI::App& app, const std::vector<std::string>& may_be_empty) {
  const CLI::Validator non_empty(
      [](std::string& value) { return value.empty() ? std::string("an empty value is not a number") : std::string(); },
      "", "NON-EMPTY");
  for (CLI::Option* option : app.get_options()) {
    // CLI11 names the value type of a numeric option FLOAT, INT or UINT (with
    // ":VALIDATOR" appended for checked ones).
    if (std::find(may_be_empty.begin(), may_be_empty.end(), option->get_name()) != may_be_empty.end()) continue;
    const std::string type = option->get_type_name();
    for (const char* numeric : {"FLOAT", "INT", "UINT", "NUMBER"}) {
      const std::string name = numeric;
      if (type == name || type.rfind(name + ":", 0) == 0) {
        option->check(non_empty);
        break;
      }
    }
  }
  for (CLI::App* sub : app.get_subcommands({})) reject_empty_numbers(*sub, may_be_empty);
}

bool empty_list_given(const CLI::App& app, const std::string& name) {
  const CLI::Option* option = app.get_option_no_throw(name);
  if (option == nullptr) return false;
  const std::vector<std::string>& given = option->results();
  const bool has_empty = std::find(given.begin(), given.end(), std::string()) != given.end();
  // CLI11 stores 0 for an empty entry beside others (--milestones '' --milestones 50: [0, 50]).
  if (has_empty && given.size() > 1)
    throw std::invalid_argument(name + ": an empty value among others; give '' alone for an empty list");
  return has_empty;
}

void check_pgd_flags(const std::string& tool, int steps, double step_size, int restarts) {
  const std::string tag = "[" + tool + "] ";
  if (steps < 0) throw std::invalid_argument(tag + "--pgd-steps " + std::to_string(steps) + " must be >= 0");
  if (!(std::isfinite(step_size) && step_size > 0))
    throw std::invalid_argument(tag + "--pgd-step-size " + number(step_size) + " must be > 0");
  if (restarts < 0)
    throw std::invalid_argument(tag + "--pgd-restarts " + std::to_string(restarts) + " must be >= 0");
}

bool warn_if_eps_covers_inputs(const std::string& tool, const std::string& flag, double eps) {
  if (!(eps >= 1.0)) return false;
  std::fprintf(stderr,
               "[%s] warning: %s %s is >= 1, a ball that covers the whole input range [0, 1]; inputs are "
               "scaled to [0, 1], so a radius of k pixel levels is k/255 (e.g. 2/255 = %.6g)\n",
               tool.c_str(), flag.c_str(), number(eps).c_str(), 2.0 / 255.0);
  return true;
}

void add_crown_tie_flag(CLI::App& app, int& slope, const std::string& default_text) {
  app.add_option("--crown-tie", slope,
                 "CROWN's (and CROWN-IBP's) lower slope for an unstable ReLU with -l = u exactly: 0 as in the "
                 "paper's section 2, or 1 as in the authors' code (" + default_text + ")")
      ->check(CLI::IsMember({0, 1}));
}

void add_alpha_crown_flags(CLI::App& app, AlphaCrownOptions& alpha) {
  app.add_option("--alpha-steps", alpha.steps,
                 "alpha-crown, triangle, parallelogram (the optimised-slope relaxations): Adam steps on the slopes, from "
                 "CROWN's (0: CROWN's bound; every step's bound is sound and each spec row keeps its best)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--alpha-lr", alpha.lr, "alpha-crown, triangle, parallelogram: Adam's learning rate for the slopes (in [0, 1])")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--alpha-patience", alpha.patience,
                 "alpha-crown, triangle, parallelogram: stop after this many steps in a row without a spec row's bound improving by more "
                 "than 1e-6 relative (0: run every step)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option_function<double>(
         "--alpha-memory-cap",
         [&alpha](double mib) { alpha.memory_cap_bytes = std::max<size_t>(1, size_t(mib * double(1 << 20))); },
         "triangle, parallelogram: MiB for one chunk of an intermediate layer's optimised neurons (their slopes, "
         "Adam's state and walk; a smaller cap means more chunks, the same bounds) (default 256)")
      ->check(CLI::PositiveNumber);
}

void add_bound_memory_cap_flag(CLI::App& app, size_t& bytes) {
  app.add_option_function<double>(
         "--bound-memory-cap", [&bytes](double mib) { bytes = std::max<size_t>(1, size_t(mib * double(1 << 20))); },
         "MiB of workspace per bound computation for DeepZ, CROWN, CROWN-0 and hBox: "
         "intermediate bounds are computed in chunks of neurons that fit it (the same bounds, more chunks when "
         "smaller); in training, chunks stay on the tape while the cap lasts and the rest are recomputed in the "
         "backward pass, so a larger cap trades memory for time (default " +
             std::to_string(bytes >> 20) + ")")
      ->check(CLI::PositiveNumber);
}

void add_pgd_start_flag(CLI::App& app, std::string& start) {
  app.add_option("--pgd-start", start,
                 "where evaluation PGD starts: random (a uniform point of the ball clipped to [0, 1], as the "
                 "authors do; seeded) or zero (the image itself); restarts always start at random points")
      ->capture_default_str();
}

bool pgd_random_start(const std::string& tool, const std::string& start) {
  if (start == "random") return true;
  if (start == "zero") return false;
  throw std::invalid_argument("[" + tool + "] --pgd-start '" + start + "' is unknown; expected random or zero");
}

}  // namespace cte::tools
