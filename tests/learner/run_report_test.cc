// Tests for learner/run_report.h: progress and summary records round-trip through their files with
// every key, nulls and omissions as documented; keys a record does not know survive a rewrite;
// wrong types are Corrupt naming the key; the progress line and the derived figures are exact; the
// records' figures taken from the run's state and the ledger's counts are exactly those.
#include "learner/run_report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace chainrl::learner {
namespace {

using nlohmann::json;

std::string TempDir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("chainrl-run-report-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

json History() {
  return json::array({{{"phase", "sft"}, {"sft_step", 1}, {"loss", 2.0}},
                      {{"phase", "rl"},
                       {"step", 1},
                       {"mean_length", 10.0},
                       {"train_seconds", 1.0},
                       {"wait_seconds", 1.0}},
                      {{"phase", "rl"},
                       {"step", 2},
                       {"mean_length", 20.0},
                       {"train_seconds", 2.0},
                       {"wait_seconds", 0.0}},
                      {{"phase", "rl"},
                       {"step", 3},
                       {"mean_length", 30.0},
                       {"train_seconds", 3.0},
                       {"wait_seconds", 1.0},
                       {"reward", 0.5},
                       {"accuracy", 0.25},
                       {"rollout_tokens_per_s", 123.0},
                       {"loss", 0.75}}});
}

TEST(RunReportTest, DerivedFiguresAreExact) {
  const json h = History();
  // Mean of (2, 2, 4) seconds per step, times 10 steps left.
  EXPECT_DOUBLE_EQ(*EtaSeconds(h, 10), 80.0 / 3.0 * 1.0);
  EXPECT_DOUBLE_EQ(*EtaSeconds(h, 10, /*window=*/1), 40.0);
  EXPECT_FALSE(EtaSeconds(json::array({h[0]}), 10).has_value());
  EXPECT_EQ(SmoothedLengths(h, 2), (std::vector<double>{15.0, 25.0}));
  EXPECT_EQ(SmoothedLengths(h, 5), (std::vector<double>{20.0}));
  EXPECT_TRUE(SmoothedLengths(json::array(), 5).empty());
}

TEST(RunReportTest, ProgressFromRunTakesWhereTheRunIsAndItsLatestFigures) {
  RunState run;
  run.step = 3;
  run.sft_step = 1;
  run.version = 4;
  run.history = History();
  run.evals = json::array({{{"label", "periodic"}, {"step", 2}, {"accuracy", 0.4}}});
  const ProgressRecord p = ProgressFromRun("rl", run, 13);
  EXPECT_EQ(p.phase, "rl");
  EXPECT_EQ(p.step, 3);
  EXPECT_EQ(p.total_steps, 13);
  EXPECT_EQ(p.sft_step, 1);
  EXPECT_EQ(p.version, 4);
  EXPECT_EQ(p.reward, 0.5);
  EXPECT_EQ(p.accuracy, 0.25);
  EXPECT_EQ(p.mean_length, 30.0);
  EXPECT_EQ(p.rollout_tokens_per_s, 123.0);
  EXPECT_EQ(p.loss, 0.75);
  EXPECT_DOUBLE_EQ(*p.eta_seconds, 80.0 / 3.0);  // (2 + 2 + 4) / 3 s times 10 steps left
  EXPECT_EQ(p.eval_accuracy, 0.4);
  EXPECT_EQ(p.budget, 0);  // the caller's
  // No ETA outside RL or before the first step; an evaluation without accuracy gives none.
  EXPECT_FALSE(ProgressFromRun("sft", run, 13).eta_seconds.has_value());
  run.step = 0;
  run.evals = json::array({{{"label", "after_sft"}, {"accuracy", nullptr}}});
  const ProgressRecord first = ProgressFromRun("rl", run, 13);
  EXPECT_FALSE(first.eta_seconds.has_value());
  EXPECT_FALSE(first.eval_accuracy.has_value());
}

TEST(RunReportTest, SummaryFromRunTakesTheRunsAndTheLedgersCounts) {
  RunState run;
  run.step = 3;
  run.sft_step = 2;
  run.version = 3;
  run.tokens_trained = 900;
  run.groups_duplicated = 1;
  run.groups_filtered = 4;
  run.stale_dropped = 5;
  run.samples_multi_version = 6;
  run.gen_limit_steps = 7;
  run.trained = {1, 2, 3, 8};
  run.history = History();
  run.sft_eval = {{"label", "after_sft"}, {"step", 0}, {"accuracy", 0.1}, {"mean_length", 50.0}};
  run.evals = json::array({run.sft_eval,
                           {{"label", "periodic"}, {"step", 2}, {"accuracy", 0.6}},
                           {{"label", "after_rl"}, {"step", 3}, {"accuracy", 0.5}}});
  LedgerCounters k;
  k.dispatched = 20;
  k.completed = 9;
  k.reassigned = 2;
  k.duplicates_discarded = 3;
  k.unknown_discarded = 4;
  k.lost = 1;
  k.segments_continued = 11;
  k.actors_declared_dead = 2;
  const json final_eval = {{"accuracy", 0.5}, {"mean_length", 25.0}};
  const RunSummary s = SummaryFromRun(run, k, final_eval);
  EXPECT_EQ(s.steps, 3);
  EXPECT_EQ(s.sft_steps, 2);
  EXPECT_EQ(s.policy_version, 3);
  EXPECT_EQ(s.groups_dispatched, 20);
  EXPECT_EQ(s.groups_accepted, 9);
  EXPECT_EQ(s.groups_trained, 4);
  EXPECT_EQ(s.groups_duplicated, 1);
  EXPECT_EQ(s.groups_lost, 1);
  EXPECT_EQ(s.groups_filtered, 4);
  EXPECT_EQ(s.steps_at_gen_limit, 7);
  EXPECT_EQ(s.leases_reassigned, 2);
  EXPECT_EQ(s.results_discarded_duplicate, 3);
  EXPECT_EQ(s.results_discarded_unknown, 4);
  EXPECT_EQ(s.results_dropped_stale, 5);
  EXPECT_EQ(s.samples_multi_version, 6);
  EXPECT_EQ(s.segments_continued, 11);
  EXPECT_EQ(s.actors_declared_dead, 2);
  EXPECT_EQ(s.tokens_trained, 900);
  EXPECT_EQ(s.accuracy_after_sft, 0.1);
  EXPECT_EQ(s.mean_length_after_sft, 50.0);
  EXPECT_EQ(s.accuracy_after_rl, 0.5);
  EXPECT_EQ(s.mean_length_after_rl, 25.0);
  EXPECT_EQ(s.mean_length_peak, 20.0);  // fewer than 5 RL steps: their mean
  EXPECT_EQ(s.mean_length_final, 20.0);
  EXPECT_EQ(s.evals.size(), 3u);
  EXPECT_EQ(s.final_step["step"], 3);
  EXPECT_EQ(s.accuracy_best, 0.6);
  EXPECT_EQ(s.accuracy_best_step, 2);
  EXPECT_EQ(s.accuracy_best_label, "periodic");
  EXPECT_TRUE(s.run.empty());  // the caller's
  EXPECT_EQ(s.learner_ranks, 1);

  const RunSummary empty = SummaryFromRun(RunState(), LedgerCounters(), nullptr);
  EXPECT_FALSE(empty.accuracy_after_sft.has_value());
  EXPECT_FALSE(empty.accuracy_after_rl.has_value());
  EXPECT_FALSE(empty.mean_length_peak.has_value());
  EXPECT_TRUE(empty.final_step.is_null());
  EXPECT_FALSE(empty.accuracy_best.has_value());
}

TEST(RunReportTest, ProgressRoundTripsAndMakesTheLauncherLine) {
  ProgressRecord p;
  p.phase = "rl";
  p.step = 3;
  p.total_steps = 10;
  p.budget = 64;
  p.actors = 2;
  p.TakeLatestStep(History());
  p.eta_seconds = 125;
  EXPECT_EQ(*p.reward, 0.5);
  EXPECT_EQ(*p.loss, 0.75);
  EXPECT_EQ(*p.mean_length, 30.0);
  EXPECT_EQ(p.Line(),
            "[rl] step 3/10  reward 0.500  acc 25.0%  len 30.0  budget 64  123 tok/s  actors 2  "
            "ETA 2m05s");
  const std::string dir = TempDir("progress");
  ASSERT_TRUE(WriteProgress(dir, p).ok());
  auto back = ReadProgress(dir);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), p.ToJson());
  EXPECT_EQ(back->Line(), p.Line());
  // Figures not known are omitted, not written as 0.
  ProgressRecord sft;
  sft.phase = "sft";
  sft.sft_step = 4;
  sft.sft_steps = 8;
  const json j = sft.ToJson();
  EXPECT_FALSE(j.contains("reward"));
  EXPECT_FALSE(j.contains("eta_seconds"));
  EXPECT_EQ(j["sft_step"], 4);
  EXPECT_EQ(sft.Line(), "[sft] step 4/8  loss 0.000");
  ProgressRecord eval;
  eval.phase = "eval";
  eval.step = 7;
  EXPECT_EQ(eval.Line(), "[eval] evaluating on held-out examples (step 7)");

