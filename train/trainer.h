// The training loop and everything around it: one training step per method,
// evaluation (accuracy, PGD accuracy, certified accuracy per relaxation and
// radius), checkpoints every epoch with bitwise-exact resume, metrics.jsonl,
// progress output and the final report.
//
// Reproducibility: every random choice is a pure function of (--seed, what,
// where): the data order and augmentation of epoch e come from BatchLoader
// seeded with (seed, e); the random starts of a training step's PGD from
// mix_seed(seed, tag, global step); evaluation attacks from (seed, tag). So a
// checkpoint needs no generator state: parameters, Adam's moments and step
// count, the number of completed epochs and the global step are enough for a
// resumed run to produce the same final weights, bit for bit on the CPU, as
// an uninterrupted one (same thread count).
//
// Checkpoint (engine/checkpoint.h) tensors: "net.layers.<i>.weight|bias" and
// Adam's "adam.step", "adam.m.<i>", "adam.v.<i>"; metadata JSON: format,
// epoch (completed), global_step, dataset, num_classes, input_shape, network
// (Network::describe()), architecture (layer list without weights), config
// (config_to_json), weights_hash. With --pca also the basis: tensors
// "pca.mean" (pixels) and "pca.components" (K, pixels), metadata "pca"
// {components, fitted_on, variances, total_variance}.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/dataset.h"
#include "datasets/pca.h"
#include "engine/file_io.h"
#include "engine/allocator.h"
#include "engine/nn.h"
#include "engine/optim.h"
#include "engine/staging.h"
#include "relaxations/relax_ops.h"
#include "relaxations/relaxations.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/pgd.h"
#include "train/schedule.h"
#include "verify/bab.h"

namespace cte::train {

// ---------------------------------------------------------------- one step

// What one step leaves on the network's device, so that the step makes no
// host round trip on a GPU: the trainer adds these up on the device and reads
// the sums once per epoch; read() copies one step's values to the host.
struct StepStats {
  Tensor loss;     // scalar: the (global) batch's loss
  Tensor correct;  // scalar: clean predictions (first argmax) equal to the label
  // scalar: 1 when the loss or a gradient was NaN or infinite and the optimiser
  // step was skipped (the weights are those before the step), else 0.
  Tensor skipped;
  int64_t count = 0;  // samples in the (global) batch

  struct Host {
    float loss = 0;
    int64_t correct = 0;
    bool finite = true;
  };
  Host read() const;  // three device-to-host copies on a GPU
};

// One training step of any method on one batch: clean forward, the robust
// term (relaxation bounds, PGD or SABR) when kappa < 1, the loss
// kappa CE(z) + (1 - kappa) CE(worst-case z) + l1 sum |W| + l2 sum W^2,
// backward and the optimiser step (skipped when the loss or a gradient is not
// finite). The L1 term's gradient is added by the optimiser's kernel, not the
// tape. The trainer and bench_train run exactly this.
//
// Under MPI (comm of more than one rank) x and labels are this rank's shard
// of the global batch: its loss is weighted by shard / global size and the L2
// term is rank 0's alone, and L1 is added after the gradient sum, so the
// gradients summed over ranks are those of the global batch; the returned
// stats are the global batch's. PGD and SABR
// draw their random starts per rank (the step seed mixed with the rank), so
// for those methods N ranks follow a different random stream than one.
class TrainStep {
 public:
  // Construct after the network has moved to its device (it keeps the weight tensors).
  TrainStep(Network& net, Optimizer& optimizer, const TrainConfig& config, int num_classes,
            dist::Communicator& comm = dist::world());
  // x: (N, net input shape) on the network's device (N may be 0 on a rank
  // whose shard of a small last batch is empty); labels: N classes;
  // step_seed: the randomness of this step (PGD starts).
  //
  // With --cuda-graph on a GPU (one process), a step whose kernels would get
  // the same host values as the step before (batch size, eps, kappa, beta, the
  // optimiser's next_step_scalars) is captured as a CUDA graph, and later steps
  // with those values replay it: the batch is copied into the graph's own input
  // buffers and the whole step is one launch. A replayed step's StepStats are
  // the graph's output tensors, overwritten by the next replay (the trainer adds
  // them up before that, in stream order). The values must have held for
  // four steps in a row before a capture. pgd and sabr steps are captured too:
  // their random start's draws (made on the host from the step seed, as
  // eagerly) are a graph input like the batch, and the captured attack runs
  // all its steps instead of reading its early-stop flag (x is frozen once
  // every sample is broken, so the result is the same). A step with another
  // host round trip (deepz and crown's sparse bounds: --sparse-bounds on or
  // --early-stops) fails its capture, runs eagerly, and those values are not
  // tried again.
  StepStats run(const Tensor& x, const std::vector<int>& labels, const ScheduleValues& schedule, uint64_t step_seed);

