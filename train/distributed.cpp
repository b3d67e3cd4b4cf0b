// The communicators (one process, MPI_COMM_WORLD) and the helpers the
// trainer and evaluation call (see distributed.h). Only this file and
// distributed_nccl.cpp see mpi.h: the Makefile gives them MPI's flags when
// OpenMPI is installed (CTE_HAVE_MPI).
#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <ostream>
#include <stdexcept>

#include "train/networks.h"
#include "train/trainer.h"

#ifdef CTE_HAVE_MPI
#include <mpi.h>
#endif

namespace cte::dist {

Range shard_range(int64_t count, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size || count < 0)
    throw std::invalid_argument("[dist] shard_range: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                                " ranks, " + std::to_string(count) + " items");
  const int64_t base = count / size, extra = count % size;
  Range r;
  r.begin = int64_t(rank) * base + std::min<int64_t>(rank, extra);
  r.end = r.begin + base + (rank < extra ? 1 : 0);
  return r;
}

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single process"; }
  void sum(double*, size_t) override {}
  void sum(int64_t*, size_t) override {}
  void min(float*, size_t) override {}
  std::vector<uint64_t> gather(uint64_t value) override { return {value}; }
  void broadcast(void*, size_t, int) override {}
  void sum_gradients(const std::vector<Tensor>&) override {}
};

// Gives every parameter a gradient (zeros where backward did not reach it),
// so that all ranks reduce the same buffers.
std::vector<Tensor> defined_gradients(const std::vector<Tensor>& params) {
  std::vector<Tensor> grads;
  grads.reserve(params.size());
  for (const Tensor& p : params) {
    if (!p.grad().defined()) p.impl()->grad = Tensor::zeros(p.shape(), p.device()).impl_ptr();
    grads.push_back(p.grad());
  }
  return grads;
}

#ifdef CTE_HAVE_MPI

void check_mpi_count(size_t count, const char* what) {
  if (count > size_t(INT_MAX))
    throw std::runtime_error(std::string("[dist] ") + what + ": " + std::to_string(count) +
                             " elements exceed one MPI call's int count");
}

class MpiWorld final : public Communicator {
 public:
  MpiWorld() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    std::string v(version, size_t(length));
    name_ = "MPI, " + v.substr(0, v.find(',')) + ", " + std::to_string(size_) + " ranks";
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }
  void sum(double* values, size_t count) override {
    check_mpi_count(count, "sum");
    MPI_Allreduce(MPI_IN_PLACE, values, int(count), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  }
  void sum(int64_t* values, size_t count) override {
    check_mpi_count(count, "sum");
    MPI_Allreduce(MPI_IN_PLACE, values, int(count), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  }
  void min(float* values, size_t count) override {
    check_mpi_count(count, "min");
    MPI_Allreduce(MPI_IN_PLACE, values, int(count), MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
  }
  std::vector<uint64_t> gather(uint64_t value) override {
    std::vector<uint64_t> all(size_t(size_), 0);
    MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
    return all;
  }
  void broadcast(void* bytes, size_t count, int root) override {
    check_mpi_count(count, "broadcast");
    MPI_Bcast(bytes, int(count), MPI_BYTE, root, MPI_COMM_WORLD);
  }
  void sum_gradients(const std::vector<Tensor>& params) override {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<Tensor> grads = defined_gradients(params);
    size_t total = 0;
    for (const Tensor& g : grads) total += size_t(g.numel());
    const bool on_gpu = !grads.empty() && grads[0].device() == Device::cuda;
    MPI_Comm comm = MPI_COMM_WORLD;
    if (!(on_gpu && nccl_sum_gradients(grads, rank_, size_, &comm))) {
      // One packed buffer, one MPI call (CUDA without NCCL: staged through the host).
      check_mpi_count(total, "sum_gradients");
      packed_.resize(total);
      size_t offset = 0;
      for (const Tensor& g : grads) {
        const std::vector<float> values = g.to_vector();
        std::copy(values.begin(), values.end(), packed_.begin() + int64_t(offset));
        offset += values.size();
      }
      MPI_Allreduce(MPI_IN_PLACE, packed_.data(), int(total), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      offset = 0;
      for (const Tensor& g : grads) {
        Tensor target = g;
        if (g.device() == Device::cpu) {
          std::copy(packed_.begin() + int64_t(offset), packed_.begin() + int64_t(offset) + g.numel(), target.data());
        } else {
          const std::vector<float> part(packed_.begin() + int64_t(offset),
                                        packed_.begin() + int64_t(offset) + g.numel());
          target.copy_from(Tensor::from_vector(part, g.shape(), Device::cpu));
        }
        offset += size_t(g.numel());
      }
    }
    traffic_.calls += 1;
    traffic_.bytes += int64_t(total * sizeof(float));
    traffic_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  int rank_ = 0, size_ = 1;
  std::string name_;
  std::vector<float> packed_;  // reused across steps
};

Communicator* g_mpi_world = nullptr;

// OpenMPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx and PMI launchers (srun,
// MPICH's hydra) set PMIX_RANK or PMI_RANK.
bool started_by_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(name)) return true;
  return false;
}

#endif  // CTE_HAVE_MPI

}  // namespace

Communicator& single_process() {
  static SingleProcess one;
  return one;
}

Communicator& world() {
#ifdef CTE_HAVE_MPI
  if (g_mpi_world) return *g_mpi_world;
#endif
  return single_process();
}

Session::Session([[maybe_unused]] int& argc, [[maybe_unused]] char**& argv) {
#ifdef CTE_HAVE_MPI
  if (!started_by_launcher()) return;
  // Only the main thread calls MPI (OpenMP threads never do).
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  g_mpi_world = new MpiWorld();
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local_rank = 0;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);
  nccl_select_gpu(local_rank);
#endif
}

