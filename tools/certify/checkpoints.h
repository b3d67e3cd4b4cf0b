// What the certify subcommands that read train checkpoints share: the device
// and its banner, the --elide/--no-elide and --unsound-fast flags, loading a
// checkpoint (or its run folder) with its data set, and the certification
// columns of --relaxations (relaxations, best, bab) with bab's flags.
#pragma once
#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/dataset.h"
#include "engine/device.h"
#include "engine/nn.h"
#include "relaxations/relaxations.h"
#include "train/config.h"
#include "verify/bab.h"

namespace cte::tools {

// Checks --threads, sets the thread count and the device (prepare_runtime),
// and prints the start-up banner to `banner`.
Device start_device(int threads, const std::string& device_name, std::ostream& banner);

// --elide / --no-elide, defaulting to what the run trained with. (A CLI11 flag
// pair bound to std::optional<bool> came back as false when neither flag was
// given, which silently certified without elision.)
struct ElideFlags {
  bool on = false, off = false;
  bool resolve(bool trained) const { return off ? false : on ? true : trained; }
};
void add_elide_flags(CLI::App& app, ElideFlags& flags);

// Certification is sound by default (relaxations/sound.cpp); this flag asks for the fast bounds of training.
void add_unsound_flag(CLI::App& app, bool& unsound_fast);

// --checkpoint as given: a checkpoint file, or a run folder (train's --out),
// which stands for the checkpoint.ckpt inside it.
std::string resolve_checkpoint(const std::string& path);

// A checkpoint with its training configuration and the test data it is evaluated on.
struct LoadedRun {
  Network net;
  nlohmann::json meta;
  train::TrainConfig trained;
  std::string dataset;
  DatasetSplits data;
};

// Loads the checkpoint and its data set (default: the one it was trained on),
// projected on the run's PCA basis when it trained with --pca, and checks that
// the network fits the inputs.
LoadedRun load_run(const std::string& checkpoint, std::string dataset, std::string data_dir);

// --relaxations split into the relaxations and the best and bab columns
// (train::kBestColumn, train::kBabColumn; EvalOptions::best and ::bab).
struct CertifyColumns {
  std::vector<Relaxation> relaxations;
  bool best = false, bab = false;
};
CertifyColumns parse_certify_columns(const std::vector<std::string>& names);

// --bab-timeout, --bab-max-domains, --bab-alpha: the bab column's branch and
// bound (verify/bab.h) per image; the slopes' own settings are --alpha-*.
void add_bab_flags(CLI::App& app, verify::VerifyOptions& bab);
// Checks them ("[certify] --bab-timeout ...").
void check_bab_flags(const verify::VerifyOptions& bab);

}  // namespace cte::tools