  struct GraphCounts {
    int64_t captures = 0, replays = 0;  // a capture also runs the step once
    std::string refused;                 // why the last capture failed or was not tried (empty: none did)
  };
  const GraphCounts& graph_counts() const { return graph_counts_; }

 private:
  StepStats run_eager(const Tensor& x, const Tensor& y, const std::vector<int>& labels, const ScheduleValues& s,
                      uint64_t step_seed);
  // The step as a graph (captured now or replayed), or nothing: run it eagerly.
  std::optional<StepStats> run_as_graph(const Tensor& x, const Tensor& y, const std::vector<int>& labels,
                                        const ScheduleValues& s, uint64_t step_seed);
  // The loss of this shard and its backward pass; fills loss, correct, count (skipped is run()'s).
  // y: the labels on x's device.
  StepStats forward_backward(const Tensor& x, const Tensor& y, const std::vector<int>& labels,
                             const ScheduleValues& schedule, uint64_t step_seed, int64_t global_count,
                             dist::RunningAverageSync& running_averages);

  // config.l1 * sum |p| over l1_terms_ (no gradient): the reported loss's share of the L1
  // penalty whose gradient the optimiser's step adds.
  Tensor l1_penalty() const;

  // Whether this step runs the training attack, and its seed.
  bool attack_runs(const ScheduleValues& s) const;
  uint64_t attack_seed(uint64_t step_seed) const;
  // The attack's random-start draws for a step (x's shape, on the GPU), or
  // nothing when the step draws none.
  Tensor attack_start_draws(const Shape& x_shape, const ScheduleValues& s, uint64_t step_seed);

  // One captured step. Members are destroyed bottom-up: the graph, its
  // outputs and inputs, then the memory pool that holds their blocks.
  struct CapturedStep {
    std::vector<float> key;  // the host values its kernels were given
    GraphMemoryPool pool;
    Tensor x, y;             // its input buffers
    Tensor draws;            // the attack's random-start draws, like x (undefined: none)
    StepStats stats;         // its outputs
    relax::HostBoundStats bound_stats;  // what its host code added to the bound statistics, added again per replay
    struct Exec {
      void* graph = nullptr;
      ~Exec();
    } exec;
  };
  std::vector<std::unique_ptr<CapturedStep>> graphs_;  // most recently used last
  static constexpr int kStepsBeforeCapture = 4;
  std::vector<float> previous_key_;
  int steps_with_key_ = 0;                       // steps in a row with previous_key_
  std::vector<std::vector<float>> refused_keys_;  // values whose capture failed
  GraphCounts graph_counts_;
  const CapturedStep* capturing_ = nullptr;  // the step being captured, if any

