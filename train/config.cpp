// TrainConfig: the flag table (CLI11), the JSON form (same key names), the
// --config merge (flags win) and validation before any work.
#include "train/config.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "engine/file_io.h"
#include "tools/lib/cli_flags.h"
#include "train/networks.h"

namespace cte::train {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& message) { throw std::invalid_argument("[train] " + message); }

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) s += (i ? sep : "") + items[i];
  return s;
}

// One configuration key: how to write it to JSON and read it back.
struct Field {
  const char* name;
  std::function<json(const TrainConfig&)> get;
  std::function<void(const json&, TrainConfig&, const std::string& where)> set;
};

template <typename T>
T json_number(const json& v, const std::string& where) {
  if (!v.is_number()) throw std::invalid_argument(where + " must be a number, got " + v.dump());
  if constexpr (std::is_integral_v<T>) {
    const double d = v.get<double>();
    if (d != std::floor(d)) throw std::invalid_argument(where + " must be an integer, got " + v.dump());
    if constexpr (std::is_unsigned_v<T>) {
      if (d < 0) throw std::invalid_argument(where + " must not be negative, got " + v.dump());
    }
    // Out of T's range the conversion is undefined (a fuzzed 3.9e50 epochs)
    // or wraps (2^32 + 5 epochs would be 5): refused either way. Integers are
    // compared exactly; for other numbers T's minimum and 2^digits are exact
    // doubles (T's maximum may not be).
    using Limits = std::numeric_limits<T>;
    bool in_range;
    if (v.is_number_unsigned()) in_range = v.get<uint64_t>() <= uint64_t(Limits::max());
    else if (v.is_number_integer()) in_range = v.get<int64_t>() >= int64_t(Limits::min()) &&
                                               (Limits::digits >= 63 || v.get<int64_t>() <= int64_t(Limits::max()));
    else in_range = d >= double(Limits::min()) && d < std::ldexp(1.0, Limits::digits);
    if (!in_range) throw std::invalid_argument(where + " " + v.dump() + " is out of range");
    if (v.is_number_unsigned()) return T(v.get<uint64_t>());
    if (v.is_number_integer()) return T(v.get<int64_t>());
  }
  return T(v.get<double>());
}

std::string json_string(const json& v, const std::string& where) {
  if (!v.is_string()) throw std::invalid_argument(where + " must be a string, got " + v.dump());
  return v.get<std::string>();
}

// A list given as a JSON array or as one comma-separated string.
std::vector<std::string> json_list(const json& v, const std::string& where) {
  std::vector<std::string> out;
  if (v.is_string()) {
    std::stringstream ss(v.get<std::string>());
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) out.push_back(item);
    return out;
  }
  if (!v.is_array()) throw std::invalid_argument(where + " must be a list, got " + v.dump());
  for (const json& item : v) {
    if (item.is_string()) out.push_back(item.get<std::string>());
    else if (item.is_number()) out.push_back(item.dump());
    else throw std::invalid_argument(where + " holds " + item.dump() + ", expected strings or numbers");
  }
  return out;
}

#define CTE_FIELD_NUM(key, member)                                                          \
  Field{key, [](const TrainConfig& c) { return json(c.member); },                           \
        [](const json& v, TrainConfig& c, const std::string& w) {                           \
          c.member = json_number<decltype(c.member)>(v, w);                                 \
        }}
#define CTE_FIELD_STR(key, member)                                                          \
  Field{key, [](const TrainConfig& c) { return json(c.member); },                           \
        [](const json& v, TrainConfig& c, const std::string& w) { c.member = json_string(v, w); }}
#define CTE_FIELD_BOOL(key, member)                                                         \
  Field{key, [](const TrainConfig& c) { return json(c.member); },                           \
        [](const json& v, TrainConfig& c, const std::string& w) {                           \
          if (!v.is_boolean()) throw std::invalid_argument(w + " must be true or false, got " + v.dump()); \
          c.member = v.get<bool>();                                                         \
        }}

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      CTE_FIELD_STR("dataset", dataset),
      CTE_FIELD_STR("data-dir", data_dir),
      CTE_FIELD_STR("net", net),
      CTE_FIELD_STR("method", method),
      CTE_FIELD_NUM("epochs", epochs),
      CTE_FIELD_NUM("warmup", warmup),
      CTE_FIELD_NUM("rampup", rampup),
      CTE_FIELD_NUM("eps-train", eps_train),
      CTE_FIELD_NUM("eps-test", eps_test),
      CTE_FIELD_NUM("eps-start", eps_start),
      CTE_FIELD_NUM("kappa-start", kappa_start),
      CTE_FIELD_NUM("kappa-end", kappa_end),
      CTE_FIELD_STR("kappa-schedule", kappa_schedule),
      CTE_FIELD_STR("eps-schedule", eps_schedule),
      CTE_FIELD_NUM("lr", lr),
      CTE_FIELD_STR("lr-schedule", lr_schedule),
      Field{"milestones", [](const TrainConfig& c) { return json(c.milestones); },
            [](const json& v, TrainConfig& c, const std::string& w) {
              c.milestones.clear();
              for (const std::string& s : json_list(v, w)) {
                try {
                  size_t used = 0;
                  const int m = std::stoi(s, &used);
                  if (used != s.size()) throw std::invalid_argument(s);
                  c.milestones.push_back(m);
                } catch (const std::exception&) {
                  throw std::invalid_argument(w + " holds '" + s + "', expected whole epochs");
                }
              }
            }},
      CTE_FIELD_NUM("lr-step-every", lr_step_every),
      CTE_FIELD_NUM("lr-decay-factor", lr_decay_factor),
      CTE_FIELD_NUM("l1", l1),
      CTE_FIELD_BOOL("l1-bias", l1_bias),
      CTE_FIELD_STR("init", init),
      CTE_FIELD_NUM("bound-reg", bound_reg),
      CTE_FIELD_NUM("l2", l2),
      CTE_FIELD_NUM("crown-tie", crown_tie),
      CTE_FIELD_NUM("alpha-steps", alpha.steps),
      CTE_FIELD_NUM("alpha-lr", alpha.lr),
      CTE_FIELD_NUM("alpha-patience", alpha.patience),
      CTE_FIELD_NUM("batch-size", batch_size),
      CTE_FIELD_BOOL("elide", elide),
      CTE_FIELD_BOOL("early-stops", early_stops),
      CTE_FIELD_STR("sparse-bounds", sparse_bounds),
      CTE_FIELD_BOOL("augment", augment),
      CTE_FIELD_NUM("seed", seed),
      CTE_FIELD_NUM("pgd-steps", pgd_steps),
      CTE_FIELD_NUM("pgd-step-size", pgd_step_size),
      CTE_FIELD_NUM("pgd-restarts", pgd_restarts),
      CTE_FIELD_STR("pgd-start", pgd_start),
      CTE_FIELD_NUM("train-pgd-steps", train_pgd_steps),
      CTE_FIELD_NUM("train-pgd-step-size", train_pgd_step_size),
      CTE_FIELD_STR("train-pgd-step-unit", train_pgd_step_unit),
      Field{"train-pgd-decay-at", [](const TrainConfig& c) { return json(c.train_pgd_decay_at); },
            [](const json& v, TrainConfig& c, const std::string& w) {
              c.train_pgd_decay_at.clear();
              for (const std::string& s : json_list(v, w)) {
                try {
                  size_t used = 0;
                  const double f = std::stod(s, &used);
                  if (used != s.size()) throw std::invalid_argument(s);
                  c.train_pgd_decay_at.push_back(f);
                } catch (const std::exception&) {
                  throw std::invalid_argument(w + " holds '" + s + "', expected fractions of the steps");
                }
              }
            }},
      CTE_FIELD_NUM("train-pgd-decay-factor", train_pgd_decay_factor),
      CTE_FIELD_BOOL("train-pgd-random-start", train_pgd_random_start),
      CTE_FIELD_BOOL("train-pgd-keep-highest-loss", train_pgd_keep_highest_loss),
      CTE_FIELD_BOOL("train-pgd-early-stop", train_pgd_early_stop),
      CTE_FIELD_NUM("sabr-lambda", sabr_lambda),
      CTE_FIELD_NUM("box-shrink", box_shrink),
      CTE_FIELD_STR("device", device),
      CTE_FIELD_BOOL("cuda-graph", cuda_graph),
      CTE_FIELD_STR("out", out),
      CTE_FIELD_BOOL("resume", resume),
      CTE_FIELD_NUM("eval-every", eval_every),
      CTE_FIELD_NUM("checkpoint-minutes", checkpoint_minutes),
      CTE_FIELD_NUM("stop-after-steps", stop_after_steps),
      Field{"certify-with", [](const TrainConfig& c) { return json(c.certify_with); },
            [](const json& v, TrainConfig& c, const std::string& w) { c.certify_with = json_list(v, w); }},
      CTE_FIELD_BOOL("unsound-fast", unsound_fast),
      CTE_FIELD_NUM("test-subset", test_subset),
      CTE_FIELD_NUM("train-subset", train_subset),
      CTE_FIELD_NUM("pca", pca),
      CTE_FIELD_NUM("threads", threads),
      CTE_FIELD_BOOL("quiet", quiet),
  };
  return table;
}

