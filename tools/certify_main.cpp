// certify: certification from the command line. `certify <command> --help`
// lists a command's flags; each command lives in tools/certify/<command>.cpp
// (declared in tools/certify/commands.h), whose opening comment documents it.
// A run folder (train's --out) stands for its checkpoint.ckpt wherever a
// checkpoint is asked for. Banners go to stderr, results to stdout; the
// gnuplot scripts name their files relative to their own folder.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "tools/certify/commands.h"
#include "tools/lib/viewer.h"
#include "train/distributed.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* help;  // one line for certify --help
};

int viewer_command(int argc, char** argv) {
  return cte::tools::certify_viewer_command(argc, argv, cte::tools::viewer_assets());
}

using namespace cte::tools;
const Command kCommands[] = {
    {"bounds", certify_bounds_command, "bounds of a network on given inputs"},
    {"eval", certify_eval_command, "certified accuracy of a trained checkpoint per relaxation and radius"},
    {"curve", certify_curve_command, "CR curves and CR-AUC (tightness) of a trained checkpoint"},
    {"landscape", certify_landscape_command,
     "one output bound per relaxation along a line in weight space: continuity and sensitivity"},
    {"table", certify_table_command,
     "certified accuracy of several checkpoints under several relaxations: the paper's table 7"},
    {"sgd", certify_sgd_command, "gradient ascent on a relaxation's bound along a line: the paper's section 4.4"},
    {"toy-jumps", certify_toy_jumps_command,
     "the section 4.1 toy network's CROWN and hBox bounds as w sweeps [-1, 2]: the paper's figure 3"},
    {"viewer", viewer_command, "the relaxation viewer: an HTML page with sliders for l and u and every relaxation"},
    {"export-inputs", certify_export_inputs_command, "test images of a data set as the x.json that certify bounds reads"},
    {"verify", certify_verify_command,
     "complete verification of VNNLIB properties on an ONNX network: PGD, then branch and bound"},
};

int usage(std::FILE* out) {
  std::fprintf(out, "usage: certify <command> [flags]   (certify <command> --help lists its flags)\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-13s %s\n", c.name, c.help);
  std::fprintf(out, "A run folder works wherever a --checkpoint is asked for (its checkpoint.ckpt is used).\n");
  return out == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  cte::dist::Session mpi(argc, argv);
  if (argc < 2) return usage(stderr);
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") return usage(stdout);
  // Under mpirun, `eval` splits the test set across the ranks (rank 0 prints);
  // the other commands would only repeat the same work N times.
  if (cte::dist::world().size() > 1 && command != "eval") {
    if (cte::dist::world().is_root())
      std::fprintf(stderr, "[certify] under mpirun only 'certify eval' runs distributed; run '%s' as one process\n",
                   command.c_str());
    return 2;
  }
  if (!cte::dist::world().is_root() && !std::freopen("/dev/null", "w", stdout)) return cte::dist::exit_after_error(1);
  for (const Command& c : kCommands) {
    if (command != c.name) continue;
    // The commands throw on bad input or failure: one message, exit 1.
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      std::cout.flush();
      std::cerr << e.what() << std::endl;
      return cte::dist::exit_after_error(1);
    }
  }
  std::fprintf(stderr, "[certify] unknown command '%s'\n", command.c_str());
  return usage(stderr);
}
