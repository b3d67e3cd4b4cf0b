// The tape's rules (engine/tape.h), each checked directly.
#include <doctest/doctest.h>

#include "engine/allocator.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "tests/test_util.h"

namespace cte::test {

TEST_CASE("tape: one node per differentiable op, none without gradients or under NoGrad") {
  tape_reset();
  Tensor a = Tensor::full(Shape{3}, 2.0f, Device::cpu).set_requires_grad(true);
  Tensor b = Tensor::full(Shape{3}, 5.0f, Device::cpu);
  Tensor c = ops::mul(a, b);
  Tensor d = ops::relu(c);
  CHECK(tape_size() == 2);
  CHECK(std::string(tape_nodes()[0].op) == "mul");
  CHECK(std::string(tape_nodes()[1].op) == "relu");
  ops::add(b, b);  // no input requires a gradient
  CHECK(tape_size() == 2);
  {
    NoGrad no_grad;
    ops::mul(a, a);
    CHECK(tape_size() == 2);
  }
  ops::mul(a, a);
  CHECK(tape_size() == 3);
  tape_reset();
  CHECK(tape_size() == 0);
}

TEST_CASE("tape: gradients of leaves accumulate until zero_grad") {
  Tensor a = Tensor::full(Shape{2}, 3.0f, Device::cpu).set_requires_grad(true);
  backward(ops::sum(ops::mul(a, a)));  // d/da sum a^2 = 2a = 6
  CHECK(a.grad().to_vector() == std::vector<float>{6.0f, 6.0f});
  backward(ops::sum(ops::scale(a, 4.0f)));  // + 4
  CHECK(a.grad().to_vector() == std::vector<float>{10.0f, 10.0f});
  a.zero_grad();
  CHECK_FALSE(a.grad().defined());
  backward(ops::sum(a));
  CHECK(a.grad().to_vector() == std::vector<float>{1.0f, 1.0f});
}

TEST_CASE("tape: a tensor used twice gets both contributions") {
  Tensor x = Tensor::from_vector({1.0f, -2.0f}, Shape{2}, Device::cpu).set_requires_grad(true);
  Tensor y = ops::add(ops::mul(x, x), ops::scale(x, 3.0f));  // dy/dx = 2x + 3
  backward(ops::sum(y));
  CHECK(x.grad().to_vector() == std::vector<float>{5.0f, -1.0f});
}

TEST_CASE("tape: a second backward over a released tape is a clear error") {
  Tensor a = Tensor::full(Shape{2}, 1.0f, Device::cpu).set_requires_grad(true);
  Tensor loss = ops::sum(ops::mul(a, a));
  backward(loss);
  CHECK_THROWS_WITH_AS(backward(loss), doctest::Contains("released"), std::runtime_error);
  Tensor loss2 = ops::sum(ops::mul(a, a));
  tape_reset();
  CHECK_THROWS_WITH_AS(backward(loss2), doctest::Contains("released"), std::runtime_error);
  CHECK_THROWS_WITH_AS(backward(ops::mul(a, a)), doctest::Contains("one element"), std::runtime_error);
}

TEST_CASE("tape: a chain of 100,000 ops does not overflow the stack") {
  tape_reset();
  Tensor x = Tensor::full(Shape{1}, 1.0f, Device::cpu).set_requires_grad(true);
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = ops::add_scalar(y, 1e-6f);
  CHECK(tape_size() == 100000);
  backward(ops::sum(y));
  CHECK(x.grad().item() == 1.0f);
  CHECK(tape_size() == 0);
}

TEST_CASE("tape: intermediate gradients are freed once consumed") {
  Tensor x = Tensor::full(Shape{4}, 1.0f, Device::cpu).set_requires_grad(true);
  Tensor h = ops::scale(x, 2.0f);
  backward(ops::sum(ops::relu(h)));
  CHECK_FALSE(h.grad().defined());
  CHECK(x.grad().defined());
}

TEST_CASE("allocator: freed blocks are reused, so a repeated step makes no raw allocation") {
  auto step = [](Device device) {
    Tensor w = Tensor::full(Shape{64, 32}, 0.5f, device).set_requires_grad(true);
    Tensor x = Tensor::full(Shape{16, 32}, 1.0f, device);
    backward(ops::sum(ops::relu(ops::matmul(x, w, false, true))));
    return w.grad().to_vector();
  };
  for (Device device : devices()) {
    const std::string device_label = device_name(device);
    CAPTURE(device_label);
    step(device);
    const uint64_t before = allocator_stats(device).raw_allocations;
    const uint64_t cuda_before = gpu::raw_alloc_counters().mallocs;
    step(device);
    const std::vector<float> grad = step(device);
    CHECK(allocator_stats(device).raw_allocations == before);
    CHECK(gpu::raw_alloc_counters().mallocs == cuda_before);
    CHECK(grad[0] == doctest::Approx(16.0f));  // every row of x contributes 1
  }
}

}  // namespace cte::test
