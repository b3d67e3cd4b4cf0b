// Walks the op table (engine/op_table.h): every op must have a test case
// (hence a gradient check and a CPU/CUDA parity check, in test_ops.cpp), and
// every kernel stem it names must be a kernel of kernels/kernels.h, which by
// construction declares a _cpu and a _cuda twin (the link proves both exist).
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "engine/dispatch.h"
#include "engine/op_table.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/kernels.h"
#include "kernels/relax_kernels.h"
#include "relaxations/relax_ops.h"
#include "tests/test_ops_cases.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

struct OpEntry {
  const char* name;
  const char* kernels;
  bool differentiable;
};

#define CTE_OP_ENTRY(name, kernels, diff) {#name, kernels, diff},
const OpEntry kOps[] = {CTE_ENGINE_OPS(CTE_OP_ENTRY)};
const OpEntry kRelaxationOps[] = {CTE_RELAXATION_OPS(CTE_OP_ENTRY)};
#undef CTE_OP_ENTRY

std::set<std::string> words_of(const char* list) {
  std::istringstream in(list);
  std::set<std::string> out;
  std::string word;
  while (in >> word) out.insert(word);
  return out;
}

std::string joined(const std::set<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : " ") + s;
  return out;
}

// Taking each twin's address makes the link fail if either is missing.
#define CTE_KERNEL_NAME(name, params) {#name, reinterpret_cast<const void*>(&kern::name##_cpu), reinterpret_cast<const void*>(&kern::name##_cuda)},
struct KernelEntry {
  const char* name;
  const void* cpu;
  const void* cuda;
};
const KernelEntry kKernels[] = {CTE_KERNELS(CTE_KERNEL_NAME) CTE_RELAX_KERNELS(CTE_KERNEL_NAME)};
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
    for (const std::string& stem : words_of(op.kernels))
      CHECK_MESSAGE(kernel_names.count(stem) == 1, "unknown kernel " << stem);
  }
  // The relaxations' fused ops (their value and gradient checks are in test_relaxation_fused.cpp).
  for (const OpEntry& op : kRelaxationOps) {
    CAPTURE(op.name);
    for (const std::string& stem : words_of(op.kernels))
      CHECK_MESSAGE(kernel_names.count(stem) == 1, "unknown kernel " << stem);
  }
  for (const std::string& name : covered) {
    bool listed = false;
    for (const OpEntry& op : kOps) listed = listed || name == op.name;
    CHECK_MESSAGE(listed, "test case for '" << name << "', which is not in the op table");
  }
}

TEST_CASE("op table: the kernels each op launches, forward and backward, are the ones it lists") {
  std::map<std::string, std::set<std::string>> launched;  // op -> stems over all its cases
  // On every device (a twin may differ in what it needs: the CPU fills on the
  // host where CUDA launches the fill kernel), so the union over devices counts.
  for (Device device : devices())
    for (const OpCase& c : op_cases()) {
      CAPTURE(c.op);
      CAPTURE(c.variant);
      std::vector<Tensor> inputs;
      for (size_t i = 0; i < c.inputs.size(); ++i) {
        Tensor t = c.inputs[i].to(device).clone();
        if (c.differentiable[i]) t.set_requires_grad(true);
        inputs.push_back(t);
      }
      tape_reset();
      std::set<std::string>& stems = launched[c.op];
      {
        KernelLog log;
        c.fn(inputs);
        stems.insert(log.stems().begin(), log.stems().end());
      }
      // Each node the op recorded, backward from ones (made outside the log).
      const std::vector<TapeNode> nodes = tape_nodes();
      NoGrad no_grad;
      for (auto node = nodes.rbegin(); node != nodes.rend(); ++node) {
        std::vector<Tensor> ones;
        for (const Tensor& out : node->outputs) ones.push_back(Tensor::full(out.shape(), 1.0f, device));
        KernelLog log;
        node->backward(ones);
        stems.insert(log.stems().begin(), log.stems().end());
      }
      tape_reset();
    }
  for (const OpEntry& op : kOps) {
    const std::string name = op.name;
    CAPTURE(name);
    const std::set<std::string> listed = words_of(op.kernels), &ran = launched[name];
    std::set<std::string> unlisted, unused;
    for (const std::string& s : ran)
      if (!listed.count(s)) unlisted.insert(s);
    // Tensor::full and zeros call the fill twins directly (engine/tensor.cpp),
    // not through CTE_RUN, so the log cannot see fill.
    for (const std::string& s : listed)
      if (!ran.count(s) && s != "fill") unused.insert(s);
    CHECK_MESSAGE(unlisted.empty(), "op " << name << " launches kernels the op table does not list: " << joined(unlisted));
    CHECK_MESSAGE(unused.empty(), "op " << name << " lists kernels its cases never launch: " << joined(unused));
  }
}

}  // namespace cte::test

namespace cte::test {

TEST_CASE("kernel profile: counts each stem's launches and their time, the costliest first, only while open") {
  Rng rng(5);
  const Tensor big_a = random_tensor(Shape{384, 384}, rng), big_b = random_tensor(Shape{384, 384}, rng);
  const Tensor small = random_tensor(Shape{8}, rng);
  NoGrad no_grad;
  ops::add(small, small);  // before the profile opens: not counted
  std::vector<KernelProfile::Entry> entries;
  {
    KernelProfile profile;
    CHECK_THROWS_WITH_AS(KernelProfile(), doctest::Contains("already open"), std::runtime_error);
    for (int i = 0; i < 2; ++i) ops::matmul(big_a, big_b);  // 2 x 113 MFLOP
    for (int i = 0; i < 5; ++i) ops::add(small, small);     // 5 x 8 adds
    entries = profile.entries();
  }
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].stem == "gemm");
  CHECK(entries[0].calls == 2);
  CHECK(entries[1].stem == "binary");
  CHECK(entries[1].calls == 5);
  CHECK(entries[0].seconds > entries[1].seconds);
  CHECK(entries[1].seconds > 0.0);
  KernelProfile reopened;  // the first one closed with its scope
  ops::add(small, small);
  REQUIRE(reopened.entries().size() == 1);
  CHECK(reopened.entries()[0].calls == 1);
}

}  // namespace cte::test
