// The ready configs for real models (configs/qwen*.toml), end to end on small models of the same
// architectures with the real Qwen3 tokenizer: each config validates with its paths overridden,
// reads GSM8K-style JSONL through its field names, loads its model, renders prompts through the
// chat template, and `chainrl eval` on it reports sane numbers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/run_config.h"
#include "data/jsonl.h"
#include "model/model_io.h"
#include "rollout/prompting.h"
#include "tests/apps/train_run.h"

namespace chainrl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using chainrl::testing::Chainrl;
using chainrl::testing::CmdResult;

std::string AssetsDir() {
  if (const char* d = std::getenv("CHAINRL_ASSETS_DIR")) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/chainrl/assets";
}

std::string LastLine(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

struct RealConfig {
  const char* file;
  const char* arch;  // the architecture of the real model it names
};

constexpr RealConfig kConfigs[] = {
    {"qwen2.5-0.5b-gsm8k-grpo.toml", "qwen2"},     {"qwen2.5-0.5b-gsm8k-grpo-lora.toml", "qwen2"},
    {"qwen2.5-0.5b-gsm8k-dapo.toml", "qwen2"},     {"qwen2.5-0.5b-gsm8k-dpo.toml", "qwen2"},
    {"qwen3-0.6b-gsm8k-long-chain.toml", "qwen3"},
};

const char* kQuestions[] = {
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. How much more does she need?",
};

class RealConfigsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = AssetsDir() + "/qwen3";
    if (!fs::exists(tokenizer_ + "/tokenizer.json") ||
        !fs::exists(tokenizer_ + "/tokenizer_config.json"))
      GTEST_SKIP() << "test assets missing in " << tokenizer_
                   << " (run scripts/fetch_test_assets.sh)";
    dir_ = (fs::temp_directory_path() / ("chainrl_real_configs_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/data/gsm8k");
    const char* answers[] = {"Natalia sold 48/2 = 24 clips in May.\n#### 72",
                             "Weng earns 12/60 = $0.2 per minute.\n#### 10", "#### 5"};
    std::ofstream train(dir_ + "/data/gsm8k/train.jsonl"), test(dir_ + "/data/gsm8k/test.jsonl"),
        prefs(dir_ + "/data/gsm8k/preferences.jsonl");
    for (int i = 0; i < 3; ++i) {
      json line = {{"question", kQuestions[i]}, {"answer", answers[i]}};
      train << line.dump() << "\n";
      test << line.dump() << "\n";
      prefs << json({{"question", kQuestions[i]},
                     {"chosen", std::string("Reasoning... \\boxed{7}")},
                     {"rejected", json::array({"I don't know.", "\\boxed{0}"})}})
                   .dump()
            << "\n";
    }
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // A small model of `arch` with the real tokenizer's vocabulary, as `chainrl init-model` writes
  // it.
  std::string Model(const std::string& arch) {
    const std::string out = dir_ + "/models/" + arch;
    if (fs::exists(out + "/config.json")) return out;
    CmdResult r = Chainrl("init-model --arch " + arch +
                          " --layers 1 --hidden 32 --heads 4 --kv-heads 2 --intermediate 64 "
                          "--tie-embeddings --seed 3 --vocab-from " +
                          tokenizer_ + " --out " + out);
    EXPECT_EQ(r.code, 0) << r.out;
    return out;
  }

  std::vector<std::string> Overrides(const std::string& model) const {
    const std::string d = dir_ + "/data/gsm8k/";
    // Device and dtypes as shipped: cpu, float32 master weights, bfloat16 compute.
    return {"model.path=\"" + model + "\"", "data.eval_files=[\"" + d + "test.jsonl\"]"};
  }

  std::string tokenizer_, dir_;
};

TEST_F(RealConfigsTest, EachConfigValidatesLoadsRendersAndEvaluates) {
  for (const RealConfig& rc : kConfigs) {
    SCOPED_TRACE(rc.file);
    const std::string path = std::string(CHAINRL_SOURCE_DIR) + "/configs/" + rc.file;
    const std::string model_dir = Model(rc.arch);
    ASSERT_TRUE(fs::exists(model_dir + "/model.safetensors"));
    {
      std::ifstream in(model_dir + "/config.json");
      EXPECT_EQ(json::parse(in)["model_type"], rc.arch);
    }
    // As shipped, the config is valid; so it is with the paths pointed at our files.
    auto shipped = LoadConfig(path);
    ASSERT_TRUE(shipped.ok()) << shipped.status().ToString();
    EXPECT_EQ(shipped->GetString("data.prompt_field"), "question");
    EXPECT_EQ(shipped->GetString("data.answer_field"), "answer");
    EXPECT_FALSE(shipped->GetArray("rewards").empty());
    EXPECT_EQ(shipped->GetString("run.device"), "cpu");
    EXPECT_EQ(shipped->GetString("model.dtype"), "float32");
    EXPECT_EQ(shipped->GetString("model.compute_dtype"), "bfloat16");
    auto overrides = Overrides(model_dir);
    const bool dpo = shipped->GetString("algorithm.name") == "dpo";
    overrides.push_back("data.train_files=[\"" + dir_ + "/data/gsm8k/" +
                        (dpo ? "preferences" : "train") + ".jsonl\"]");
    auto cfg = LoadConfig(path, overrides);
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    std::string sets;
    for (const auto& o : overrides) sets += " --set '" + o + "'";
    CmdResult check = Chainrl("config check " + path + sets);
    EXPECT_EQ(check.code, 0) << check.out;

    // The training file reads through the config's field names.
    data::JsonlFields f;
    f.prompt = cfg->GetString("data.prompt_field");
    f.answer = cfg->GetString("data.answer_field");
    f.chosen = cfg->GetString("data.chosen_field");
    f.rejected = cfg->GetString("data.rejected_field");
    const std::string train = cfg->GetStringList("data.train_files").at(0);
    if (dpo) {
      auto p = data::LoadPreferencesJsonl(train, f, data::BadLinePolicy::kError);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      ASSERT_EQ(p->size(), 3u);
      EXPECT_EQ((*p)[1].rejected.size(), 2u);
    }
    auto examples = data::LoadExamplesJsonl(cfg->GetStringList("data.eval_files").at(0), f,
                                            data::BadLinePolicy::kError);
    ASSERT_TRUE(examples.ok()) << examples.status().ToString();
    ASSERT_EQ(examples->size(), 3u);

    // The model loads and its vocabulary is the tokenizer's.
    auto model = model::LoadModel(cfg->GetString("model.path"));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto prompts = rollout::PromptRenderer::Create(rollout::PromptOptionsFromConfig(*cfg));
    ASSERT_TRUE(prompts.ok()) << prompts.status().ToString();
    const Tokenizer& tok = (*prompts)->tokenizer();
    EXPECT_EQ((*model)->config().vocab_size, tok.vocab_size());
    EXPECT_EQ((*prompts)->end_of_turn_id(), tok.TokenToId("<|im_end|>"));
    for (size_t i = 0; i < examples->size(); ++i) {
      auto text = (*prompts)->RenderText((*examples)[i]);
      ASSERT_TRUE(text.ok()) << text.status().ToString();
      EXPECT_NE(text->find(std::string("<|im_start|>user\n") + kQuestions[i] + "<|im_end|>"),
                std::string::npos)
          << *text;
      EXPECT_TRUE(text->size() >= 22 &&
                  text->substr(text->size() - 22) == "<|im_start|>assistant\n")
          << *text;
      const std::string system = cfg->GetString("tokenizer.system_prompt");
      if (!system.empty()) {
        EXPECT_EQ(text->rfind("<|im_start|>system\n" + system + "<|im_end|>", 0), 0u) << *text;
      }
      auto ids = (*prompts)->Render((*examples)[i]);
      ASSERT_TRUE(ids.ok());
      EXPECT_EQ(ids->front(), *tok.TokenToId("<|im_start|>"));
    }

    // `chainrl eval` with the config, end to end.
    CmdResult ev = Chainrl("eval --config " + path + sets + " --model " + model_dir + " --data " +
                           dir_ + "/data/gsm8k/test.jsonl --max-new-tokens 6 --json");
    ASSERT_EQ(ev.code, 0) << ev.out;
    EXPECT_NE(ev.out.find("accuracy"), std::string::npos) << ev.out;
    json j = json::parse(LastLine(ev.out), nullptr, false);
    ASSERT_TRUE(j.is_object()) << ev.out;
    EXPECT_EQ(j["examples"], 3);
    EXPECT_EQ(j["samples"], 3);
    const double acc = j["accuracy"].get<double>();
    EXPECT_TRUE(acc >= 0 && acc <= 1) << acc;
    EXPECT_GE(j["mean_length"].get<double>(), 1.0);
    EXPECT_LE(j["mean_length"].get<double>(), 6.0);
    const double trunc = j["truncated_fraction"].get<double>();
    EXPECT_TRUE(trunc >= 0 && trunc <= 1) << trunc;
  }
}

TEST_F(RealConfigsTest, EvalCommandErrorsAndDefaults) {
  const std::string model_dir = Model("qwen2");
  // Without a config: the built-in task's held-out split, scored by its verifier; --limit counts.
  CmdResult task = Chainrl("eval --model " + model_dir +
                           " --data task:arithmetic --limit 4 --max-new-tokens 4 --json "
                           "--records " +
                           dir_ + "/records.jsonl");
  ASSERT_EQ(task.code, 0) << task.out;
  json j = json::parse(LastLine(task.out), nullptr, false);
  ASSERT_TRUE(j.is_object()) << task.out;
  EXPECT_EQ(j["examples"], 4);
  // The records file has one line per sample, and the summary is their mean.
  std::ifstream rec(dir_ + "/records.jsonl");
  int lines = 0;
  double tokens = 0;
  for (std::string line; std::getline(rec, line); ++lines)
    tokens += json::parse(line)["tokens"].get<double>();
  EXPECT_EQ(lines, 4);
  EXPECT_DOUBLE_EQ(j["mean_length"].get<double>(), tokens / 4);

  // A JSONL with the default field names fails on the GSM8K file (no "prompt"): exit 2, file:line.
  const std::string test = dir_ + "/data/gsm8k/test.jsonl";
  CmdResult fields = Chainrl("eval --model " + model_dir + " --data " + test);
  EXPECT_EQ(fields.code, 2) << fields.out;
  EXPECT_NE(fields.out.find(test + ":1"), std::string::npos) << fields.out;
  // ... and works once the fields are set.
  CmdResult set = Chainrl("eval --model " + model_dir + " --data " + test +
                          " --set 'data.prompt_field=\"question\"' --max-new-tokens 3 --json");
  EXPECT_EQ(set.code, 0) << set.out;
  const std::string bad = dir_ + "/bad.jsonl";
  std::ofstream(bad) << "{\"prompt\": \"ok\"}\n{not json\n";
  CmdResult badline = Chainrl("eval --model " + model_dir + " --data " + bad);
  EXPECT_EQ(badline.code, 2) << badline.out;
  EXPECT_NE(badline.out.find(bad + ":2"), std::string::npos) << badline.out;
  CmdResult missing = Chainrl("eval --model " + model_dir + " --data " + dir_ + "/nope.jsonl");
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find(dir_ + "/nope.jsonl"), std::string::npos) << missing.out;
  CmdResult nomodel = Chainrl("eval --model " + dir_ + "/nomodel --data task:arithmetic");
  EXPECT_EQ(nomodel.code, 2) << nomodel.out;
  EXPECT_NE(nomodel.out.find(dir_ + "/nomodel"), std::string::npos) << nomodel.out;
  CmdResult usage = Chainrl("eval --model " + model_dir + " --data task:arithmetic --samples 0");
  EXPECT_EQ(usage.code, 2) << usage.out;
  CmdResult family = Chainrl("eval --model " + model_dir + " --data task:poetry");
  EXPECT_EQ(family.code, 2) << family.out;
  EXPECT_NE(family.out.find("poetry"), std::string::npos) << family.out;
}

}  // namespace
}  // namespace chainrl
