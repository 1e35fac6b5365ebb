// Tests for learner/group_source.h: the epoch order is the documented seeded permutation (so
// checkpoints resume in the same order), groups map to fixed examples, difficulty buckets draw by
// weight and restore exactly, and bad data is refused naming the example or key; the SFT warm-up's
// order is its documented permutation; missing prompt-embedding files are named.
#include "learner/group_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include <unistd.h>

#include "apps/run_config.h"

namespace chainrl::learner {
namespace {

std::vector<data::Example> Examples(int n, const std::vector<std::string>& difficulties = {}) {
  std::vector<data::Example> out;
  for (int i = 0; i < n; ++i) {
    data::Example e;
    e.id = "ex" + std::to_string(i);
    e.prompt = "prompt " + std::to_string(i);
    if (!difficulties.empty()) e.difficulty = difficulties[i % difficulties.size()];
    out.push_back(e);
  }
  return out;
}

TEST(GroupSourceTest, SplitMix64KnownValues) {
  // splitmix64's published first output for state 0 is 0xe220a8397b1dcdaf.
  EXPECT_EQ(SplitMix64(0), 0xe220a8397b1dcdafull);
  EXPECT_NE(SplitMix64(1), SplitMix64(2));
}

TEST(GroupSourceTest, EpochOrderIsTheDocumentedPermutation) {
  const uint64_t n = 7, seed = 42, salt = 1;
  EpochOrder order(n, seed, /*shuffle=*/true, salt);
  for (uint64_t epoch = 0; epoch < 4; ++epoch) {
    std::vector<size_t> want(n);
    std::iota(want.begin(), want.end(), 0);
    std::mt19937_64 rng(SplitMix64(seed ^ SplitMix64(epoch + salt)));
    std::shuffle(want.begin(), want.end(), rng);
    for (uint64_t i = 0; i < n; ++i) EXPECT_EQ(order.At(epoch * n + i), want[i]) << epoch;
  }
  // Going back to an earlier epoch recomputes it: the order is a function of k alone.
  EpochOrder again(n, seed, true, salt);
  const size_t late = again.At(3 * n + 2);
  EXPECT_EQ(again.At(2), order.At(2));
  EXPECT_EQ(again.At(3 * n + 2), late);
  EpochOrder plain(n, seed, /*shuffle=*/false, salt);
  for (uint64_t k = 0; k < 3 * n; ++k) EXPECT_EQ(plain.At(k), k % n);
}

TEST(GroupSourceTest, EveryEpochVisitsEveryExampleOnceAndGroupsAreStable) {
  GroupOrderOptions o;
  o.seed = 7;
  auto s = GroupSource::Create(Examples(10), Examples(3), o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FALSE(s->has_buckets());
  EXPECT_TRUE(s->BucketState().is_null());
  EXPECT_EQ(s->eval().size(), 3u);
  std::vector<size_t> first;
  for (uint64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<size_t> seen;
    for (uint64_t i = 0; i < 10; ++i) seen.insert(s->IndexForGroup(epoch * 10 + i));
    EXPECT_EQ(seen.size(), 10u) << "epoch " << epoch;
  }
  for (uint64_t g = 0; g < 10; ++g) first.push_back(s->IndexForGroup(g));
  // The same options give the same groups; another seed another order.
  auto t = GroupSource::Create(Examples(10), {}, o);
  ASSERT_TRUE(t.ok());
  for (uint64_t g = 0; g < 10; ++g) EXPECT_EQ(t->IndexForGroup(g), first[g]);
  EXPECT_EQ(&s->ForGroup(4), &s->train()[first[4]]);
  o.seed = 8;
  auto u = GroupSource::Create(Examples(10), {}, o);
  ASSERT_TRUE(u.ok());
  int same = 0;
  for (uint64_t g = 0; g < 10; ++g) same += u->IndexForGroup(g) == first[g] ? 1 : 0;
  EXPECT_LT(same, 10);
}

TEST(GroupSourceTest, DifficultyBucketsDrawByWeightAndRestoreExactly) {
  GroupOrderOptions o;
  o.seed = 3;
  o.difficulty_buckets = {"easy", "hard"};
  o.bucket_weights = {1.0, 3.0};
  auto s = GroupSource::Create(Examples(40, {"easy", "hard"}), {}, o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(s->has_buckets());
  std::map<std::string, int> drawn;
  for (uint64_t g = 0; g < 400; ++g) ++drawn[s->ForGroup(g).difficulty];
  // Weights 1:3 over 400 draws: the hard share is 300 +- a few standard deviations (~8.7).
  EXPECT_NEAR(drawn["hard"], 300, 40);
  EXPECT_EQ(drawn["easy"] + drawn["hard"], 400);
  // A group drawn earlier keeps its example.
  const size_t g5 = s->IndexForGroup(5);
  EXPECT_EQ(s->IndexForGroup(5), g5);

  // Restored from its state, a fresh source continues with the same draws.
  const nlohmann::json state = s->BucketState();
  auto r = GroupSource::Create(Examples(40, {"easy", "hard"}), {}, o);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->LoadBucketState(state).ok());
  for (uint64_t g = 0; g < 450; ++g) EXPECT_EQ(r->IndexForGroup(g), s->IndexForGroup(g)) << g;

  // New weights apply to the groups not drawn yet: only easy ones after weight 0 on hard.
  ASSERT_TRUE(s->SetBucketWeights(std::vector<double>{1.0, 0.0}).ok());
  for (uint64_t g = 450; g < 500; ++g) EXPECT_EQ(s->ForGroup(g).difficulty, "easy");
  EXPECT_EQ(s->IndexForGroup(5), g5);
}

TEST(GroupSourceTest, BadDataAndStateAreRefusedNamingWhatIsWrong) {
  GroupOrderOptions o;
  EXPECT_EQ(GroupSource::Create({}, {}, o).status().message(), "data: no training examples");
  o.difficulty_buckets = {"easy", "hard"};
  auto unknown = GroupSource::Create(Examples(3, {"easy", "medium"}), {}, o);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("training example 'ex1' has difficulty 'medium'"),
            std::string::npos)
      << unknown.status().message();
  o.bucket_weights = {1.0, 2.0, 3.0};
  auto weights = GroupSource::Create(Examples(4, {"easy", "hard"}), {}, o);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().message(),
            "data.bucket_weights has 3 weights for 2 data.difficulty_buckets");
  o.bucket_weights = {1.0, -1.0};
  auto negative = GroupSource::Create(Examples(4, {"easy", "hard"}), {}, o);
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("data.bucket_weights"), std::string::npos);

