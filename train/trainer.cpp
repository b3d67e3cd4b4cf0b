// The training loop, one step per method, evaluation, checkpoints and
// reports (see trainer.h).
#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "engine/checkpoint.h"
#include "engine/device.h"
#include "engine/file_io.h"
#include "engine/layers/layer_rules.h"
#include "engine/netjson.h"
#include "engine/onnx_io.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "relaxations/relax_ops.h"
#include "tools/lib/cli_flags.h"
#include "train/bound_reg.h"
#include "train/networks.h"

namespace cte::train {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kDataTag = 0x44415441ull;   // "DATA"
constexpr uint64_t kStepTag = 0x53544550ull;   // "STEP"
constexpr uint64_t kEvalTag = 0x4556414Cull;   // "EVAL"
constexpr const char* kCheckpointFormat = "cte-train-checkpoint";
constexpr const char* kPcaMeanTensor = "pca.mean";              // (pixels)
constexpr const char* kPcaComponentsTensor = "pca.components";  // (components, pixels)

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// (count, net input shape...) for a batch of `count` samples.
Shape batch_shape(const Network& net, int64_t count) {
  std::vector<int64_t> dims{count};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  return Shape(dims);
}

// A float as the shortest decimal that reads back to it (0.1, not 0.10000000149).
double json_float(float v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", double(v));
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buffer, sizeof buffer, "%.*g", digits, double(v));
    if (std::strtof(buffer, nullptr) == v) break;
  }
  return std::strtod(buffer, nullptr);
}

std::string percent(double fraction) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f%%", 100.0 * fraction);
  return buffer;
}

// ---- signals: the first SIGINT/SIGTERM asks the loop to stop after the
// current batch; a second one takes the default action.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  std::signal(sig, SIG_DFL);
}

class SignalGuard {
 public:
  SignalGuard() {
    g_stop_signal.store(0);
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~SignalGuard() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

}  // namespace

// ---- progress: an in-place bar on a terminal (stderr), nothing otherwise.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO)) {}
  // Whether update(done, total) would draw now (at most every 0.1 s, and the last step).
  bool due(int64_t done, int64_t total) const {
    return enabled_ && (done >= total || std::chrono::duration<double>(Clock::now() - last_).count() >= 0.1);
  }
  void update(const std::string& prefix, int64_t done, int64_t total, const std::string& suffix) {
    if (!due(done, total)) return;
    last_ = Clock::now();
    constexpr int kWidth = 24;
    const int filled = total > 0 ? int(kWidth * done / total) : kWidth;
    std::string bar(size_t(filled), '=');
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "\r\033[K%s %lld/%lld [%s] %s", prefix.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), bar.c_str(), suffix.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (enabled_ && shown_) std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
  Clock::time_point last_{};
};

// ================================================================ one step

TrainStep::TrainStep(Network& net, Optimizer& optimizer, const TrainConfig& config, int num_classes,
                     dist::Communicator& comm)
    : net_(net), optimizer_(optimizer), config_(config), num_classes_(num_classes), comm_(comm) {
  // Which tensors each penalty covers is the layer table's (LayerTensor::penalty):
  // all the weights in layer order, then (--l1-bias) all the biases.
  auto penalised = [&](Penalty penalty) {
    std::vector<Tensor> out;
    for (const Layer& layer : net_.layers())
      for (const LayerTensorView& t : layer_tensors(layer))
        if (t.penalty == penalty) out.push_back(t.tensor);
    return out;
  };
  weights_ = penalised(Penalty::weight);
  l1_terms_ = weights_;
  if (config_.l1_bias)
    for (const Tensor& bias : penalised(Penalty::bias)) l1_terms_.push_back(bias);
  // L1's gradient lambda * sign(W) is added by the optimiser's kernel, after the
  // ranks' gradients are summed (so once), not through two passes per weight on the tape.
  optimizer_.set_l1_penalty(config_.l1 > 0 ? l1_terms_ : std::vector<Tensor>{}, float(config_.l1));
}

Tensor TrainStep::l1_penalty() const {
  NoGrad no_grad;
  Tensor l1 = ops::sum_abs(l1_terms_[0]);
  for (size_t i = 1; i < l1_terms_.size(); ++i) l1 = ops::add(l1, ops::sum_abs(l1_terms_[i]));
  return ops::scale(l1, float(config_.l1));
}

PgdOptions training_pgd_options(const TrainConfig& c, float eps) {
  PgdOptions o;
  o.eps = eps;
  o.steps = c.train_pgd_steps > 0 ? c.train_pgd_steps : c.pgd_steps;
  // SABR scales by the largest half-width of the clipped ball, which is eps for eps <= 0.5.
  o.step_size = float(c.train_pgd_step_size) * (c.train_pgd_step_unit == "eps" ? eps : 1.0f);
  o.step_decay_at = c.train_pgd_decay_at;
  o.step_decay_factor = float(c.train_pgd_decay_factor);
  o.random_start = c.train_pgd_random_start;
  o.keep_highest_loss = c.train_pgd_keep_highest_loss;
  o.stop_when_all_misclassified = c.train_pgd_early_stop;
  o.stop_at_success = false;
  o.track = false;
  o.clip = c.pca == 0;  // PCA coordinates have no [0, 1] to stay in
  return o;
}

StepStats::Host StepStats::read() const {
  Host h;
  h.loss = loss.item();
  h.correct = int64_t(correct.item());
  h.finite = skipped.item() == 0.0f;
  return h;
}

StepStats TrainStep::run(const Tensor& x, const std::vector<int>& labels, const ScheduleValues& s,
                         uint64_t step_seed) {
  // Labels are checked here, on the host, where they are free to read: the
  // device kernels would turn a bad one into NaN.
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= num_classes_)
      fail("train step", "label " + std::to_string(labels[i]) + " of sample " + std::to_string(i) +
                             " is outside [0, " + std::to_string(num_classes_) + ")");
  label_values_.assign(labels.begin(), labels.end());
  const Tensor y = label_staging_.upload(label_values_, Shape{int64_t(labels.size())}, x.device());
  if (config_.cuda_graph && x.device() == Device::cuda && comm_.size() == 1 && !labels.empty())
    if (std::optional<StepStats> replayed = run_as_graph(x, y, labels, s, step_seed)) return *replayed;
  return run_eager(x, y, labels, s, step_seed);
}

TrainStep::CapturedStep::Exec::~Exec() {
  try {
    gpu::graph_destroy(graph);
  } catch (const std::exception& e) {  // a destructor must not throw; the process is ending anyway
    std::fprintf(stderr, "[train] destroying a CUDA graph failed: %s\n", e.what());
  }
}

std::optional<StepStats> TrainStep::run_as_graph(const Tensor& x, const Tensor& y, const std::vector<int>& labels,
                                                 const ScheduleValues& s, uint64_t step_seed) {
  // Every host value the step's kernels are given (the rest is fixed by the config).
  optimizer_.set_learning_rate(s.lr);
  std::vector<float> key{float(labels.size()), s.eps, s.kappa, s.beta};
  for (float v : optimizer_.next_step_scalars()) key.push_back(v);
  for (size_t i = 0; i < graphs_.size(); ++i) {
    if (graphs_[i]->key != key) continue;
    std::rotate(graphs_.begin() + i, graphs_.begin() + i + 1, graphs_.end());  // most recently used last
    CapturedStep& g = *graphs_.back();
    g.x.copy_from(x);  // queued on the device, as is the launch
    g.y.copy_from(y);
    if (g.draws.defined()) g.draws.copy_from(attack_start_draws(x.shape(), s, step_seed));
    optimizer_.set_step_count(optimizer_.step_count() + 1);
    gpu::graph_launch(g.exec.graph);
    relax::add_host_bound_stats(g.bound_stats);  // the kernels add the device-side counts themselves
    ++graph_counts_.replays;
    return g.stats;
  }
  // Capture only values that have held for kStepsBeforeCapture steps in a row:
  // during the ramp-up every step has its own, and from step ~9,700 to
  // ~17,300 Adam's float bias correction 1 - 0.999^t repeats for only a few
  // steps at a time; capturing each of those would cost more than it saves.
  steps_with_key_ = key == previous_key_ ? steps_with_key_ + 1 : 1;
  previous_key_ = key;
  if (steps_with_key_ < kStepsBeforeCapture) return std::nullopt;
  if (std::find(refused_keys_.begin(), refused_keys_.end(), key) != refused_keys_.end()) return std::nullopt;
  const int64_t optimizer_steps = optimizer_.step_count();
  auto g = std::make_unique<CapturedStep>();
  g->key = key;
  g->x = Tensor::empty(x.shape(), Device::cuda);
  g->y = Tensor::empty(y.shape(), Device::cuda);
  g->x.copy_from(x);
  g->y.copy_from(y);
  if (const Tensor draws = attack_start_draws(x.shape(), s, step_seed); draws.defined()) {
    g->draws = Tensor::empty(x.shape(), Device::cuda);
    g->draws.copy_from(draws);
  }
  const relax::HostBoundStats bound_stats_before = relax::host_bound_stats();
  g->pool.begin();
  try {
    capturing_ = g.get();
    gpu::capture_begin();
    g->stats = run_eager(g->x, g->y, labels, s, step_seed);
    g->exec.graph = gpu::capture_end();
    capturing_ = nullptr;
    g->bound_stats = relax::host_bound_stats_since(bound_stats_before);
  } catch (const std::exception& e) {
    // Nothing was run: this step runs eagerly, on a fresh tape and with the
    // optimiser's step count and bound statistics as before, and these values
    // are not tried again.
    capturing_ = nullptr;
    gpu::capture_abandon();
    tape_reset();
    optimizer_.set_step_count(optimizer_steps);
    relax::restore_host_bound_stats(bound_stats_before);
    g->pool.end();
    g.reset();
    if (graph_counts_.refused.empty())
      std::fprintf(stderr, "[train] --cuda-graph: the %s step cannot be captured (%s); it runs without a graph\n",
                   config_.method.c_str(), e.what());
    graph_counts_.refused = e.what();
    refused_keys_.push_back(key);
    return std::nullopt;
  }
  g->pool.end();
  gpu::graph_launch(g->exec.graph);  // the capture recorded the step; this runs it
  ++graph_counts_.captures;
  // Two graphs cover a step value's change (an lr milestone) without holding
  // a working set per milestone.
  if (graphs_.size() == 2) graphs_.erase(graphs_.begin());
  graphs_.push_back(std::move(g));
  return graphs_.back()->stats;
}