  Network& net_;
  Optimizer& optimizer_;
  TrainConfig config_;
  int num_classes_;
  std::vector<Tensor> weights_;       // for the L2 penalty (weights only, no biases)
  std::vector<Tensor> l1_terms_;      // the L1 penalty's: the weights, and with --l1-bias the biases
  std::vector<float> label_values_;  // the labels as floats, reused
  UploadStaging label_staging_;      // their asynchronous upload
  UploadStaging attack_staging_;     // the PGD random start's draws (one batch-sized upload per step)
  ScalarReadback attack_readback_;   // the PGD early stop's flag (its page-locked buffers kept across steps)
  dist::Communicator& comm_;
};

// The attack of a training step at the scheduled eps (--method pgd and sabr):
// the --train-pgd-* settings, the step relative to eps unless
// --train-pgd-step-unit absolute; seed left 0 (the step sets it).
PgdOptions training_pgd_options(const TrainConfig& config, float eps);

// ---------------------------------------------------------------- evaluation

// The bab column's branch and bound: verify::VerifyOptions, 10 s per image.
inline verify::VerifyOptions bab_column_defaults() {
  verify::VerifyOptions v;
  v.timeout_s = 10.0;
  return v;
}

struct EvalOptions {
  std::vector<float> eps{0.1f};
  std::vector<Relaxation> relaxations{Relaxation::box};
  // Also count the images that any of `relaxations` certifies (the `best` column).
  bool best = false;
  // The `bab` column: branch and bound (verify/bab.h, on the robustness
  // property of the image's eps ball clipped to [0, 1]) on every correctly
  // classified image that none of `relaxations` certifies, within
  // bab_options.timeout_s per image; bab counts those it proves (unsat) plus
  // the ones the relaxations certified, which are its cheap first stage (as
  // alpha-beta-CROWN runs its incomplete bounds first). Timeouts, unknowns and
  // counterexamples count as not certified. `best` includes it. BaB's bounds
  // are always the sound ones, whatever `sound` says.
  bool bab = false;
  verify::VerifyOptions bab_options = bab_column_defaults();
  bool pgd = true;
  PgdOptions pgd_options;  // eps is set per radius; stop_at_success, track on
  // The first PGD attempt from a uniform random point of the ball (seeded
  // per batch, as the authors do) instead of x itself (--pgd-start zero).
  bool pgd_random_start = true;
  bool elide = true;
  int crown_tie_slope = 0;  // BoundOptions::crown_tie_slope
  AlphaCrownOptions alpha;  // BoundOptions::alpha (alpha-crown's optimisation)
  size_t bound_memory_cap_bytes = BoundOptions{}.memory_cap_bytes;
  int batch_size = 100;
  int64_t subset = 0;  // first N test images (0: all)
  // Sound bounds (relaxations/sound.cpp) and an outward-rounded input box:
  // a certificate then holds for the real network and the float32 forward
  // pass. false: the fast bounds of training (--unsound-fast).
  bool sound = true;
  // Called after each batch with (images done, total) (progress output).
  std::function<void(int64_t, int64_t)> on_batch;
  // Under MPI each rank evaluates test batches i with i mod N = its rank and
  // the counts are summed, so the report is the same for every N.
  dist::Communicator* comm = &dist::world();
  // A long evaluation in parts (certify curve --batches-per-run): skip the
  // first `resume_batches` test batches, counting on from `resume_from` (the
  // report on_partial gave when they were done), and stop after max_batches
  // more (0: at the end). The counts come out as one uninterrupted run's (each
  // batch's PGD seed is its index). One process only: not under MPI.
  const EvalReport* resume_from = nullptr;
  int64_t resume_batches = 0;
  int64_t max_batches = 0;
  // Called after each batch with the report so far and the batches done in all.
  std::function<void(const EvalReport&, int64_t)> on_partial;
};

struct EvalAtRadius {
  float eps = 0;
  int64_t pgd_robust = -1;  // -1: not run
  std::vector<std::pair<Relaxation, int64_t>> certified;
  int64_t best_certified = -1;  // certified by at least one relaxation (-1: not asked for)
  // The bab column (-1: not asked for), and how its branch-and-bound runs
  // ended: runs = unsat + sat + timeouts + unknown.
  int64_t bab_certified = -1;
  int64_t bab_runs = 0, bab_unsat = 0, bab_sat = 0, bab_timeouts = 0, bab_unknown = 0;
  // Per relaxation (as certified): the smallest margin -max_k upper(C_k z)
  // over the images it certified (+inf when none): how close to zero the
  // weakest certificate is.
  std::vector<float> smallest_margin;
};

struct EvalReport {
  int64_t n = 0, correct = 0;
  std::vector<EvalAtRadius> radii;
  double seconds = 0;
  bool complete = true;  // false: stopped by EvalOptions::max_batches before the last batch
  double accuracy() const { return n ? double(correct) / double(n) : 0.0; }
  bool sound = true;
  int crown_tie_slope = 0;
  std::string pgd_start;  // "random" or "zero" when PGD ran, else empty
  double bab_timeout_s = 0;  // the bab column's per-image limit (when asked for)
  // {"n", "accuracy", "seconds", "sound", "crown_tie", "pgd_start"?, "radii": [{"eps", "pgd_accuracy"?,
  //  "certified": {"box": ..., "bab"?: ..., "best"?: ...},
  //  "bab"?: {"runs", "unsat", "sat", "timeouts", "unknown", "timeout_s"},
  //  "smallest_certified_margin": {"box": ... or null}}]}
  nlohmann::json to_json() const;
};

// Certified means: classified correctly and every margin's upper bound < 0.
EvalReport evaluate(const Network& net, const Dataset& test, const EvalOptions& options);

// ---------------------------------------------------------------- checkpoints

std::string checkpoint_path(const std::string& out_dir);  // <out>/checkpoint.ckpt
// The layers without weights: [{"type":"normalize","mean":[..],"std":[..]}, {"type":"conv","stride":2,"padding":1}, ...].
nlohmann::json network_architecture(const Network& net);
// Rebuilds the network of a trainer checkpoint (on the CPU) and returns its metadata.
Network network_from_checkpoint(const std::string& path, nlohmann::json* metadata = nullptr);
// The PCA basis a --pca run saved in its checkpoint (nullopt for a run on pixels):
// project_pca with it gives the run's inputs bit for bit.
std::optional<PcaBasis> pca_from_checkpoint(const std::string& path);

// ---------------------------------------------------------------- the run

// Sets the thread count (--threads) and resolves --device (throws for CUDA
// without a GPU). Call before printing the banner.
Device prepare_runtime(const TrainConfig& config);

struct TrainSummary {
  EvalReport final_eval;
  int epochs_done = 0;
  bool interrupted = false;
  int signal = 0;  // SIGINT or SIGTERM when interrupted
  bool already_finished = false;  // --resume of a run that had trained and evaluated every epoch: nothing done
  uint64_t weights_hash = 0;
  std::string out_dir;
};

class ProgressBar;  // trainer.cpp: the in-place progress line

class Trainer {
 public:
  // Everything that can fail on bad input happens here, before any training:
  // validation, the device, the data set, the network, the resume checkpoint.
  // `log` receives the human-readable lines (the progress bar goes to stderr
  // when it is a terminal).
  explicit Trainer(const TrainConfig& config, std::ostream* log = nullptr);
  // With data already in memory (tests, synthetic data); config.dataset then
  // only names it (its normalisation: computed from the data for "folder").
  Trainer(const TrainConfig& config, DatasetSplits data, std::ostream* log = nullptr);
  ~Trainer();

