// Data-parallel training and evaluation over MPI (and NCCL for GPU buffers).
//
// `mpirun -np N build/bin/train ...` starts N identical processes (ranks).
// Every rank builds the same network from the same seed and reads the same
// global batches from the same BatchLoader; it keeps its shard of each batch
// (shard_range: contiguous, sizes differing by at most one), computes the
// loss weighted by shard/global size (so the summed loss is the mean over the
// global batch, as with one process), and the gradients are summed across
// ranks before every rank takes the same optimiser step. Rank 0 alone writes
// checkpoints, metrics and the progress output. Evaluation deals whole test
// batches round-robin (batch i to rank i mod N) and sums the counts, so its
// numbers do not depend on N. A checkpoint holds nothing per rank, so
// --resume works with any N. BatchNorm: RunningAverageSync below.
//
// Without MPI in the build, or when not started by a launcher (mpirun,
// srun), world() is a single process and every call here is free.
//
// Reductions: CPU gradients go through MPI_Allreduce in one packed buffer;
// CUDA gradients through NCCL when the build has it (bootstrapped through
// MPI), otherwise staged through the host. A reduction's summation order is
// fixed for a given N, so runs at the same N are bit-identical; N = 2 and
// N = 1 agree up to float summation order.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/tensor.h"

namespace cte::train {
struct EvalReport;
}

namespace cte::dist {

// [begin, end) of `rank`'s part of `count` items split over `size` ranks:
// contiguous, the first count % size ranks one item more (empty when count < size).
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range shard_range(int64_t count, int rank, int size);

// What the gradient reductions cost (the bench reads it).
struct Traffic {
  int64_t calls = 0;
  int64_t bytes = 0;     // payload per rank: 4 bytes per gradient element
  double seconds = 0;    // wall time inside the reductions (waiting for slower ranks included)
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool is_root() const { return rank() == 0; }
  virtual std::string name() const = 0;  // "single process", "MPI (OpenMPI ...)"

  // Element-wise sums (or minima) in place; every rank gets the same values.
  virtual void sum(double* values, size_t count) = 0;
  virtual void sum(int64_t* values, size_t count) = 0;
  virtual void min(float* values, size_t count) = 0;
  // Every rank's value, in rank order.
  virtual std::vector<uint64_t> gather(uint64_t value) = 0;
  // Root's bytes to every rank.
  virtual void broadcast(void* bytes, size_t count, int root) = 0;
  // Sums every rank's gradients of `params` in place (a parameter without a
  // gradient gets zeros first, so all ranks end with the same defined set).
  virtual void sum_gradients(const std::vector<Tensor>& params) = 0;

  const Traffic& gradient_traffic() const { return traffic_; }
  void reset_traffic() { traffic_ = Traffic{}; }

 protected:
  Traffic traffic_;
};

// The one-process communicator (reductions are identities).
Communicator& single_process();
// MPI_COMM_WORLD when MPI is initialised (see Session), else single_process().
Communicator& world();

// Initialises MPI when a launcher started this process (OpenMPI's mpirun,
// Slurm's srun with PMIx/PMI) and MPI is in the build; in builds with NCCL,
// on a machine with GPUs, each rank then uses GPU (local rank mod GPU count).
// Finalises on destruction. Create it first thing in main().
class Session {
 public:
  Session(int& argc, char**& argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

// Under more than one rank: ends every rank (MPI_Abort) so that no rank waits
// forever in a collective for one that failed; otherwise returns `code`.
int exit_after_error(int code);

// True on every rank when `flag` is true on some rank (a stop signal seen by
// one rank must stop all at the same batch).
bool any_rank(Communicator& comm, bool flag);

// Throws "[<who>] ... differs across MPI ranks" with every rank's value unless all agree.
void check_same_on_all_ranks(Communicator& comm, uint64_t value, const std::string& who, const std::string& what);
// The hash (fnv1a64) of every rank's parameters and BatchNorm running averages must agree; throws naming the
// ranks and hashes otherwise. `when`: e.g. "after epoch 3".
void check_parameters_agree(Communicator& comm, const Network& net, const std::string& when);

// BatchNorm under MPI. Each rank normalises its shard with the shard's own
// batch statistics (PyTorch DDP without SyncBatchNorm): forward and backward
// stay free of collectives, so a rank whose shard is empty, or whose PGD attack
// stops early, never leaves another waiting. The running averages, though, are
// updated with the global batch's mean and variance, combined from every
// rank's shard statistics (counts, means and variances, in double), so every
// rank holds the same running averages and evaluation and checkpoints do not
// depend on N. (A first BatchNorm's are one process's, up to rounding; deeper
// ones see inputs normalised per shard, near one process's but not equal.) Construct before a step's forward passes (it keeps the running
// averages as they were), capture() right after the clean batch's forward
// pass (while the layers hold its statistics), and finish() on every rank
// after the step's passes (a rank with an empty shard captured nothing).
class RunningAverageSync {
 public:
  RunningAverageSync(Communicator& comm, Network& net);
  void capture(int64_t shard_count);
  void finish();

 private:
  struct Kept {
    Layer* layer;
    std::vector<float> mean, var;              // the running averages before the step
    std::vector<float> batch_mean, batch_var;  // the shard's statistics (capture)
  };
  int64_t shard_count_ = 0;
  Communicator& comm_;
  std::vector<Kept> kept_;
};

// `log` on rank 0, a stream that discards everything on the other ranks.
std::ostream* root_only(const Communicator& comm, std::ostream* log);

// Keeps this rank's shard of a batch (images: count * image_numel floats).
void keep_shard(Communicator& comm, std::vector<float>& images, std::vector<int>& labels);

// Evaluation: whether this rank evaluates test batch `index` (round-robin).
inline bool owns_batch(const Communicator& comm, int64_t index) { return index % comm.size() == comm.rank(); }
// Sums the counts of every rank's part of an evaluation (minimum of the
// smallest margins; seconds: the slowest rank).
void combine_eval_reports(Communicator& comm, train::EvalReport& report);

// NCCL for CUDA gradients (train/distributed_nccl.cpp), used by the MPI
// communicator. nccl_sum_gradients returns false when the build has no NCCL
// (the caller then stages through the host); mpi_comm points to the MPI_Comm
// that bootstraps NCCL on first use. Without NCCL the other two do nothing.
bool nccl_sum_gradients(const std::vector<Tensor>& grads, int rank, int size, void* mpi_comm);
void nccl_select_gpu(int local_rank);  // GPU local_rank mod the GPU count, before any CUDA work
void nccl_finalize();

}  // namespace cte::dist