bool TrainStep::attack_runs(const ScheduleValues& s) const {
  const TrainMethod& method = train_method(config_.method);
  return method.attack == Attack::pgd && method.eps_schedule && s.kappa < 1.0f;
}

uint64_t TrainStep::attack_seed(uint64_t step_seed) const {
  return comm_.size() > 1 ? mix_seed(step_seed, uint64_t(comm_.rank())) : step_seed;
}

Tensor TrainStep::attack_start_draws(const Shape& x_shape, const ScheduleValues& s, uint64_t step_seed) {
  if (!attack_runs(s) || !config_.train_pgd_random_start) return Tensor();
  return attack_staging_.upload(pgd_start_draws(attack_seed(step_seed), x_shape.numel()), x_shape, Device::cuda);
}

StepStats TrainStep::run_eager(const Tensor& x, const Tensor& y, const std::vector<int>& labels,
                               const ScheduleValues& s, uint64_t step_seed) {
  optimizer_.set_learning_rate(s.lr);
  optimizer_.zero_grad();
  int64_t global_count = int64_t(labels.size());
  comm_.sum(&global_count, 1);
  StepStats stats;
  dist::RunningAverageSync running_averages(comm_, net_);
  if (!labels.empty()) {
    stats = forward_backward(x, y, labels, s, step_seed, global_count, running_averages);
  } else {  // an empty shard under MPI
    stats.loss = Tensor::zeros(Shape{}, x.device());
    stats.correct = Tensor::zeros(Shape{}, x.device());
  }
  running_averages.finish();
  if (comm_.size() > 1) {
    // The global batch's loss and hits: a host round trip per step, which MPI's
    // host-side collectives need anyway (single-process training makes none).
    double totals[3] = {double(stats.loss.item()), double(stats.correct.item()), double(stats.count)};
    comm_.sum(totals, 3);
    stats.loss = Tensor::scalar(float(totals[0]), x.device());
    stats.correct = Tensor::scalar(float(totals[1]), x.device());
    stats.count = int64_t(totals[2]);
  }
  comm_.sum_gradients(optimizer_.parameters());
  // The reported loss includes the L1 penalty the optimiser's step applies, once (every rank holds the sum).
  if (config_.l1 > 0 && !l1_terms_.empty()) stats.loss = ops::add(stats.loss, l1_penalty());
  {
    // One flag on the device for the loss and all gradients: loss + sum |g| is
    // finite iff all of them are (or huge enough to overflow, which is no
    // better); times 0 it is 0, or NaN, which alone is unequal to itself. The
    // optimiser's kernels read the flag, so the host never waits for it.
    NoGrad no_grad;
    Tensor total = stats.loss;
    for (const Tensor& p : optimizer_.parameters()) {
      const Tensor g = p.grad();
      if (g.defined()) total = ops::add(total, ops::sum_abs(g));
    }
    const Tensor probe = ops::scale(total, 0.0f);
    stats.skipped = ops::add_scalar(ops::neg(ops::compare(probe, probe, kern::BinaryOp::eq)), 1.0f);
  }
  optimizer_.step(stats.skipped);
  optimizer_.zero_grad();
  return stats;
}

StepStats TrainStep::forward_backward(const Tensor& x, const Tensor& y, const std::vector<int>& labels,
                                      const ScheduleValues& s, uint64_t step_seed, int64_t global_count,
                                      dist::RunningAverageSync& running_averages) {
  const TrainConfig& c = config_;
  const TrainMethod& method = train_method(c.method);
  const bool robust = method.eps_schedule && s.kappa < 1.0f;
  const bool clip = c.pca == 0;  // pixels live in [0, 1]; PCA coordinates anywhere

  // Attacks first: PGD runs its own backward passes, which must not see this
  // step's tape.
  Tensor x_attack;
  if (attack_runs(s)) {
    PgdOptions o = training_pgd_options(c, s.eps);
    o.seed = attack_seed(step_seed);
    o.labels_on_device = y;
    o.staging = &attack_staging_;
    o.readback = &attack_readback_;
    if (capturing_ != nullptr) {  // a graph cannot draw on the host or branch on the device
      o.start_draws = capturing_->draws;
      o.read_early_stop = false;
    }
    x_attack = pgd_attack(net_, x, labels, o).x_adv;
  }

  // BatchNorm: training mode from the clean forward pass to the backward pass.
  // The attack above ran in evaluation mode (running averages; SABR's
  // bn_mode_attack "eval"); every bound below propagates through BatchNorm with
  // the clean batch's statistics, as eth-sri/SABR does (engine/nn.h batch_norm_affine).
  struct TrainingMode {
    Network& net;
    explicit TrainingMode(Network& n) : net(n) { net.set_training(true); }
    ~TrainingMode() { net.set_training(false); }
  } training_mode(net_);
  const Tensor logits = net_.forward(x);
  running_averages.capture(int64_t(labels.size()));
  Tensor loss = ops::mean(ops::softmax_cross_entropy(logits, y));
  Tensor box_lo, box_hi;  // the input box whose bounds the method trains on (for --bound-reg)
  if (robust) {
    Tensor worst;
    if (!method.certified) {  // adversarial training
      // The adversarial batch normalised by its own statistics, the running
      // averages and the bounds' statistics left to the clean batch: one
      // update per step (eth-sri/SABR's concrete attack, track_running_stats off).
      struct UntrackedStatistics {
        Network& net;
        explicit UntrackedStatistics(Network& n) : net(n) { net.set_track_running_stats(false); }
        ~UntrackedStatistics() { net.set_track_running_stats(true); }
      } untracked(net_);
      worst = net_.forward(x_attack);
    } else {
      const Tensor spec = ops::margin_spec(y, num_classes_);
      BoundOptions bo;
      bo.check_finite_weights = false;  // a NaN weight gives a NaN loss, flagged on the device
      bo.elide_last_layer = c.elide;
      bo.sparse_early_stops = c.early_stops;
      bo.sparse_intermediate =
          c.sparse_bounds == "on" || (c.sparse_bounds == "auto" && (x.device() == Device::cpu || c.early_stops));
      bo.crown_tie_slope = c.crown_tie;
      bo.alpha = c.alpha;
      bo.memory_cap_bytes = c.bound_memory_cap_bytes;
      bo.need_lower = false;  // the worst-case logits read only upper(z_y' - z_y)
      bo.box_shrink = float(c.box_shrink);
      Bounds bounds;
      if (method.small_box) {
        // A box of radius tau = lambda * eps around the PGD point, shifted to
        // stay inside the eps-ball (clipped to [0, 1]).
        const float tau = float(c.sabr_lambda) * s.eps;
        Tensor lo, hi;
        {
          NoGrad no_grad;
          const auto [ball_lo, ball_hi] = input_box(x.detach(), s.eps, clip);
          const Tensor centre = ops::minimum(ops::maximum(x_attack, ops::add_scalar(ball_lo, tau)),
                                             ops::add_scalar(ball_hi, -tau));
          lo = ops::maximum(ops::add_scalar(centre, -tau), ball_lo);
          hi = ops::minimum(ops::add_scalar(centre, tau), ball_hi);
        }
        bounds = compute_bounds(net_, lo, hi, spec, method.relaxation, bo);
        box_lo = lo;
        box_hi = hi;
      } else {
        const auto [lo, hi] = input_box(x, s.eps, clip);
        box_lo = lo;
        box_hi = hi;
        // crown-ibp: beta * CROWN-IBP(R) + (1 - beta) * Box, one shared Box pass (beta 0: Box alone).
        if (method.beta == BetaSchedule::ramp_down) bo.crown_ibp_beta = s.beta;
        bounds = compute_bounds(net_, lo, hi, spec, method.relaxation, bo);
      }
      worst = worst_case_logits(bounds, spec);
    }
    const Tensor robust_loss = ops::mean(ops::softmax_cross_entropy(worst, y));
    loss = s.kappa > 0.0f ? ops::add(ops::scale(loss, s.kappa), ops::scale(robust_loss, 1.0f - s.kappa))
                          : robust_loss;
  }
  if (c.bound_reg > 0 && method.eps_schedule && s.eps < float(c.eps_train)) {
    // Shi et al.'s warm-up regularisers on the Box bounds of the box the method propagates
    // (pgd, or no robust term yet: the eps box); at eps 0 a box of 1e-6, as SABR's min_eps_reg.
    if (!box_lo.defined()) std::tie(box_lo, box_hi) = input_box(x.detach(), s.eps > 0.0f ? s.eps : 1e-6f, clip);
    const float weight = float(c.bound_reg * (1.0 - double(s.eps) / c.eps_train));
    loss = ops::add(loss, ops::scale(bound_regulariser(net_, box_lo, box_hi), weight));
  }
  // A shard's mean weighted by its share: the ranks' sum is the global batch's mean.
  if (global_count != int64_t(labels.size())) loss = ops::scale(loss, float(double(labels.size()) / double(global_count)));
  // L2 is the whole batch's, once: rank 0 alone adds it before the ranks' gradients are summed.
  // (L1's gradient is the optimiser's, its value run_eager's: see the constructor.)
  if (c.l2 > 0 && !weights_.empty() && comm_.is_root()) {  // the authors' L2: lambda * sum W^2 (no 1/2), weights only
    Tensor l2 = ops::sum(ops::mul(weights_[0], weights_[0]));
    for (size_t i = 1; i < weights_.size(); ++i) l2 = ops::add(l2, ops::sum(ops::mul(weights_[i], weights_[i])));
    loss = ops::add(loss, ops::scale(l2, float(c.l2)));
  }
  backward(loss);
  StepStats stats;
  stats.loss = loss.detach();
  stats.count = int64_t(labels.size());
  stats.correct = ops::count_correct(logits.detach(), y);
  return stats;
}

