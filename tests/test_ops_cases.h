// The table of op test cases shared by the gradient checks, the CPU/CUDA
// parity checks (test_ops.cpp) and the op-table walk (test_op_table.cpp).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace cte::test {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string op;       // the name in engine/op_table.h
  std::string variant;  // what this case covers
  std::vector<Tensor> inputs;       // CPU values
  std::vector<bool> differentiable; // which inputs get gradients
  OpFn fn;
};

struct OpRun {
  std::vector<float> output;
  std::vector<std::vector<float>> grads;  // of sum(w * output), per input (empty if none)
  std::vector<std::string> recorded_ops;  // tape node names the forward recorded
};

std::vector<OpCase> op_cases();
OpRun run_case(const OpCase& c, Device device, const std::vector<float>& weights);

}  // namespace cte::test
