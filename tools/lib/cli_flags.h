// Flag checks shared by train, certify and certify bounds, so that the same
// flag means and is checked the same everywhere.
#pragma once
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace cte {
struct AlphaCrownOptions;
}

namespace cte::tools {

// Makes every numeric option of `app` (and of its subcommands) refuse an
// empty value: CLI11 reads `--eps ""` as 0, which silently certifies nothing.
// Options named in `may_be_empty` (lists where '' means none, e.g. train's
// --milestones) are left alone: their caller clears the list after parsing,
// where empty_list_given says so. Call after the options are added, before parsing.
void reject_empty_numbers(CLI::App& app, const std::vector<std::string>& may_be_empty = {});
// True when the list option `name` of `app` was given as '' alone (CLI11 would
// have stored one 0 in its list); throws std::invalid_argument when '' came
// with other values (--milestones '' --milestones 50).
bool empty_list_given(const CLI::App& app, const std::string& name);

// PGD's flags: steps >= 0, a finite step size > 0, restarts >= 0. Throws
// std::invalid_argument "[tool] --pgd-step-size nan must be > 0".
void check_pgd_flags(const std::string& tool, int steps, double step_size, int restarts);

// eps >= 1 covers the whole input range [0, 1] (every image is in every
// ball): legal, but most likely meant as pixels/255. Warns on stderr naming
// the flag and the value; returns whether it warned.
bool warn_if_eps_covers_inputs(const std::string& tool, const std::string& flag, double eps);

// --crown-tie 0|1: CROWN's lower slope for an unstable ReLU with -l = u
// (BoundOptions::crown_tie_slope). `default_text` ends the help text.
void add_crown_tie_flag(CLI::App& app, int& slope, const std::string& default_text);

// --alpha-steps, --alpha-lr, --alpha-patience, --alpha-memory-cap: the optimised slopes' optimisation (alpha-crown, triangle, parallelogram)
// (AlphaCrownOptions in relaxations/relaxations.h), checked by CLI11.
void add_alpha_crown_flags(CLI::App& app, AlphaCrownOptions& alpha);

// --bound-memory-cap MiB: BoundOptions::memory_cap_bytes, the backsubstitution
// relaxations' workspace per bound computation (and, in training, the tape's).
void add_bound_memory_cap_flag(CLI::App& app, size_t& bytes);

// --pgd-start random|zero: where evaluation PGD starts its first attempt
// (the restarts always start at random points of the ball).
void add_pgd_start_flag(CLI::App& app, std::string& start);
// "random" -> true, "zero" -> false; throws "[tool] --pgd-start 'x' ..." otherwise.
bool pgd_random_start(const std::string& tool, const std::string& start);

}  // namespace cte::tools