#undef CTE_FIELD_NUM
#undef CTE_FIELD_STR
#undef CTE_FIELD_BOOL

bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0; }

void check_eps(const char* flag, double v) {
  if (!finite_nonneg(v)) bad(std::string("--") + flag + " " + format_number(v) + " must be a number >= 0");
}

void check_unit(const char* flag, double v) {
  if (!(std::isfinite(v) && v >= 0 && v <= 1))
    bad(std::string("--") + flag + " " + format_number(v) + " must lie in [0, 1]");
}

// --NAME and --no-NAME as two flags, so --help shows no CLI11 "{false}"
// marker (which read as the default).
void add_on_off_flag(CLI::App& app, const std::string& name, bool& value, const std::string& help) {
  app.add_flag_callback("--" + name, [&value] { value = true; }, help);
  app.add_flag_callback("--no-" + name, [&value] { value = false; }, "turn --" + name + " off");
}

// Whether the flag of a config key was on the command line (for an on/off
// pair: either of the two).
bool given_on_command_line(const CLI::App& app, const std::string& key) {
  if (app.count("--" + key) > 0) return true;
  try {
    return app.count("--no-" + key) > 0;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

}  // namespace

std::string format_number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

const std::vector<TrainMethod>& train_method_table() {
  static const std::vector<TrainMethod> table = [] {
    std::vector<TrainMethod> t;
    //        name,      certified, relaxation,     attack,       small box, eps sched., beta,         certifier
    t.push_back({"natural", false, Relaxation::box, Attack::none, false, false, BetaSchedule::none, Relaxation::box,
                 "natural (cross-entropy only)"});
    t.push_back({"pgd", false, Relaxation::box, Attack::pgd, false, true, BetaSchedule::none, Relaxation::box,
                 "pgd (adversarial training)"});
    // One certified method per differentiable relaxation but crown-ibp, whose
    // pure form is crown-ibp-r (the name crown-ibp is the mix below).
    for (Relaxation r : all_relaxations()) {
      if (r == Relaxation::crown_ibp) continue;
      t.push_back({relaxation_name(r), true, r, Attack::none, false, true, BetaSchedule::none, r, relaxation_name(r)});
    }
    // The slopes are optimised without the tape, then one recorded bound with them held fixed (the
    // envelope theorem gives the optimised bound's gradient at an optimum).
    t.push_back({"alpha-crown", true, Relaxation::alpha_crown, Attack::none, false, true, BetaSchedule::none,
                 Relaxation::alpha_crown, "alpha-crown (CROWN with optimised lower slopes: --alpha-steps ...)"});
    t.push_back({"triangle", true, Relaxation::triangle, Attack::none, false, true, BetaSchedule::none,
                 Relaxation::triangle, "triangle (section 5.2's Triangle by optimised slopes, every bound: --alpha-steps ...)"});
    t.push_back({"parallelogram", true, Relaxation::parallelogram, Attack::none, false, true, BetaSchedule::none,
                 Relaxation::parallelogram,
                 "parallelogram (section 5.2's Parallelogram by optimised slopes and upper lines: --alpha-steps ...)"});
    t.push_back({"crown-ibp-r", true, Relaxation::crown_ibp, Attack::none, false, true, BetaSchedule::held_at_1,
                 Relaxation::crown_ibp, "crown-ibp-r (pure CROWN-IBP)"});
    t.push_back({"crown-ibp", true, Relaxation::crown_ibp, Attack::none, false, true, BetaSchedule::ramp_down,
                 Relaxation::box, "crown-ibp (beta*CROWN-IBP(R) + (1-beta)*Box bounds)"});
    t.push_back({"sabr", true, Relaxation::box, Attack::pgd, true, true, BetaSchedule::none, Relaxation::box,
                 "sabr (Box bounds of a small box around a PGD point)"});
    return t;
  }();
  return table;
}

const std::vector<std::string>& train_methods() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const TrainMethod& m : train_method_table()) out.push_back(m.name);
    return out;
  }();
  return names;
}