// ================================================================ evaluation

json EvalReport::to_json() const {
  json j;
  j["n"] = n;
  j["accuracy"] = accuracy();
  j["seconds"] = seconds;
  j["sound"] = sound;
  j["crown_tie"] = crown_tie_slope;
  if (!pgd_start.empty()) j["pgd_start"] = pgd_start;
  j["radii"] = json::array();
  for (const EvalAtRadius& r : radii) {
    json e;
    e["eps"] = json_float(r.eps);
    if (r.pgd_robust >= 0) e["pgd_accuracy"] = n ? double(r.pgd_robust) / double(n) : 0.0;
    e["certified"] = json::object();
    for (const auto& [relaxation, count] : r.certified)
      e["certified"][relaxation_name(relaxation)] = n ? double(count) / double(n) : 0.0;
    if (r.bab_certified >= 0) {
      e["certified"]["bab"] = n ? double(r.bab_certified) / double(n) : 0.0;
      e["bab"] = {{"runs", r.bab_runs},         {"unsat", r.bab_unsat},     {"sat", r.bab_sat},
                  {"timeouts", r.bab_timeouts}, {"unknown", r.bab_unknown}, {"timeout_s", bab_timeout_s}};
    }
    if (r.best_certified >= 0) e["certified"]["best"] = n ? double(r.best_certified) / double(n) : 0.0;
    e["smallest_certified_margin"] = json::object();
    for (size_t k = 0; k < r.certified.size(); ++k) {
      const float m = r.smallest_margin[k];
      e["smallest_certified_margin"][relaxation_name(r.certified[k].first)] = std::isfinite(m) ? json(m) : json(nullptr);
    }
    j["radii"].push_back(e);
  }
  return j;
}

Dataset dataset_head(const Dataset& data, int64_t n) {
  if (n <= 0 || size_t(n) >= data.size()) return data;
  Dataset head;
  head.name = data.name;
  head.channels = data.channels;
  head.height = data.height;
  head.width = data.width;
  head.num_classes = data.num_classes;
  head.class_names = data.class_names;
  const int64_t values = int64_t(n) * int64_t(data.image_numel());
  if (data.has_features()) head.features.assign(data.features.begin(), data.features.begin() + values);
  else head.images.assign(data.images.begin(), data.images.begin() + values);
  head.labels.assign(data.labels.begin(), data.labels.begin() + n);
  return head;
}

namespace {

// The bab column of one batch: branch and bound on every correctly classified
// image that no listed relaxation certified (any[i] false); an unsat verdict
// certifies it (any[i] set). Images the relaxations certified count for bab
// as they are (EvalOptions::bab).
void certify_by_bab(const Network& net, const std::vector<float>& images, const std::vector<int>& labels,
                    const std::vector<bool>& correct, EvalAtRadius& r, const EvalOptions& o, int64_t batch_index,
                    bool clip, std::vector<bool>& any) {
  const int num_classes = int(net.output_shape()[0]);
  const size_t numel = size_t(net.input_shape().numel());
  const double inf = std::numeric_limits<double>::infinity();  // unclipped: PCA coordinates
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!correct[i]) continue;
    if (any[i]) {
      ++r.bab_certified;
      continue;
    }
    const std::vector<float> x(images.begin() + int64_t(i * numel), images.begin() + int64_t((i + 1) * numel));
    verify::VerifyOptions v = o.bab_options;
    v.seed = mix_seed(o.bab_options.seed, kEvalTag, uint64_t(batch_index) * 65536u + i);
    const verify::VerifyResult result =
        verify::verify_property(net, verify::robustness_property(x, labels[i], num_classes, r.eps, clip ? 0.0 : -inf,
                                                                 clip ? 1.0 : inf), v);
    ++r.bab_runs;
    switch (result.verdict) {
      case verify::Verdict::unsat:
        ++r.bab_unsat;
        ++r.bab_certified;
        any[i] = true;
        break;
      case verify::Verdict::sat: ++r.bab_sat; break;
      case verify::Verdict::timeout: ++r.bab_timeouts; break;
      case verify::Verdict::unknown: ++r.bab_unknown; break;
    }
  }
}

}  // namespace