  auto wrong = ProgressRecord::FromJson({{"phase", "rl"}, {"step", "three"}});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().message(), "progress record: step: expected a number, got string");
  EXPECT_EQ(ReadProgress(dir + "/none").status().code(), StatusCode::kNotFound);
}

TEST(RunReportTest, SummaryRoundTripsWithNullsOmissionsAndUnknownKeys) {
  RunSummary s;
  s.run = "r";
  s.completed = true;
  s.steps = 12;
  s.groups_trained = 48;
  s.accuracy_after_sft = 0.25;
  s.evals = json::array({{{"label", "after_sft"}, {"step", 0}, {"accuracy", 0.25}},
                         {{"label", "periodic"}, {"step", 6}, {"accuracy", 0.5}},
                         {{"label", "after_rl"}, {"step", 12}, {"accuracy", 0.5}}});
  s.SetBestAccuracy();
  EXPECT_EQ(*s.accuracy_best, 0.5);
  EXPECT_EQ(*s.accuracy_best_step, 6);  // the first evaluation at the best accuracy
  EXPECT_EQ(*s.accuracy_best_label, "periodic");
  json j = s.ToJson();
  EXPECT_TRUE(j["accuracy_after_rl"].is_null());  // null: a figure the run could not take
  EXPECT_TRUE(j["prompt_embedding_cache"].is_null());
  EXPECT_FALSE(j.contains("final_step"));  // omitted until known
  EXPECT_FALSE(j.contains("ranks_parameters_identical"));
  EXPECT_FALSE(j.contains("actor_restarts"));
  EXPECT_EQ(j["groups_trained"], 48);
  EXPECT_EQ(j.size(), 46u);  // the learner's keys, best accuracy included

  // The launcher reads it back, adds its figures and writes it; a key it does not know survives.
  const std::string dir = TempDir("summary");
  j["a_future_key"] = {1, 2};
  std::ofstream(SummaryPath(dir)) << j.dump(1);
  auto back = ReadSummary(dir);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->groups_trained, 48);
  EXPECT_FALSE(back->accuracy_after_rl.has_value());
  back->actor_restarts = 1;
  back->learner_restarts = 0;
  back->launcher_wall_seconds = 9.5;
  back->actors = {{"actor-0", {{"restarts", 1}, {"deaths", 1}}}};
  ASSERT_TRUE(WriteSummary(dir, *back).ok());
  auto again = ReadSummary(dir);
  ASSERT_TRUE(again.ok());
  const json k = again->ToJson();
  EXPECT_EQ(k["a_future_key"], json({1, 2}));
  EXPECT_EQ(k["actor_restarts"], 1);
  EXPECT_EQ(k["actors"]["actor-0"]["deaths"], 1);
  EXPECT_EQ(k["launcher_wall_seconds"], 9.5);
  json without_launcher = k;
  for (const char* key :
       {"actor_restarts", "actor_deaths", "actors", "learner_restarts", "launcher_wall_seconds"})
    without_launcher.erase(key);
  EXPECT_EQ(without_launcher, j);

  auto wrong = RunSummary::FromJson({{"completed", "yes"}});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().message(), "summary: completed: expected a boolean, got string");
  std::ofstream(SummaryPath(dir)) << "[1, 2";
  EXPECT_EQ(ReadSummary(dir).status().code(), StatusCode::kCorrupt);
}

}  // namespace
}  // namespace chainrl::learner