const TrainMethod& train_method(const std::string& name) {
  for (const TrainMethod& m : train_method_table())
    if (name == m.name) return m;
  bad("--method '" + name + "' is unknown; expected one of " + join(train_methods()));
}

bool is_certified_method(const std::string& method) { return train_method(method).certified; }

bool uses_eps_schedule(const std::string& method) { return train_method(method).eps_schedule; }

bool uses_beta_schedule(const std::string& method) { return train_method(method).beta == BetaSchedule::ramp_down; }

Relaxation training_relaxation(const std::string& method) {
  const TrainMethod& m = train_method(method);
  if (!m.certified) bad("method " + method + " trains on no relaxation");
  return m.relaxation;
}

std::vector<Relaxation> certify_relaxations(const TrainConfig& config) {
  std::vector<Relaxation> out;
  for (const std::string& name : config.certify_with) {
    if (name == kBestColumn || name == kBabColumn) continue;
    const Relaxation r = parse_relaxation(name);
    bool seen = false;
    for (Relaxation have : out) seen = seen || have == r;
    if (!seen) out.push_back(r);
  }
  if (!out.empty()) return out;
  // --certify-with best (or bab) alone: the method's own relaxation and the best (bab) column over it.
  return {train_method(config.method).certifier};
}

std::string output_dir(const TrainConfig& config) {
  if (!config.out.empty()) return config.out;
  std::string net = config.net;
  if (!is_builtin_network(net)) net = std::filesystem::path(net).stem().string();
  return "runs/" + config.dataset + "-" + net + "-" + config.method;
}

