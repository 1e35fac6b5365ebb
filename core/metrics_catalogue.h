// The catalogue of every metric chainrl exports: name, type, help text, variable labels and
// histogram buckets. It is the single source of truth; code fetches handles by these ids.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace chainrl::metrics {

// Counters (monotonic; names end in `_total`, so rate() gives a per-second figure).
enum class CounterId {
  kSteps,                 // chainrl_steps_total
  kRolloutTokens,         // chainrl_rollout_tokens_total
  kPrefillTokens,         // chainrl_prefill_tokens_total
  kTrainingTokens,        // chainrl_training_tokens_total
  kPhaseSeconds,          // chainrl_phase_seconds_total{phase}
  kGroupsDispatched,      // chainrl_groups_dispatched_total
  kGroupsTrained,         // chainrl_groups_trained_total
  kGroupsDuplicated,      // chainrl_groups_duplicated_total
  kGroupsLost,            // chainrl_groups_lost_total
  kResponsesTruncated,    // chainrl_responses_truncated_total
  kLeasesReassigned,      // chainrl_leases_reassigned_total
  kLeasesDeclined,        // chainrl_leases_declined_total
  kActorDeaths,           // chainrl_actor_deaths_total{actor_id}
  kActorRestarts,         // chainrl_actor_restarts_total{actor_id}
  kMessagesRejected,      // chainrl_messages_rejected_total{reason}
  kPeersRefused,          // chainrl_peers_refused_total{reason}
  kRewardCalls,           // chainrl_reward_calls_total{plugin}
  kRewardErrors,          // chainrl_reward_errors_total{plugin}
  kRewardTimeouts,        // chainrl_reward_timeouts_total{plugin}
  kRewardWorkerRestarts,  // chainrl_reward_worker_restarts_total{plugin}
  kRewardWorkerCpu,       // chainrl_reward_worker_cpu_seconds_total{plugin,worker}
  kCacheHits,             // chainrl_cache_hits_total{cache}
  kCacheMisses,           // chainrl_cache_misses_total{cache}
  kWeightUpdates,         // chainrl_weight_updates_total
  kSentBytes,             // chainrl_sent_bytes_total{channel}
  kReceivedBytes,         // chainrl_received_bytes_total{channel}
  kGroupsStale,           // chainrl_groups_stale_total{stage,action}
  kCount
};

// Gauges (a value in force now).
enum class GaugeId {
  kBuildInfo,            // chainrl_build_info{version} (always 1)
  kProcessStartTime,     // chainrl_process_start_time_seconds
  kResidentMemory,       // chainrl_process_resident_memory_bytes (refreshed on every scrape)
  kPolicyVersion,        // chainrl_policy_version
  kCurriculumStage,      // chainrl_curriculum_stage
  kTokenBudget,          // chainrl_token_budget_tokens
  kRewardMean,           // chainrl_reward_mean
  kRewardComponentMean,  // chainrl_reward_component_mean{component}
  kAccuracy,             // chainrl_accuracy_ratio
  kTruncation,           // chainrl_truncation_ratio
  kLoss,                 // chainrl_loss
  kKl,                   // chainrl_kl_divergence
  kEntropy,              // chainrl_entropy
  kClipFraction,         // chainrl_clip_fraction_ratio
  kGradNorm,             // chainrl_grad_norm
  kLearningRate,         // chainrl_learning_rate
  kLogprobMismatch,      // chainrl_logprob_mismatch
  kStalenessMax,         // chainrl_staleness_max_versions
  kStalenessBound,       // chainrl_staleness_bound_versions
  kTokenStalenessMean,   // chainrl_token_staleness_mean_versions
  kMismatchTokens,       // chainrl_mismatch_tokens
  kMismatchK1,           // chainrl_mismatch_k1
  kMismatchK3,           // chainrl_mismatch_k3
  kMismatchAbsMax,       // chainrl_mismatch_abs_max
  kMismatchRatio,        // chainrl_mismatch_ratio{q}
  kMismatchOutside,      // chainrl_mismatch_outside_ratio{bound}
  kQueueDepth,           // chainrl_queue_depth{queue}
  kLeasesInFlight,       // chainrl_leases_in_flight
  kActorsAlive,          // chainrl_actors_alive
  kCacheBytes,           // chainrl_cache_bytes{cache}
  kRewardWorkerUp,       // chainrl_reward_worker_up{plugin,worker}
  kRewardWorkerMemory,   // chainrl_reward_worker_resident_memory_bytes{plugin,worker}
  kCount
};

// Histograms (a distribution; the quantile panels use histogram_quantile()).
enum class HistogramId {
  kReward,          // chainrl_reward
  kResponseLength,  // chainrl_response_length_tokens
  kStepDuration,    // chainrl_step_duration_seconds
  kStaleness,       // chainrl_staleness_versions
  kCount
};

enum class MetricType { kCounter, kGauge, kHistogram };

// A variable label of one metric. `allowed` empty: an open set whose values come from the
// config (components, plugins, caches, queues) and are bounded by kMaxSeriesPerMetric.
// Non-empty: the closed set of values the code may use (anything else is a bug).
struct LabelSpec {
  std::string name;
  std::vector<std::string> allowed;
};

struct MetricSpec {
  MetricType type;
  std::size_t index;  // the value of its CounterId / GaugeId / HistogramId
  std::string name;   // full exposition name, e.g. "chainrl_steps_total"
  std::string help;
  std::vector<LabelSpec> labels;
  std::vector<double> buckets;  // histograms only: increasing upper bounds (+Inf implied)
};

// Labels every series carries, set once per process (see MetricsOptions).
inline constexpr std::string_view kRunIdLabel = "run_id";
inline constexpr std::string_view kRoleLabel = "role";
inline constexpr std::string_view kActorIdLabel = "actor_id";

// Distinct label-value combinations one metric may hold; further open-set values fold into
// "other" so that a misconfiguration cannot blow up the number of series.
inline constexpr std::size_t kMaxSeriesPerMetric = 64;

// The names of the step phases (label `phase` of chainrl_phase_seconds_total).
inline constexpr std::string_view kPhaseWaiting = "waiting";
inline constexpr std::string_view kPhaseGeneration = "generation";
inline constexpr std::string_view kPhaseReward = "reward";
inline constexpr std::string_view kPhaseTraining = "training";
inline constexpr std::string_view kPhaseWeightSync = "weight_sync";

// Every metric, counters first, then gauges, then histograms, each in enum order.
// The returned reference is valid for the whole program; thread-safe.
const std::vector<MetricSpec>& Catalogue();

const MetricSpec& Spec(CounterId id);
const MetricSpec& Spec(GaugeId id);
const MetricSpec& Spec(HistogramId id);

// Checks one name against chainrl's conventions: the `chainrl_` prefix once, lower snake case,
// counters (and only counters) ending in `_total`, no reserved suffixes (_bucket/_count/_sum),
// and base units (seconds, bytes) rather than scaled ones. Returns "" if fine, else why not.
std::string NameProblem(std::string_view name, MetricType type);

const char* MetricTypeName(MetricType type);

}  // namespace chainrl::metrics