EvalReport evaluate(const Network& net, const Dataset& test_full, const EvalOptions& o) {
  const auto start = Clock::now();
  const Dataset test = dataset_head(test_full, o.subset);
  BatchLoader loader(test, o.batch_size, 0, /*shuffle=*/false, Augment{});
  const bool clip = !test.has_features();  // pixels live in [0, 1]; PCA coordinates anywhere
  const Device device = net.device();
  const int num_classes = int(net.output_shape()[0]);
  EvalReport report;
  for (float eps : o.eps) {
    EvalAtRadius r;
    r.eps = eps;
    r.pgd_robust = o.pgd ? 0 : -1;
    r.best_certified = o.best ? 0 : -1;
    r.bab_certified = o.bab ? 0 : -1;
    for (Relaxation relaxation : o.relaxations) r.certified.emplace_back(relaxation, 0);
    r.smallest_margin.assign(o.relaxations.size(), std::numeric_limits<float>::infinity());
    report.radii.push_back(r);
  }
  report.sound = o.sound;
  report.crown_tie_slope = o.crown_tie_slope;
  if (o.pgd) report.pgd_start = o.pgd_random_start ? "random" : "zero";
  if (o.bab) report.bab_timeout_s = o.bab_options.timeout_s;
  const int64_t total_batches = (int64_t(test.size()) + o.batch_size - 1) / o.batch_size;
  if (o.resume_from || o.resume_batches || o.max_batches) {
    if (o.comm->size() > 1) fail("evaluate", "resuming or splitting an evaluation into parts is for one process, not MPI");
    if (o.resume_batches < 0 || o.resume_batches > total_batches || o.max_batches < 0)
      fail("evaluate", "resume_batches " + std::to_string(o.resume_batches) + " and max_batches " +
                           std::to_string(o.max_batches) + " for " + std::to_string(total_batches) + " batches");
    if (o.resume_batches > 0 && !o.resume_from) fail("evaluate", "resume_batches without the report to resume from");
  }
  if (o.resume_from && o.resume_batches > 0) {
    const EvalReport& from = *o.resume_from;
    bool same = from.radii.size() == report.radii.size();
    for (size_t i = 0; same && i < from.radii.size(); ++i)
      same = from.radii[i].eps == report.radii[i].eps && from.radii[i].certified.size() == report.radii[i].certified.size() &&
             (from.radii[i].pgd_robust < 0) == (report.radii[i].pgd_robust < 0) &&
             (from.radii[i].best_certified < 0) == (report.radii[i].best_certified < 0) &&
             (from.radii[i].bab_certified < 0) == (report.radii[i].bab_certified < 0);
    for (size_t i = 0; same && i < from.radii.size(); ++i)
      for (size_t k = 0; same && k < from.radii[i].certified.size(); ++k)
        same = from.radii[i].certified[k].first == report.radii[i].certified[k].first;
    if (!same) fail("evaluate", "the report to resume from has other radii, relaxations or columns");
    report = from;
  }
  const double seconds_before = report.seconds;
  int64_t batches_this_run = 0;
  BoundOptions bo;
  bo.sound = o.sound;
  bo.elide_last_layer = o.elide;
  bo.crown_tie_slope = o.crown_tie_slope;
  bo.alpha = o.alpha;
  bo.memory_cap_bytes = o.bound_memory_cap_bytes;
  bo.need_lower = false;  // certified() reads only the upper bounds of the margins
  std::vector<float> images;
  std::vector<int> labels;
  int64_t batch_index = 0;
  while (loader.next(images, labels)) {
    if (!dist::owns_batch(*o.comm, batch_index) || batch_index < o.resume_batches) {  // another rank's, or done
      ++batch_index;
      continue;
    }
    if (o.max_batches > 0 && batches_this_run == o.max_batches) break;
    const int64_t count = int64_t(labels.size());
    const Tensor x = Tensor::from_vector(images, batch_shape(net, count), device);
    std::vector<bool> correct(static_cast<size_t>(count), false);
    {
      NoGrad no_grad;
      const std::vector<bool> wrong = misclassified(net.forward(x), labels);
      for (int64_t i = 0; i < count; ++i) {
        correct[size_t(i)] = !wrong[size_t(i)];
        report.correct += correct[size_t(i)];
      }
    }
    report.n += count;
    for (EvalAtRadius& r : report.radii) {
      if (o.pgd) {
        PgdOptions p = o.pgd_options;
        p.eps = r.eps;
        p.stop_at_success = true;
        p.track = true;
        p.random_start = o.pgd_random_start;
        p.clip = clip;
        p.seed = mix_seed(o.pgd_options.seed, kEvalTag, uint64_t(batch_index));
        const PgdResult attack = pgd_attack(net, x, labels, p);
        for (int64_t i = 0; i < count; ++i) r.pgd_robust += correct[size_t(i)] && !attack.adversarial[size_t(i)];
      }
      NoGrad no_grad;
      const Tensor spec = margin_spec(labels, num_classes, device);
      const auto [lo, hi] = input_box(x, r.eps, clip, o.sound);
      std::vector<bool> any(size_t(count), false);
      for (size_t k = 0; k < r.certified.size(); ++k) {
        const std::vector<float> margins = certified_margins(compute_bounds(net, lo, hi, spec, r.certified[k].first, bo));
        for (int64_t i = 0; i < count; ++i) {
          if (!(correct[size_t(i)] && margins[size_t(i)] > 0.0f)) continue;  // NaN never certifies
          ++r.certified[k].second;
          any[size_t(i)] = true;
          r.smallest_margin[k] = std::min(r.smallest_margin[k], margins[size_t(i)]);
        }
      }
      if (o.bab) certify_by_bab(net, images, labels, correct, r, o, batch_index, clip, any);
      if (o.best) r.best_certified += std::count(any.begin(), any.end(), true);
    }
    ++batch_index;
    ++batches_this_run;
    report.seconds = seconds_before + seconds_since(start);
    if (o.on_partial) o.on_partial(report, batch_index);
    if (o.on_batch) o.on_batch(std::min(report.n * o.comm->size(), int64_t(test.size())), int64_t(test.size()));
  }
  report.complete = o.comm->size() > 1 || batch_index >= total_batches;
  report.seconds = seconds_before + seconds_since(start);
  dist::combine_eval_reports(*o.comm, report);
  return report;
}

// ================================================================ checkpoints

std::string checkpoint_path(const std::string& out_dir) { return (fs::path(out_dir) / "checkpoint.ckpt").string(); }

// A layer's fields in a checkpoint: the attributes in the metadata's
// "architecture" entry, the tensors in the checkpoint itself (layers.i.<name>).
class CheckpointFieldWriter : public LayerFieldWriter {
 public:
  explicit CheckpointFieldWriter(json& entry) : entry_(entry) {}
  void integer(const char* key, int value) override { entry_[key] = value; }
  void floats(const char* key, const std::vector<float>& values) override { entry_[key] = values; }
  void tensor(const char*, const Tensor&) override {}  // saved as parameters

 private:
  json& entry_;
};

class CheckpointFieldReader : public LayerFieldReader {
 public:
  CheckpointFieldReader(const json& entry, std::function<Tensor(const char*, bool)> tensor)
      : entry_(entry), tensor_(std::move(tensor)) {}
  int integer(const char* key, int) const override { return entry_.at(key).get<int>(); }
  std::vector<float> floats(const char* key) const override { return entry_.at(key).get<std::vector<float>>(); }
  Tensor tensor(const char* key, int, bool required) const override { return tensor_(key, required); }

 private:
  const json& entry_;
  std::function<Tensor(const char*, bool)> tensor_;
};

json network_architecture(const Network& net) {
  json layers = json::array();
  for (const Layer& layer : net.layers()) {
    json l;
    l["type"] = layer_kind_name(layer.kind);
    CheckpointFieldWriter writer(l);
    layer_rules(layer.kind).write(layer, writer);
    layers.push_back(l);
  }
  return layers;
}

namespace {

json checkpoint_metadata(const Checkpoint& ck, const std::string& path) {
  try {
    return json::parse(ck.metadata);
  } catch (const std::exception& e) {
    throw std::runtime_error("[checkpoint] " + path + ": metadata is not JSON: " + e.what());
  }
}

}  // namespace

std::optional<PcaBasis> pca_from_checkpoint(const std::string& path) {
  const Checkpoint ck = load_checkpoint(path);
  const json meta = checkpoint_metadata(ck, path);
  if (!meta.is_object() || !meta.contains("pca")) return std::nullopt;
  const Tensor* mean = ck.find(kPcaMeanTensor);
  const Tensor* components = ck.find(kPcaComponentsTensor);
  if (!mean || !components || components->ndim() != 2 || mean->ndim() != 1 ||
      components->shape()[1] != mean->shape()[0])
    throw std::runtime_error("[checkpoint] " + path + ": its metadata has a PCA but the tensors " + kPcaMeanTensor +
                             " and " + kPcaComponentsTensor + " are " + (mean ? mean->shape().str() : "missing") +
                             " and " + (components ? components->shape().str() : "missing") +
                             " (expected (pixels) and (components, pixels))");
  PcaBasis basis;
  basis.input_size = mean->shape()[0];
  basis.mean = mean->to_vector();
  basis.components = components->to_vector();
  const json& p = meta.at("pca");
  basis.fitted_on = p.value("fitted_on", int64_t(0));
  basis.variances = p.value("variances", std::vector<double>{});
  basis.total_variance = p.value("total_variance", 0.0);
  return basis;
}

Network network_from_checkpoint(const std::string& path, json* metadata) {
  const Checkpoint ck = load_checkpoint(path);
  const json meta = checkpoint_metadata(ck, path);
  if (!meta.is_object() || meta.value("format", "") != kCheckpointFormat)
    throw std::runtime_error("[checkpoint] " + path + ": not a checkpoint written by train (metadata format is not " +
                             kCheckpointFormat + ")");
  std::vector<Layer> layers;
  const json& arch = meta.at("architecture");
  for (size_t i = 0; i < arch.size(); ++i) {
    const json& a = arch[i];
    const std::string type = a.at("type").get<std::string>();
    const std::string prefix = "net.layers." + std::to_string(i) + ".";
    auto tensor = [&](const char* what) {
      const Tensor* t = ck.find(prefix + what);
      if (!t) throw std::runtime_error("[checkpoint] " + path + ": missing tensor " + prefix + what);
      return *t;
    };
    LayerKind kind;
    if (!layer_kind_from_name(type, &kind))
      throw std::runtime_error("[checkpoint] " + path + ": unknown layer type '" + type + "'");
    Layer layer = layer_rules(kind).read(CheckpointFieldReader(a, [&](const char* what, bool required) {
      return required || ck.find(prefix + what) ? tensor(what) : Tensor();
    }));
    layers.push_back(std::move(layer));
  }
  Network net(Shape(meta.at("input_shape").get<std::vector<int64_t>>()), std::move(layers));
  if (metadata) *metadata = meta;
  return net;
}

// ================================================================ the run

Device prepare_runtime(const TrainConfig& config) {
  set_thread_count(config.threads);
  return parse_device(config.device);
}