void validate_config(const TrainConfig& c) {
  static const std::vector<std::string> datasets = {"mnist", "fashion-mnist", "svhn", "cifar10", "folder"};
  bool known = false;
  for (const auto& d : datasets) known = known || d == c.dataset;
  if (!known) bad("--dataset '" + c.dataset + "' is unknown; expected one of " + join(datasets));
  if (c.dataset == "folder" && c.data_dir.empty()) bad("--dataset folder needs --data-dir ROOT");
  train_method(c.method);  // throws for an unknown method
  if (!is_builtin_network(c.net)) {
    const std::filesystem::path p(c.net);
    if (p.extension() != ".json" && p.extension() != ".onnx")
      bad("--net '" + c.net + "' is unknown; expected one of " + join(builtin_networks()) +
          " or a network JSON file (PATH.json) or ONNX file (PATH.onnx)");
    if (std::filesystem::is_directory(p)) bad("--net " + c.net + " is a directory, expected a network JSON file");
    if (!std::filesystem::is_regular_file(p)) bad("--net " + c.net + ": no such network JSON file");
  }
  if (c.epochs < 1) bad("--epochs " + std::to_string(c.epochs) + " must be at least 1");
  if (c.warmup < 0) bad("--warmup " + std::to_string(c.warmup) + " must be >= 0");
  if (c.rampup < 0) bad("--rampup " + std::to_string(c.rampup) + " must be >= 0");
  // Natural training reads neither: its --warmup and --rampup are ignored.
  if (uses_eps_schedule(c.method) && int64_t(c.warmup) + c.rampup > c.epochs) {
    const int64_t schedule = int64_t(c.warmup) + c.rampup;
    bad("--warmup " + std::to_string(c.warmup) + " + --rampup " + std::to_string(c.rampup) + " = " +
        std::to_string(schedule) + " epochs is longer than --epochs " + std::to_string(c.epochs) + ": give --rampup " +
        std::to_string(std::max(0, c.epochs - c.warmup)) + " or less" +
        (c.warmup > 0 ? std::string(" (or a shorter --warmup)") : std::string()) + ", or --epochs " +
        std::to_string(schedule) + " or more");
  }
  check_eps("eps-train", c.eps_train);
  check_eps("eps-test", c.eps_test);
  check_eps("eps-start", c.eps_start);
  if (c.eps_start > c.eps_train)
    bad("--eps-start " + format_number(c.eps_start) + " is larger than --eps-train " + format_number(c.eps_train));
  check_unit("kappa-start", c.kappa_start);
  check_unit("kappa-end", c.kappa_end);
  if (c.kappa_schedule != "linear" && c.kappa_schedule != "zero-after-warmup")
    bad("--kappa-schedule '" + c.kappa_schedule + "' is unknown; expected linear or zero-after-warmup");
  if (c.eps_schedule != "linear" && c.eps_schedule != "smoothed")
    bad("--eps-schedule '" + c.eps_schedule + "' is unknown; expected linear or smoothed");
  if (!(std::isfinite(c.lr) && c.lr > 0)) bad("--lr " + format_number(c.lr) + " must be > 0");
  if (c.lr_schedule != "milestones" && c.lr_schedule != "steps")
    bad("--lr-schedule '" + c.lr_schedule + "' is unknown; expected milestones or steps");
  for (size_t i = 0; i < c.milestones.size(); ++i) {
    if (c.milestones[i] < 0) bad("--milestones " + std::to_string(c.milestones[i]) + " must be >= 0");
    if (i && c.milestones[i] <= c.milestones[i - 1])
      bad("--milestones must increase, got " + std::to_string(c.milestones[i - 1]) + " then " +
          std::to_string(c.milestones[i]));
  }
  if (c.lr_step_every < 1) bad("--lr-step-every " + std::to_string(c.lr_step_every) + " must be at least 1");
  if (!(std::isfinite(c.lr_decay_factor) && c.lr_decay_factor > 0 && c.lr_decay_factor <= 1))
    bad("--lr-decay-factor " + format_number(c.lr_decay_factor) + " must lie in (0, 1]");
  if (!finite_nonneg(c.l1)) bad("--l1 " + format_number(c.l1) + " must be >= 0");
  if (c.init != "default" && c.init != "ibp") bad("--init '" + c.init + "' is unknown; expected default or ibp");
  if (c.init == "ibp" && !is_builtin_network(c.net))
    bad("--init ibp re-initialises a built-in network; --net " + c.net + " starts from the file's weights");
  if (!finite_nonneg(c.bound_reg)) bad("--bound-reg " + format_number(c.bound_reg) + " must be >= 0");
  if (!finite_nonneg(c.l2)) bad("--l2 " + format_number(c.l2) + " must be >= 0");
  if (c.crown_tie != 0 && c.crown_tie != 1) bad("--crown-tie " + std::to_string(c.crown_tie) + " must be 0 or 1");
  if (c.alpha.steps < 0) bad("--alpha-steps " + std::to_string(c.alpha.steps) + " must be >= 0");
  if (!(std::isfinite(c.alpha.lr) && c.alpha.lr > 0)) bad("--alpha-lr " + format_number(c.alpha.lr) + " must be > 0");
  if (c.alpha.patience < 0) bad("--alpha-patience " + std::to_string(c.alpha.patience) + " must be >= 0");
  if (c.pgd_start != "random" && c.pgd_start != "zero")
    bad("--pgd-start '" + c.pgd_start + "' is unknown; expected random or zero");
  if (c.sparse_bounds != "auto" && c.sparse_bounds != "on" && c.sparse_bounds != "off")
    bad("--sparse-bounds '" + c.sparse_bounds + "' is unknown; expected auto, on or off");
  if (c.sparse_bounds == "off" && c.early_stops)
    bad("--early-stops refines the sparse intermediate bounds; it needs --sparse-bounds auto or on, not off");
  if (c.batch_size < 1) bad("--batch-size " + std::to_string(c.batch_size) + " must be at least 1");
  tools::check_pgd_flags("train", c.pgd_steps, c.pgd_step_size, c.pgd_restarts);
  if (c.train_pgd_steps < 0) bad("--train-pgd-steps " + std::to_string(c.train_pgd_steps) + " must be >= 0");
  if (!(std::isfinite(c.train_pgd_step_size) && c.train_pgd_step_size > 0))
    bad("--train-pgd-step-size " + format_number(c.train_pgd_step_size) + " must be > 0");
  if (c.train_pgd_step_unit != "eps" && c.train_pgd_step_unit != "absolute")
    bad("--train-pgd-step-unit '" + c.train_pgd_step_unit + "' is unknown; expected eps or absolute");
  for (size_t i = 0; i < c.train_pgd_decay_at.size(); ++i) {
    const double f = c.train_pgd_decay_at[i];
    if (!(std::isfinite(f) && f >= 0 && f <= 1))
      bad("--train-pgd-decay-at " + format_number(f) + " must lie in [0, 1] (a fraction of the steps)");
    if (i && f < c.train_pgd_decay_at[i - 1])
      bad("--train-pgd-decay-at must not decrease, got " + format_number(c.train_pgd_decay_at[i - 1]) + " then " +
          format_number(f));
  }
  if (!(std::isfinite(c.train_pgd_decay_factor) && c.train_pgd_decay_factor > 0 && c.train_pgd_decay_factor <= 1))
    bad("--train-pgd-decay-factor " + format_number(c.train_pgd_decay_factor) + " must lie in (0, 1]");
  if (!(std::isfinite(c.sabr_lambda) && c.sabr_lambda > 0 && c.sabr_lambda <= 1))
    bad("--sabr-lambda " + format_number(c.sabr_lambda) + " must lie in (0, 1]");
  if (!(std::isfinite(c.box_shrink) && c.box_shrink >= 0 && c.box_shrink < 1))
    bad("--box-shrink " + format_number(c.box_shrink) + " must lie in [0, 1)");
  const TrainMethod& method = train_method(c.method);
  if (c.box_shrink > 0 && !(method.certified && method.relaxation == Relaxation::box && method.beta == BetaSchedule::none))
    bad("--box-shrink " + format_number(c.box_shrink) + " shrinks the Box bounds a method trains on: --method box "
        "or sabr, not " + c.method);
  if (c.device != "cpu" && c.device != "cuda" && c.device != "gpu" && c.device != "auto")
    bad("--device '" + c.device + "' is unknown; expected cpu, cuda or auto");
  if (c.eval_every < 0) bad("--eval-every " + std::to_string(c.eval_every) + " must be >= 0");
  if (!(c.checkpoint_minutes >= 0))
    bad("--checkpoint-minutes " + format_number(c.checkpoint_minutes) + " must be >= 0 (0: at epoch ends only)");
  if (c.stop_after_steps < 0) bad("--stop-after-steps " + std::to_string(c.stop_after_steps) + " must be >= 0");
  if (c.test_subset < 0) bad("--test-subset " + std::to_string(c.test_subset) + " must be >= 0 (0: all)");
  if (c.train_subset < 0) bad("--train-subset " + std::to_string(c.train_subset) + " must be >= 0 (0: all)");
  if (c.pca < 0) bad("--pca " + std::to_string(c.pca) + " must be >= 0 (0: the pixels themselves)");
  if (c.pca > 0 && (c.net == "conv" || c.net == "conv+" || c.net == "cnn7"))
    bad("--pca " + std::to_string(c.pca) + " gives the network a vector, not an image: --net " + c.net +
        " convolves images; use a fully connected one (fc, fc-small, fc-2x20) or a network file");
  if (c.threads < 0) bad("--threads " + std::to_string(c.threads) + " must be >= 0 (0: OpenMP's default)");
  for (const std::string& name : c.certify_with) {
    if (name == kBestColumn || name == kBabColumn) continue;
    try {
      parse_relaxation(name);
    } catch (const std::exception& e) {
      bad("--certify-with '" + name + "': " + e.what());
    }
  }
}

std::vector<std::string> config_notes(const TrainConfig& c) {
  std::vector<std::string> notes;
  if (c.lr_schedule == "milestones") {
    std::vector<std::string> late;
    for (int m : c.milestones)
      if (m >= c.epochs) late.push_back(std::to_string(m));
    if (!late.empty())
      notes.push_back("[train] note: --milestones " + join(late, ",") + " lie at or beyond --epochs " +
                      std::to_string(c.epochs) + ", so the learning rate never drops there; give milestones below " +
                      std::to_string(c.epochs) + " (e.g. --milestones " + std::to_string(std::max(1, c.epochs * 5 / 6)) +
                      ") or --milestones '' for a constant rate");
  }
  return notes;
}

