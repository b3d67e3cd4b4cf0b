// The training configuration: every knob of the paper's appendix G (table 6)
// plus the run's plumbing (data, device, output, evaluation), with the
// defaults of the paper's best MNIST CONV Box model for eps_test = 0.1
// (eps_train 0.2, N_w 0, N_r 50, kappa_end 0.5, lambda 5e-6, alpha 5e-4,
// milestones 130 and 190 of 200 epochs, last-layer elision, batch 100).
//
// One source of truth for the names: the command-line flags (CLI11), the
// keys of a --config JSON file and the keys of the config.json a run writes
// (and stores in its checkpoints) are the same long flag names. Flags given on
// the command line override the --config file. validate_config checks every
// value before any work is done and names the flag and the value in its
// message ("[train] --eps-train -0.1 must be >= 0").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "relaxations/relaxations.h"

namespace cte::train {

struct TrainConfig {
  // data and network
  std::string dataset = "mnist";   // mnist | fashion-mnist | svhn | cifar10 | folder
  std::string data_dir;            // empty: find_data_dir's search
  std::string net = "conv";        // fc | conv | conv+ | fc-small | fc-2x20 | cnn7 | PATH.json
  std::string method = "box";      // see train_methods()
  // schedule (epochs count from 0 internally; the user sees 1-based epochs)
  int epochs = 200;
  int warmup = 0;                  // N_w: natural training
  int rampup = 50;                 // N_r: eps and kappa ramp linearly
  double eps_train = 0.2, eps_test = 0.1, eps_start = 0.0;
  double kappa_start = 1.0, kappa_end = 0.5;
  std::string kappa_schedule = "linear";  // linear (over the ramp-up) | zero-after-warmup (SABR: 1, then 0)
  std::string eps_schedule = "linear";    // linear | smoothed (auto_LiRPA's SmoothedScheduler, as SABR and CROWN-IBP)
  // optimisation
  double lr = 5e-4;                       // Adam's alpha
  std::string lr_schedule = "milestones";  // milestones | steps
  std::vector<int> milestones{130, 190};   // x lr_decay_factor at each
  double lr_decay_factor = 0.1;            // milestones schedule (SABR: 0.2)
  int lr_step_every = 20;                  // steps: halve every this many epochs after the ramp-up
  double l1 = 5e-6;                        // lambda * sum |W| over weights
  bool l1_bias = false;                    // the L1 sum covers the biases too (SABR: every parameter)
  std::string init = "default";            // default (PyTorch's) | ibp (Shi et al. 2021)
  double bound_reg = 0.0;                  // Shi et al.'s warm-up regularisers' weight (SABR's bound_reg: 0.5)
  double l2 = 0.0;                         // lambda * sum W^2 over weights (biases excluded, as the authors' code)
  int crown_tie = 0;                       // CROWN's lower slope when -l = u: 0 (the paper) or 1 (the authors' code)
  AlphaCrownOptions alpha;                 // alpha-crown's slope optimisation (training and certification)
  size_t bound_memory_cap_bytes = BoundOptions{}.memory_cap_bytes;  // time and memory, not results
  int batch_size = 100;
  bool elide = true;                       // last-layer elision
  bool early_stops = false;                // BoundOptions::sparse_early_stops in training
  // BoundOptions::sparse_intermediate in training: auto (on the CPU; on a GPU only with --early-stops,
  // since the sparse path reads the bounds on the host mid-step) | on | off
  std::string sparse_bounds = "auto";
  bool augment = true;                     // the data set's default augmentation (CIFAR-10: crop + flip, SVHN: crop)
  uint64_t seed = 0;
  // PGD (evaluation; training with --method pgd/sabr uses the --train-pgd-* settings)
  int pgd_steps = 100;
  double pgd_step_size = 0.01;
  int pgd_restarts = 0;
  std::string pgd_start = "random";        // evaluation PGD's first start: random (in the ball) | zero (x itself)
  // The training attack, SABR's by default (eth-sri/SABR src/adv_attack.py): 8 steps of 0.5 eps,
  // x0.1 at 50%, 80% and 90% of the steps, random start, the highest-loss iterate, early stop.
  int train_pgd_steps = 8;                 // 0: the same as --pgd-steps
  double train_pgd_step_size = 0.5;        // in units of --train-pgd-step-unit
  std::string train_pgd_step_unit = "eps";  // eps (times the current eps) | absolute (inputs in [0, 1])
  std::vector<double> train_pgd_decay_at{0.5, 0.8, 0.9};  // fractions of the steps; empty: a constant step
  double train_pgd_decay_factor = 0.1;
  bool train_pgd_random_start = true;
  bool train_pgd_keep_highest_loss = true;  // off: the last iterate
  bool train_pgd_early_stop = true;         // stop once every sample of the batch is misclassified
  double sabr_lambda = 0.4;                // sabr: box radius lambda * eps
  double box_shrink = 0;                   // box, sabr: SABR's shrinking box (BoundOptions::box_shrink)
  // run plumbing
  std::string device = "auto";             // cpu | cuda | auto
  bool cuda_graph = false;                 // replay repeated steps as CUDA graphs (TrainStep)
  std::string out;                         // empty: runs/<dataset>-<net>-<method>
  bool resume = false;
  int eval_every = 0;                      // evaluate every K epochs (0: only at the end)
  double checkpoint_minutes = 10;          // also checkpoint mid-epoch this often (0: at epoch ends only)
  int64_t stop_after_steps = 0;            // stop after this many steps of this process, as a signal would (0: off)
  std::vector<std::string> certify_with;   // empty: the training relaxation (box for crown-ibp, natural, pgd, sabr)
  bool unsound_fast = false;               // certify with the fast bounds (float rounding not accounted for)
  int64_t test_subset = 0;                 // 0: the whole test split
  int64_t train_subset = 0;                // 0: the whole training split
  int pca = 0;                             // > 0: inputs are this many PCA coordinates of the images (datasets/pca.h)
  int threads = 0;                         // 0: OpenMP's default
  bool quiet = false;
  // --force: --resume may change settings that alter the experiment. Not a
  // key of config.json (a run's record says what it is, not how it was resumed).
  bool force = false;
};

// The training-method table: one row per --method, everything the trainer,
// the schedule and the config checks need to know about a method.
enum class Attack {
  none,
  pgd,  // PGD inside training: pgd trains on its adversarial example, sabr centres its small box on it
};
enum class BetaSchedule {
  none,       // the method reads no beta
  held_at_1,  // crown-ibp-r: pure CROWN-IBP throughout
  ramp_down,  // crown-ibp: beta 1 -> 0 over the ramp-up (beta CROWN-IBP + (1 - beta) Box)
};
struct TrainMethod {
  const char* name;
  bool certified;          // trains on the bounds of `relaxation`
  Relaxation relaxation;   // certified methods: whose bounds (sabr: Box on its small box)
  Attack attack;
  bool small_box;          // sabr: the bounds are of a box of radius lambda eps around the attack
  bool eps_schedule;       // trains at the scheduled eps and kappa (after --warmup, over --rampup)
  BetaSchedule beta;
  Relaxation certifier;    // --certify-with's default
  const char* help;        // the --method help text's entry
};
// Every --method, in --help order. Certified rows for every differentiable
// relaxation, then the mixes.
const std::vector<TrainMethod>& train_method_table();
// The row named `name`; throws "[train] --method 'x' is unknown; expected one of ..." otherwise.
const TrainMethod& train_method(const std::string& name);
// The names of the rows, in table order.
const std::vector<std::string>& train_methods();
// Shorthands for the columns of the table.
bool is_certified_method(const std::string& method);  // trains on relaxation bounds (not natural/pgd)
bool uses_eps_schedule(const std::string& method);    // every method but natural
bool uses_beta_schedule(const std::string& method);   // crown-ibp (crown-ibp-r holds beta at 1)
// The relaxation whose bounds the method trains on (crown-ibp: the CROWN-IBP (R)
// part of its mix; sabr: box). Throws for natural and pgd.
Relaxation training_relaxation(const std::string& method);
// The name of the `best` column in --certify-with and certify's --relaxations:
// an image counts when any listed relaxation certifies it.
inline constexpr const char* kBestColumn = "best";
// The name of the branch-and-bound column (verify/bab.h) in the same lists:
// the images the listed relaxations certify plus those branch and bound
// verifies among the rest (EvalOptions::bab).
inline constexpr const char* kBabColumn = "bab";
// --certify-with resolved (without `best` and `bab`): the list given, else the method's own relaxation
// (the row's certifier: box for natural, pgd, sabr and crown-ibp).
std::vector<Relaxation> certify_relaxations(const TrainConfig& config);
// The output folder: --out, else runs/<dataset>-<net stem>-<method>.
std::string output_dir(const TrainConfig& config);

// Throws std::invalid_argument "[train] --flag value ..." for the first bad value.
// Checks only what needs no I/O beyond a stat of --net PATH.json.
void validate_config(const TrainConfig& config);
// Settings that are legal but probably not what was meant, each a line
// "[train] note: ..." that says what to change (e.g. --milestones at or
// beyond --epochs, which never lower the learning rate).
std::vector<std::string> config_notes(const TrainConfig& config);

nlohmann::json config_to_json(const TrainConfig& config);
// --resume: the first setting of `now` that differs from the run's record
// `then` (a config.json) in a way that changes the experiment (not --epochs,
// evaluation or plumbing). Throws "[resume] --KEY is ... now but ... in
// `source`: ..." naming the way out, unless now.force; with --force, returns
// one note line per difference for the log.
std::vector<std::string> check_resume_changes(const TrainConfig& now, const nlohmann::json& then,
                                              const std::string& source);
// Sets the fields named by `j`'s keys (long flag names). `source` names the
// file in messages. Keys for which skip(key) is true are left alone (the
// flags given on the command line). Unknown keys and wrong types throw.
void apply_config_json(const nlohmann::json& j, TrainConfig& config, const std::string& source,
                       bool (*skip)(const std::string& key, void* context) = nullptr,
                       void* context = nullptr);

// Parses argv (CLI11) including --config FILE.json. With --resume, every
// setting given neither on the command line nor in --config comes from the
// run's own config.json (in --out), so a run continues as it was started.
// Returns -1 when the run should go on, else the exit code (0 after --help,
// 2 after a usage error, with the message printed).
int parse_train_args(int argc, char** argv, TrainConfig& config);

// --recipe NAME: a published setting as a set of flag values (the keys of
// config.json). Applied over the defaults; --config and flags on the command
// line override it. `source` says where the values come from.
struct Recipe {
  const char* name;
  const char* source;
  const char* values;  // a JSON object of long flag names
};
const std::vector<Recipe>& recipe_table();
// Sets the recipe's values but those for which skip(key) is true. Throws
// "[train] --recipe ..." for an unknown name, or when the recipe's network
// is not one this build has and --net was not given
// (skip("net") false).
void apply_recipe(const std::string& name, TrainConfig& config,
                  bool (*skip)(const std::string& key, void* context) = nullptr, void* context = nullptr);
// The table as `train --recipes` prints it: name, source, then key = value lines.
std::string recipes_listing();

// "%g"-style shortest text of a number, for messages and reports.
std::string format_number(double value);

}  // namespace cte::train