namespace {

// Whether metrics.jsonl ends a run: a "final" line written after `epochs` epochs.
bool has_final_line(const fs::path& metrics, int epochs) {
  std::ifstream in(metrics);
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    try {
      const json j = json::parse(line);
      if (j.value("final", false)) found = j.value("epoch", -1) == epochs;
    } catch (const std::exception&) {
      // a line cut by a kill
    }
  }
  return found;
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, std::ostream* log) : config_(config), log_(log) { setup(std::nullopt); }

Trainer::Trainer(const TrainConfig& config, DatasetSplits data, std::ostream* log) : config_(config), log_(log) {
  setup(std::move(data));
}

Trainer::~Trainer() = default;

void Trainer::setup(std::optional<DatasetSplits> data) {
  if (!log_) log_ = &std::cout;
  log_ = dist::root_only(comm_, log_);
  validate_config(config_);
  tools::warn_if_eps_covers_inputs("train", "--eps-train", config_.eps_train);
  tools::warn_if_eps_covers_inputs("train", "--eps-test", config_.eps_test);
  device_ = prepare_runtime(config_);
  data_ = data ? std::move(*data) : load_dataset(config_.dataset, config_.data_dir);
  if (data_.train.size() == 0 || data_.test.size() == 0)
    throw std::runtime_error("[train] data set " + config_.dataset + " has an empty split");
  train_set_ = dataset_head(data_.train, config_.train_subset);
  test_set_ = dataset_head(data_.test, config_.test_subset);
  num_classes_ = data_.train.num_classes;
  Normalization normalization = dataset_normalization(config_.dataset, &data_.train);
  if (config_.pca > 0) {
    // The basis sees only the images trained on; the same basis projects the
    // test images, and the checkpoint keeps it for certify.
    pca_ = fit_pca(train_set_, config_.pca);
    train_set_ = project_pca(train_set_, *pca_);
    test_set_ = project_pca(test_set_, *pca_);
    normalization = {{0.0f}, {1.0f}};  // the network reads the coordinates as they are
    double explained = 0;
    for (double v : pca_->variances) explained += v;
    *log_ << "[train] inputs: " << config_.pca << "-D PCA of " << pca_->fitted_on << " training images ("
          << percent(pca_->total_variance > 0 ? explained / pca_->total_variance : 0.0)
          << " of the pixel variance); eps is measured in these coordinates, unclipped\n";
  }
  const Shape image_shape{train_set_.channels, train_set_.height, train_set_.width};
  net_ = build_network(config_.net, image_shape, num_classes_, normalization, config_.seed);
  if (config_.init == "ibp") ibp_initialise(net_, config_.seed);
  out_dir_ = output_dir(config_);

  // Resume: the checkpoint must hold this very network.
  const std::string ckpt = checkpoint_path(out_dir_);
  std::optional<Checkpoint> resume_from;
  json meta;
  if (config_.resume) {
    if (!fs::exists(ckpt)) {
      *log_ << "[resume] no checkpoint at " << ckpt << " yet: starting from epoch 1\n";
    } else {
      resume_from = load_checkpoint(ckpt);
      try {
        meta = json::parse(resume_from->metadata);
      } catch (const std::exception& e) {
        throw std::runtime_error("[resume] " + ckpt + ": metadata is not JSON: " + e.what());
      }
      if (!meta.is_object() || meta.value("format", "") != kCheckpointFormat)
        throw std::runtime_error("[resume] " + ckpt + " was not written by train");
      const std::string held = meta.value("network", "");
      if (held != net_.describe())
        throw std::runtime_error("[resume] " + ckpt + " holds a network " + held + " but --net " + config_.net +
                                 " builds " + net_.describe());
      const std::string held_data = meta.value("dataset", "");
      if (held_data != config_.dataset)
        throw std::runtime_error("[resume] " + ckpt + " was trained on " + held_data + " but --dataset is " +
                                 config_.dataset);
      const std::vector<std::string> names = net_.parameter_names();
      const std::vector<Tensor> params = net_.parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        const Tensor* t = resume_from->find("net." + names[i]);
        if (!t || t->shape() != params[i].shape())
          throw std::runtime_error("[resume] " + ckpt + ": parameter " + names[i] + " is " +
                                   (t ? t->shape().str() : std::string("missing")) + ", the network needs " +
                                   params[i].shape().str());
      }
      const std::vector<std::string> state_names = net_.state_names();
      const std::vector<Tensor> state = net_.state_tensors();
      for (size_t i = 0; i < state.size(); ++i) {
        const Tensor* t = resume_from->find("net." + state_names[i]);
        if (!t || t->shape() != state[i].shape())
          throw std::runtime_error("[resume] " + ckpt + ": state " + state_names[i] + " is " +
                                   (t ? t->shape().str() : std::string("missing")) + ", the network needs " +
                                   state[i].shape().str());
      }
      // Settings that change the experiment: refused unless --force (then a note).
      for (const std::string& note : check_resume_changes(config_, meta.value("config", json::object()), ckpt))
        *log_ << note << "\n";
    }
  }

  dist::check_same_on_all_ranks(comm_, resume_from ? std::hash<std::string>{}(resume_from->metadata) : 0, "resume",
                                "the checkpoint read");
  net_.to(device_);
  net_.set_requires_grad(true);
  adam_ = std::make_unique<Adam>(net_.parameters(), float(config_.lr));
  if (resume_from) {
    const std::vector<std::string> names = net_.parameter_names();
    std::vector<Tensor> params = net_.parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_from(*resume_from->find("net." + names[i]));
    const std::vector<std::string> state_names = net_.state_names();
    std::vector<Tensor> net_state = net_.state_tensors();  // BatchNorm's running averages
    for (size_t i = 0; i < net_state.size(); ++i) net_state[i].copy_from(*resume_from->find("net." + state_names[i]));
    std::vector<std::pair<std::string, Tensor>> state;
    for (const auto& [name, t] : resume_from->tensors)
      if (name.rfind("adam.", 0) == 0) state.emplace_back(name, t);
    adam_->load_state(state);
    start_epoch_ = meta.at("epoch").get<int>();
    global_step_ = meta.at("global_step").get<int64_t>();
    if (meta.contains("partial_epoch")) resume_partial_ = meta["partial_epoch"];
    if (start_epoch_ > config_.epochs)
      throw std::runtime_error("[resume] " + ckpt + " has " + std::to_string(start_epoch_) +
                               " epochs done but --epochs is " + std::to_string(config_.epochs) + ": give --epochs " +
                               std::to_string(start_epoch_) + " or more");
    if (start_epoch_ == config_.epochs) {
      if (has_final_line(fs::path(out_dir_) / "metrics.jsonl", start_epoch_)) {
        // Nothing to do, and nothing on disk is touched.
        already_finished_ = true;
        *log_ << "[resume] " << out_dir_ << " is finished: " << start_epoch_ << " of " << config_.epochs
              << " epochs trained and evaluated (see its metrics.jsonl); give a larger --epochs to train on\n";
        return;
      }
      *log_ << "[resume] " << ckpt << ": all " << start_epoch_ << " epochs done; running the final evaluation\n";
    } else {
      *log_ << "[resume] " << ckpt << ": " << start_epoch_ << " epoch" << (start_epoch_ == 1 ? "" : "s")
            << " done, continuing with epoch " << start_epoch_ + 1 << " of " << config_.epochs
            << (resume_partial_.is_null() ? std::string()
                                          : " at batch " + std::to_string(resume_partial_.at("batch").get<int64_t>() + 1))
            << "\n";
    }
  } else if (!config_.resume && fs::exists(ckpt)) {
    *log_ << "[train] note: " << out_dir_ << " holds a checkpoint of an earlier run; this run overwrites it "
          << "(--resume would continue it)\n";
  }

  // The output folder, config.json and metrics.jsonl (cut back to the resumed epoch).
  if (!comm_.is_root()) return;  // under MPI rank 0 writes the files
  fs::create_directories(out_dir_);
  lock_ = std::make_unique<DirectoryLock>(out_dir_, "train");
  write_file_atomically((fs::path(out_dir_) / "config.json").string(), config_to_json(config_).dump(2) + "\n",
                        "train");
  const std::string metrics = (fs::path(out_dir_) / "metrics.jsonl").string();
  std::vector<std::string> kept;
  if (resume_from) {
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
      try {
        const json j = json::parse(line);
        if (!j.value("final", false) && j.value("epoch", 0) <= start_epoch_) kept.push_back(line);
      } catch (const std::exception&) {
        // a line cut by the kill: dropped
      }
    }
  }
  std::string text;
  for (const std::string& line : kept) text += line + "\n";
  write_file_atomically(metrics, text, "train");
}

