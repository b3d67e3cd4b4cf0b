// The certify subcommands that live in tools/certify/ (one file each);
// tools/certify_main.cpp dispatches to them. Each parses its own flags and
// returns the exit status (throwing on bad input, like the others).
#pragma once

namespace cte::tools {

// certify eval: certified accuracy of a train checkpoint per relaxation and radius (tools/certify/eval.cpp).
int certify_eval_command(int argc, char** argv);
// certify table: several checkpoints under several relaxations, the paper's table 7 (tools/certify/table.cpp).
int certify_table_command(int argc, char** argv);
// certify toy-jumps: the paper's figure 3 (tools/certify/toy_jumps.h).
int certify_toy_jumps_command(int argc, char** argv);
// certify verify: VNNLIB properties on ONNX/JSON nets, VNN-COMP results (tools/certify/verify.cpp).
int certify_verify_command(int argc, char** argv);

}  // namespace cte::tools
