// The tape: reverse-mode automatic differentiation in one flat list.
//
// Rules (each is tested in tests/test_tape.cpp):
//  1. Every differentiable op whose inputs include a tensor that requires a
//     gradient appends exactly one Node (its name, its inputs, its output and
//     a backward function that closes over whatever it saved) to the current
//     thread's tape, in execution order. Ops on tensors that need no gradient,
//     and all ops inside a NoGrad scope, record nothing.
//  2. backward(loss) seeds d loss / d loss = 1 and walks the tape in reverse
//     with a plain loop (no recursion: a chain of 100,000 ops is fine). Each
//     node adds its inputs' gradient contributions; backward functions run
//     with recording off, so gradients are never themselves differentiated.
//  3. Gradients of leaves (parameters, inputs with requires_grad) accumulate
//     across backward passes until zero_grad(). Gradients of intermediate
//     tensors are freed as soon as their producer has consumed them.
//  4. backward releases the tape: the nodes and what they saved are freed.
//     Calling backward again on a loss from a released tape is an error
//     ("[backward] ... released ..."), as is calling it on a tensor with no
//     gradient history or more than one element.
//  5. tape_reset() discards the current tape without a backward pass (for
//     example after an evaluation forward that recorded by mistake).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace cte {

struct TapeNode {
  const char* op;                 // the op's name in the op table
  std::vector<Tensor> inputs;     // all tensor inputs (gradients flow to those requiring one)
  Tensor output;
  // Receives d loss / d output; calls accumulate_grad(inputs[i], ...) for each input.
  std::function<void(const Tensor& grad_output)> backward;
};

// True when ops should record: recording is enabled and some input requires a gradient.
bool should_record(std::initializer_list<const Tensor*> inputs);
bool should_record(const std::vector<Tensor>& inputs);
// Marks `output` as produced by a new node and appends the node.
void record(const char* op, std::vector<Tensor> inputs, Tensor& output,
            std::function<void(const Tensor& grad_output)> backward);

// Adds `grad` (same shape as t) to t's gradient; no-op if t needs no gradient.
void accumulate_grad(const Tensor& t, const Tensor& grad);

void backward(const Tensor& loss);
void tape_reset();
size_t tape_size();                     // nodes currently recorded
const std::vector<TapeNode>& tape_nodes();  // for tests and debugging

// Runs `fn` without recording; on backward, re-runs it on copies of the
// inputs under a private tape and backpropagates through that recomputation
// (gradient checkpointing). Memory held between forward and backward is just
// the inputs and outputs, which is how a relaxation bounds thousands of
// neurons chunk by chunk under a memory cap. `fn` must be deterministic.
std::vector<Tensor> checkpointed(const char* op, const std::vector<Tensor>& inputs,
                                 const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn);

bool grad_recording_enabled();
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

}  // namespace cte
