// The learner's Prometheus figures (see learner_metrics.h).
#include "learner/learner_metrics.h"

#include <cmath>
#include <cstdio>
#include <utility>

namespace chainrl::learner {

using metrics::CounterId;
using metrics::GaugeId;
using metrics::HistogramId;

LearnerMetrics::LearnerMetrics(std::unique_ptr<metrics::MetricsRegistry> registry)
    : registry_(std::move(registry)) {}

void LearnerMetrics::Started(int64_t staleness_bound) {
  if (!registry_) return;
  registry_->gauge(GaugeId::kStalenessBound).Set(static_cast<double>(staleness_bound));
  for (auto id : {CounterId::kGroupsDuplicated, CounterId::kGroupsLost,
                  CounterId::kLeasesReassigned, CounterId::kResponsesTruncated})
    registry_->counter(id).Increment(0);
  for (const char* stage : {"intake", "training"})
    for (const char* action : {"dropped", "trained"}) GroupsStale(stage, action, 0);
  for (int r = 0; r < static_cast<int>(wire::RejectReason::kCount); ++r)
    registry_
        ->counter(CounterId::kMessagesRejected,
                  {{"reason", wire::RejectReasonName(static_cast<wire::RejectReason>(r))}})
        .Increment(0);
}

void LearnerMetrics::CurriculumStage(size_t index) {
  if (registry_) registry_->gauge(GaugeId::kCurriculumStage).Set(static_cast<double>(index));
}

void LearnerMetrics::PromptTokensCache(bool hit) {
  if (registry_)
    registry_
        ->counter(hit ? CounterId::kCacheHits : CounterId::kCacheMisses,
                  {{"cache", "prompt_tokens"}})
        .Increment();
}

void LearnerMetrics::HeldOutAccuracy(double accuracy) {
  if (registry_) registry_->gauge(GaugeId::kAccuracy).Set(accuracy);
}

void LearnerMetrics::WeightsPublished(int64_t version, double seconds) {
  if (!registry_) return;
  registry_->gauge(GaugeId::kPolicyVersion).Set(static_cast<double>(version));
  registry_->counter(CounterId::kWeightUpdates).Increment();
  registry_->counter(CounterId::kPhaseSeconds, {{"phase", std::string(metrics::kPhaseWeightSync)}})
      .Increment(seconds);
}

void LearnerMetrics::TrajectoryReceived(int64_t staleness, size_t bytes) {
  if (!registry_) return;
  registry_->histogram(HistogramId::kStaleness).Observe(static_cast<double>(staleness));
  registry_->counter(CounterId::kReceivedBytes, {{"channel", "trajectories"}})
      .Increment(static_cast<double>(bytes));
}

void LearnerMetrics::GroupsStale(const char* stage, const char* action, size_t n) {
  if (registry_)
    registry_->counter(CounterId::kGroupsStale, {{"stage", stage}, {"action", action}})
        .Increment(static_cast<double>(n));
}

void LearnerMetrics::SampleAccepted(size_t tokens, double reward, bool truncated) {
  if (!registry_) return;
  registry_->histogram(HistogramId::kResponseLength).Observe(static_cast<double>(tokens));
  registry_->histogram(HistogramId::kReward).Observe(reward);
  if (truncated) registry_->counter(CounterId::kResponsesTruncated).Increment();
}

void LearnerMetrics::WorkSent(size_t groups, size_t bytes) {
  if (!registry_) return;
  registry_->counter(CounterId::kGroupsDispatched).Increment(static_cast<double>(groups));
  registry_->counter(CounterId::kSentBytes, {{"channel", "work"}})
      .Increment(static_cast<double>(bytes));
}

void LearnerMetrics::LoopPassed(const LoopMetrics& m) {
  if (!registry_) return;
  auto increase = [](uint64_t now, uint64_t& seen) {
    const double d = now > seen ? static_cast<double>(now - seen) : 0.0;
    seen = std::max(seen, now);
    return d;
  };
  for (int r = 0; r < static_cast<int>(wire::RejectReason::kCount); ++r)
    if (m.rejected[r] > seen_.rejected[r])
      registry_
          ->counter(CounterId::kMessagesRejected,
                    {{"reason", wire::RejectReasonName(static_cast<wire::RejectReason>(r))}})
          .Increment(increase(m.rejected[r], seen_.rejected[r]));
  // At 0 without CURVE too: dashboards show "none" rather than "no data".
  for (int r = 0; r < transport::kPeerRefusalKinds; ++r)
    registry_
        ->counter(CounterId::kPeersRefused,
                  {{"reason", transport::PeerRefusalName(static_cast<transport::PeerRefusal>(r))}})
        .Increment(increase(m.refused[r], seen_.refused[r]));
  registry_->gauge(GaugeId::kLeasesInFlight).Set(static_cast<double>(m.leases_in_flight));
  registry_->gauge(GaugeId::kActorsAlive).Set(static_cast<double>(m.actors_alive));
  registry_->gauge(GaugeId::kQueueDepth, {{"queue", "trained_groups"}})
      .Set(static_cast<double>(m.groups_buffered));
  registry_->gauge(GaugeId::kQueueDepth, {{"queue", "pending_groups"}})
      .Set(static_cast<double>(m.groups_pending));
  if (m.leases_reassigned > seen_.leases_reassigned)
    registry_->counter(CounterId::kLeasesReassigned)
        .Increment(increase(m.leases_reassigned, seen_.leases_reassigned));
  if (m.groups_lost > seen_.groups_lost)
    registry_->counter(CounterId::kGroupsLost)
        .Increment(increase(m.groups_lost, seen_.groups_lost));
  registry_->counter(CounterId::kSentBytes, {{"channel", "weights"}})
      .Increment(increase(m.weights_bytes_sent, seen_.weights_bytes_sent));
  registry_->gauge(GaugeId::kResidentMemory)
      .Set(static_cast<double>(metrics::ResidentMemoryBytes()));
}

void LearnerMetrics::StepTrained(const StepMetrics& m) {
  if (!registry_) return;
  registry_->counter(CounterId::kSteps).Increment();
  registry_->counter(CounterId::kTrainingTokens).Increment(static_cast<double>(m.response_tokens));
  registry_->counter(CounterId::kGroupsTrained).Increment(m.groups);
  registry_->counter(CounterId::kGroupsDuplicated)
      .Increment(static_cast<double>(m.groups_duplicated));
  for (const auto& [name, mean] : m.reward_components)
    registry_->gauge(GaugeId::kRewardComponentMean, {{"component", name}}).Set(mean);
  registry_->counter(CounterId::kPhaseSeconds, {{"phase", std::string(metrics::kPhaseTraining)}})
      .Increment(m.train_seconds);
  registry_->counter(CounterId::kPhaseSeconds, {{"phase", std::string(metrics::kPhaseWaiting)}})
      .Increment(m.wait_seconds);
  registry_->histogram(HistogramId::kStepDuration).Observe(m.step_seconds);
  registry_->gauge(GaugeId::kRewardMean).Set(m.reward_mean);
  registry_->gauge(GaugeId::kTruncation).Set(m.truncated_fraction);
  registry_->gauge(GaugeId::kLoss).Set(m.loss);
  registry_->gauge(GaugeId::kKl).Set(m.approx_kl);
  registry_->gauge(GaugeId::kClipFraction).Set(m.clip_fraction);
  registry_->gauge(GaugeId::kGradNorm).Set(m.grad_norm);
  registry_->gauge(GaugeId::kLearningRate).Set(m.lr);
  registry_->gauge(GaugeId::kStalenessMax).Set(static_cast<double>(m.max_staleness));
  registry_->gauge(GaugeId::kTokenBudget).Set(static_cast<double>(m.token_budget));
  if (!std::isnan(m.entropy_mean)) registry_->gauge(GaugeId::kEntropy).Set(m.entropy_mean);
  const PolicyMismatch& x = m.mismatch;
  registry_->gauge(GaugeId::kTokenStalenessMean).Set(x.staleness_mean());
  registry_->gauge(GaugeId::kMismatchTokens).Set(x.tokens());
  // A step with no token at equal weights measured nothing: the figures of the last step that
  // did stay (a 0 would read as "no drift" and reset the drift alert).
  if (x.tokens() <= 0) return;
  registry_->gauge(GaugeId::kLogprobMismatch).Set(x.abs_mean());
  registry_->gauge(GaugeId::kMismatchK1).Set(x.k1());
  registry_->gauge(GaugeId::kMismatchK3).Set(x.k3());
  registry_->gauge(GaugeId::kMismatchAbsMax).Set(x.abs_max());
  for (double q : kMismatchQuantiles) {
    char label[16];
    std::snprintf(label, sizeof label, "%g", q);
    registry_->gauge(GaugeId::kMismatchRatio, {{"q", label}}).Set(x.RatioQuantile(q));
  }
  const std::pair<const char*, double> outside[] = {{"token_is_cap", x.token_is_cap()},
                                                    {"token_mask", x.token_mask()},
                                                    {"sequence_is_cap", x.sequence_is_cap()},
                                                    {"sequence_mask", x.sequence_mask()},
                                                    {"geometric_mask", x.geometric_mask()}};
  for (const auto& [bound, f] : outside)
    registry_->gauge(GaugeId::kMismatchOutside, {{"bound", bound}}).Set(f);
}

void LearnerMetrics::PreferenceStepTrained(double loss, double grad_norm, double lr) {
  if (!registry_) return;
  registry_->counter(CounterId::kSteps).Increment();
  registry_->gauge(GaugeId::kLoss).Set(loss);
  registry_->gauge(GaugeId::kGradNorm).Set(grad_norm);
  registry_->gauge(GaugeId::kLearningRate).Set(lr);
}

void LearnerMetrics::PushFinal(const std::string& url) const {
  metrics::PushFinalMetrics(registry_.get(), url);
}

}  // namespace chainrl::learner
