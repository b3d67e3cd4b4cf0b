// The certify subcommands, one file each in tools/certify/; tools/certify_main.cpp
// dispatches to them. Each parses its own flags (argv[0] is the subcommand's
// name) and returns the exit status; bad input throws (one message, exit 1),
// except certify bounds, which prints its own messages and exit status.
#pragma once

namespace cte::tools {

struct ViewerAssets;

// certify bounds: bounds of a network JSON or ONNX on given inputs (tools/certify/bounds.h).
int certify_bounds_command(int argc, char** argv);
// certify curve: CR curves and CR-AUC of a train checkpoint (tools/certify/curve.cpp).
int certify_curve_command(int argc, char** argv);
// certify eval: certified accuracy of a train checkpoint per relaxation and radius (tools/certify/eval.cpp).
int certify_eval_command(int argc, char** argv);
// certify export-inputs: images of a data set as certify bounds' x.json (tools/certify/export_inputs.cpp).
int certify_export_inputs_command(int argc, char** argv);
// certify landscape: one output's bound per relaxation along a line in weight space (tools/certify/landscape.cpp).
int certify_landscape_command(int argc, char** argv);
// certify sgd: the paper's section 4.4 gradient ascent experiment (tools/certify/sgd.cpp).
int certify_sgd_command(int argc, char** argv);
// certify table: several checkpoints under several relaxations, the paper's table 7 (tools/certify/table.cpp).
int certify_table_command(int argc, char** argv);
// certify toy-jumps: the paper's figure 3 (tools/certify/toy_jumps.h).
int certify_toy_jumps_command(int argc, char** argv);
// certify verify: VNNLIB properties on ONNX/JSON nets, VNN-COMP results (tools/certify/verify.cpp).
int certify_verify_command(int argc, char** argv);
// certify viewer: the relaxation viewer's page (tools/certify/viewer.cpp). The
// page's files are compiled into the certify binary only, so they come as an
// argument (tools/lib/viewer.h's viewer_assets()).
int certify_viewer_command(int argc, char** argv, const ViewerAssets& assets);

}  // namespace cte::tools
