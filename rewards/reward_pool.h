// RewardPool: scores batches of responses with a weighted composition of rewards, built-ins
// in-process and plugins (shared libraries, chainrl/reward.h) in a pool of isolated worker
// processes with per-reward deadlines. No LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace chainrl::rewards {

// The largest |score| a reward may give: a larger one (1e308 from a broken plugin) would swamp
// every advantage of its group. A score beyond it is an error like a NaN (error_score instead).
inline constexpr double kMaxAbsRewardScore = 1e6;

// One reward of the composition; one TOML table `[[rewards]]` per spec, keys named as the fields.
struct RewardSpec {
  // Unique name used in metrics, logs and results (TOML `name`; required).
  std::string name;
  // A built-in reward ("math", "exact_match", "regex", "format", "length", "task"; see
  // rewards/builtin_rewards.h) or "plugin" for a shared library (TOML `kind`; required).
  std::string kind;
  // For kind "plugin": the shared library's path (TOML `path`; required for plugins, otherwise
  // empty). A relative path is resolved against the current directory; nothing else is searched.
  std::string path;
  // Weight of this reward in the total (TOML `weight`; default 1).
  double weight = 1;
  // Wall-clock limit of one plugin call, which scores at most `batch_size` samples (TOML
  // `deadline_seconds`; default 10). Past it the worker is killed and restarted.
  double deadline_seconds = 10;
  // Score given to a sample whose scoring failed: crash, deadline, error, NaN (TOML
  // `error_score`; default 0).
  double error_score = 0;
  // Samples per plugin call (TOML `batch_size`; default 8). Ignored by built-ins.
  int batch_size = 8;
  // The reward's own options as a TOML document (TOML: the sub-table `options`, re-serialised;
  // default empty). Passed to the plugin's init, or parsed by the built-in.
  std::string options_toml;

  // Chained setters, one per field.
  // clang-format off
  RewardSpec& set_name(std::string v) { name = std::move(v); return *this; }
  RewardSpec& set_kind(std::string v) { kind = std::move(v); return *this; }
  RewardSpec& set_path(std::string v) { path = std::move(v); return *this; }
  RewardSpec& set_weight(double v) { weight = v; return *this; }
  RewardSpec& set_deadline_seconds(double v) { deadline_seconds = v; return *this; }
  RewardSpec& set_error_score(double v) { error_score = v; return *this; }
  RewardSpec& set_batch_size(int v) { batch_size = v; return *this; }
  RewardSpec& set_options_toml(std::string v) { options_toml = std::move(v); return *this; }
  // clang-format on
};

// Options of the pool as a whole (TOML table `[rewards_common]`).
struct PoolOptions {
  // The worker executable (TOML `worker_path`; default empty = the CHAINRL_REWARD_WORKER
  // environment variable if set, else `chainrl-reward-worker` next to the running executable).
  std::string worker_path;
  // Worker processes per plugin reward, scoring calls in parallel (TOML `workers_per_plugin`;
  // default 2).
  int workers_per_plugin = 2;
  // Limit for a worker to start, load the plugin and run its init (TOML `init_deadline_seconds`;
  // default 10).
  double init_deadline_seconds = 10;
  // How a worker's plugin is kept from leaving processes behind (TOML `contain`; default "auto"):
  // "cgroup" puts each worker in its own cgroup v2 and kills the whole cgroup with it (needs root
  // or a delegated subtree; Create fails naming why when it cannot), "process_group" kills only
  // the worker's process group (a child that calls setsid escapes), "auto" uses cgroups when it
  // can and says at start which it uses.
  std::string contain = "auto";

  // clang-format off
  PoolOptions& set_worker_path(std::string v) { worker_path = std::move(v); return *this; }
  PoolOptions& set_workers_per_plugin(int v) { workers_per_plugin = v; return *this; }
  PoolOptions& set_init_deadline_seconds(double v) { init_deadline_seconds = v; return *this; }
  PoolOptions& set_contain(std::string v) { contain = std::move(v); return *this; }
  // clang-format on
};

// One sample to score (see chainrl_reward_input in chainrl/reward.h for each field's meaning).
struct RewardInput {
  std::string example_id;
  std::string prompt;
  std::string response;
  std::vector<int32_t> token_ids;
  std::string finish_reason = "stop";
  std::string answer_json = "null";  // a JSON value
  std::string metadata_json = "{}";  // a JSON object
};

