// The certify subcommands, one file each under tools/certify/; certify_main.cpp dispatches.
#pragma once

namespace cte::tools {

int certify_verify_command(int argc, char** argv);  // verify.cpp

}  // namespace cte::tools