  o.bucket_weights = {};
  auto s = GroupSource::Create(Examples(4, {"easy", "hard"}), {}, o);
  ASSERT_TRUE(s.ok());
  nlohmann::json state = s->BucketState();
  state["drawn"] = {0, 99};
  Status st = s->LoadBucketState(state);
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_NE(st.message().find("example index out of range"), std::string::npos);
  EXPECT_EQ(s->LoadBucketState(nlohmann::json::object()).code(), StatusCode::kCorrupt);
  EXPECT_FALSE(s->SetBucketWeights(std::vector<double>{1.0}).ok());
}

TEST(GroupSourceTest, LoadsTheConfiguredTask) {
  auto c = ParseConfig(
      "[model]\npath = \"m\"\n[data]\nsource = \"task\"\nnum_train_examples = "
      "12\nnum_eval_examples = 5\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto s = GroupSource::Load(*c);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->train().size(), 12u);
  EXPECT_EQ(s->eval().size(), 5u);
}

TEST(GroupSourceTest, SftOrderIsTheDocumentedPermutationAndWrapsAround) {
  const size_t n = 5;
  const uint64_t seed = 11;
  std::vector<size_t> want(n);
  std::iota(want.begin(), want.end(), 0);
  std::mt19937_64 rng(SplitMix64(seed ^ 0x5f7));
  std::shuffle(want.begin(), want.end(), rng);
  const SftOrder order(n, seed);
  EXPECT_EQ(order.Batch(0, 3), (std::vector<size_t>{want[0], want[1], want[2]}));
  EXPECT_EQ(order.Batch(1, 3), (std::vector<size_t>{want[3], want[4], want[0]}));
  EXPECT_EQ(order.Batch(7, 2), (std::vector<size_t>{want[4], want[0]}));  // positions 14, 15
  EXPECT_TRUE(order.Batch(2, 0).empty());

  data::Example e;
  EXPECT_EQ(SftResponse(e), "");
  e.answer = 42;
  EXPECT_EQ(SftResponse(e), "");  // a number is no response
  e.answer = "forty-two";
  EXPECT_EQ(SftResponse(e), "forty-two");
  e.solution = "6 * 7 = 42";
  EXPECT_EQ(SftResponse(e), "6 * 7 = 42");
}

TEST(GroupSourceTest, MissingPromptEmbeddingFilesAreNamed) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("chainrl-group-source-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string present = (dir / "e.safetensors").string();
  std::ofstream(present) << "x";
  auto train = Examples(3);
  auto eval = Examples(1);
  auto none = GroupSource::Create(train, eval, GroupOrderOptions());
  ASSERT_TRUE(none.ok());
  auto first = none->CheckEmbeddingFiles();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, nullptr);

  train[1].embeddings = present + "#a";
  train[2].embeddings = present + "#b";
  auto with = GroupSource::Create(train, eval, GroupOrderOptions());
  ASSERT_TRUE(with.ok());
  first = with->CheckEmbeddingFiles();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ((*first)->id, "ex1");

  eval[0].source = "held_out.jsonl:4";
  eval[0].embeddings = (dir / "missing.safetensors").string() + "#t";
  auto missing = GroupSource::Create(train, eval, GroupOrderOptions());
  ASSERT_TRUE(missing.ok());
  first = missing->CheckEmbeddingFiles();
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(first.status().message(), "held_out.jsonl:4: prompt embeddings file '" +
                                          (dir / "missing.safetensors").string() +
                                          "' does not exist");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace chainrl::learner