// Why a sample's reward is an error.
enum class RewardError {
  kNone = 0,
  kCrash,        // the worker process died (signal or exit) while scoring it
  kTimeout,      // the call exceeded deadline_seconds; the worker was killed
  kPluginError,  // the plugin reported an error or threw an exception for it
  kNotFinite,    // the score was NaN, infinite or beyond kMaxAbsRewardScore
  kWorker,       // no worker could be started (or it broke the protocol)
};
const char* RewardErrorName(RewardError e);

// One reward's outcome for one sample.
struct RewardOutcome {
  double score = 0;  // the reward's score, error_score when error != kNone (unweighted)
  RewardError error = RewardError::kNone;
  std::string message;  // diagnostic from the reward or describing the error; may be empty
  std::vector<std::pair<std::string, double>> components;  // named metrics from the reward
};

// All rewards' outcomes for one sample; `rewards[k]` belongs to the k-th RewardSpec.
struct RewardResult {
  double total = 0;  // sum over k of weight_k * rewards[k].score
  std::vector<RewardOutcome> rewards;
  bool any_error() const;
  // The verdict of the first reward: it scored >= 1 without error. Held-out accuracy, the
  // learner's accuracy and the length-shaping methods that reward correct answers all use it.
  bool correct() const;
};

// Event counters of one reward since the pool was created. A sample that crashed a worker in a
// batch is retried alone, so one bad sample may count two crashes (see RewardPool::Score).
struct RewardStats {
  int64_t samples = 0;          // samples scored (successfully or not)
  int64_t calls = 0;            // plugin score calls (including retries); built-ins: samples
  int64_t errors = 0;           // samples given error_score, whatever the cause
  int64_t crashes = 0;          // worker processes that died while scoring
  int64_t timeouts = 0;         // plugin calls killed at the deadline
  int64_t plugin_errors = 0;    // samples the plugin reported as errors or threw on
  int64_t not_finite = 0;       // samples whose score was NaN or infinite
  int64_t worker_restarts = 0;  // workers started to replace one that died or was killed
};

// One worker process of a plugin reward, as it is now.
struct WorkerProcess {
  std::string reward;  // the reward's name
  int index = 0;       // 0 .. workers_per_plugin - 1
  int pid = -1;        // -1 while none runs (not started yet, or killed and not yet replaced)
};

// Thread safety: Score() calls are serialised by an internal mutex (one batch at a time); stats()
// and specs() may be called from any thread at any time. Destroying the pool kills its workers.
class RewardPool {
 public:
  // Validates every spec and starts one worker per plugin, which loads the library and runs its
  // init. Returns InvalidArgument naming the reward (and path) when a spec is malformed, a kind is
  // unknown, a built-in's options are wrong, or a plugin's file does not exist, is not a shared
  // library, lacks the entry point, was built for another ABI version, or fails init; and
  // NotFound when the worker executable cannot be found.
  static Result<std::unique_ptr<RewardPool>> Create(std::vector<RewardSpec> specs,
                                                    PoolOptions options = {});
  ~RewardPool();
  RewardPool(const RewardPool&) = delete;
  RewardPool& operator=(const RewardPool&) = delete;

  // Scores every input with every reward; result i belongs to inputs[i]. Failures of a plugin
  // (crash, deadline, error, NaN) never fail the call: they give that sample the reward's
  // error_score, are counted in stats() and logged with the reward name and example id. When a
  // worker crashes or times out on a batch of several samples, each of them is retried alone on a
  // fresh worker (so a crash is attributed to the sample that causes it and the others keep their
  // scores); a sample that fails alone is an error. Returns an error only on a broken invariant of
  // the pool itself (never for plugin behaviour).
  Result<std::vector<RewardResult>> Score(const std::vector<RewardInput>& inputs);

  // Counters per reward name.
  std::map<std::string, RewardStats> stats() const;
  // Every worker slot of every plugin reward, in spec then index order. Any thread.
  std::vector<WorkerProcess> workers() const;
  const std::vector<RewardSpec>& specs() const { return specs_; }

  // The worker executable the pool uses (resolved from PoolOptions at Create).
  const std::string& worker_path() const { return worker_path_; }

  struct Impl;

 private:
  RewardPool() = default;
  std::vector<RewardSpec> specs_;
  std::string worker_path_;
  std::unique_ptr<Impl> impl_;
  std::mutex score_mu_;
};

}  // namespace chainrl::rewards
