// The tape: reverse-mode automatic differentiation in one flat list.
//
// Rules (each is tested in tests/test_tape.cpp):
//  1. Every differentiable op whose inputs include a tensor that requires a
//     gradient appends exactly one Node (its name, its inputs, its outputs and
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

// One op's record. An op with several outputs (a fused relaxation op, a
// checkpointed block) is one node: its backward runs once with every output's
// gradient.
struct TapeNode {
  const char* op;                 // the op's name in the op table
  std::vector<Tensor> inputs;     // all tensor inputs (gradients flow to those requiring one)
  std::vector<Tensor> outputs;
  // Receives d loss / d output k for every output k (undefined for an output
  // that does not reach the loss; at least one is defined); calls
  // accumulate_grad(inputs[i], ...) for each input. The gradients are the
  // node's to take: a reshape hands its buffer on without a copy.
  std::function<void(std::vector<Tensor>& grad_outputs)> backward;
};

// True when ops should record: recording is enabled and some input requires a gradient.
bool should_record(std::initializer_list<const Tensor*> inputs);
bool should_record(const std::vector<Tensor>& inputs);
// Marks `output` as produced by a new node and appends the node. backward
// owns grad_output (a lambda taking it by value may pass its buffer on).
void record(const char* op, std::vector<Tensor> inputs, Tensor& output,
            std::function<void(Tensor grad_output)> backward);
// The same for an op with several outputs (all defined, produced together).
void record_multi(const char* op, std::vector<Tensor> inputs, const std::vector<Tensor*>& outputs,
                  std::function<void(const std::vector<Tensor>& grad_outputs)> backward);

// Adds `grad` (same shape as t) to t's gradient; no-op if t needs no gradient.
void accumulate_grad(const Tensor& t, const Tensor& grad);

void backward(const Tensor& loss);
void tape_reset();
size_t tape_size();                     // nodes currently recorded
const std::vector<TapeNode>& tape_nodes();  // for tests and debugging

// Runs `fn` without recording; on backward, re-runs it on copies of the
// inputs under a private tape (a TapeScope) and backpropagates through that
// recomputation (gradient checkpointing). One node with every output. Memory
// held between forward and backward is just the inputs and outputs, which is
// how a relaxation bounds thousands of neurons chunk by chunk under a memory
// cap. `fn` must be deterministic.
std::vector<Tensor> checkpointed(const char* op, const std::vector<Tensor>& inputs,
                                 const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn);

// A private tape for the current thread while the scope lives: the current
// tape and recording state are set aside, a fresh empty tape with recording
// on takes their place, and the destructor puts them back, also when an
// exception leaves the scope. Tensors recorded on either tape can never be
// mistaken for the other's (every tape gets its own epoch).
class TapeScope {
 public:
  TapeScope();
  ~TapeScope();
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  std::vector<TapeNode> saved_nodes_;
  int64_t saved_epoch_;
  bool saved_recording_;
};

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
