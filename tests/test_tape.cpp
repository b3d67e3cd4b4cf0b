// The tape's rules (engine/tape.h), each checked directly.
#include <doctest/doctest.h>

#include <algorithm>

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

namespace {
// A two-output op written for the test with the host's arithmetic: from x (n)
// it makes p = x^2 and q = x^3 elementwise, one tape node with both outputs.
std::pair<Tensor, Tensor> square_and_cube(const Tensor& x) {
  const std::vector<float> v = x.to_vector();
  std::vector<float> p(v.size()), q(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    p[i] = v[i] * v[i];
    q[i] = v[i] * v[i] * v[i];
  }
  Tensor tp = Tensor::from_vector(p, x.shape(), Device::cpu), tq = Tensor::from_vector(q, x.shape(), Device::cpu);
  if (should_record({&x}))
    record_multi("square_and_cube", {x}, {&tp, &tq}, [x](const std::vector<Tensor>& g) {
      const std::vector<float> v = x.to_vector();
      std::vector<float> dx(v.size(), 0.0f);
      for (size_t i = 0; i < v.size(); ++i) {
        if (g[0].defined()) dx[i] += 2.0f * v[i] * g[0].to_vector()[i];
        if (g[1].defined()) dx[i] += 3.0f * v[i] * v[i] * g[1].to_vector()[i];
      }
      accumulate_grad(x, Tensor::from_vector(dx, x.shape(), Device::cpu));
    });
  return {tp, tq};
}
}  // namespace

TEST_CASE("tape: a node with several outputs gets every output's gradient in one call (finite differences)") {
  tape_reset();
  const std::vector<float> x0{0.5f, -1.25f, 2.0f};
  const std::vector<float> wp{1.0f, -2.0f, 0.5f}, wq{0.25f, 1.5f, -1.0f};
  const Tensor tw_p = Tensor::from_vector(wp, Shape{3}, Device::cpu), tw_q = Tensor::from_vector(wq, Shape{3}, Device::cpu);
  // loss = sum(wp * p) + sum(wq * q), and the variants where one output misses the loss.
  for (int uses = 1; uses <= 3; ++uses) {
    CAPTURE(uses);
    auto loss_of = [&](const Tensor& x) {
      const auto [p, q] = square_and_cube(x);
      Tensor loss;
      if (uses & 1) loss = ops::sum(ops::mul(p, tw_p));
      if (uses & 2) loss = loss.defined() ? ops::add(loss, ops::sum(ops::mul(q, tw_q))) : ops::sum(ops::mul(q, tw_q));
      return loss;
    };
    Tensor x = Tensor::from_vector(x0, Shape{3}, Device::cpu).set_requires_grad(true);
    const Tensor loss = loss_of(x);
    CHECK(tape_size() == (uses == 3 ? 6u : 3u));  // one node for both outputs, then mul, sum (and add)
    backward(loss);
    // Central differences in double precision of the same loss, written out.
    std::vector<float> fd(3);
    for (size_t i = 0; i < 3; ++i) {
      auto f = [&](double xi) {
        return ((uses & 1) ? wp[i] * xi * xi : 0.0) + ((uses & 2) ? wq[i] * xi * xi * xi : 0.0);
      };
      const double h = 1e-3;
      fd[i] = float((f(x0[i] + h) - f(x0[i] - h)) / (2 * h));
    }
    CHECK_CLOSE_VEC(x.grad().to_vector(), fd, 1e-4, 1e-4);
  }
}

