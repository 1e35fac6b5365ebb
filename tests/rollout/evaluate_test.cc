// Evaluate on a tiny random model with a byte-level tokenizer: records equal the engine's own
// greedy output, accuracy / mean reward / mean length / truncation equal hand counts over the
// records, greedy and seeded sampling are deterministic.
#include "rollout/evaluate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "model/decoder.h"
#include "rollout/engine.h"
#include "tests/model/tiny_model.h"
#include "tests/rollout/byte_tokenizer_files.h"

namespace chainrl::rollout {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int32_t kVocab = 259;  // bytes + <|endoftext|>, <|im_start|>, <|im_end|>

// A byte-level tokenizer directory (ids 0..255 are bytes) with a Qwen-style chat template.
std::string TokenizerDir() {
  const auto dir = fs::temp_directory_path() / ("chainrl_eval_test_" + std::to_string(::getpid()));
  json cfg = {{"eos_token", "<|endoftext|>"},
              {"chat_template",
               "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}};
  chainrl::testing::WriteByteTokenizerFiles(dir.string(), cfg);
  return dir.string();
}

std::vector<data::Example> Examples(int n) {
  std::vector<data::Example> v;
  for (int i = 0; i < n; ++i) {
    data::Example e;
    e.id = "ex" + std::to_string(i);
    e.prompt = "What is " + std::to_string(i) + " + " + std::to_string(2 * i) + "?";
    e.answer = "never produced";
    e.metadata = json::object();
    v.push_back(std::move(e));
  }
  return v;
}

// exact_match on the whole response first (decides `correct`), then a regex worth 0.5.
std::unique_ptr<rewards::RewardPool> Pool() {
  std::vector<rewards::RewardSpec> specs;
  specs.push_back(rewards::RewardSpec()
                      .set_name("exact")
                      .set_kind("exact_match")
                      .set_options_toml("extract = false\n"));
  specs.push_back(
      rewards::RewardSpec().set_name("has_a").set_kind("regex").set_weight(0.5).set_options_toml(
          "pattern = \"a\"\n"));
  auto p = rewards::RewardPool::Create(std::move(specs));
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(*p);
}

class EvaluateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PromptOptions o;
    o.tokenizer_dir = TokenizerDir();
    auto r = PromptRenderer::Create(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    prompts_ = std::move(*r);
    model_ = chainrl::testing::TinyModel(/*seed=*/7, kVocab);
    pool_ = Pool();
  }
  std::unique_ptr<PromptRenderer> prompts_;
  std::shared_ptr<model::DecoderModel> model_;
  std::unique_ptr<rewards::RewardPool> pool_;
};

// The summary figures, recomputed from the records.
void ExpectSummaryMatchesRecords(const EvalResult& r) {
  ASSERT_EQ(static_cast<int64_t>(r.records.size()), r.samples);
  int64_t correct = 0, truncated = 0, tokens = 0;
  double reward = 0;
  for (const auto& rec : r.records) {
    correct += rec.correct;
    truncated += rec.finish == "length";
    tokens += rec.tokens;
    reward += rec.reward;
  }
  const double n = static_cast<double>(r.samples);
  EXPECT_DOUBLE_EQ(r.accuracy, static_cast<double>(correct) / n);
  EXPECT_DOUBLE_EQ(r.truncated_fraction, static_cast<double>(truncated) / n);
  EXPECT_DOUBLE_EQ(r.mean_length, static_cast<double>(tokens) / n);
  EXPECT_NEAR(r.mean_reward, reward / n, 1e-12);
}

TEST_F(EvaluateTest, GreedyRecordsAreTheEnginesOutputAndScoresAreHandCounts) {
  auto examples = Examples(6);
  EvalOptions o;
  o.max_new_tokens = 10;
  o.max_batch = 4;  // fewer slots than examples: continuous batching refills them
  auto first = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->examples, 6);
  ASSERT_EQ(first->samples, 6);
  ExpectSummaryMatchesRecords(*first);
  EXPECT_EQ(first->accuracy, 0.0);  // no response equals "never produced"

  // Reference: the engine's greedy tokens for each rendered prompt, one request at a time.
  EngineOptions eo;
  eo.max_batch = 1;
  eo.max_seq_len = 256;
  eo.eos_token_ids = prompts_->stop_token_ids();
  RolloutEngine engine(model_, eo);
  for (size_t i = 0; i < examples.size(); ++i) {
    GenerationRequest q;
    q.id = "ref";
    auto ids = prompts_->Render(examples[i]);
    ASSERT_TRUE(ids.ok());
    q.prompt = *ids;
    q.max_new_tokens = 10;
    q.sampling.temperature = 0;
    auto g = engine.Generate({q});
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const auto& rec = first->records[i];
    EXPECT_EQ(rec.example_id, examples[i].id);
    EXPECT_EQ(rec.tokens, static_cast<int64_t>((*g)[0].tokens.size()));
    EXPECT_EQ(rec.finish, FinishReasonName((*g)[0].finish));
    auto text = prompts_->DecodeResponse((*g)[0].tokens);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(rec.response, *text) << i;
    // reward = 1 * exact + 0.5 * regex("a"); nothing is exact here.
    EXPECT_DOUBLE_EQ(rec.reward, rec.response.find('a') != std::string::npos ? 0.5 : 0.0);
  }

  // Make examples 1, 2 and 4 correct by giving them their own greedy response as the answer.
  // Responses that trim to nothing cannot be made distinct from an empty answer; skip those.
  int made_correct = 0;
  for (int i : {1, 2, 4}) {
    const std::string& resp = first->records[static_cast<size_t>(i)].response;
    if (resp.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    examples[static_cast<size_t>(i)].answer = resp;
    ++made_correct;
  }
  ASSERT_GT(made_correct, 0);
  auto second = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ExpectSummaryMatchesRecords(*second);
  EXPECT_DOUBLE_EQ(second->accuracy, made_correct / 6.0);
  for (size_t i = 0; i < examples.size(); ++i) {
    const auto& a = first->records[i];
    const auto& b = second->records[i];
    EXPECT_EQ(a.response, b.response) << "greedy evaluation must be deterministic";
    EXPECT_EQ(a.tokens, b.tokens);
    const bool expect_correct = examples[i].answer.get<std::string>() == a.response;
    EXPECT_EQ(b.correct, expect_correct) << i;
    EXPECT_DOUBLE_EQ(b.reward, (expect_correct ? 1.0 : 0.0) +
                                   (b.response.find('a') != std::string::npos ? 0.5 : 0.0));
  }
  EXPECT_NEAR(second->mean_reward - first->mean_reward, made_correct / 6.0, 1e-12);

  // An extra stop id ends each response at its first occurrence in the greedy output.
  const int32_t stop = first->records[0].token_ids.at(2);
  o.stop_token_ids = {stop};
  auto third = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  ExpectSummaryMatchesRecords(*third);
  int stopped = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const auto& full = first->records[i].token_ids;
    ASSERT_EQ(static_cast<int64_t>(full.size()), first->records[i].tokens);
    auto at = std::find(full.begin(), full.end(), stop);
    std::vector<int32_t> expected(full.begin(), at == full.end() ? at : at + 1);
    EXPECT_EQ(third->records[i].token_ids, expected) << i;
    if (at != full.end()) {
      EXPECT_EQ(third->records[i].finish, "stop") << i;
      ++stopped;
    }
  }
  EXPECT_GE(stopped, 1);
}

TEST_F(EvaluateTest, SampledEvaluationIsSeededAndGroupsSamples) {
  auto examples = Examples(3);
  EvalOptions o;
  o.max_new_tokens = 12;
  o.temperature = 1.0;
  o.samples_per_prompt = 4;
  o.seed = 99;
  auto a = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->examples, 3);
  EXPECT_EQ(a->samples, 12);
  ExpectSummaryMatchesRecords(*a);
  for (size_t k = 0; k < a->records.size(); ++k) {
    EXPECT_EQ(a->records[k].example_id, examples[k / 4].id);
    EXPECT_LE(a->records[k].tokens, 12);
    EXPECT_GE(a->records[k].tokens, 1);
    if (a->records[k].finish == "length") {
      EXPECT_EQ(a->records[k].tokens, 12);
    }
  }
  o.max_batch = 5;  // a different batching gives the same seeded samples
  auto b = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_TRUE(b.ok());
  bool any_differs_from_first = false;
  for (size_t k = 0; k < a->records.size(); ++k) {
    EXPECT_EQ(a->records[k].response, b->records[k].response) << k;
    if (k % 4 != 0 && a->records[k].response != a->records[k - k % 4].response)
      any_differs_from_first = true;
  }
  EXPECT_TRUE(any_differs_from_first) << "samples of one prompt should differ at temperature 1";
  // A stop string cuts the response before it.
  o.stop_strings = {"e"};
  auto c = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_TRUE(c.ok());
  for (const auto& rec : c->records) EXPECT_EQ(rec.response.find('e'), std::string::npos);
}

TEST_F(EvaluateTest, BadInputIsAnError) {
  EvalOptions o;
  EXPECT_EQ(Evaluate(*model_, *prompts_, *pool_, {}, o).status().code(),
            StatusCode::kInvalidArgument);
  auto examples = Examples(2);
  examples[1].prompt.clear();
  examples[1].id = "empty-one";
  auto r = Evaluate(*model_, *prompts_, *pool_, examples, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("empty-one"), std::string::npos) << r.status().ToString();
  o.samples_per_prompt = 0;
  EXPECT_FALSE(Evaluate(*model_, *prompts_, *pool_, Examples(1), o).ok());
}

}  // namespace
}  // namespace chainrl::rollout