Session::~Session() {
#ifdef CTE_HAVE_MPI
  if (!g_mpi_world) return;
  nccl_finalize();
  delete g_mpi_world;
  g_mpi_world = nullptr;
  MPI_Finalize();
#endif
}

int exit_after_error(int code) {
#ifdef CTE_HAVE_MPI
  if (g_mpi_world && g_mpi_world->size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  return code;
}

bool any_rank(Communicator& comm, bool flag) {
  if (comm.size() == 1) return flag;
  int64_t count = flag ? 1 : 0;
  comm.sum(&count, 1);
  return count > 0;
}

void check_same_on_all_ranks(Communicator& comm, uint64_t value, const std::string& who, const std::string& what) {
  if (comm.size() == 1) return;
  const std::vector<uint64_t> all = comm.gather(value);
  if (std::all_of(all.begin(), all.end(), [&](uint64_t v) { return v == all[0]; })) return;
  std::string values;
  for (size_t r = 0; r < all.size(); ++r)
    values += (r ? ", rank " : "rank ") + std::to_string(r) + " " + std::to_string(all[r]);
  throw std::runtime_error("[" + who + "] " + what + " differs across MPI ranks (" + values +
                           "): every rank must see the same files (a shared file system) and flags");
}

void check_parameters_agree(Communicator& comm, const Network& net, const std::string& when) {
  if (comm.size() == 1) return;
  // The BatchNorm running averages too: evaluation under MPI splits the test set across ranks.
  std::vector<Tensor> running_averages;
  for (const Layer& layer : net.layers())
    if (layer.running_mean.defined()) running_averages.insert(running_averages.end(), {layer.running_mean, layer.running_var});
  const std::vector<uint64_t> all = comm.gather(train::tensors_hash(running_averages, train::parameter_hash(net)));
  if (std::all_of(all.begin(), all.end(), [&](uint64_t v) { return v == all[0]; })) return;
  std::string values;
  for (size_t r = 0; r < all.size(); ++r)
    values += (r ? ", rank " : "rank ") + std::to_string(r) + " " + train::hex64(all[r]);
  throw std::runtime_error("[train] the parameters or BatchNorm running averages differ across MPI ranks " + when + " (fnv1a64: " + values +
                           "); the ranks diverged, so training stopped. Every rank must run the same binary, "
                           "flags and data on the same kind of CPU/GPU (-march=native builds differ between CPU "
                           "types); the last checkpoint is rank 0's");
}

RunningAverageSync::RunningAverageSync(Communicator& comm, Network& net) : comm_(comm) {
  if (comm.size() == 1) return;
  for (Layer& layer : net.layers())
    if (layer.running_mean.defined() && layer.track_running_stats)
      kept_.push_back({&layer, layer.running_mean.to_vector(), layer.running_var.to_vector(), {}, {}});
}

void RunningAverageSync::capture(int64_t shard_count) {
  shard_count_ = shard_count;
  for (Kept& k : kept_) {
    if (!k.layer->batch_stats || !k.layer->batch_stats->mean.defined())
      throw std::logic_error("RunningAverageSync::capture: a BatchNorm layer holds no batch statistics (call it "
                             "after the clean forward pass, in training mode)");
    k.batch_mean = k.layer->batch_stats->mean.to_vector();
    k.batch_var = k.layer->batch_stats->var.to_vector();
  }
}

void RunningAverageSync::finish() {
  if (kept_.empty()) return;
  // Per layer: the values per channel m, then per channel m mean and m (var + mean^2),
  // whose sums over the ranks give the global batch's mean and biased variance.
  std::vector<double> sums;
  for (const Kept& k : kept_) {
    const int64_t channels = int64_t(k.mean.size());
    const double m = double(shard_count_) * double(k.layer->in_shape.numel() / channels);
    sums.push_back(m);
    const std::vector<float> none(size_t(channels), 0.0f);
    const std::vector<float>& mean = shard_count_ > 0 ? k.batch_mean : none;
    const std::vector<float>& var = shard_count_ > 0 ? k.batch_var : none;
    for (size_t c = 0; c < mean.size(); ++c) sums.push_back(m * mean[c]);
    for (size_t c = 0; c < var.size(); ++c) sums.push_back(m * (double(var[c]) + double(mean[c]) * mean[c]));
  }
  comm_.sum(sums.data(), sums.size());
  size_t at = 0;
  for (const Kept& k : kept_) {
    const size_t channels = k.mean.size();
    const double m = sums[at++];
    const double keep = 1.0 - double(k.layer->momentum), unbiased = m > 1 ? m / (m - 1) : 1.0;
    std::vector<float> running_mean(channels), running_var(channels);
    for (size_t c = 0; c < channels; ++c) {
      const double mean = sums[at + c] / m, var = std::max(0.0, sums[at + channels + c] / m - mean * mean);
      running_mean[c] = float(keep * k.mean[c] + k.layer->momentum * mean);
      running_var[c] = float(keep * k.var[c] + k.layer->momentum * var * unbiased);
    }
    at += 2 * channels;
    const Device device = k.layer->running_mean.device();
    Tensor target_mean = k.layer->running_mean, target_var = k.layer->running_var;  // handles: the layer's storage
    target_mean.copy_from(Tensor::from_vector(running_mean, Shape{int64_t(channels)}, device));
    target_var.copy_from(Tensor::from_vector(running_var, Shape{int64_t(channels)}, device));
  }
}

std::ostream* root_only(const Communicator& comm, std::ostream* log) {
  static std::ostream discard(nullptr);  // no buffer: every write is dropped
  return comm.is_root() ? log : &discard;
}

void keep_shard(Communicator& comm, std::vector<float>& images, std::vector<int>& labels) {
  if (comm.size() == 1) return;
  const int64_t count = int64_t(labels.size());
  const int64_t per_image = count ? int64_t(images.size()) / count : 0;
  const Range r = shard_range(count, comm.rank(), comm.size());
  labels = std::vector<int>(labels.begin() + r.begin, labels.begin() + r.end);
  images = std::vector<float>(images.begin() + r.begin * per_image, images.begin() + r.end * per_image);
}

void combine_eval_reports(Communicator& comm, train::EvalReport& report) {
  if (comm.size() == 1) return;
  std::vector<int64_t> counts{report.n, report.correct};
  std::vector<float> minima{float(-report.seconds)};  // the slowest rank's time
  for (const train::EvalAtRadius& r : report.radii) {
    counts.push_back(r.pgd_robust);
    for (const auto& entry : r.certified) counts.push_back(entry.second);
    counts.push_back(r.best_certified);
    for (int64_t count : {r.bab_certified, r.bab_runs, r.bab_unsat, r.bab_sat, r.bab_timeouts, r.bab_unknown})
      counts.push_back(count);
    minima.insert(minima.end(), r.smallest_margin.begin(), r.smallest_margin.end());
  }
  comm.sum(counts.data(), counts.size());
  comm.min(minima.data(), minima.size());
  size_t c = 0, m = 0;
  report.n = counts[c++];
  report.correct = counts[c++];
  report.seconds = -double(minima[m++]);
  for (train::EvalAtRadius& r : report.radii) {
    const int64_t pgd = counts[c++];
    if (r.pgd_robust >= 0) r.pgd_robust = pgd;  // -1 (not run) on every rank stays -1
    for (auto& entry : r.certified) entry.second = counts[c++];
    const int64_t best = counts[c++];
    if (r.best_certified >= 0) r.best_certified = best;
    const int64_t bab = counts[c++];
    if (r.bab_certified >= 0) r.bab_certified = bab;  // -1 (not asked for) on every rank stays -1
    for (int64_t* count : {&r.bab_runs, &r.bab_unsat, &r.bab_sat, &r.bab_timeouts, &r.bab_unknown}) *count = counts[c++];
    for (float& margin : r.smallest_margin) margin = minima[m++];
  }
}

}  // namespace cte::dist
