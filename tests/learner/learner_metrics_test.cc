// Tests for learner/learner_metrics.h against a real registry's exposition text: counters export
// the increase of cumulative counts exactly once, rare-event counters exist at 0 from the start,
// step figures land in their series, and without a registry every call is a no-op.
#include "learner/learner_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

namespace chainrl::learner {
namespace {

// The value of the first series of `name` whose labels contain `fragment`; NaN when absent.
double Value(const std::string& scrape, const std::string& name, const std::string& fragment = "") {
  std::istringstream in(scrape);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) continue;
    if (!fragment.empty() && line.find(fragment) == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nan("");
}

std::unique_ptr<metrics::MetricsRegistry> Registry() {
  auto r = metrics::MetricsRegistry::Create(
      metrics::MetricsOptions().set_run_id("t").set_role("learner").set_serve(false));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(*r);
}

TEST(LearnerMetricsTest, CountersExportEachIncreaseOnce) {
  LearnerMetrics m(Registry());
  m.Started(2);
  std::string s = m.registry()->Scrape();
  EXPECT_EQ(Value(s, "chainrl_staleness_bound_versions"), 2);
  EXPECT_EQ(Value(s, "chainrl_groups_lost_total"), 0);  // present before anything is lost
  for (int r = 0; r < static_cast<int>(wire::RejectReason::kCount); ++r)
    EXPECT_EQ(Value(s, "chainrl_messages_rejected_total",
                    std::string("reason=\"") +
                        wire::RejectReasonName(static_cast<wire::RejectReason>(r)) + "\""),
              0)
        << s;

  LoopMetrics loop;
  loop.leases_in_flight = 3;
  loop.actors_alive = 2;
  loop.groups_buffered = 5;
  loop.groups_pending = 7;
  loop.leases_reassigned = 4;
  loop.groups_lost = 1;
  loop.weights_bytes_sent = 1000;
  loop.rejected[0] = 2;
  m.LoopPassed(loop);
  loop.leases_reassigned = 6;  // cumulative: +2
  loop.weights_bytes_sent = 1500;
  m.LoopPassed(loop);
  m.LoopPassed(loop);  // nothing new
  s = m.registry()->Scrape();
  EXPECT_EQ(Value(s, "chainrl_leases_in_flight"), 3);
  EXPECT_EQ(Value(s, "chainrl_actors_alive"), 2);
  EXPECT_EQ(Value(s, "chainrl_queue_depth", "queue=\"trained_groups\""), 5);
  EXPECT_EQ(Value(s, "chainrl_queue_depth", "queue=\"pending_groups\""), 7);
  EXPECT_EQ(Value(s, "chainrl_leases_reassigned_total"), 6);
  EXPECT_EQ(Value(s, "chainrl_groups_lost_total"), 1);
  EXPECT_EQ(Value(s, "chainrl_sent_bytes_total", "channel=\"weights\""), 1500);
  const std::string reason =
      std::string("reason=\"") + wire::RejectReasonName(static_cast<wire::RejectReason>(0)) + "\"";
  EXPECT_EQ(Value(s, "chainrl_messages_rejected_total", reason), 2);
  EXPECT_GT(Value(s, "chainrl_process_resident_memory_bytes"), 0);
}

TEST(LearnerMetricsTest, StepAndEventFiguresLandInTheirSeries) {
  LearnerMetrics m(Registry());
  StepMetrics st;
  st.groups = 4;
  st.response_tokens = 321;
  st.groups_duplicated = 1;
  st.reward_components = {{"math", 0.75}};
  st.train_seconds = 2;
  st.wait_seconds = 0.5;
  st.step_seconds = 2.5;
  st.reward_mean = 0.6;
  st.loss = -0.25;
  st.token_budget = 96;
  st.entropy_mean = std::nan("");
  m.StepTrained(st);
  m.StepTrained(st);
  m.WeightsPublished(7, 0.125);
  m.TrajectoryReceived(1, 4096);
  m.SampleAccepted(12, 1.0, /*truncated=*/true);
  m.WorkSent(3, 900);
  m.PromptTokensCache(true);
  m.PromptTokensCache(false);
  m.PromptTokensCache(false);
  m.HeldOutAccuracy(0.4);
  m.CurriculumStage(2);
  const std::string s = m.registry()->Scrape();
  EXPECT_EQ(Value(s, "chainrl_steps_total"), 2);
  EXPECT_EQ(Value(s, "chainrl_training_tokens_total"), 642);
  EXPECT_EQ(Value(s, "chainrl_groups_trained_total"), 8);
  EXPECT_EQ(Value(s, "chainrl_groups_duplicated_total"), 2);
  EXPECT_EQ(Value(s, "chainrl_reward_component_mean", "component=\"math\""), 0.75);
  EXPECT_EQ(Value(s, "chainrl_phase_seconds_total", "phase=\"training\""), 4);
  EXPECT_EQ(Value(s, "chainrl_phase_seconds_total", "phase=\"waiting\""), 1);
  EXPECT_EQ(Value(s, "chainrl_phase_seconds_total", "phase=\"weight_sync\""), 0.125);
  EXPECT_EQ(Value(s, "chainrl_loss"), -0.25);
  EXPECT_EQ(Value(s, "chainrl_token_budget_tokens"), 96);
  EXPECT_TRUE(std::isnan(Value(s, "chainrl_entropy")));  // not measured: no series
  EXPECT_EQ(Value(s, "chainrl_policy_version"), 7);
  EXPECT_EQ(Value(s, "chainrl_received_bytes_total", "channel=\"trajectories\""), 4096);
  EXPECT_EQ(Value(s, "chainrl_responses_truncated_total"), 1);
  EXPECT_EQ(Value(s, "chainrl_groups_dispatched_total"), 3);
  EXPECT_EQ(Value(s, "chainrl_cache_hits_total", "cache=\"prompt_tokens\""), 1);
  EXPECT_EQ(Value(s, "chainrl_cache_misses_total", "cache=\"prompt_tokens\""), 2);
  EXPECT_EQ(Value(s, "chainrl_accuracy_ratio"), 0.4);
  EXPECT_EQ(Value(s, "chainrl_curriculum_stage"), 2);
}

TEST(LearnerMetricsTest, WithoutARegistryEveryCallIsANoOp) {
  LearnerMetrics m;
  EXPECT_EQ(m.registry(), nullptr);
  m.Started(1);
  m.LoopPassed(LoopMetrics());
  m.StepTrained(StepMetrics());
  m.PushFinal("http://127.0.0.1:1");
  SUCCEED();
}

}  // namespace
}  // namespace chainrl::learner