  // Trains the remaining epochs, checkpointing each, then evaluates. On
  // SIGINT/SIGTERM it stops after the current batch; the last completed
  // epoch's checkpoint is on disk, and the summary says interrupted.
  TrainSummary run();

  const Network& network() const { return net_; }
  int start_epoch() const { return start_epoch_; }
  // --resume found the run trained for --epochs and evaluated: run() does nothing.
  bool already_finished() const { return already_finished_; }
  const TrainConfig& config() const { return config_; }
  const std::string& out_dir() const { return out_dir_; }

 private:
  // The steps of run(), in order (trainer.cpp).
  struct EpochTotals;
  EpochTotals train_epoch(int epoch, BatchLoader& loader, TrainStep& step, ProgressBar& bar);
  // After SIGINT/SIGTERM or --stop-after-steps, with `epoch` epochs and `batches_into_epoch`
  // batches of the next in the checkpoint.
  TrainSummary stopped_summary(int epoch, ProgressBar& bar, int64_t batches_into_epoch = 0) const;
  std::optional<EvalReport> evaluate_during_training(int epoch, ProgressBar& bar);  // every --eval-every epochs
  void finish_epoch(int epoch, const EpochTotals& totals, const std::optional<EvalReport>& eval, ProgressBar& bar);
  void final_evaluation(TrainSummary& summary, ProgressBar& bar);  // also writes network.json/.onnx
  void print_result(const TrainSummary& summary) const;

  void setup(std::optional<DatasetSplits> data);
  // The checkpoint after `epochs_done` epochs, and with `partial` (a JSON object: the
  // batch reached and the epoch's sums so far) in the middle of the next one.
  void save_epoch_checkpoint(int epochs_done, const nlohmann::json& partial = nullptr);
  void write_metrics_line(const nlohmann::json& line);
  EvalOptions eval_options() const;

  TrainConfig config_;
  std::ostream* log_;
  bool told_of_recomputation_ = false;  // the --bound-memory-cap hint, once per run
  Device device_ = Device::cpu;
  UploadStaging image_staging_;  // the batches' asynchronous upload to device_
  DatasetSplits data_;
  Dataset train_set_, test_set_;  // the subsets, in PCA coordinates with --pca
  std::optional<PcaBasis> pca_;    // --pca: fitted on train_set_'s images
  int num_classes_ = 0;
  Network net_;
  std::unique_ptr<Adam> adam_;
  std::string out_dir_;
  int start_epoch_ = 0;
  bool already_finished_ = false;
  int64_t global_step_ = 0;
  int64_t steps_this_process_ = 0;    // for --stop-after-steps
  nlohmann::json resume_partial_;     // a mid-epoch checkpoint's "partial_epoch" until its epoch resumes
  std::unique_ptr<DirectoryLock> lock_;  // out_dir_ is ours while training
  dist::Communicator& comm_ = dist::world();  // MPI: rank 0 writes the files and the log
};

// The first n samples of a data set (n <= 0 or >= size: all of it).
Dataset dataset_head(const Dataset& data, int64_t n);

}  // namespace cte::train