EvalOptions Trainer::eval_options() const {
  EvalOptions o;
  o.eps = {float(config_.eps_test)};
  o.relaxations = certify_relaxations(config_);
  o.best = std::find(config_.certify_with.begin(), config_.certify_with.end(), kBestColumn) != config_.certify_with.end();
  o.bab = std::find(config_.certify_with.begin(), config_.certify_with.end(), kBabColumn) != config_.certify_with.end();
  o.pgd = config_.pgd_steps > 0;  // --pgd-steps 0 skips the attack
  o.pgd_options.steps = config_.pgd_steps;
  o.pgd_options.step_size = float(config_.pgd_step_size);
  o.pgd_options.restarts = config_.pgd_restarts;
  o.pgd_options.seed = config_.seed;
  o.pgd_random_start = config_.pgd_start == "random";
  o.elide = config_.elide;
  o.crown_tie_slope = config_.crown_tie;
  o.alpha = config_.alpha;
  o.bound_memory_cap_bytes = config_.bound_memory_cap_bytes;
  o.sound = !config_.unsound_fast;
  o.batch_size = config_.batch_size;
  o.subset = 0;  // test_set_ is already the subset
  o.comm = &comm_;
  return o;
}

void Trainer::write_metrics_line(const json& line) {
  if (!comm_.is_root()) return;
  std::ofstream out((fs::path(out_dir_) / "metrics.jsonl").string(), std::ios::app);
  out << line.dump() << "\n";
  out.flush();
  if (!out) throw std::runtime_error("[train] cannot append to " + out_dir_ + "/metrics.jsonl");
}

void Trainer::save_epoch_checkpoint(int epochs_done, const json& partial) {
  if (!comm_.is_root()) return;
  Checkpoint ck;
  const std::vector<std::string> names = net_.parameter_names();
  const std::vector<Tensor> params = net_.parameters();
  for (size_t i = 0; i < params.size(); ++i) ck.tensors.emplace_back("net." + names[i], params[i]);
  const std::vector<std::string> state_names = net_.state_names();  // BatchNorm's running averages
  const std::vector<Tensor> state = net_.state_tensors();
  for (size_t i = 0; i < state.size(); ++i) ck.tensors.emplace_back("net." + state_names[i], state[i]);
  for (auto& entry : adam_->state()) ck.tensors.push_back(entry);
  json meta;
  meta["format"] = kCheckpointFormat;
  meta["epoch"] = epochs_done;
  meta["global_step"] = global_step_;
  meta["dataset"] = config_.dataset;
  meta["num_classes"] = num_classes_;
  meta["input_shape"] = net_.input_shape().dims();
  meta["network"] = net_.describe();
  meta["architecture"] = network_architecture(net_);
  meta["config"] = config_to_json(config_);
  meta["weights_hash"] = hex64(parameter_hash(net_));
  if (!partial.is_null()) meta["partial_epoch"] = partial;
  if (pca_) {
    ck.tensors.emplace_back(kPcaMeanTensor, Tensor::from_vector(pca_->mean, Shape{pca_->input_size}, Device::cpu));
    ck.tensors.emplace_back(kPcaComponentsTensor,
                            Tensor::from_vector(pca_->components, Shape{pca_->count(), pca_->input_size}, Device::cpu));
    meta["pca"] = {{"components", pca_->count()}, {"fitted_on", pca_->fitted_on}, {"variances", pca_->variances},
                   {"total_variance", pca_->total_variance}};
  }
  ck.metadata = meta.dump();
  save_checkpoint(checkpoint_path(out_dir_), ck);
}

namespace {

std::string eval_summary(const EvalReport& r) {
  std::ostringstream s;
  s << "acc " << percent(r.accuracy());
  for (const EvalAtRadius& at : r.radii) {
    if (at.pgd_robust >= 0) s << " pgd " << percent(r.n ? double(at.pgd_robust) / double(r.n) : 0.0);
    for (const auto& [relaxation, count] : at.certified)
      s << " cert(" << relaxation_name(relaxation) << ") " << percent(r.n ? double(count) / double(r.n) : 0.0);
    if (at.bab_certified >= 0) s << " cert(bab) " << percent(r.n ? double(at.bab_certified) / double(r.n) : 0.0);
    if (at.best_certified >= 0) s << " cert(best) " << percent(r.n ? double(at.best_certified) / double(r.n) : 0.0);
  }
  return s.str();
}

}  // namespace

// What one epoch's batches add up to (means over the samples this rank saw).
struct Trainer::EpochTotals {
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  int64_t skipped_steps = 0;  // steps whose loss or gradient was not finite
  ScheduleValues sched;  // the schedule at the epoch's last batch
  double seconds = 0;    // training time, evaluation excluded
  bool stopped = false;  // a stop signal arrived: the epoch is incomplete and not counted
  bool stop_after_epoch = false;  // it arrived at the epoch's last batch: stop once the epoch is recorded
  int64_t batches_saved = 0;      // stopped mid-epoch: the batches its checkpoint holds (0: none written)
  TrainStep::GraphCounts graphs;  // --cuda-graph: this epoch's captures and replayed steps
  // Backsubstitution chunks of the training steps, and those recomputed in the backward pass
  // (beyond --bound-memory-cap's tape budget).
  uint64_t bound_chunks = 0, bound_chunks_recomputed = 0;
  // The training steps' ReLU statistics, taken before --eval-every's evaluation adds its bounds' own.
  std::vector<ReluLayerStats> relu_stats;
  double mean_loss() const { return seen ? loss_sum / double(seen) : 0.0; }
  double accuracy() const { return seen ? double(correct) / double(seen) : 0.0; }
  double images_per_s() const { return double(seen) / std::max(1e-9, seconds); }
};

// run() in order: each epoch is train_epoch, then (every --eval-every epochs)
// evaluate_during_training, then finish_epoch (metrics line, log line,
// checkpoint); after the last epoch final_evaluation and print_result. A stop
// signal ends it early through stopped_summary.
TrainSummary Trainer::run() {
  SignalGuard signals;
  TrainSummary summary;
  summary.out_dir = out_dir_;
  if (already_finished_) {
    summary.already_finished = true;
    summary.epochs_done = start_epoch_;
    summary.weights_hash = parameter_hash(net_);
    return summary;
  }
  ProgressBar bar(!config_.quiet && comm_.is_root());
  BatchLoader loader(train_set_, config_.batch_size, mix_seed(config_.seed, kDataTag), /*shuffle=*/true,
                     config_.augment && config_.pca == 0 ? default_augment(config_.dataset) : Augment{});
  TrainStep step(net_, *adam_, config_, num_classes_);
  if (!config_.quiet && start_epoch_ < config_.epochs)
    *log_ << "[train] " << config_.method << " on " << config_.dataset << " (" << train_set_.size() << " training, "
          << test_set_.size() << " test images), " << net_.describe() << ", " << net_.num_parameters()
          << " parameters; epochs " << start_epoch_ + 1 << ".." << config_.epochs << ", "
          << loader.batches_per_epoch() << " batches each; out " << out_dir_ << std::endl;

  dist::check_parameters_agree(comm_, net_, "at the start");
  for (int epoch = start_epoch_; epoch < config_.epochs; ++epoch) {
    const EpochTotals totals = train_epoch(epoch, loader, step, bar);
    if (totals.stopped) return stopped_summary(epoch, bar, totals.batches_saved);
    const std::optional<EvalReport> eval = evaluate_during_training(epoch, bar);
    finish_epoch(epoch, totals, eval, bar);
    if (totals.stop_after_epoch && epoch + 1 < config_.epochs) return stopped_summary(epoch + 1, bar);
  }
  summary.epochs_done = std::max(start_epoch_, config_.epochs);
  if (config_.cuda_graph && !config_.quiet && device_ == Device::cuda) {
    const TrainStep::GraphCounts& graphs = step.graph_counts();
    *log_ << "[train] CUDA graphs: " << graphs.captures << " captured, " << graphs.replays << " steps replayed"
          << (graphs.refused.empty() ? std::string() : "; last capture refused: " + graphs.refused) << std::endl;
  }
  final_evaluation(summary, bar);
  print_result(summary);
  return summary;
}

