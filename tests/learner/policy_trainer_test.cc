// Tests for learner/policy_trainer.h on a tiny model written to disk: the optimiser of each phase
// is built from its keys, a curriculum stage changes the config, options and optimiser at its
// step and only then, a failing caller's part leaves everything as it was, and a stage that
// would be ignored is refused when the trainer is created.
#include "learner/policy_trainer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

#include "apps/run_config.h"
#include "model/model_init.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;

std::string ModelDir() {
  static const std::string dir = [] {
    const fs::path d =
        fs::temp_directory_path() / ("chainrl_policy_trainer_" + std::to_string(::getpid()));
    fs::remove_all(d);
    model::InitModelSpec spec;
    spec.layers = 1;
    spec.hidden = 32;
    spec.heads = 2;
    spec.intermediate = 64;
    spec.tokenizer = "bytes";
    EXPECT_TRUE(model::InitModelDir(spec, d.string()).ok());
    return d.string();
  }();
  return dir;
}

Result<Config> RunConfig(const std::string& stages) {
  return ParseConfig(
      "[model]\npath = \"" + ModelDir() + "\"\n[sft]\nlr = 1e-3\n[learner]\nlr = 2e-4\n" + stages,
      "t.toml");
}

// RunConfig("") with `sets` (--set KEY=VALUE) on top.
Result<Config> RunConfigWith(const std::string& stages, const std::vector<std::string>& sets) {
  return ParseConfig(
      "[model]\npath = \"" + ModelDir() + "\"\n[sft]\nlr = 1e-3\n[learner]\nlr = 2e-4\n" + stages,
      "t.toml", sets);
}

TEST(PolicyTrainerTest, PhasesAndStagesReachTheOptimiser) {
  auto c = RunConfig(
      "[[curriculum.stages]]\nname = \"slow\"\nstart_step = 3\n"
      "overrides = { \"learner.lr\" = 5e-5, \"rollout.temperature\" = 0.5 }\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto t = PolicyTrainer::Create(*c, nullptr);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  PolicyTrainer& tr = **t;
  ASSERT_TRUE(tr.LoadPolicy().ok());
  EXPECT_EQ(tr.optimizer(), nullptr);
  ASSERT_TRUE(tr.BeginSft().ok());
  ASSERT_NE(tr.optimizer(), nullptr);
  EXPECT_DOUBLE_EQ(tr.optimizer()->options().lr, 1e-3);
  tr.EndSft();
  EXPECT_EQ(tr.optimizer(), nullptr);
  ASSERT_TRUE(tr.BeginTraining().ok());
  EXPECT_DOUBLE_EQ(tr.optimizer()->options().lr, 2e-4);

  // The base stage applies at step 0 (the first call), nothing changes until step 3.
  auto first = tr.ApplyStage(0);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, std::optional<size_t>(0));
  EXPECT_EQ(tr.stage_name(0), "base");
  EXPECT_FALSE(tr.ApplyStage(2)->has_value());
  // A caller's part that fails leaves the stage unapplied.
  auto refused = tr.ApplyStage(3, [](const Config&) { return InvalidArgument("no"); });
  ASSERT_FALSE(refused.ok());
  EXPECT_DOUBLE_EQ(tr.config().GetFloat("rollout.temperature"), 1.0);
  EXPECT_DOUBLE_EQ(tr.optimizer()->options().lr, 2e-4);
  double seen = 0;
  auto slow = tr.ApplyStage(3, [&seen](const Config& next) {
    seen = next.GetFloat("learner.lr");
    return Status::Ok();
  });
  ASSERT_TRUE(slow.ok()) << slow.status().ToString();
  EXPECT_EQ(*slow, std::optional<size_t>(1));
  EXPECT_EQ(tr.stage_name(1), "slow");
  EXPECT_DOUBLE_EQ(seen, 5e-5);
  EXPECT_DOUBLE_EQ(tr.config().GetFloat("rollout.temperature"), 0.5);
  EXPECT_DOUBLE_EQ(tr.options().optimizer.lr, 5e-5);
  EXPECT_DOUBLE_EQ(tr.optimizer()->options().lr, 5e-5);
  EXPECT_FALSE(tr.ApplyStage(10)->has_value());
}

