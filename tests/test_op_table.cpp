// Walks the op table (engine/op_table.h): every op must have a test case
// (hence a gradient check and a CPU/CUDA parity check, in test_ops.cpp), and
// every kernel stem it names must be a kernel of kernels/kernels.h, which by
// construction declares a _cpu and a _cuda twin (the link proves both exist).
#include <doctest/doctest.h>

#include <set>
#include <sstream>
#include <string>

#include "engine/op_table.h"
#include "kernels/kernels.h"
#include "tests/test_ops_cases.h"

namespace cte::test {
namespace {

struct OpEntry {
  const char* name;
  const char* kernels;
  bool differentiable;
};

const OpEntry kOps[] = {
#define CTE_OP_ENTRY(name, kernels, diff) {#name, kernels, diff},
    CTE_ENGINE_OPS(CTE_OP_ENTRY)
#undef CTE_OP_ENTRY
};

// Taking each twin's address makes the link fail if either is missing.
#define CTE_KERNEL_NAME(name, params) {#name, reinterpret_cast<const void*>(&kern::name##_cpu), reinterpret_cast<const void*>(&kern::name##_cuda)},
struct KernelEntry {
  const char* name;
  const void* cpu;
  const void* cuda;
};
const KernelEntry kKernels[] = {CTE_KERNELS(CTE_KERNEL_NAME)};
#undef CTE_KERNEL_NAME

}  // namespace

TEST_CASE("op table: every op has a gradient/parity case and kernel twins") {
  std::set<std::string> covered;
  for (const OpCase& c : op_cases()) covered.insert(c.op);
  std::set<std::string> kernel_names;
  for (const KernelEntry& k : kKernels) {
    CHECK(k.cpu != nullptr);
    CHECK(k.cuda != nullptr);
    kernel_names.insert(k.name);
  }
  for (const OpEntry& op : kOps) {
    CAPTURE(op.name);
    CHECK_MESSAGE(covered.count(op.name) == 1, "op '" << op.name << "' has no case in test_ops.cpp");
    std::istringstream stems(op.kernels);
    std::string stem;
    while (stems >> stem) CHECK_MESSAGE(kernel_names.count(stem) == 1, "unknown kernel " << stem);
  }
  for (const std::string& name : covered) {
    bool listed = false;
    for (const OpEntry& op : kOps) listed = listed || name == op.name;
    CHECK_MESSAGE(listed, "test case for '" << name << "', which is not in the op table");
  }
}

}  // namespace cte::test