TEST_CASE("tape: an exception inside checkpointed's recomputation leaves the outer tape usable") {
  tape_reset();
  Tensor a = Tensor::from_vector({1.0f, -2.0f, 3.0f}, Shape{3}, Device::cpu).set_requires_grad(true);
  int calls = 0;
  auto block = [&calls](const std::vector<Tensor>& in) {
    if (++calls == 2) throw std::runtime_error("recomputation failed");  // the backward pass's call
    return std::vector<Tensor>{ops::mul(in[0], in[0]), ops::scale(in[0], 2.0f)};
  };
  const Tensor outer = ops::scale(a, 5.0f);  // recorded on the outer tape before the block
  const std::vector<Tensor> out = checkpointed("block", {a}, block);
  const Tensor loss = ops::add(ops::sum(outer), ops::add(ops::sum(out[0]), ops::sum(out[1])));
  const size_t recorded = tape_size();
  CHECK(recorded == 7);  // scale, the block (one node, two outputs), 3 sums, 2 adds
  CHECK_THROWS_WITH_AS(backward(loss), doctest::Contains("recomputation failed"), std::runtime_error);
  // The outer tape is back with its nodes, recording is on, and it works.
  CHECK(tape_size() == recorded);
  CHECK(grad_recording_enabled());
  tape_reset();
  a.zero_grad();
  const std::vector<Tensor> again = checkpointed("block", {a}, block);  // calls 3 and 4 succeed
  backward(ops::add(ops::sum(ops::scale(a, 5.0f)), ops::add(ops::sum(again[0]), ops::sum(again[1]))));
  CHECK(a.grad().to_vector() == std::vector<float>{9.0f, 3.0f, 13.0f});  // 5 + 2a + 2
  CHECK(tape_size() == 0);
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

TEST_CASE("allocator: steps whose sizes change reuse larger blocks, and the cache stays bounded") {
  // The sparse bounds allocate as many rows as there are unstable neurons, so
  // sizes change every step. An allocator that caches one block per exact
  // size grew a FashionMNIST FC CROWN training run to 14 GB (killed by the
  // OOM killer); here it would fail both halves.
  constexpr size_t kMiB = size_t(1) << 20, kStep = size_t(64) << 10;  // 64 KiB: the rounding above 1 MiB
  const Device cpu = Device::cpu;
  empty_cache(cpu);
  // Shrinking sizes: each fits in the 8 MiB block the previous one freed, and
  // counts as that block while live. Below half of it, a request takes a new block.
  const size_t in_use_before = allocator_stats(cpu).bytes_in_use;
  device_free(cpu, device_allocate(cpu, 8 * kMiB), 8 * kMiB);
  const uint64_t raw_before = allocator_stats(cpu).raw_allocations;
  for (size_t bytes = 8 * kMiB - kStep; bytes >= 4 * kMiB; bytes -= 4 * kStep) {
    void* block = device_allocate(cpu, bytes);
    CHECK(allocator_stats(cpu).bytes_in_use == in_use_before + 8 * kMiB);
    device_free(cpu, block, bytes);
  }
  CHECK(allocator_stats(cpu).raw_allocations == raw_before);
  CHECK(allocator_stats(cpu).bytes_in_use == in_use_before);
  device_free(cpu, device_allocate(cpu, 3 * kMiB), 3 * kMiB);
  CHECK(allocator_stats(cpu).raw_allocations == raw_before + 1);

  // Growing sizes from 9 MiB: no cached block fits any of them. Go on until an
  // exact-size cache would hold 64 MiB more than the limit; the cache must have
  // been returned to the system on the way and be within the limit at the end.
  // A peak of 320 MiB first, so that the limit is twice a peak, not the 256 MiB floor.
  device_free(cpu, device_allocate(cpu, 320 * kMiB), 320 * kMiB);
  empty_cache(cpu);
  const AllocatorStats before = allocator_stats(cpu);
  const size_t limit = std::max(2 * before.high_water_bytes_in_use, size_t(256) * kMiB);
  size_t exact_size_cache = 0, largest = 0, most_cached = 0;
  for (size_t bytes = 9 * kMiB; exact_size_cache < limit + 64 * kMiB; bytes += kStep) {
    device_free(cpu, device_allocate(cpu, bytes), bytes);
    exact_size_cache += bytes;
    largest = bytes;
    most_cached = std::max(most_cached, allocator_stats(cpu).bytes_cached);
  }
  const AllocatorStats after = allocator_stats(cpu);
  CHECK(after.bytes_cached <= limit + largest);
  // The cache may exceed the peak itself: a limit of 1x the peak emptied a CONV+ CROWN step's cache
  // once a step (its chunk sizes do not all fit one another's blocks).
  CHECK(most_cached > after.high_water_bytes_in_use * 3 / 2);
  CHECK(after.raw_frees > before.raw_frees);
  empty_cache(cpu);
  CHECK(allocator_stats(cpu).bytes_cached == 0);
}

TEST_CASE("allocator: large CPU blocks start on a 2 MiB boundary (one transparent huge page each)") {
  // Transparent huge pages are whole aligned 2 MiB pages, so a block that starts
  // elsewhere loses part of a huge page at each end; small blocks keep the 64-byte alignment.
  constexpr size_t kMiB = size_t(1) << 20;
  const Device cpu = Device::cpu;
  empty_cache(cpu);
  for (size_t bytes : {2 * kMiB, 5 * kMiB + 12345, 64 * kMiB}) {
    void* block = device_allocate(cpu, bytes);
    CHECK(reinterpret_cast<uintptr_t>(block) % (2 * kMiB) == 0);
    device_free(cpu, block, bytes);
  }
  void* small = device_allocate(cpu, 1000);
  CHECK(reinterpret_cast<uintptr_t>(small) % 64 == 0);
  device_free(cpu, small, 1000);
  empty_cache(cpu);
}

TEST_CASE("graphs: a captured computation replays on new inputs, keeps its own blocks, and refuses host waits") {
  // sum(relu(x W)) for a (2, 4) x and a (4, 3) W, captured once (cuBLAS GEMM,
  // kernels, a device-to-device copy) and replayed on two inputs copied into
  // the graph's input buffer; the expected sums are computed here in double.
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  const std::vector<float> w_values{0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.5f, -2.0f, 1.0f, 0.75f, 1.0f, -0.25f, 0.5f};
  const Tensor w = Tensor::from_vector(w_values, Shape{4, 3}, Device::cuda);
  auto expected = [&](const std::vector<float>& x) {
    double total = 0;
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        double z = 0;
        for (int k = 0; k < 4; ++k) z += double(x[size_t(i * 4 + k)]) * double(w_values[size_t(k * 3 + j)]);
        total += std::max(z, 0.0);
      }
    return total;
  };
  Tensor x = Tensor::zeros(Shape{2, 4}, Device::cuda);  // the graph's input buffer
  NoGrad no_grad;
  auto capture = [&](GraphMemoryPool& pool, Tensor& y, const float** product_block) {
    pool.begin();
    gpu::capture_begin();
    Tensor product = ops::matmul(x, w);
    *product_block = product.data();
    Tensor staged = Tensor::empty(Shape{2, 4}, Device::cuda);
    staged.copy_from(x);
    y = ops::sum(ops::relu(ops::matmul(staged, w)));
    product = Tensor();  // freed inside the capture: back to the pool, not to the shared cache
    void* graph = gpu::capture_end();
    pool.end();
    return graph;
  };
  {
    GraphMemoryPool pool;
    Tensor y;
    const float* product_block = nullptr;
    void* graph = capture(pool, y, &product_block);
    CHECK_FALSE(gpu::capturing());

    for (const std::vector<float>& input : {std::vector<float>{1, 2, 3, 4, -1, 0.5f, 2, -3},
                                            std::vector<float>{-2, 1, 0, 0.5f, 3, 3, -1, 1}}) {
      x.copy_from(Tensor::from_vector(input, Shape{2, 4}, Device::cpu));
      gpu::graph_launch(graph);
      CHECK(y.item() == doctest::Approx(expected(input)).epsilon(1e-6));
    }
    // The block freed during the capture is the graph's: allocations elsewhere never get it.
    std::vector<Tensor> others;
    for (int i = 0; i < 4; ++i) {
      others.push_back(Tensor::empty(Shape{2, 3}, Device::cuda));
      CHECK(others.back().data() != product_block);
    }

    // A host wait inside a capture fails (here a read of y), and so does the capture.
    gpu::capture_begin();
    CHECK_THROWS_WITH_AS(y.item(), doctest::Contains("capturing"), std::runtime_error);
    gpu::capture_abandon();
    CHECK_FALSE(gpu::capturing());
    CHECK(ops::add_scalar(y, 1.0f).item() == doctest::Approx(expected({-2, 1, 0, 0.5f, 3, 3, -1, 1}) + 1.0));
    gpu::graph_destroy(graph);
  }
  // The retired pool's blocks went back to the shared cache, and a new capture
  // takes those before cudaMalloc: captures do not add up.
  const uint64_t raw_before = allocator_stats(Device::cuda).raw_allocations;
  GraphMemoryPool again;
  Tensor y;
  const float* product_block = nullptr;
  void* graph = capture(again, y, &product_block);
  CHECK(allocator_stats(Device::cuda).raw_allocations == raw_before);
  x.copy_from(Tensor::from_vector({1, 1, 1, 1, 1, 1, 1, 1}, Shape{2, 4}, Device::cpu));
  gpu::graph_launch(graph);
  CHECK(y.item() == doctest::Approx(expected({1, 1, 1, 1, 1, 1, 1, 1})).epsilon(1e-6));
  gpu::graph_destroy(graph);
}

}  // namespace cte::test
