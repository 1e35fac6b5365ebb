// The learner process's Prometheus figures, named by what happened (a step was trained, a
// trajectory arrived, weights were published...), so the process says what it did and this part
// knows the series. Without a registry (metrics.enabled = false) every call does nothing.
// Not thread-safe. No LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/curve.h"
#include "core/metrics.h"
#include "core/wire.h"
#include "learner/policy_mismatch.h"

namespace chainrl::learner {

// The figures of one trained RL (or online preference) step.
struct StepMetrics {
  double groups = 0;
  int64_t response_tokens = 0;
  int64_t groups_duplicated = 0;                    // this step's
  std::map<std::string, double> reward_components;  // component -> mean over the step's groups
  double train_seconds = 0, wait_seconds = 0, step_seconds = 0;
  double reward_mean = 0, truncated_fraction = 0;
  double loss = 0, approx_kl = 0, clip_fraction = 0, grad_norm = 0, lr = 0;
  int64_t max_staleness = 0, token_budget = 0;
  PolicyMismatch mismatch;  // at equal weights, and per-token staleness
  double entropy_mean = 0;  // NaN when not measured
};

// What the dispatch loop sees after a pass (Pump): gauges, and cumulative counts of which the
// counters get the increase since the last pass.
struct LoopMetrics {
  size_t leases_in_flight = 0, actors_alive = 0, groups_buffered = 0, groups_pending = 0;
  uint64_t leases_reassigned = 0, groups_lost = 0, weights_bytes_sent = 0;
  uint64_t rejected[static_cast<int>(wire::RejectReason::kCount)] = {};  // per reason, all channels
  uint64_t refused[transport::kPeerRefusalKinds] = {};  // peers turned away, per PeerRefusal
};

class LearnerMetrics {
 public:
  explicit LearnerMetrics(std::unique_ptr<metrics::MetricsRegistry> registry = nullptr);

  // The registry, or null when metrics are off (for the parts that export their own series).
  metrics::MetricsRegistry* registry() const { return registry_.get(); }

  // The run starts: the staleness bound, and counters of rare events at 0 so that dashboards show
  // "none" rather than "no data".
  void Started(int64_t staleness_bound);
  void CurriculumStage(size_t index);
  void PromptTokensCache(bool hit);
  void HeldOutAccuracy(double accuracy);
  void WeightsPublished(int64_t version, double seconds);
  void TrajectoryReceived(int64_t staleness, size_t bytes);
  // `n` groups past learner.max_off_policy_steps, seen at "intake" or "training", "dropped" (and
  // generated again) or "trained" (stale_policy flag or correct).
  void GroupsStale(const char* stage, const char* action, size_t n);
  void SampleAccepted(size_t tokens, double reward, bool truncated);
  void WorkSent(size_t groups, size_t bytes);
  void LoopPassed(const LoopMetrics& m);
  void StepTrained(const StepMetrics& m);
  void PreferenceStepTrained(double loss, double grad_norm, double lr);
  // The final figures to metrics.pushgateway (`url`; nothing when empty); a failure is logged.
  void PushFinal(const std::string& url) const;

 private:
  std::unique_ptr<metrics::MetricsRegistry> registry_;
  LoopMetrics seen_;  // cumulative counts already exported
};

}  // namespace chainrl::learner