namespace {
// The step sums of an epoch, kept on the training device (scalars) and read
// once at its end: a GPU step then never waits for the device.
struct DeviceEpochSums {
  // No step index reaches this; float holds step indices exactly below 2^24.
  static constexpr float kNoStep = 1e9f;
  Tensor loss_sum, correct, skipped, first_skipped;
  explicit DeviceEpochSums(Device device)
      : loss_sum(Tensor::zeros(Shape{}, device)), correct(Tensor::zeros(Shape{}, device)),
        skipped(Tensor::zeros(Shape{}, device)), first_skipped(Tensor::full(Shape{}, kNoStep, device)) {}
  void add(const StepStats& st, int64_t step_in_epoch) {
    NoGrad no_grad;
    loss_sum = ops::add(loss_sum, ops::scale(st.loss, float(st.count)));
    correct = ops::add(correct, st.correct);
    skipped = ops::add(skipped, st.skipped);
    // This step's index where it was skipped, kNoStep where not (scalars filled on the device).
    const Device device = st.skipped.device();
    first_skipped = ops::minimum(first_skipped, ops::select(st.skipped, Tensor::scalar(float(step_in_epoch), device),
                                                            Tensor::scalar(kNoStep, device)));
  }
  // For a mid-epoch checkpoint: the float values, exact through JSON's doubles.
  json to_json() const {
    return {loss_sum.item(), correct.item(), skipped.item(), first_skipped.item()};
  }
  void restore(const json& values, Device device) {
    loss_sum = Tensor::full(Shape{}, values.at(0).get<float>(), device);
    correct = Tensor::full(Shape{}, values.at(1).get<float>(), device);
    skipped = Tensor::full(Shape{}, values.at(2).get<float>(), device);
    first_skipped = Tensor::full(Shape{}, values.at(3).get<float>(), device);
  }
};
}  // namespace

Trainer::EpochTotals Trainer::train_epoch(int epoch, BatchLoader& loader, TrainStep& step, ProgressBar& bar) {
  const int64_t batches = int64_t(loader.batches_per_epoch());
  loader.start_epoch(epoch);
  const auto epoch_start = Clock::now();
  reset_relu_layer_stats();
  relax::reset_backsub_chunk_stats();
  EpochTotals totals;
  const TrainStep::GraphCounts graphs_before = step.graph_counts();
  DeviceEpochSums sums(device_);
  // A mid-epoch checkpoint (--checkpoint-minutes, or a stop): its batch and the sums so far.
  int64_t first_batch = 0;
  double seconds_before = 0;  // the epoch's training time before the resume
  if (!resume_partial_.is_null()) {
    const json p = std::exchange(resume_partial_, json());
    first_batch = p.at("batch").get<int64_t>();
    if (first_batch <= 0 || first_batch >= batches)
      throw std::runtime_error("[resume] the checkpoint stopped at batch " + std::to_string(first_batch) +
                               " of an epoch of " + std::to_string(batches) + " batches: --batch-size changed?");
    loader.seek_batch(size_t(first_batch));
    sums.restore(p.at("sums"), device_);
    totals.seen = p.at("seen").get<int64_t>();
    seconds_before = p.at("seconds").get<double>();
    std::vector<ReluLayerStats> stats;
    for (const json& s : p.at("relu_stats"))
      stats.push_back({s.at(0).get<size_t>(), s.at(1).get<uint64_t>(), s.at(2).get<uint64_t>(), s.at(3).get<uint64_t>()});
    set_relu_layer_stats(stats);
    relax::BacksubChunkStats chunks;
    const json saved_chunks = p.value("bound_chunks", json::array({0, 0}));
    chunks.chunks = saved_chunks.at(0).get<uint64_t>();
    chunks.checkpointed_chunks = saved_chunks.at(1).get<uint64_t>();
    relax::set_backsub_chunk_stats(chunks);
  }
  auto last_save = Clock::now();
  // The checkpoint of `epoch` epochs and `done` batches of the next, with the epoch's sums so far.
  auto save_partial = [&](int64_t done) {
    json relu = json::array();
    for (const ReluLayerStats& s : relu_layer_stats()) relu.push_back({s.layer, s.pairs, s.unstable, s.backsubstituted});
    const relax::BacksubChunkStats chunks = relax::backsub_chunk_stats();
    save_epoch_checkpoint(epoch, {{"batch", done},
                                  {"sums", sums.to_json()},
                                  {"seen", totals.seen},
                                  {"seconds", seconds_before + seconds_since(epoch_start)},
                                  {"relu_stats", relu},
                                  {"bound_chunks", {chunks.chunks, chunks.checkpointed_chunks}}});
    last_save = Clock::now();
  };
  // The first non-finite step stops the run, naming it; the epoch's checkpoint is not written.
  const int64_t epoch_first_step = global_step_;
  // loss: the step's, when it was read (on the GPU the end-of-epoch check knows only which step).
  auto fail_not_finite = [&](std::optional<float> loss, int64_t step_in_epoch, int64_t skipped_steps) {
    bar.clear();
    throw std::runtime_error(
        "[train] the loss " + (loss ? "(" + format_number(*loss) + ") " : std::string()) +
        "or a gradient is not finite at epoch " + std::to_string(epoch + 1) + ", step " +
        std::to_string(step_in_epoch + 1) + " of " + std::to_string(batches) + " (global step " +
        std::to_string(epoch_first_step + step_in_epoch + 1) + ")" +
        (skipped_steps > 1 ? ", and in " + std::to_string(skipped_steps - 1) + " later steps of the epoch" : "") +
        "; its optimiser step was skipped and training stopped. " +
        (epoch > 0 ? "The last good checkpoint (epoch " + std::to_string(epoch) + ") is " + checkpoint_path(out_dir_)
                   : std::string("No epoch was completed, so there is no checkpoint")) +
        ". A lower --lr (now " + format_number(config_.lr) + ") or --eps-train may help.");
  };
  // On the CPU a read is free, so every step is read and a bad one stops the run at
  // once; on a GPU the host reads only what the progress bar shows, and the sums at the end.
  const bool read_every_step = device_ == Device::cpu;
  std::vector<float> images;
  std::vector<int> labels;
  for (int64_t b = first_batch; loader.next(images, labels); ++b) {
    dist::keep_shard(comm_, images, labels);  // under MPI: this rank's part of the global batch
    totals.sched = schedule_at(config_, epoch, b, batches);
    const Tensor x = image_staging_.upload(images, batch_shape(net_, int64_t(labels.size())), device_);
    const StepStats st = step.run(x, labels, totals.sched, mix_seed(config_.seed, kStepTag, uint64_t(global_step_)));
    ++global_step_;
    totals.seen += st.count;
    sums.add(st, b);
    const bool show = !config_.quiet && bar.due(b + 1, batches);
    if (read_every_step || show) {
      const float loss = st.loss.item();
      if (read_every_step && st.skipped.item() != 0.0f) fail_not_finite(loss, b, 1);
      if (show) {
        const double rate = double(totals.seen) / std::max(1e-9, seconds_before + seconds_since(epoch_start));
        char suffix[160];
        if (uses_eps_schedule(config_.method))
          std::snprintf(suffix, sizeof suffix, "loss %.4f eps %.4f kappa %.3f %.0f img/s", loss, totals.sched.eps,
                        totals.sched.kappa, rate);
        else
          std::snprintf(suffix, sizeof suffix, "loss %.4f %.0f img/s", loss, rate);
        bar.update("[epoch " + std::to_string(epoch + 1) + "/" + std::to_string(config_.epochs) + "]", b + 1,
                   batches, suffix);
      }
    }
    ++steps_this_process_;
    const bool asked_to_stop =
        g_stop_signal.load() != 0 || (config_.stop_after_steps > 0 && steps_this_process_ >= config_.stop_after_steps);
    if (dist::any_rank(comm_, asked_to_stop)) {  // all ranks stop together
      // Nothing done is lost: mid-epoch, a checkpoint of the batches so far; at the
      // epoch's last batch, the epoch finishes (metrics line, checkpoint) first.
      if (b + 1 == batches) {
        totals.stop_after_epoch = true;
        continue;
      }
      if (config_.checkpoint_minutes > 0) {
        save_partial(b + 1);
        totals.batches_saved = b + 1;
      }
      totals.stopped = true;
      break;
    }
    if (config_.checkpoint_minutes > 0 && b + 1 < batches &&
        std::chrono::duration<double>(Clock::now() - last_save).count() >= 60.0 * config_.checkpoint_minutes)
      save_partial(b + 1);
  }
  // The epoch's one read of the device sums.
  totals.loss_sum = double(sums.loss_sum.item());
  totals.correct = int64_t(sums.correct.item());
  totals.skipped_steps = int64_t(sums.skipped.item());
  if (totals.skipped_steps > 0) fail_not_finite(std::nullopt, int64_t(sums.first_skipped.item()), totals.skipped_steps);
  totals.seconds = seconds_before + seconds_since(epoch_start);
  // Both before any evaluation adds its own.
  totals.relu_stats = relu_layer_stats();
  const relax::BacksubChunkStats chunk_stats = relax::backsub_chunk_stats();
  totals.bound_chunks = chunk_stats.chunks;
  totals.bound_chunks_recomputed = chunk_stats.checkpointed_chunks;
  totals.graphs = step.graph_counts();
  totals.graphs.captures -= graphs_before.captures;
  totals.graphs.replays -= graphs_before.replays;
  return totals;
}

