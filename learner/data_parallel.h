// Data parallelism of the learner over PyTorch's c10d process groups, placed by torchrun-style
// environment variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so that torchrun, Slurm and
// Kubernetes launchers work unchanged. Gloo only: NCCL is refused (see DataParallelBackend). Each
// rank computes the gradient of its shard of a batch against the batch's global normalisers
// (RlStepOptions::data_parallel), the gradients are summed across ranks before the optimiser
// step, and every rank takes the same step: the update equals one process's on the whole batch.
// c10d stays inside data_parallel.cc (its API differs between LibTorch 1.13 and 2.x).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/config.h"
#include "core/status.h"

namespace chainrl::learner {

// This process's place in the job. WORLD_SIZE unset (or 1): a single process, nothing else read.
struct RankInfo {
  int rank = 0;
  int world_size = 1;
  std::string master_addr;  // where rank 0 hosts the rendezvous store
  int master_port = 0;
};
// InvalidArgument naming the variable and its value for a malformed or missing RANK, WORLD_SIZE,
// MASTER_ADDR or MASTER_PORT, or a rank outside [0, WORLD_SIZE).
Result<RankInfo> RankInfoFromEnvironment();

struct DataParallelOptions {
  std::string backend = "auto";  // distributed.backend: auto, gloo, nccl
  std::string device = "cpu";    // run.device, which "auto" resolves against
  double timeout_seconds = 600;  // rendezvous and every collective
};

// The c10d backend that `backend` (distributed.backend) means for a learner on `device`
// (run.device): "auto" is "gloo" on the CPU and "nccl" on cuda / cuda:N. InvalidArgument naming
// distributed.backend when the result is "nccl" (this build has no NCCL process group: Debian's
// LibTorch is built without NCCL and Join creates Gloo groups only) or the name is unknown.
Result<std::string> DataParallelBackend(std::string_view backend, std::string_view device);

// distributed.backend, run.device and distributed.timeout_seconds, with the backend checked by
// DataParallelBackend (its error when it cannot be used). For a learner of more than one rank.
Result<DataParallelOptions> DataParallelOptionsFromConfig(const Config& config);

class DataParallel {
 public:
  // Joins the group: rank 0 hosts the rendezvous store at master_addr:master_port and every rank
  // connects to it. An error naming the address and the ranks when the group cannot be formed
  // within the timeout (a peer that never starts), never a hang; DataParallelBackend's
  // InvalidArgument for a backend this build lacks (NCCL).
  static Result<std::unique_ptr<DataParallel>> Join(const RankInfo& who,
                                                    const DataParallelOptions& options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return who_.rank; }
  int world_size() const { return who_.world_size; }

  // Element-wise sum (or maximum) across ranks, in place. Every rank passes tensors of the same
  // shapes and dtypes in the same order; they are reduced in one flat buffer per dtype.
  Status AllReduce(const std::vector<at::Tensor>& tensors, bool max = false);
  // The same for a few numbers (counts, normalisers, figures), reduced in float64.
  Status AllReduce(std::vector<double>* values, bool max = false);
  // Whether every rank passed the same value (e.g. a digest of its parameters); every rank gets
  // the same answer.
  Result<bool> SameOnEveryRank(uint64_t value);
  // Sums the gradients of `params` across ranks in place; a parameter without a gradient counts
  // as zeros (and gets the sum).
  Status SumGradients(const std::vector<at::Tensor>& params);
  // Copies rank 0's tensors into every other rank's, in place (same shapes and dtypes everywhere):
  // e.g. the parameters once at start, so every rank steps from the same point.
  Status Broadcast(const std::vector<at::Tensor>& tensors);

  // Messages from rank 0 to another rank through the rendezvous store, in order per receiver. A
  // receiver waits for the next one as long as it takes (rank 0 may wait minutes for rollouts
  // between steps: no collective timeout applies), and learns within a poll when rank 0 has gone.
  // Send: rank 0 only, `to` in [1, world_size); returns once the message is stored.
  Status Send(int to, const std::string& bytes);
  // Ranks other than 0: the next message. IoError naming rank 0's address when its store is
  // gone (rank 0 exited or crashed).
  Result<std::string> Receive();

 private:
  struct Impl;
  DataParallel(RankInfo who, std::unique_ptr<Impl> impl);
  // Runs `collective` on one flat buffer per dtype of `tensors` and copies the result back into
  // them; an exception from c10d becomes an IoError naming `what` and this rank.
  Status PerDtype(const std::vector<at::Tensor>& tensors, const char* what,
                  const std::function<void(std::vector<at::Tensor>&)>& collective);
  RankInfo who_;
  std::unique_ptr<Impl> impl_;
  std::vector<int64_t> sent_;  // per receiver: messages sent so far (rank 0)
  int64_t received_ = 0;       // messages received so far (other ranks)
};

// Every rank: whether every rank holds the same bytes in `params` (a CRC32C digest of them,
// compared across ranks); false after an update that went differently on some rank (a bug).
Result<bool> ParametersAgree(DataParallel& dp, const std::vector<at::Tensor>& params);
// Every rank: InvalidArgument on every rank unless all hold parameters of the same names, dtypes
// and shapes (a rank started with another model config would otherwise fail inside a collective
// with an unhelpful message, or worse). `description` names this rank's model in the error.
Status CheckSameLayout(DataParallel& dp,
                       const std::vector<std::pair<std::string, at::Tensor>>& named_params,
                       const std::string& description);

// `dp` when it spans several ranks, else null: the updates run as a single process then.
inline DataParallel* MultiRank(DataParallel* dp) {
  return dp != nullptr && dp->world_size() > 1 ? dp : nullptr;
}

}  // namespace chainrl::learner
