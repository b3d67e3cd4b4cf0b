// The tape (see tape.h for its rules).
#include "engine/tape.h"

#include "engine/ops.h"

namespace cte {
namespace {

struct Tape {
  std::vector<TapeNode> nodes;
  int64_t epoch = 0;  // bumped every time the tape is released
};

thread_local Tape g_tape;
thread_local bool g_recording = true;

}  // namespace

bool grad_recording_enabled() { return g_recording; }
NoGrad::NoGrad() : previous_(g_recording) { g_recording = false; }
NoGrad::~NoGrad() { g_recording = previous_; }

bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!g_recording) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool should_record(const std::vector<Tensor>& inputs) {
  if (!g_recording) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* op, std::vector<Tensor> inputs, Tensor& output,
            std::function<void(const Tensor&)> backward_fn) {
  TensorImpl* out = output.impl();
  out->requires_grad = true;
  out->is_leaf = false;
  out->tape_epoch = g_tape.epoch;
  out->tape_node = int64_t(g_tape.nodes.size());
  g_tape.nodes.push_back(TapeNode{op, std::move(inputs), output, std::move(backward_fn)});
}

void accumulate_grad(const Tensor& t, const Tensor& grad) {
  if (!t.defined() || !t.requires_grad()) return;
  if (grad.shape() != t.shape())
    fail("backward", "gradient of shape " + grad.shape().str() + " for a tensor of shape " +
                         t.shape().str());
  TensorImpl* impl = t.impl();
  if (!impl->grad) {
    // Adopt a gradient nothing else refers to (the common case: a fresh
    // result); copy one that is shared, since accumulation writes into it.
    const bool sole_owner = grad.impl_ptr().use_count() == 1 && grad.impl()->buffer.use_count() == 1;
    impl->grad = sole_owner ? grad.impl_ptr() : grad.clone().impl_ptr();
    return;
  }
  Tensor existing = Tensor::wrap(impl->grad);
  ops::add_into(existing, grad);
}

void backward(const Tensor& loss) {
  if (!loss.defined()) fail("backward", "the loss is an undefined tensor");
  if (loss.numel() != 1)
    fail("backward", "the loss must have one element, got shape " + loss.shape().str());
  TensorImpl* root = loss.impl();
  if (root->is_leaf) {
    if (root->requires_grad) accumulate_grad(loss, Tensor::full(loss.shape(), 1.0f, loss.device()));
    return;
  }
  if (root->tape_epoch != g_tape.epoch || root->tape_node >= int64_t(g_tape.nodes.size()))
    fail("backward", "the tape that recorded this loss was released by an earlier backward() "
                     "or tape_reset(); run the forward pass again");

  NoGrad no_recording;  // gradients are not themselves differentiated
  root->grad = Tensor::full(loss.shape(), 1.0f, loss.device()).impl_ptr();
  for (int64_t i = root->tape_node; i >= 0; --i) {
    TapeNode& node = g_tape.nodes[size_t(i)];
    TensorImpl* out = node.output.impl();
    if (!out->grad) continue;  // does not influence the loss
    const Tensor grad_output = Tensor::wrap(out->grad);
    out->grad.reset();  // intermediate gradients die as soon as they are consumed
    node.backward(grad_output);
  }
  tape_reset();
}

void tape_reset() {
  for (TapeNode& node : g_tape.nodes) node.output.impl()->grad.reset();
  g_tape.nodes.clear();
  ++g_tape.epoch;
}

std::vector<Tensor> checkpointed(const char* op, const std::vector<Tensor>& inputs,
                                 const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn) {
  std::vector<Tensor> outputs;
  {
    NoGrad no_recording;
    outputs = fn(inputs);
  }
  if (!should_record(inputs)) return outputs;
  // One node per output, recorded in order. Reverse order runs output 0's
  // node last: the others stash their gradient (and make sure output 0's node
  // runs even if output 0 itself does not reach the loss); output 0's node
  // then recomputes once and backpropagates for all of them.
  auto grads = std::make_shared<std::vector<Tensor>>(outputs.size());
  const Tensor first_output = outputs[0];
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (k > 0) {
      record(op, inputs, outputs[k], [grads, k, first_output](const Tensor& grad_output) {
        (*grads)[k] = grad_output;
        TensorImpl* first = first_output.impl();
        if (!first->grad) first->grad = Tensor::zeros(first_output.shape(), first_output.device()).impl_ptr();
      });
      continue;
    }
    record(op, inputs, outputs[0], [inputs, fn, grads](const Tensor& grad_output) {
      (*grads)[0] = grad_output;
      // Recompute on leaves that stand in for the inputs, on a private tape.
      Tape saved = std::move(g_tape);
      g_tape = Tape{};
      g_tape.epoch = saved.epoch + 1000003;  // never equal to the outer tape's epoch
      const bool previous = g_recording;
      g_recording = true;
      std::vector<Tensor> leaves;
      for (const Tensor& in : inputs) {
        Tensor leaf = in.detach();
        if (in.requires_grad()) leaf.set_requires_grad(true);
        leaves.push_back(leaf);
      }
      std::vector<Tensor> recomputed = fn(leaves);
      Tensor total;
      for (size_t j = 0; j < recomputed.size(); ++j) {
        if (!(*grads)[j].defined() || !recomputed[j].requires_grad()) continue;
        Tensor term = ops::sum(ops::mul(recomputed[j], (*grads)[j]));
        total = total.defined() ? ops::add(total, term) : term;
      }
      if (total.defined()) backward(total);
      g_tape = std::move(saved);
      g_recording = previous;
      for (size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i].requires_grad() && leaves[i].grad().defined()) accumulate_grad(inputs[i], leaves[i].grad());
    });
  }
  return outputs;
}

size_t tape_size() { return g_tape.nodes.size(); }
const std::vector<TapeNode>& tape_nodes() { return g_tape.nodes; }

}  // namespace cte