TEST(PolicyTrainerTest, AStageThatWouldBeIgnoredIsRefusedAtCreation) {
  auto c = RunConfig(
      "[[curriculum.stages]]\nname = \"bigger\"\nstart_step = 3\n"
      "overrides = { \"rollout.max_batch_size\" = 64 }\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto t = PolicyTrainer::Create(*c, nullptr);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(),
            "curriculum.stages 'bigger': rollout.max_batch_size cannot change in a stage: it is "
            "read once at start-up");
}

TEST(PolicyTrainerTest, AnUpdateChangesTheParameters) {
  auto c = RunConfig("");
  ASSERT_TRUE(c.ok());
  auto t = PolicyTrainer::Create(*c, nullptr);
  ASSERT_TRUE(t.ok());
  PolicyTrainer& tr = **t;
  ASSERT_TRUE(tr.LoadPolicy().ok());
  ASSERT_TRUE(tr.BeginSft().ok());
  const torch::Tensor before = tr.model().parameters()[0].detach().clone();
  std::vector<SftExample> batch = {{{1, 2, 3}, {4, 5, 6}}, {{7, 8}, {9}}};
  auto loss = tr.SftUpdate(batch);
  ASSERT_TRUE(loss.ok()) << loss.status().ToString();
  EXPECT_GT(*loss, 0.0);
  EXPECT_FALSE(torch::equal(before, tr.model().parameters()[0]));
}

// [lora]: the adapters alone are trained (float32, whatever holds the base), the base stays
// frozen and, with lora.base_dtype = "compute", in the compute dtype; the KL reference is the
// policy itself (no copy); dropout with streaming backprop is refused at creation and in a stage.
TEST(PolicyTrainerTest, LoraTrainsTheAdaptersAloneOnAFrozenBase) {
  auto c = RunConfigWith(
      "", {"model.compute_dtype=\"bfloat16\"", "algorithm.kl_coef=0.01", "lora.enabled=true",
           "lora.rank=4", "lora.targets=[\"q_proj\", \"up_proj\"]", "lora.base_dtype=\"compute\""});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto t = PolicyTrainer::Create(*c, nullptr);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  PolicyTrainer& tr = **t;
  ASSERT_TRUE(tr.LoadPolicy().ok());
  model::DecoderModel& m = tr.model();
  ASSERT_TRUE(m.has_lora());
  EXPECT_EQ(m.options().dtype, torch::kBFloat16);
  for (const auto& p : m.parameters()) {
    EXPECT_FALSE(p.requires_grad());
    EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  }
  const auto adapters = m.LoraParameters();
  ASSERT_EQ(adapters.size(), 4u);  // 1 layer x 2 projections x (A, B)
  for (const auto& [name, a] : adapters) EXPECT_EQ(a.scalar_type(), torch::kFloat32) << name;
  ASSERT_TRUE(tr.BeginSft().ok());
  const torch::Tensor base_before = m.parameters()[0].detach().clone();
  const torch::Tensor b_before = adapters[1].second.detach().clone();  // lora_B, zero at first
  std::vector<SftExample> batch = {{{1, 2, 3}, {4, 5, 6}}, {{7, 8}, {9}}};
  ASSERT_TRUE(tr.SftUpdate(batch).ok());
  EXPECT_TRUE(torch::equal(base_before, m.parameters()[0]));
  EXPECT_FALSE(torch::equal(b_before, adapters[1].second));
  tr.EndSft();
  ASSERT_TRUE(tr.BeginTraining().ok());
  size_t optimised = 0;
  for (auto& group : tr.optimizer()->adamw().param_groups()) optimised += group.params().size();
  EXPECT_EQ(optimised, 4u);  // the adapters alone

  auto dropout = RunConfigWith("", {"lora.enabled=true", "lora.dropout=0.1"});
  ASSERT_TRUE(dropout.ok());
  auto refused = PolicyTrainer::Create(*dropout, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("lora.dropout = 0.1"), std::string::npos)
      << refused.status().message();
  auto staged = RunConfigWith(
      "[[curriculum.stages]]\nname = \"s\"\nstart_step = 2\n"
      "overrides = { \"learner.streambp\" = true }\n",
      {"learner.streambp=false", "lora.enabled=true", "lora.dropout=0.1"});
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  refused = PolicyTrainer::Create(*staged, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("curriculum.stages 's'"), std::string::npos)
      << refused.status().message();
}

}  // namespace
}  // namespace chainrl::learner