TrainSummary Trainer::stopped_summary(int epoch, ProgressBar& bar, int64_t batches_into_epoch) const {
  bar.clear();
  TrainSummary summary;
  summary.out_dir = out_dir_;
  summary.interrupted = true;
  summary.signal = g_stop_signal.load() != 0 ? g_stop_signal.load() : SIGTERM;
  summary.epochs_done = epoch;
  const std::string why = g_stop_signal.load() != 0 ? "signal " + std::to_string(summary.signal)
                                                     : "--stop-after-steps " + std::to_string(config_.stop_after_steps);
  std::string saved;
  if (batches_into_epoch > 0)
    saved = "the checkpoint of " + std::to_string(epoch) + " epochs and " + std::to_string(batches_into_epoch) +
            " batches of epoch " + std::to_string(epoch + 1) + " is in " + checkpoint_path(out_dir_);
  else if (epoch > 0)
    saved = "the checkpoint of epoch " + std::to_string(epoch) + " is in " + checkpoint_path(out_dir_);
  else
    saved = "no epoch was completed, so there is no checkpoint yet (--checkpoint-minutes 0)";
  *log_ << "[train] interrupted (" << why << ") during epoch " << epoch + 1 << "; " << saved
        << "; continue with the same command and --resume" << std::endl;
  return summary;
}

std::optional<EvalReport> Trainer::evaluate_during_training(int epoch, ProgressBar& bar) {
  if (config_.eval_every <= 0 || (epoch + 1) % config_.eval_every != 0 || epoch + 1 >= config_.epochs)
    return std::nullopt;
  bar.clear();
  EvalOptions eo = eval_options();
  if (!config_.quiet) eo.on_batch = [&](int64_t done, int64_t total) { bar.update("[eval]", done, total, ""); };
  return evaluate(net_, test_set_, eo);
}

void Trainer::finish_epoch(int epoch, const EpochTotals& totals, const std::optional<EvalReport>& eval,
                           ProgressBar& bar) {
  json line;
  line["epoch"] = epoch + 1;
  line["lr"] = json_float(totals.sched.lr);
  line["eps"] = json_float(totals.sched.eps);
  line["kappa"] = json_float(totals.sched.kappa);
  line["beta"] = json_float(totals.sched.beta);
  line["train_loss"] = totals.mean_loss();
  line["train_accuracy"] = totals.accuracy();
  line["images_per_s"] = totals.images_per_s();
  line["seconds"] = totals.seconds;
  line["global_step"] = global_step_;
  if (config_.cuda_graph && device_ == Device::cuda)
    line["cuda_graph"] = {{"captures", totals.graphs.captures}, {"replayed_steps", totals.graphs.replays}};
  // Backsubstituted intermediate bounds (crown, crown0, deepz, hbox, hbox-fresh): per
  // ReLU layer (by layer index), the fraction of (sample, neuron) pairs unstable under the bounds
  // used, and of rows backsubstituted (relaxations.h, ReluLayerStats).
  if (!totals.relu_stats.empty()) {
    json unstable = json::object(), backsubstituted = json::object();
    for (const ReluLayerStats& s : totals.relu_stats) {
      const double pairs = double(std::max<uint64_t>(s.pairs, 1));
      unstable[std::to_string(s.layer)] = double(s.unstable) / pairs;
      backsubstituted[std::to_string(s.layer)] = double(s.backsubstituted) / pairs;
    }
    line["unstable_fraction"] = unstable;
    line["backsubstituted_fraction"] = backsubstituted;
  }
  if (totals.bound_chunks > 0) {
    line["bound_chunks"] = {{"chunks", totals.bound_chunks}, {"recomputed", totals.bound_chunks_recomputed}};
    if (totals.bound_chunks_recomputed > 0 && !told_of_recomputation_ && !config_.quiet && comm_.is_root()) {
      told_of_recomputation_ = true;
      bar.clear();
      const size_t cap = config_.bound_memory_cap_bytes;
      const std::string cap_text = cap >= size_t(1 << 20) ? format_number(double(cap) / double(1 << 20)) + " MiB"
                                                          : std::to_string(cap) + " bytes";
      *log_ << "[train] " << totals.bound_chunks_recomputed << " of " << totals.bound_chunks
            << " backsubstitution chunks this epoch were recomputed in the backward pass: they did not fit "
               "--bound-memory-cap ("
            << cap_text << "); a larger cap keeps them (more memory, less time)" << std::endl;
    }
  }
  if (eval) line["eval"] = eval->to_json();
  bar.clear();
  if (!config_.quiet) {
    // Only the schedule values the method reads (natural: none; beta: crown-ibp).
    char text[256];
    std::snprintf(text, sizeof text, "[epoch %d/%d] loss %.4f train-acc %.2f%%", epoch + 1, config_.epochs,
                  totals.mean_loss(), 100.0 * totals.accuracy());
    std::string epoch_line = text;
    if (uses_eps_schedule(config_.method)) {
      std::snprintf(text, sizeof text, " eps %.4f kappa %.3f", totals.sched.eps, totals.sched.kappa);
      epoch_line += text;
    }
    if (uses_beta_schedule(config_.method)) {
      std::snprintf(text, sizeof text, " beta %.3f", totals.sched.beta);
      epoch_line += text;
    }
    std::snprintf(text, sizeof text, " lr %.3g | %.0f img/s, %.1f s", totals.sched.lr, totals.images_per_s(),
                  totals.seconds);
    *log_ << epoch_line << text << (eval ? " | " + eval_summary(*eval) : std::string()) << std::endl;
  }
  // The metrics line first: a resume drops lines past its checkpoint.
  write_metrics_line(line);
  save_epoch_checkpoint(epoch + 1);
  dist::check_parameters_agree(comm_, net_, "after epoch " + std::to_string(epoch + 1));
}

void Trainer::final_evaluation(TrainSummary& summary, ProgressBar& bar) {
  EvalOptions eo = eval_options();
  if (!config_.quiet) eo.on_batch = [&](int64_t done, int64_t total) { bar.update("[eval]", done, total, ""); };
  summary.final_eval = evaluate(net_, test_set_, eo);
  bar.clear();
  summary.weights_hash = parameter_hash(net_);
  if (comm_.is_root()) {
    save_network_json((fs::path(out_dir_) / "network.json").string(), net_);
    save_network_onnx((fs::path(out_dir_) / "network.onnx").string(), net_);  // for other verifiers
  }
  json final_line;
  final_line["final"] = true;
  final_line["epoch"] = summary.epochs_done;
  final_line["eps_test"] = config_.eps_test;
  final_line["eval"] = summary.final_eval.to_json();
  final_line["weights_hash"] = hex64(summary.weights_hash);
  write_metrics_line(final_line);
}

void Trainer::print_result(const TrainSummary& summary) const {
  const EvalReport& r = summary.final_eval;
  const double n = double(std::max<int64_t>(1, r.n));
  char text[160];
  *log_ << "[result] " << r.n << " test images, eps_test " << format_number(config_.eps_test) << ", after "
        << summary.epochs_done << " epochs of " << config_.method << "\n";
  std::snprintf(text, sizeof text, "[result] accuracy            %7.2f%%\n", 100.0 * r.accuracy());
  *log_ << text;
  for (const EvalAtRadius& at : r.radii) {
    if (at.pgd_robust >= 0) {
      std::snprintf(text, sizeof text, "[result] PGD accuracy        %7.2f%%  (%d steps of %g, %d restarts, %s start)\n",
                    100.0 * double(at.pgd_robust) / n, config_.pgd_steps, config_.pgd_step_size, config_.pgd_restarts,
                    config_.pgd_start.c_str());
      *log_ << text;
    }
    for (size_t k = 0; k < at.certified.size(); ++k) {
      const auto& [relaxation, count] = at.certified[k];
      const std::string label = std::string("certified (") + relaxation_name(relaxation) + ")";
      std::snprintf(text, sizeof text, "[result] %-19s %7.2f%%  (%s bounds, smallest margin %.3g)\n", label.c_str(),
                    100.0 * double(count) / n, r.sound ? "sound" : "fast", double(at.smallest_margin[k]));
      *log_ << text;
    }
    if (at.bab_certified >= 0) {
      std::snprintf(text, sizeof text,
                    "[result] %-19s %7.2f%%  (branch and bound, %.3g s each: %lld runs, %lld timeouts, %lld unknown)\n",
                    "certified (bab)", 100.0 * double(at.bab_certified) / double(std::max<int64_t>(1, r.n)),
                    r.bab_timeout_s, (long long)at.bab_runs, (long long)at.bab_timeouts, (long long)at.bab_unknown);
      *log_ << text;
    }
    if (at.best_certified >= 0) {
      std::snprintf(text, sizeof text, "[result] %-19s %7.2f%%  (an image counts when any of the above certifies it)\n",
                    "certified (best)", 100.0 * double(at.best_certified) / n);
      *log_ << text;
    }
  }
  *log_ << "[result] weights fnv1a64 " << hex64(summary.weights_hash) << "\n";
  *log_ << "[result] out: " << out_dir_ << " (checkpoint.ckpt, metrics.jsonl, config.json, network.json, network.onnx)"
        << std::endl;
}

}  // namespace cte::train
