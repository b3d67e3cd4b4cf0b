// PGD (projected gradient descent, Madry et al.) in the L-inf ball: steps of
// step_size * sign(d CE / d x), each projected back onto the ball around x
// intersected with [0, 1] (unless options.clip is false), so no iterate ever
// leaves the allowed region.
// Only the input gets a gradient: the attack runs on a view of the network
// whose parameters need none, so it records no parameter gradient and
// leaves training state untouched. All arithmetic stays on the network's
// device. Evaluation (track on) brings the (N, K) logits to the host every
// step, to see which samples are already misclassified; the training attack
// (track off) decides on the device and makes no host round trip: its early
// stop reaches the host through an asynchronous read, one step late on a GPU.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/nn.h"
#include "engine/staging.h"
#include "engine/tensor.h"

namespace cte::train {

struct PgdOptions {
  float eps = 0.1f;
  int steps = 100;
  float step_size = 0.01f;
  int restarts = 0;             // extra attempts from uniform random points of the ball
  bool random_start = false;    // first attempt from a random point (training) instead of x itself
  bool stop_at_success = true;  // evaluation: a sample stops moving once misclassified
  bool track = true;            // evaluation: per-sample bookkeeping on the host; off: the training attack
  uint64_t seed = 0;            // random starts
  // Step-size decay: from step ceil(f * steps) on, for each f in step_decay_at, the step is
  // multiplied by step_decay_factor (SABR: {0.5, 0.8, 0.9} and 0.1). Empty: a constant step.
  std::vector<double> step_decay_at;
  float step_decay_factor = 0.1f;
  // SABR's training attack (eth-sri/SABR, src/adv_attack.py, train mode): one attempt that
  // returns, per sample, the iterate of highest cross-entropy (a sample once misclassified:
  // its latest iterate) instead of the last one. Runs the training attack (see track), which
  // ignores restarts and stop_at_success.
  bool keep_highest_loss = false;
  // End the attack once every sample is misclassified (SABR's early stop). Without
  // keep_highest_loss and track, the last iterate is then the one that broke the last sample.
  bool stop_when_all_misclassified = false;
  // Keep every iterate inside [0, 1] (pixels); false for inputs with no such range (PCA coordinates).
  bool clip = true;
  // A training step's: its labels already on the device (N) (undefined: uploaded from `labels`),
  // and where the random start's draws go up without a host round trip (null: a plain copy).
  Tensor labels_on_device;
  UploadStaging* staging = nullptr;
  ScalarReadback* readback = nullptr;  // the early stop's flag reads (null: a buffer made per call)
  // A step captured as a CUDA graph (the training attack only), which can neither draw on the
  // host nor branch on a device value: the random start's draws come in as a tensor like x
  // (pgd_start_draws(seed, x.numel()) on x's device, a graph input refilled before each
  // replay), and the attack runs all its steps with no early-stop read. The early stop's
  // freeze (x stays once `done`) makes those extra steps change nothing: x_adv is the same.
  Tensor start_draws;
  bool read_early_stop = true;
};

// The uniform [0, 1) draws of the random start for `seed`, as pgd_attack makes
// them: count values, the start being lo + u * (hi - lo) elementwise.
std::vector<float> pgd_start_draws(uint64_t seed, int64_t count);

// The step size of step k (0-based) under options' decay.
float pgd_step_size(const PgdOptions& options, int step);

struct PgdResult {
  Tensor x_adv;                   // like x, inside [x - eps, x + eps] and [0, 1]
  std::vector<bool> adversarial;  // (N) some iterate was misclassified (only when track)
  Tensor broken;                  // the same on the device, 0 or 1 (N) (track off, with keep_highest_loss or
                                  // stop_when_all_misclassified: what the attack checked)
};

// x: (N, net input shape...) in [0, 1]; labels: N class indices.
// A sample counts as misclassified when some other logit is >= its true logit.
PgdResult pgd_attack(const Network& net, const Tensor& x, const std::vector<int>& labels, const PgdOptions& options);

// The same network with parameters that share storage but need no gradient.
Network detached_view(const Network& net);

// Samples whose logits (N, K) put some other class at or above the true one.
std::vector<bool> misclassified(const Tensor& logits, const std::vector<int>& labels);

}  // namespace cte::train
