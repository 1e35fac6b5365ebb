// Tests for learner/offline_preference.h with the byte tokenizer and its ChatML template: pairs
// are rendered as the policy sees them, served in the documented seeded order per epoch, cut to
// one M per batch, and a source that is not JSONL files is refused naming the keys.
#include "learner/offline_preference.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "apps/run_config.h"
#include "model/byte_tokenizer.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<rollout::PromptRenderer> Renderer() {
  const fs::path dir =
      fs::temp_directory_path() / ("chainrl_offline_pref_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_TRUE(model::WriteByteTokenizer(dir.string()).ok());
  rollout::PromptOptions o;
  o.tokenizer_dir = dir.string();
  auto r = rollout::PromptRenderer::Create(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(*r);
}

data::PreferenceExample Pair(int i, std::vector<std::string> rejected) {
  data::PreferenceExample e;
  e.id = "p" + std::to_string(i);
  e.prompt = "q" + std::to_string(i);
  e.chosen = "good" + std::to_string(i);
  e.rejected = std::move(rejected);
  return e;
}

TEST(OfflinePreferenceTest, PairsAreRenderedAndServedInTheSeededOrder) {
  auto prompts = Renderer();
  std::vector<data::PreferenceExample> data;
  for (int i = 0; i < 5; ++i) data.push_back(Pair(i, {"bad" + std::to_string(i)}));
  OfflinePreferences pairs(data, /*seed=*/4, /*shuffle=*/true);
  EXPECT_EQ(pairs.size(), 5u);
  EpochOrder order(5, 4, true, 0x9d);
  for (int64_t step = 0; step < 4; ++step) {
    auto batch = pairs.Batch(step, 3, *prompts, false);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    ASSERT_EQ(batch->size(), 3u);
    for (uint64_t i = 0; i < 3; ++i) {
      const data::PreferenceExample& e = data[order.At(static_cast<uint64_t>(step) * 3 + i)];
      data::Example ex;
      ex.id = e.id;
      ex.prompt = e.prompt;
      EXPECT_EQ((*batch)[i].prompt, *prompts->Render(ex));
      EXPECT_EQ((*batch)[i].chosen, *prompts->EncodeResponse(e.chosen));
      ASSERT_EQ((*batch)[i].rejected.size(), 1u);
      EXPECT_EQ((*batch)[i].rejected[0], *prompts->EncodeResponse(e.rejected[0]));
    }
  }
  // The response ends with the template's end of turn.
  auto first = pairs.Batch(0, 1, *prompts, false);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*first)[0].chosen.back(), model::kByteTokenizerImEnd);
}

TEST(OfflinePreferenceTest, EveryPairOfABatchHasTheSameNumberOfRejected) {
  auto prompts = Renderer();
  // Unshuffled: pairs in file order. Pair 1 has no rejected response, pair 2 only one.
  OfflinePreferences pairs(
      {Pair(0, {"a", "b"}), Pair(1, {}), Pair(2, {"c"}), Pair(3, {"d", "e", "f"})}, 1,
      /*shuffle=*/false);
  auto logo = pairs.Batch(0, 4, *prompts, /*all_rejected=*/true);
  ASSERT_TRUE(logo.ok());
  ASSERT_EQ(logo->size(), 2u);  // pair 0 (M = 2) and pair 3 cut to 2
  EXPECT_EQ((*logo)[0].rejected.size(), 2u);
  EXPECT_EQ((*logo)[1].rejected.size(), 2u);
  EXPECT_EQ((*logo)[1].rejected[1], *prompts->EncodeResponse("e"));
  // Not LOGO: the first rejected response of each; pair 1 is left out.
  OfflinePreferences dpo({Pair(0, {"a", "b"}), Pair(1, {}), Pair(2, {"c"})}, 1, false);
  auto batch = dpo.Batch(0, 3, *prompts, false);
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_EQ((*batch)[1].rejected[0], *prompts->EncodeResponse("c"));
}

TEST(OfflinePreferenceTest, OnlyJsonlFilesWithPairsAreAccepted) {
  auto task = ParseConfig("[model]\npath = \"m\"\n", "c.toml");
  ASSERT_TRUE(task.ok());
  auto refused = OfflinePreferences::Load(*task);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("needs data.source = 'jsonl' and data.train_files"),
            std::string::npos);
  const fs::path file =
      fs::temp_directory_path() / ("chainrl_offline_pref_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(file) << R"({"prompt": "q", "chosen": "a", "rejected": "b"})"
                      << "\n";
  auto c = ParseConfig("[model]\npath = \"m\"\n[data]\nsource = \"jsonl\"\ntrain_files = [\"" +
                           file.string() + "\"]\n",
                       "c.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto loaded = OfflinePreferences::Load(*c);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->size(), 1u);
  fs::remove(file);
}

}  // namespace
}  // namespace chainrl::learner
