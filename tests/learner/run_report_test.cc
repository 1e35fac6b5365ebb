// Tests for learner/run_report.h: progress and summary records round-trip through their files with
// every key, nulls and omissions as documented; keys a record does not know survive a rewrite;
// wrong types are Corrupt naming the key; the progress line and the derived figures are exact.
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
  EXPECT_EQ(j.size(), 40u);  // the learner's keys, best accuracy included

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
