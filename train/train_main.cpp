// train: the certified-training binary. Parses the flags (and --config JSON),
// checks every input before any work, prints the device banner, trains with
// checkpoints every epoch, and ends with accuracy, PGD accuracy and certified
// accuracy (plain lines on stdout and a final JSON line in metrics.jsonl).
// Exit status: 0 done, 1 bad input or failure, 2 usage error, 128+signal
// when interrupted (the last completed epoch's checkpoint is on disk).
// Under `mpirun -np N` the N ranks train data-parallel (train/distributed.h);
// rank 0 prints and writes, a failure on any rank ends all of them.
#include <cstdio>
#include <exception>
#include <iostream>

#include "engine/device.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  using namespace cte::train;
  cte::dist::Session mpi(argc, argv);
  TrainConfig config;
  const int parsed = parse_train_args(argc, argv, config);
  if (parsed >= 0) return parsed;
  try {
    validate_config(config);
    if (cte::dist::world().is_root())
      for (const std::string& note : config_notes(config)) std::cerr << note << std::endl;
    const cte::Device device = prepare_runtime(config);
    // On stderr, as in every binary: stdout carries only the run's lines.
    if (cte::dist::world().is_root())
      std::cerr << cte::device_banner(device) << (cte::dist::world().size() > 1 ? "; " + cte::dist::world().name() : "")
                << std::endl;
    Trainer trainer(config, &std::cout);
    const TrainSummary summary = trainer.run();
    if (summary.interrupted) return 128 + summary.signal;
    return 0;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << e.what() << std::endl;
    return cte::dist::exit_after_error(1);
  }
}