std::vector<std::string> check_resume_changes(const TrainConfig& config, const json& then, const std::string& source) {
  static const char* kFree[] = {"epochs",       "out",      "resume",    "eval-every",   "test-subset", "threads",
                                "quiet",        "device",   "certify-with", "data-dir", "pgd-steps",   "pgd-restarts",
                                "pgd-start",    "checkpoint-minutes", "stop-after-steps"};
  std::vector<std::string> notes;
  const json now = config_to_json(config);
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (std::find_if(std::begin(kFree), std::end(kFree), [&](const char* k) { return it.key() == k; }) !=
        std::end(kFree))
      continue;
    if (!then.is_object() || !then.contains(it.key()) || then[it.key()] == it.value()) continue;
    if (!config.force)
      throw std::invalid_argument("[resume] --" + it.key() + " is " + it.value().dump() + " now but " +
                                  then[it.key()].dump() + " in " + source +
                                  ": that changes the experiment; leave --" + it.key() +
                                  " out to continue the run as it was started, or add --force to continue with " +
                                  it.value().dump());
    notes.push_back("[resume] note: --" + it.key() + " is " + it.value().dump() + " now, " + then[it.key()].dump() +
                    " in " + source + "; using " + it.value().dump() + " (--force)");
  }
  return notes;
}

json config_to_json(const TrainConfig& config) {
  json j = json::object();
  for (const Field& f : fields()) j[f.name] = f.get(config);
  return j;
}

void apply_config_json(const json& j, TrainConfig& config, const std::string& source,
                       bool (*skip)(const std::string& key, void* context), void* context) {
  if (!j.is_object()) throw std::invalid_argument("[config] " + source + ": expected a JSON object of flag names");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Field* field = nullptr;
    for (const Field& f : fields())
      if (it.key() == f.name) field = &f;
    if (!field) {
      std::vector<std::string> names;
      for (const Field& f : fields()) names.push_back(f.name);
      throw std::invalid_argument("[config] " + source + ": unknown key '" + it.key() +
                                  "' (keys are the long flag names: " + join(names) + ")");
    }
    if (skip && skip(it.key(), context)) continue;
    field->set(it.value(), config, "[config] " + source + ": key '" + it.key() + "'");
  }
}

const std::vector<Recipe>& recipe_table() {
  // SABR (eth-sri/SABR README and src/): its epochs count from 1 with eps ramped from the
  // start of epoch 2 to the start of --end_epoch_eps, and MultiStepLR stepped before each
  // epoch, so its milestone m lowers the rate from its epoch m, our 0-based epoch m - 1.
  // Its Scheduler's "exp" mode is auto_LiRPA's smoothed ramp; its CIFAR-10 2/255 run's
  // shrinking box is --box-shrink.
  static const std::vector<Recipe> table = {
      {"sabr-mnist-0.1", "SABR (Mueller et al. 2023), MNIST eps 0.1: eth-sri/SABR README",
       R"({"dataset": "mnist", "net": "cnn7", "method": "sabr", "epochs": 70, "warmup": 1, "rampup": 20,
           "eps-train": 0.1, "eps-test": 0.1, "eps-start": 0, "eps-schedule": "smoothed",
           "kappa-schedule": "zero-after-warmup", "lr": 5e-4, "lr-schedule": "milestones",
           "milestones": [49, 59], "lr-decay-factor": 0.2, "batch-size": 256, "sabr-lambda": 0.4,
           "l1": 1e-5, "l1-bias": true, "init": "ibp", "bound-reg": 0.5, "l2": 0})"},
      {"sabr-mnist-0.3", "SABR, MNIST eps 0.3: eth-sri/SABR README",
       R"({"dataset": "mnist", "net": "cnn7", "method": "sabr", "epochs": 70, "warmup": 1, "rampup": 20,
           "eps-train": 0.3, "eps-test": 0.3, "eps-start": 0, "eps-schedule": "smoothed",
           "kappa-schedule": "zero-after-warmup", "lr": 5e-4, "lr-schedule": "milestones",
           "milestones": [49, 59], "lr-decay-factor": 0.2, "batch-size": 256, "sabr-lambda": 0.6,
           "l1": 1e-6, "l1-bias": true, "init": "ibp", "bound-reg": 0.5, "l2": 0})"},
      {"sabr-cifar10-2", "SABR, CIFAR-10 eps 2/255: eth-sri/SABR README (with its shrinking box, ratio 0.4)",
       R"({"dataset": "cifar10", "net": "cnn7", "method": "sabr", "epochs": 160, "warmup": 1, "rampup": 80,
           "eps-train": 0.00784313725, "eps-test": 0.00784313725, "eps-start": 0, "eps-schedule": "smoothed",
           "kappa-schedule": "zero-after-warmup", "lr": 5e-4, "lr-schedule": "milestones",
           "milestones": [119, 139], "lr-decay-factor": 0.2, "batch-size": 128, "sabr-lambda": 0.1,
           "l1": 1e-6, "l1-bias": true, "init": "ibp", "bound-reg": 0.5, "l2": 0, "augment": true,
           "box-shrink": 0.4})"},
      {"sabr-cifar10-8", "SABR, CIFAR-10 eps 8/255: eth-sri/SABR README (no L1)",
       R"({"dataset": "cifar10", "net": "cnn7", "method": "sabr", "epochs": 180, "warmup": 1, "rampup": 80,
           "eps-train": 0.03137, "eps-test": 0.03137, "eps-start": 0, "eps-schedule": "smoothed",
           "kappa-schedule": "zero-after-warmup", "lr": 5e-4, "lr-schedule": "milestones",
           "milestones": [139, 159], "lr-decay-factor": 0.2, "batch-size": 128, "sabr-lambda": 0.7,
           "l1": 0, "l1-bias": true, "init": "ibp", "bound-reg": 0.5, "l2": 0, "augment": true})"},
      {"shi-ibp-mnist-0.3",
       "Shi et al. 2021, IBP on MNIST (train eps 0.4, test 0.3) as their paper describes it: IBP init, warm-up "
       "regularisers 0.5, 70 epochs, eps ramped over 20, lr x0.2 at 50 and 60 (their gradient clipping at 10 is "
       "not implemented here)",
       R"({"dataset": "mnist", "net": "cnn7", "method": "box", "epochs": 70, "warmup": 0, "rampup": 20,
           "eps-train": 0.4, "eps-test": 0.3, "eps-start": 0, "eps-schedule": "smoothed",
           "kappa-schedule": "zero-after-warmup", "lr": 5e-4, "lr-schedule": "milestones",
           "milestones": [50, 60], "lr-decay-factor": 0.2, "batch-size": 256, "l1": 0, "l2": 0,
           "init": "ibp", "bound-reg": 0.5})"},
      {"paradox-crown-ibp-conv-0.1", "The paradox paper's CROWN-IBP, MNIST CONV eps 0.1: its table 6",
       R"({"dataset": "mnist", "net": "conv", "method": "crown-ibp", "epochs": 200, "warmup": 10, "rampup": 100,
           "eps-train": 0.2, "eps-test": 0.1, "eps-start": 0, "eps-schedule": "linear", "kappa-schedule": "linear",
           "kappa-start": 1, "kappa-end": 0.5, "lr": 5e-4, "lr-schedule": "milestones", "milestones": [130, 190],
           "lr-decay-factor": 0.1, "batch-size": 100, "l1": 5e-6, "l1-bias": false, "l2": 0, "elide": true,
           "init": "default", "bound-reg": 0})"},
      {"paradox-crown-ibp-conv-0.3", "The paradox paper's CROWN-IBP, MNIST CONV eps 0.3: its table 6",
       R"({"dataset": "mnist", "net": "conv", "method": "crown-ibp", "epochs": 200, "warmup": 10, "rampup": 50,
           "eps-train": 0.3, "eps-test": 0.3, "eps-start": 0, "eps-schedule": "linear", "kappa-schedule": "linear",
           "kappa-start": 1, "kappa-end": 0, "lr": 5e-4, "lr-schedule": "milestones", "milestones": [130, 190],
           "lr-decay-factor": 0.1, "batch-size": 100, "l1": 5e-6, "l1-bias": false, "l2": 0, "elide": true,
           "init": "default", "bound-reg": 0})"},
  };
  return table;
}

