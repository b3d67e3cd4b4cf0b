// The checkpoint helpers of the certify subcommands (tools/certify/checkpoints.h).
#include "tools/certify/checkpoints.h"

#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>

#include "train/trainer.h"

namespace cte::tools {

using nlohmann::json;
using namespace cte::train;

// Checks --threads, sets the thread count and the device (prepare_runtime),
// and prints the start-up banner to `banner`.
Device start_device(int threads, const std::string& device_name, std::ostream& banner) {
  set_thread_count(threads, "[certify] --threads");
  TrainConfig runtime;
  runtime.threads = threads;
  runtime.device = device_name;
  const Device device = prepare_runtime(runtime);
  banner << device_banner(device) << std::endl;
  return device;
}

void add_elide_flags(CLI::App& app, ElideFlags& flags) {
  CLI::Option* on = app.add_flag("--elide", flags.on,
                                 "fold the margin specification into the last layer (default: as the run trained)");
  app.add_flag("--no-elide", flags.off, "bound the logits first, then apply the specification")->excludes(on);
}

// Certification is sound by default (relaxations/sound.cpp); this flag asks for the fast bounds of training.
void add_unsound_flag(CLI::App& app, bool& unsound_fast) {
  app.add_flag("--unsound-fast", unsound_fast,
               "use the fast bounds of training instead of the sound ones that account for float32 rounding "
               "(a margin within float error of 0 can then be a false certificate)");
}

// --checkpoint as given: a checkpoint file, or a run folder (train's --out),
// which stands for the checkpoint.ckpt inside it.
std::string resolve_checkpoint(const std::string& path) {
  if (!std::filesystem::is_directory(path)) return path;
  const std::string inside = (std::filesystem::path(path) / "checkpoint.ckpt").string();
  if (!std::filesystem::exists(inside))
    throw std::invalid_argument("[certify] --checkpoint " + path + ": is a directory without a checkpoint.ckpt "
                                "(give a checkpoint file, or a run folder that train wrote)");
  return inside;
}

// Loads the checkpoint and its data set (default: the one it was trained on)
// and checks that the network fits the images.
LoadedRun load_run(const std::string& checkpoint, std::string dataset, std::string data_dir) {
  LoadedRun run;
  run.net = network_from_checkpoint(checkpoint, &run.meta);
  apply_config_json(run.meta.value("config", json::object()), run.trained, checkpoint);
  if (dataset.empty()) dataset = run.meta.value("dataset", run.trained.dataset);
  if (data_dir.empty() && dataset == run.trained.dataset) data_dir = run.trained.data_dir;
  run.dataset = dataset;
  run.data = load_dataset(dataset, data_dir);
  if (const std::optional<PcaBasis> pca = pca_from_checkpoint(checkpoint)) {
    // A --pca run's inputs: the images projected on the basis it trained with.
    run.data.train = project_pca(run.data.train, *pca);
    run.data.test = project_pca(run.data.test, *pca);
  }
  const Dataset& test = run.data.test;
  const Network& net = run.net;
  if (Shape{test.channels, test.height, test.width}.numel() != net.input_shape().numel() ||
      test.num_classes != int(net.output_shape()[0]))
    throw std::invalid_argument("[certify] " + checkpoint + " holds " + net.describe() + " with " +
                                std::to_string(net.output_shape()[0]) + " outputs, which does not fit " + dataset +
                                " images (" + std::to_string(test.channels) + "x" + std::to_string(test.height) +
                                "x" + std::to_string(test.width) + ", " + std::to_string(test.num_classes) +
                                " classes)");
  return run;
}

CertifyColumns parse_certify_columns(const std::vector<std::string>& names) {
  CertifyColumns columns;
  for (const std::string& name : names) {
    if (name == kBestColumn) columns.best = true;
    else if (name == kBabColumn) columns.bab = true;
    else columns.relaxations.push_back(parse_relaxation(name));
  }
  return columns;
}

void add_bab_flags(CLI::App& app, verify::VerifyOptions& bab) {
  app.add_option("--bab-timeout", bab.timeout_s,
                 "bab column: seconds of PGD and branch and bound per image (a timeout counts as not certified)")
      ->capture_default_str();
  app.add_option("--bab-max-domains", bab.max_domains,
                 "bab column: open subdomains per image before giving up (counted as unknown, not certified)")
      ->capture_default_str();
  app.add_flag("--bab-alpha", bab.alpha_slopes,
               "bab column: bound the subdomains with alpha-CROWN's optimised slopes (--alpha-* set them) instead "
               "of CROWN's");
}

void check_bab_flags(const verify::VerifyOptions& bab) {
  if (!(bab.timeout_s > 0) || !std::isfinite(bab.timeout_s))
    throw std::invalid_argument("[certify] --bab-timeout " + format_number(bab.timeout_s) + " must be a number > 0");
  if (bab.max_domains < 1)
    throw std::invalid_argument("[certify] --bab-max-domains " + std::to_string(bab.max_domains) + " must be at least 1");
}

}  // namespace cte::tools
