// The tape (see tape.h for its rules).
#include "engine/tape.h"

#include "engine/ops.h"

namespace cte {
namespace {

// Epochs handed out on this thread: every tape, the thread's own after each
// release and every TapeScope's, gets a fresh one.
thread_local int64_t g_last_epoch = 0;
int64_t fresh_epoch() { return ++g_last_epoch; }

struct Tape {
  std::vector<TapeNode> nodes;
  int64_t epoch = fresh_epoch();
};

thread_local Tape g_tape;
thread_local bool g_recording = true;

// Marks `output` as the product of the node about to be appended.
void mark_output(Tensor& output) {
  TensorImpl* out = output.impl();
  out->requires_grad = true;
  out->is_leaf = false;
  out->tape_epoch = g_tape.epoch;
  out->tape_node = int64_t(g_tape.nodes.size());
}

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
            std::function<void(Tensor)> backward_fn) {
  mark_output(output);
  g_tape.nodes.push_back(TapeNode{op, std::move(inputs), {output},
                                  [fn = std::move(backward_fn)](std::vector<Tensor>& g) { fn(std::move(g[0])); }});
}

void record_multi(const char* op, std::vector<Tensor> inputs, const std::vector<Tensor*>& outputs,
                  std::function<void(const std::vector<Tensor>&)> backward_fn) {
  if (outputs.empty()) fail("record_multi", std::string(op) + ": a node needs at least one output");
  std::vector<Tensor> outs;
  for (Tensor* output : outputs) {
    if (!output->defined()) fail("record_multi", std::string(op) + ": an output is undefined");
    mark_output(*output);
    outs.push_back(*output);
  }
  g_tape.nodes.push_back(TapeNode{op, std::move(inputs), std::move(outs), std::move(backward_fn)});
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
  std::vector<Tensor> grad_outputs;
  for (int64_t i = root->tape_node; i >= 0; --i) {
    TapeNode& node = g_tape.nodes[size_t(i)];
    grad_outputs.assign(node.outputs.size(), Tensor());
    bool reached = false;
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      TensorImpl* out = node.outputs[k].impl();
      if (!out->grad) continue;  // does not influence the loss
      grad_outputs[k] = Tensor::wrap(out->grad);
      out->grad.reset();  // intermediate gradients die as soon as they are consumed
      reached = true;
    }
    if (reached) node.backward(grad_outputs);
  }
  tape_reset();
}

void tape_reset() {
  for (TapeNode& node : g_tape.nodes)
    for (Tensor& output : node.outputs) output.impl()->grad.reset();
  g_tape.nodes.clear();
  g_tape.epoch = fresh_epoch();
}

TapeScope::TapeScope()
    : saved_nodes_(std::move(g_tape.nodes)), saved_epoch_(g_tape.epoch), saved_recording_(g_recording) {
  g_tape.nodes.clear();
  g_tape.epoch = fresh_epoch();
  g_recording = true;
}

TapeScope::~TapeScope() {
  for (TapeNode& node : g_tape.nodes)  // whatever the scope left unreleased (after an exception)
    for (Tensor& output : node.outputs) output.impl()->grad.reset();
  g_tape.nodes = std::move(saved_nodes_);
  g_tape.epoch = saved_epoch_;
  g_recording = saved_recording_;
}

std::vector<Tensor> checkpointed(const char* op, const std::vector<Tensor>& inputs,
                                 const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn) {
  std::vector<Tensor> outputs;
  {
    NoGrad no_recording;
    outputs = fn(inputs);
  }
  if (!should_record(inputs)) return outputs;
  std::vector<Tensor*> targets;
  for (Tensor& out : outputs) targets.push_back(&out);
  record_multi(op, inputs, targets, [inputs, fn](const std::vector<Tensor>& grads) {
    // Recompute on leaves that stand in for the inputs, on a private tape.
    std::vector<Tensor> leaves;
    {
      TapeScope private_tape;
      for (const Tensor& in : inputs) {
        Tensor leaf = in.detach();
        if (in.requires_grad()) leaf.set_requires_grad(true);
        leaves.push_back(leaf);
      }
      std::vector<Tensor> recomputed = fn(leaves);
      Tensor total;
      for (size_t j = 0; j < recomputed.size(); ++j) {
        if (!grads[j].defined() || !recomputed[j].requires_grad()) continue;
        Tensor term = ops::sum(ops::mul(recomputed[j], grads[j]));
        total = total.defined() ? ops::add(total, term) : term;
      }
      if (total.defined()) backward(total);
    }
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].requires_grad() && leaves[i].grad().defined()) accumulate_grad(inputs[i], leaves[i].grad());
  });
  return outputs;
}

size_t tape_size() { return g_tape.nodes.size(); }
const std::vector<TapeNode>& tape_nodes() { return g_tape.nodes; }

}  // namespace cte