void apply_recipe(const std::string& name, TrainConfig& config, bool (*skip)(const std::string& key, void* context),
                  void* context) {
  const Recipe* recipe = nullptr;
  std::vector<std::string> names;
  for (const Recipe& r : recipe_table()) {
    names.push_back(r.name);
    if (name == r.name) recipe = &r;
  }
  if (!recipe) bad("--recipe '" + name + "' is unknown; expected one of " + join(names) + " (train --recipes lists them)");
  const json values = json::parse(recipe->values);
  const std::string net = values.value("net", "");
  const bool net_given = skip && skip("net", context);
  if (!net_given && !net.empty() && !is_builtin_network(net))
    bad("--recipe " + name + " trains --net " + net +
        ", which this build does not have; give --net to train the recipe's other settings on another network");
  apply_config_json(values, config, "--recipe " + name, skip, context);
}

std::string recipes_listing() {
  std::ostringstream out;
  for (const Recipe& r : recipe_table()) {
    out << r.name << ": " << r.source << "\n";
    const json values = json::parse(r.values);
    for (auto it = values.begin(); it != values.end(); ++it) out << "  --" << it.key() << " " << it.value().dump() << "\n";
  }
  return out.str();
}

int parse_train_args(int argc, char** argv, TrainConfig& c) {
  CLI::App app{
      "train: certified training of ReLU networks with convex relaxations (Box, hBox, DeepZ, CROWN, "
      "CROWN-IBP, ...), PGD and natural training. Defaults: the paper's best MNIST CONV Box setting "
      "(table 6, eps_test 0.1)."};
  // A repeated flag takes its last value, so a script can append overrides.
  app.option_defaults()->always_capture_default()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string config_path;
  json config_file = json::object();
  app.add_option("--config", config_path,
                 "JSON file of settings whose keys are the long flag names (e.g. {\"epochs\": 30}); "
                 "flags on the command line override it");
  std::string recipe;
  bool list_recipes = false;
  app.add_option("--recipe", recipe,
                 "a published setting (SABR's, Shi et al.'s IBP, the paradox paper's CROWN-IBP) as flag values; "
                 "--config and flags on the command line override it; train --recipes lists them");
  app.add_flag("--recipes", list_recipes, "list the --recipe presets with their values and exit");
  bool print_config = false;
  app.add_flag("--print-config", print_config,
               "print the settings this command would train with (config.json's form: defaults, --recipe, "
               "--config, flags and a --resume run's own), checked, and exit without training");
  app.add_option("--dataset", c.dataset, "mnist | fashion-mnist | svhn | cifar10 | folder");
  app.add_option("--data-dir", c.data_dir,
                 "where the data set lives (default: $CTE_DATA_DIR/<dataset>, ./data/<dataset>, "
                 "Debian's FashionMNIST)");
  app.add_option("--net", c.net, "fc | conv | conv+ | fc-small | fc-2x20 (table 14's two ReLU layers of 20) | cnn7 (SABR's CNN7, with BatchNorm) | PATH.json | PATH.onnx (a network JSON or ONNX file, trained from its weights)");
  std::string method_help;
  for (const TrainMethod& m : train_method_table()) method_help += (method_help.empty() ? "" : " | ") + std::string(m.help);
  app.add_option("--method", c.method, method_help);
  app.add_option("--epochs", c.epochs, "training epochs");
  app.add_option("--warmup", c.warmup, "N_w: epochs of natural training first");
  app.add_option("--rampup", c.rampup,
                 "N_r: epochs over which eps goes linearly from --eps-start to --eps-train and kappa "
                 "from --kappa-start to --kappa-end (per batch)");
  app.add_option("--eps-train", c.eps_train, "L-inf radius trained for (inputs in [0, 1]; with --pca, in the PCA coordinates)");
  app.add_option("--eps-test", c.eps_test, "L-inf radius evaluated at (PGD and certification)");
  app.add_option("--eps-start", c.eps_start, "eps at the start of the ramp-up (the paper uses 0.001 for some runs)");
  app.add_option("--kappa-start", c.kappa_start, "kappa at the start of the ramp-up; loss = kappa*CE(z) + (1-kappa)*CE(worst-case z)");
  app.add_option("--kappa-end", c.kappa_end, "kappa after the ramp-up");
  app.add_option("--kappa-schedule", c.kappa_schedule,
                 "linear (kappa from --kappa-start to --kappa-end over the ramp-up) | zero-after-warmup (kappa 1 in "
                 "the warm-up, 0 from its end, SABR's schedule; --kappa-start and --kappa-end are then not read)");
  app.add_option("--eps-schedule", c.eps_schedule,
                 "linear | smoothed (auto_LiRPA's SmoothedScheduler, as SABR and CROWN-IBP train: eps grows as r^4 "
                 "over the first quarter of the ramp-up, then linearly, with matching slope)");
  app.add_option("--lr", c.lr, "Adam's initial learning rate alpha");
  app.add_option("--lr-schedule", c.lr_schedule,
                 "milestones (x0.1 at each of --milestones) | steps (halve every --lr-step-every epochs after the ramp-up)");
  app.add_option("--milestones", c.milestones,
                 "epochs at which the learning rate is multiplied by --lr-decay-factor, e.g. 130,190")
      ->delimiter(',');
  app.add_option("--lr-decay-factor", c.lr_decay_factor,
                 "milestones schedule: the factor applied at each milestone (default 0.1; SABR: 0.2)");
  app.add_option("--lr-step-every", c.lr_step_every, "steps schedule: halve the learning rate every this many epochs");
  app.add_option("--l1", c.l1, "L1 regularisation strength lambda (loss += lambda * sum |W| over weights)");
  add_on_off_flag(app, "l1-bias", c.l1_bias,
                  "the --l1 sum covers the biases too, as SABR's code sums |p| over every parameter (default: off)");
  app.add_option("--init", c.init,
                 "weight initialisation: default (PyTorch's kaiming-uniform) | ibp (Shi et al. 2021: every weight "
                 "but the last layer's from N(0, (sqrt(2 pi) / fan_in)^2), biases as default)");
  app.add_option("--bound-reg", c.bound_reg,
                 "weight of Shi et al. 2021's warm-up regularisers (tightness and ReLU balance of the Box bounds, "
                 "SABR's bound_reg; SABR uses 0.5), scaled by 1 - eps/eps_train and applied while eps < "
                 "--eps-train; 0: off");
  app.add_option("--l2", c.l2,
                 "L2 regularisation strength lambda (loss += lambda * sum W^2 over weights, biases excluded as in "
                 "the authors' code; the paper: 5e-5, 5e-3 for table 3's experiment E)");
  tools::add_crown_tie_flag(app, c.crown_tie, "default: 0; training and certification");
  tools::add_alpha_crown_flags(app, c.alpha);
  tools::add_bound_memory_cap_flag(app, c.bound_memory_cap_bytes);
  app.add_option("--batch-size", c.batch_size, "training batch size (under mpirun: the global batch, split across the ranks)");
  add_on_off_flag(app, "elide", c.elide,
                  "last-layer elision: fold the margin specification into the last linear layer (default: on)");
  add_on_off_flag(app, "early-stops", c.early_stops,
                  "deepz, crown, crown0-unstable and hbox-fresh training (fast bounds; not hbox, crown0 or "
                  "evaluation): before the full backsubstitution, walk the neurons the interval bounds leave unstable "
                  "down to the ReLU outputs below them and keep only those still unstable there (faster on "
                  "certifiably trained deep nets; a neuron proven stable this way that the full walk would leave "
                  "unstable is relaxed exactly, so the bounds differ from the paper's relaxation; default: off)");
  app.add_option("--sparse-bounds", c.sparse_bounds,
                 "intermediate bounds of deepz, crown, crown0-unstable, hbox and hbox-fresh training: on = backsubstitute "
                 "only the neurons the interval bounds leave unstable (the rest keep those bounds, which can relax "
                 "a neuron exactly where the full walk would not: never looser), off = every neuron (dense), auto "
                 "(default) = on on the CPU, off on a GPU unless --early-stops (the sparse path reads the bounds on "
                 "the host mid-step, so a GPU step could neither run ahead of the host nor become a CUDA graph); "
                 "CPU and GPU runs may therefore train on slightly different bounds");
  add_on_off_flag(app, "augment", c.augment,
                  "the data set's default training augmentation (default: on; CIFAR-10: random crop + flip, SVHN: "
                  "random crop; none for MNIST/FashionMNIST); the paper trains SVHN with --no-augment");
  app.add_option("--seed", c.seed, "seed of initialisation, data order, augmentation and attacks");
  app.add_option("--pgd-steps", c.pgd_steps, "PGD steps for the PGD accuracy");
  app.add_option("--pgd-step-size", c.pgd_step_size, "PGD step size (inputs in [0, 1])");
  app.add_option("--pgd-restarts", c.pgd_restarts, "extra PGD runs from random points of the ball (evaluation)");
  tools::add_pgd_start_flag(app, c.pgd_start);
  app.add_option("--train-pgd-steps", c.train_pgd_steps,
                 "PGD steps inside training (--method pgd and sabr; default 8 as SABR; 0: --pgd-steps)");
  app.add_option("--train-pgd-step-size", c.train_pgd_step_size,
                 "training PGD's step size in units of --train-pgd-step-unit (default 0.5: half the current eps)");
  app.add_option("--train-pgd-step-unit", c.train_pgd_step_unit,
                 "eps (the step is --train-pgd-step-size times the current, ramped eps) | absolute (inputs in [0, 1])");
  app.add_option("--train-pgd-decay-at", c.train_pgd_decay_at,
                 "fractions of the training PGD's steps from which the step is multiplied by "
                 "--train-pgd-decay-factor (default 0.5,0.8,0.9 as SABR; '' for a constant step)")
      ->delimiter(',');
  app.add_option("--train-pgd-decay-factor", c.train_pgd_decay_factor, "the training PGD's step decay factor");
  add_on_off_flag(app, "train-pgd-random-start", c.train_pgd_random_start,
                  "training PGD starts at a uniform random point of the ball, not at x (default: on)");
  add_on_off_flag(app, "train-pgd-keep-highest-loss", c.train_pgd_keep_highest_loss,
                  "training PGD returns each sample's iterate of highest cross-entropy (its latest one once "
                  "misclassified), not the last iterate (default: on, as SABR)");
  add_on_off_flag(app, "train-pgd-early-stop", c.train_pgd_early_stop,
                  "training PGD stops once every sample of the batch is misclassified (default: on, as SABR)");
  app.add_option("--sabr-lambda", c.sabr_lambda, "sabr: the propagated box has radius lambda * eps");
  app.add_option("--box-shrink", c.box_shrink,
                 "box, sabr: SABR's CIFAR-10 2/255 shrinking box (its --shrinking_ratio R with to_zero_shrinking_box, "
                 "cross): in training only, before each ReLU the upper bound of every crossing neuron is scaled by "
                 "1 - R/2 (0: off; certification never shrinks)");
  app.add_option("--device", c.device, "cpu | cuda | auto (CUDA when a GPU is present)");
  add_on_off_flag(app, "cuda-graph", c.cuda_graph,
                  "on a GPU, capture a training step as a CUDA graph once four steps in a row bake the same values "
                  "into their kernels (batch size, eps, kappa, beta, lr, Adam's bias corrections: after the "
                  "ramp-up) and replay it with one launch (pgd and sabr too: their attack then runs all its "
                  "steps, without the early stop); methods that read the device mid-step (deepz and crown's "
                  "sparse bounds) run without one (default: off)");
  app.add_option("--out", c.out, "output folder: checkpoint.ckpt, metrics.jsonl, config.json, network.json, network.onnx (default runs/<dataset>-<net>-<method>)");
  app.add_flag("--resume", c.resume,
               "continue the run in --out from its last checkpoint, with its own config.json for every flag not given "
               "(same final weights as an uninterrupted run; a larger --epochs trains on)");
  app.add_flag("--force", c.force,
               "with --resume: accept flags that change the experiment (--method, --eps-train, ...), which are "
               "refused otherwise");
  app.add_option("--eval-every", c.eval_every, "also evaluate every K epochs (0: only at the end)");
  app.add_option("--checkpoint-minutes", c.checkpoint_minutes,
                 "also write the checkpoint mid-epoch after this many minutes since the last one, and when stopped "
                 "by SIGINT/SIGTERM, so --resume continues from that batch bit for bit (0: at epoch ends only)");
  app.add_option("--stop-after-steps", c.stop_after_steps,
                 "stop after this many optimiser steps of this process, as SIGTERM would: checkpoint and exit "
                 "(0: run every epoch)");
  app.add_option("--certify-with", c.certify_with,
                 "relaxations to certify with, e.g. box,crown (default: the training relaxation; box for natural, pgd, "
                 "sabr, crown-ibp); add best for a column of the images that any of them certifies, and bab for branch and "
                 "bound on the images they leave (10 s per image; certify eval --bab-timeout sets it)")
      ->delimiter(',');
  app.add_flag("--unsound-fast", c.unsound_fast,
               "certify with the fast bounds training uses, not the default sound ones that account for float32 "
               "rounding (relaxations/sound.cpp): a margin within float error of 0 can then be a false certificate");
  app.add_option("--test-subset", c.test_subset, "evaluate on the first N test images (0: all)");
  app.add_option("--train-subset", c.train_subset, "train on the first N training images (0: all; for quick runs)");
  app.add_option("--pca", c.pca,
                 "K > 0: the network's input is the K-D PCA of the images (table 14 of the paradox paper: 16), with "
                 "the basis fitted on the training images trained on (--train-subset) only and saved in the "
                 "checkpoint; the eps balls of --eps-train and --eps-test then live in that K-D space (raw, "
                 "unwhitened coordinates: an orthonormal projection of the [0, 1] pixels, unclipped) and there is no "
                 "augmentation; 0: the pixels");
  app.add_option("--threads", c.threads, "OpenMP and BLAS threads (0: the default)");
  app.add_flag("--quiet", c.quiet, "no progress output, only the final summary");
  // List flags where '' is an empty list: no milestones (a constant rate, as the
  // late-milestones note advises), no decay of the training attack's step (as
  // its help says). CLI11 alone would store one 0.
  const std::vector<std::pair<std::string, std::function<void()>>> empty_lists = {
      {"--milestones", [&c] { c.milestones.clear(); }},
      {"--train-pgd-decay-at", [&c] { c.train_pgd_decay_at.clear(); }}};
  std::vector<std::string> empty_list_names;
  for (const auto& [name, clear] : empty_lists) empty_list_names.push_back(name);
  tools::reject_empty_numbers(app, empty_list_names);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; usage errors: 2
  }
  try {
    for (const auto& [name, clear] : empty_lists)
      if (tools::empty_list_given(app, name)) clear();
  } catch (const std::invalid_argument& e) {
    std::cerr << "[train] " << e.what() << "\n";
    return 2;
  }
  if (list_recipes) {
    std::cout << recipes_listing();
    return 0;
  }
  if (!config_path.empty()) {
    std::string text;
    try {
      text = read_whole_file(config_path, "config");
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 2;
    }
    json j;
    try {
      j = json::parse(text);
    } catch (const std::exception& e) {
      std::cerr << "[config] " << config_path << ": not valid JSON: " << e.what() << "\n";
      return 2;
    }
    auto given = [](const std::string& key, void* ctx) { return given_on_command_line(*static_cast<CLI::App*>(ctx), key); };
    try {
      apply_config_json(j, c, config_path, given, &app);
      config_file = std::move(j);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 2;
    }
  }
  if (!recipe.empty()) {
    struct Given {
      CLI::App* app;
      const json* file;
    } given{&app, &config_file};
    auto overridden = [](const std::string& key, void* ctx) {
      const Given& g = *static_cast<Given*>(ctx);
      return given_on_command_line(*g.app, key) || g.file->contains(key);
    };
    try {
      apply_recipe(recipe, c, overridden, &given);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 2;
    }
  }
  if (c.resume) {
    // The run's own settings for everything not given: resuming a Box CONV
    // FashionMNIST run needs neither --dataset nor --net again.
    const std::filesystem::path run_config = std::filesystem::path(output_dir(c)) / "config.json";
    if (std::filesystem::exists(run_config)) {
      std::ifstream in(run_config);
      json j;
      try {
        j = json::parse(in);
      } catch (const std::exception& e) {
        std::cerr << "[resume] " << run_config.string() << ": not valid JSON: " << e.what() << "\n";
        return 2;
      }
      struct Given {
        CLI::App* app;
        const json* file;
      } given{&app, &config_file};
      auto keep = [](const std::string& key, void* ctx) {
        const Given& g = *static_cast<Given*>(ctx);
        // --stop-after-steps limits one process: a resumed run does not inherit it.
        return key == "resume" || key == "out" || key == "stop-after-steps" || given_on_command_line(*g.app, key) ||
               g.file->contains(key);
      };
      try {
        apply_config_json(j, c, run_config.string(), keep, &given);
        check_resume_changes(c, j, run_config.string());  // the notes come again from the checkpoint's record
      } catch (const std::exception& e) {
        std::cerr << e.what() << "\n";
        return 2;
      }
    }
  }
  if (print_config) {  // tools/reproduce records the defaults beside each result, to see them change
    try {
      validate_config(c);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 2;
    }
    std::cout << config_to_json(c).dump(1) << "\n";
    return 0;
  }
  return -1;
}

}  // namespace cte::train
