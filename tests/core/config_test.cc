// Tests for strict TOML run configuration: every malformed config is reported with its file, line,
// column and dotted key; valid configs resolve with defaults; overrides; generated docs are
// current.
#include "core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "apps/run_config.h"
#include "core/config_keys.h"
#include "learner/config_keys.h"
#include "learner/objective_list.h"

namespace chainrl {
namespace {

const char* kMinimal = "[model]\npath = \"/models/tiny\"\n";

struct Bad {
  const char* name;
  std::string toml;
  std::vector<std::string> sets;
  std::string file;  // "t.toml" or "--set"
  int line, column;
  std::string key;
  std::string message_part;
};

std::vector<Bad> BadCases() {
  const std::string m = kMinimal;
  return {
      {"syntax_unterminated_string",
       m + "[run]\nname = \"abc\n",
       {},
       "t.toml",
       4,
       12,
       "",
       "syntax error"},
      {"syntax_missing_value", m + "[run]\nseed =\n", {}, "t.toml", 4, 7, "", "syntax error"},
      {"syntax_duplicate_key",
       m + "[run]\nseed = 1\nseed = 2\n",
       {},
       "t.toml",
       5,
       8,
       "",
       "syntax error"},
      {"syntax_duplicate_table",
       m + "[run]\nseed = 1\n[run]\nname = \"a\"\n",
       {},
       "t.toml",
       5,
       1,
       "",
       "syntax error"},
      {"unknown_section",
       m + "[learnr]\nlr = 1e-6\n",
       {},
       "t.toml",
       3,
       2,
       "learnr",
       "unknown table (did you mean 'learner'?)"},
      {"unknown_top_level_key",
       "seed = 3\n" + m,
       {},
       "t.toml",
       1,
       1,
       "seed",
       "unknown key (did you mean 'run.seed'?)"},
      {"unknown_key_run",
       m + "[run]\nsed = 1\n",
       {},
       "t.toml",
       4,
       1,
       "run.sed",
       "did you mean 'run.seed'?"},
      {"unknown_key_model",
       m + "dtyp = \"float32\"\n",
       {},
       "t.toml",
       3,
       1,
       "model.dtyp",
       "did you mean 'model.dtype'?"},
      {"unknown_key_model_init",
       m + "[model.init]\nlayer = 2\n",
       {},
       "t.toml",
       4,
       1,
       "model.init.layer",
       "did you mean 'model.init.layers'?"},
      {"unknown_key_tokenizer",
       m + "[tokenizer]\npth = \"x\"\n",
       {},
       "t.toml",
       4,
       1,
       "tokenizer.pth",
       "did you mean 'tokenizer.path'?"},
      {"unknown_key_data",
       m + "[data]\ntrain_file = [\"a.jsonl\"]\n",
       {},
       "t.toml",
       4,
       1,
       "data.train_file",
       "did you mean 'data.train_files'?"},
      {"unknown_key_rollout",
       m + "[rollout]\ntemprature = 0.7\n",
       {},
       "t.toml",
       4,
       1,
       "rollout.temprature",
       "did you mean 'rollout.temperature'?"},
      {"unknown_key_actors",
       m + "[actors]\ncont = 2\n",
       {},
       "t.toml",
       4,
       1,
       "actors.cont",
       "did you mean 'actors.count'?"},
      {"unknown_key_learner",
       m + "[learner]\nlrr = 1e-6\n",
       {},
       "t.toml",
       4,
       1,
       "learner.lrr",
       "did you mean 'learner.lr'?"},
      {"key_in_wrong_section",
       m + "[learner]\ntemperature = 0.7\n",
       {},
       "t.toml",
       4,
       1,
       "learner.temperature",
       "did you mean 'rollout.temperature'?"},
      {"unknown_key_algorithm",
       m + "[algorithm]\nclip_ratio_hi = 0.28\n",
       {},
       "t.toml",
       4,
       1,
       "algorithm.clip_ratio_hi",
       "did you mean 'algorithm.clip_ratio_high'?"},
      {"unknown_key_length_shaping",
       m + "[length_shaping]\nmethod = [\"kimi\"]\n",
       {},
       "t.toml",
       4,
       1,
       "length_shaping.method",
       "did you mean 'length_shaping.methods'?"},
      {"unknown_key_curriculum",
       m + "[curriculum]\nbudget_schedul = \"linear\"\n",
       {},
       "t.toml",
       4,
       1,
       "curriculum.budget_schedul",
       "did you mean 'curriculum.budget_schedule'?"},
      {"unknown_key_metrics",
       m + "[metrics]\nadress = \"127.0.0.1:0\"\n",
       {},
       "t.toml",
       4,
       1,
       "metrics.adress",
       "did you mean 'metrics.address'?"},
      {"unknown_key_checkpoint",
       m + "[checkpoint]\nkeeep = 3\n",
       {},
       "t.toml",
       4,
       1,
       "checkpoint.keeep",
       "did you mean 'checkpoint.keep'?"},
      {"unknown_key_distributed",
       m + "[distributed]\nbackend_ = \"gloo\"\n",
       {},
       "t.toml",
       4,
       1,
       "distributed.backend_",
       "did you mean 'distributed.backend'?"},
      {"unknown_key_rewards_common",
       m + "[rewards_common]\nworker_pth = \"w\"\n",
       {},
       "t.toml",
       4,
       1,
       "rewards_common.worker_pth",
       "did you mean 'rewards_common.worker_path'?"},
      {"unknown_key_in_reward",
       m + "[[rewards]]\nname = \"acc\"\nkind = \"math\"\nwieght = 2\n",
       {},
       "t.toml",
       6,
       1,
       "rewards[0].wieght",
       "did you mean 'weight'?"},
      {"wrong_type_string_for_float",
       m + "[learner]\nlr = \"fast\"\n",
       {},
       "t.toml",
       4,
       6,
       "learner.lr",
       "expected a float, got a string"},
      {"wrong_type_float_for_int",
       m + "[rollout]\ngroup_size = 8.5\n",
       {},
       "t.toml",
       4,
       14,
       "rollout.group_size",
       "expected an integer, got a float"},
      {"wrong_type_int_for_bool",
       m + "[learner]\nstreambp = 1\n",
       {},
       "t.toml",
       4,
       12,
       "learner.streambp",
       "expected a boolean, got an integer"},
      {"wrong_type_bool_for_string",
       m + "[run]\nname = true\n",
       {},
       "t.toml",
       4,
       8,
       "run.name",
       "expected a string, got a boolean"},
      {"wrong_type_list_element",
       m + "[rollout]\nstop_strings = [\"</answer>\", 3]\n",
       {},
       "t.toml",
       4,
       30,
       "rollout.stop_strings",
       "element 1: expected a string, got an integer"},
      {"wrong_type_scalar_for_list",
       m + "[data]\ntrain_files = \"a.jsonl\"\n",
       {},
       "t.toml",
       4,
       15,
       "data.train_files",
       "expected a array of strings, got a string"},
      {"wrong_type_section_as_value",
       "learner = 3\n" + m,
       {},
       "t.toml",
       1,
       11,
       "learner",
       "expected a table [learner], got an integer"},
      {"out_of_range_negative_seed",
       m + "[run]\nseed = -1\n",
       {},
       "t.toml",
       4,
       8,
       "run.seed",
       "-1 is out of range [0, inf]"},
      {"out_of_range_temperature",
       m + "[rollout]\ntemperature = 11.0\n",
       {},
       "t.toml",
       4,
       15,
       "rollout.temperature",
       "11 is out of range [0, 10]"},
      {"out_of_range_exclusive_lr",
       m + "[learner]\nlr = 0.0\n",
       {},
       "t.toml",
       4,
       6,
       "learner.lr",
       "0 is out of range (0, 1]"},
      {"out_of_range_top_p",
       m + "[rollout]\ntop_p = 1.5\n",
       {},
       "t.toml",
       4,
       9,
       "rollout.top_p",
       "1.5 is out of range (0, 1]"},
      {"bad_choice",
       m + "[algorithm]\nname = \"ppo\"\n",
       {},
       "t.toml",
       4,
       8,
       "algorithm.name",
       "'ppo' is not one of: grpo, dr_grpo, dapo, gspo, dler, campo, cispo, dpo, ipo, simpo, logo"},
      // Values the schema knows and refuses, with the reason (not implemented yet).
      {"refused_sft",
       m + "[algorithm]\nname = \"sft\"\n",
       {},
       "t.toml",
       4,
       8,
       "algorithm.name",
       "'sft' is refused: an SFT-only run is not implemented; supervised fine-tuning runs as the "
       "warm-up before RL (sft.steps); valid values: grpo, dr_grpo"},
      {"refused_compute_entropy",
       m + "[rollout]\ncompute_entropy = true\n",
       {},
       "t.toml",
       4,
       19,
       "rollout.compute_entropy",
       "true is refused: per-token sample entropy is not implemented yet"},
      {"bad_budget_milestone_tokens",
       m + "[curriculum]\nbudget_milestone_tokens = [100, 0]\n",
       {},
       "t.toml",
       4,
       27,
       "curriculum.budget_milestone_tokens",
       "0 is out of range [1, inf]"},
      {"bad_list_choice",
       m + "[length_shaping]\nmethods = [\"kimi\", \"laserd\"]\n",
       {},
       "t.toml",
       4,
       11,
       "length_shaping.methods",
       "'laserd' is not one of"},
      {"bad_device",
       m + "[run]\ndevice = \"gpu0\"\n",
       {},
       "t.toml",
       4,
       10,
       "run.device",
       "not a device"},
      {"bad_endpoint",
       m + "[actors]\nconnect = \"localhost:5555\"\n",
       {},
       "t.toml",
       4,
       11,
       "actors.connect",
       "not an endpoint"},
      {"nan_float",
       m + "[learner]\nmax_grad_norm = nan\n",
       {},
       "t.toml",
       4,
       17,
       "learner.max_grad_norm",
       "must be finite"},
      {"missing_required",
       "[run]\nseed = 1\n",
       {},
       "t.toml",
       0,
       0,
       "model.path",
       "required key is missing"},
      {"missing_required_in_array",
       m + "[[rewards]]\nkind = \"math\"\n",
       {},
       "t.toml",
       3,
       1,
       "rewards[0].name",
       "required key is missing"},
      {"rewards_not_array_of_tables",
       "rewards = 3\n" + m,
       {},
       "t.toml",
       1,
       11,
       "rewards",
       "expected an array of tables"},
      {"stage_override_unknown_key",
       m + "[[curriculum.stages]]\nname = \"short\"\nstart_step = 5\n"
           "overrides = { \"rollout.max_new_token\" = 64 }\n",
       {},
       "t.toml",
       6,
       15,
       "curriculum.stages[0].overrides",
       "unknown key 'rollout.max_new_token' (did you mean 'rollout.max_new_tokens'?)"},
      {"stage_override_wrong_type",
       m + "[[curriculum.stages]]\nname = \"short\"\nstart_step = 5\n"
           "overrides = { \"rollout.max_new_tokens\" = \"64\" }\n",
       {},
       "t.toml",
       6,
       42,
       "curriculum.stages[0].overrides.rollout.max_new_tokens",
       "expected an integer, got a string"},
      {"override_no_equals", m, {"learner.lr"}, "--set", 1, 1, "", "expected KEY=VALUE"},
      {"override_empty_key", m, {"=3"}, "--set", 1, 1, "", "empty key"},
      {"override_unknown_key",
       m,
       {"run.seed=1", "learner.lrr=1e-6"},
       "--set",
       2,
       1,
       "learner.lrr",
       "did you mean 'learner.lr'?"},
      {"override_bad_value",
       m,
       {"learner.lr=1e-6x"},
       "--set",
       1,
       12,
       "learner.lr",
       "not a valid TOML value"},
      {"override_wrong_type",
       m,
       {"rollout.group_size=true"},
       "--set",
       1,
       20,
       "rollout.group_size",
       "expected an integer, got a boolean"},
      {"override_out_of_range",
       m,
       {"rollout.temperature=-0.5"},
       "--set",
       1,
       21,
       "rollout.temperature",
       "-0.5 is out of range [0, 10]"},
      {"override_bad_choice_bare_word",
       m,
       {"algorithm.name=ppo"},
       "--set",
       1,
       16,
       "algorithm.name",
       "'ppo' is not one of"},
  };
}

void PrintTo(const Bad& b, std::ostream* os) { *os << b.name; }

class BadConfigTest : public ::testing::TestWithParam<Bad> {};

TEST_P(BadConfigTest, ReportsPositionAndKey) {
  const Bad& b = GetParam();
  std::vector<ConfigIssue> issues;
  auto cfg = ParseConfig(b.toml, "t.toml", b.sets, &issues);
  ASSERT_FALSE(cfg.ok()) << b.name;
  EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument);
  ASSERT_FALSE(issues.empty());
  bool found = false;
  std::string all;
  for (const auto& i : issues) {
    all += i.ToString() + "\n";
    if (i.file == b.file && i.line == b.line && i.column == b.column && i.key == b.key &&
        i.message.find(b.message_part) != std::string::npos)
      found = true;
  }
  EXPECT_TRUE(found) << "expected " << b.file << ":" << b.line << ":" << b.column << ": " << b.key
                     << ": ..." << b.message_part << "...\ngot:\n"
                     << all;
  // The status message carries every issue in the user-facing form.
  EXPECT_NE(cfg.status().message().find(issues[0].ToString()), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadConfigTest, ::testing::ValuesIn(BadCases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ConfigTest, AllErrorsReportedAtOnceInSourceOrder) {
  std::string text =
      "[run]\nseed = -1\n\n[learner]\nlrr = 1e-6\nlr = \"fast\"\n\n[rollout]\ntemperature = 11.0\n";
  std::vector<ConfigIssue> issues;
  auto cfg = ParseConfig(text, "broken.toml", {"rollout.top_k=-1"}, &issues);
  ASSERT_FALSE(cfg.ok());
  ASSERT_EQ(issues.size(), 6u) << cfg.status().message();
  EXPECT_EQ(issues[0].ToString(), "broken.toml:2:8: run.seed: -1 is out of range [0, inf]");
  EXPECT_EQ(issues[1].ToString(),
            "broken.toml:5:1: learner.lrr: unknown key (did you mean 'learner.lr'?)");
  EXPECT_EQ(issues[2].ToString(), "broken.toml:6:6: learner.lr: expected a float, got a string");
  EXPECT_EQ(issues[3].ToString(),
            "broken.toml:9:15: rollout.temperature: 11 is out of range [0, 10]");
  EXPECT_EQ(issues[4].ToString(), "--set:1:15: rollout.top_k: -1 is out of range [0, inf]");
  EXPECT_EQ(issues[5].ToString(), "broken.toml: model.path: required key is missing");
}

TEST(ConfigTest, DefaultsAndValuesResolve) {
  std::string text = std::string(kMinimal) +
                     "[learner]\nlr = 1\n"  // an integer is accepted for a float key
                     "[rollout]\nstop_strings = [\"</answer>\"]\ntemperature = 0.6\n";
  auto cfg = ParseConfig(text, "ok.toml", {"learner.lr=3e-7", "run.name=exp-1"});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->GetString("model.path"), "/models/tiny");
  EXPECT_DOUBLE_EQ(cfg->GetFloat("learner.lr"), 3e-7);
  EXPECT_EQ(cfg->SourceOf("learner.lr"), "--set");
  EXPECT_EQ(cfg->GetString("run.name"), "exp-1");
  EXPECT_DOUBLE_EQ(cfg->GetFloat("rollout.temperature"), 0.6);
  EXPECT_EQ(cfg->SourceOf("rollout.temperature"), "ok.toml:7:15");
  EXPECT_EQ(cfg->GetInt("rollout.group_size"), 8);
  EXPECT_EQ(cfg->SourceOf("rollout.group_size"), "default");
  EXPECT_EQ(cfg->GetStringList("rollout.stop_strings"), std::vector<std::string>{"</answer>"});
  EXPECT_TRUE(cfg->GetArray("rewards").empty());
}

TEST(ConfigTest, ArraysOfTablesAndStageOverrides) {
  std::string text = std::string(kMinimal) +
                     "[[rewards]]\nname = \"correct\"\nkind = \"math\"\nweight = 1.0\n"
                     "[[rewards]]\nname = \"mine\"\npath = \"/p/libr.so\"\ndeadline_seconds = 0.5\n"
                     "options = { threshold = 3, mode = \"strict\" }\n"
                     "[[curriculum.stages]]\nname = \"think-short\"\nstart_step = 40\n"
                     "overrides = { \"rollout.max_new_tokens\" = 128, \"learner.lr\" = 5e-7 }\n";
  auto cfg = ParseConfig(text, "ok.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  const auto& rewards = cfg->GetArray("rewards");
  ASSERT_EQ(rewards.size(), 2u);
  EXPECT_EQ(std::get<std::string>(rewards[0].at("kind")), "math");
  EXPECT_EQ(std::get<std::string>(rewards[1].at("kind")), "plugin");  // default
  EXPECT_DOUBLE_EQ(std::get<double>(rewards[1].at("deadline_seconds")), 0.5);
  EXPECT_DOUBLE_EQ(std::get<double>(rewards[1].at("error_score")), 0.0);
  const std::string& opts = std::get<std::string>(rewards[1].at("options"));
  EXPECT_NE(opts.find("threshold = 3"), std::string::npos) << opts;
  const auto& stages = cfg->GetArray("curriculum.stages");
  ASSERT_EQ(stages.size(), 1u);
  auto sets = std::get<std::vector<std::string>>(stages[0].at("overrides"));
  ASSERT_EQ(sets.size(), 2u);
  auto staged = cfg->WithOverrides(sets);
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  EXPECT_EQ(staged->GetInt("rollout.max_new_tokens"), 128);
  EXPECT_DOUBLE_EQ(staged->GetFloat("learner.lr"), 5e-7);
  EXPECT_EQ(cfg->GetInt("rollout.max_new_tokens"), 512);  // the original is unchanged
  // Overrides are validated like --set.
  std::vector<ConfigIssue> issues;
  auto bad = cfg->WithOverrides({"rollout.max_new_tokens=0"}, &issues);
  ASSERT_FALSE(bad.ok());
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].key, "rollout.max_new_tokens");
}

TEST(ConfigTest, ResolvedTomlRoundTrips) {
  std::string text = std::string(kMinimal) +
                     "[rollout]\nstop_strings = [\"a\\\"b\", \"\\n\"]\ntemperature = 0.1\n"
                     "[[rewards]]\nname = \"r\"\nkind = \"regex\"\noptions = { pattern = \"x+\" }\n"
                     "[[curriculum.stages]]\nname = \"s\"\nstart_step = 2\n"
                     "overrides = { \"learner.lr\" = 1e-7 }\n";
  auto a = ParseConfig(text, "a.toml");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  std::string resolved = a->ToToml();
  auto b = ParseConfig(resolved, "resolved.toml");
  ASSERT_TRUE(b.ok()) << b.status().ToString() << "\n" << resolved;
  EXPECT_EQ(b->ToToml(), resolved);
  for (const auto& k : RunConfigSchema().keys)
    EXPECT_EQ(FormatConfigValue(a->Get(k.key)), FormatConfigValue(b->Get(k.key))) << k.key;
}

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// Keys that nest tables tens of thousands deep overflowed the TOML parser's stack (a crash at
// 40,000 parts); they are refused at kMaxConfigTableDepth, naming the line and column.
TEST(ConfigTest, KeysNestingTablesTooDeepAreRefusedWithPosition) {
  const std::string m = kMinimal;
  struct Case {
    std::string text;
    int line, column;
  };
  const std::vector<Case> cases = {
      // A header of 40,000 parts: the 129th part starts after the 128th dot, at column 257.
      {m + "[" + Repeat("a.", 39999) + "a]\nx = 1\n", 3, 257},
      {m + "[[" + Repeat("a.", 39999) + "a]]\n", 3, 258},
      // A dotted key below a header of 3 parts: 3 + 126 = 129 > 128 at the 125th dot.
      {m + "[a.b.c]\n" + Repeat("a.", 40000) + "a = 1\n", 4, 250},
      // Quoted parts count like bare ones: below [model], the 127th dot (after 127 "x.y").
      {m + Repeat("\"x.y\".", 200) + "a = 1\n", 3, 127 * 6},
      // Inline tables add the depth of the key that holds them (10 x 31 parts).
      {m + "t = " + Repeat("{ " + Repeat("a.", 30) + "a = ", 10) + "1" + Repeat("}", 10) + "\n", 3,
       0},
  };
  for (const Case& c : cases) {
    std::vector<ConfigIssue> issues;
    auto cfg = ParseConfig(c.text, "deep.toml", {}, &issues);
    ASSERT_FALSE(cfg.ok());
    ASSERT_EQ(issues.size(), 1u) << cfg.status().message();
    EXPECT_EQ(issues[0].file, "deep.toml");
    EXPECT_EQ(issues[0].line, c.line);
    if (c.column > 0) {
      EXPECT_EQ(issues[0].column, c.column);
    }
    EXPECT_NE(issues[0].message.find("keys nest tables deeper than 128 levels"), std::string::npos)
        << issues[0].message;
  }
}

// The depth scan does not count what is not a key: dots in strings (single, multi-line, escaped
// quotes), comments, floats and dates, nor tables that close.
TEST(ConfigTest, DotsOutsideKeysDoNotCountTowardsTheDepthBound) {
  const std::string dots = Repeat("a.", 500);
  const std::string text =
      std::string(kMinimal) + "# " + dots + "\n[run]\nname = \"" + dots + "\\\" " + dots +
      "\"\n[\"" + dots + "\"]\nx = \"\"\"\n" + dots + "\n" + dots + "\"\"\"\ny = '''\n" + dots +
      "'''\nz = [" + Repeat("1.5, ", 500) + "2.5]\nw = 1979-05-27T07:32:00.999\n" +
      Repeat("[" + Repeat("b.", 100) + "b]\nk = { " + Repeat("c.", 20) + "c = 1.25 }\n", 1) + "[" +
      Repeat("b.", 100) + "d]\nk = [{ " + Repeat("c.", 20) + "c = [1.25] }]\n";
  std::vector<ConfigIssue> issues;
  auto cfg = ParseConfig(text, "dots.toml", {}, &issues);
  ASSERT_FALSE(cfg.ok());  // unknown keys and sections, reported by the schema
  for (const auto& i : issues)
    EXPECT_EQ(i.message.find("nest tables deeper"), std::string::npos) << i.ToString();
  // The whole text parsed: the schema reports the quoted table and the last header's table.
  ASSERT_EQ(issues.size(), 2u) << cfg.status().message();
  EXPECT_EQ(issues[1].ToString(), "dots.toml:14:2: b: unknown table");
}

TEST(ConfigTest, OversizedConfigFileIsRefusedBeforeReading) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "chainrl_config_huge.toml").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << kMinimal;
    out.seekp(static_cast<std::streamoff>(kMaxConfigBytes) + 10);
    out << "\n";
  }
  auto cfg = LoadConfig(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(
      cfg.status().message().find(path + ": " + std::to_string(kMaxConfigBytes + 11) +
                                  " bytes, over the limit of " + std::to_string(kMaxConfigBytes)),
      std::string::npos)
      << cfg.status().message();
  std::filesystem::remove(path);
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto cfg = LoadConfig("/nonexistent/run.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), StatusCode::kNotFound);
  EXPECT_NE(cfg.status().message().find("/nonexistent/run.toml"), std::string::npos);
}

TEST(ConfigTest, SchemaIsWellFormed) {
  const ConfigSchema& s = RunConfigSchema();
  std::set<std::string> seen;
  for (const auto& k : s.keys) {
    EXPECT_TRUE(seen.insert(k.key).second) << "duplicate key " << k.key;
    EXPECT_FALSE(k.doc.empty()) << k.key;
    auto dot = k.key.rfind('.');
    ASSERT_NE(dot, std::string::npos) << k.key;
    EXPECT_TRUE(s.IsSection(k.key.substr(0, dot))) << k.key;
    // Every default satisfies its own constraints.
    if (!k.required) {
      ConfigIssue dummy;
      auto cfg = ParseConfig(std::string(kMinimal), "d.toml", {});
      ASSERT_TRUE(cfg.ok());
      EXPECT_EQ(FormatConfigValue(cfg->Get(k.key)), FormatConfigValue(k.default_value));
    }
  }
}

// algorithm.name's choices are the learner's objective list (the learner dispatches on the same
// list), in order; dler and campo are among them, sft is refused.
TEST(ConfigTest, AlgorithmChoicesAreTheAlgorithmLists) {
  const KeySpec* k = RunConfigSchema().FindKey("algorithm.name");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->choices, learner::ObjectiveNames());
  EXPECT_EQ(
      learner::ObjectiveNames(learner::ObjectiveFamily::kPolicyGradient),
      (std::vector<std::string>{"grpo", "dr_grpo", "dapo", "gspo", "dler", "campo", "cispo"}));
  EXPECT_EQ(learner::ObjectiveNames(learner::ObjectiveFamily::kPreference),
            (std::vector<std::string>{"dpo", "ipo", "simpo", "logo"}));
  for (const char* name : {"dler", "campo"}) {
    auto cfg =
        ParseConfig(std::string(kMinimal), "t.toml", {std::string("algorithm.name=") + name});
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    EXPECT_EQ(cfg->GetString("algorithm.name"), name);
  }
  ASSERT_EQ(k->refused.size(), 1u);
  EXPECT_EQ(std::get<std::string>(k->refused[0].value), "sft");
}

// The reference says which values are refused, next to the valid ones.
TEST(ConfigTest, DocsNameRefusedValues) {
  const std::string docs = RenderConfigDocs();
  EXPECT_NE(
      docs.find("| `learner.stale_policy` | string | `\"drop\"` | one of: drop, flag, correct |"),
      std::string::npos);
  EXPECT_NE(docs.find("| `rollout.compute_entropy` | boolean | `false` | any; refused: true |"),
            std::string::npos);
  EXPECT_NE(docs.find("campo, cispo, dpo, ipo, simpo, logo; refused: sft |"), std::string::npos);
}

// Core's loader knows no layer's keys: it validates against the schema it is given, and a Config
// keeps that schema (WithOverrides validates against it, ToToml writes its sections).
TEST(ConfigTest, ConfigKeepsTheSchemaItWasLoadedWith) {
  ConfigSchema schema;
  AddSection(&schema, "toy", "A toy section.");
  schema.keys.push_back(Int("toy.n", 3, 0, 10, "A number."));
  schema.keys.push_back(Str("toy.mode", "a", "A mode.", {"a", "b"}));
  auto cfg = ParseConfig(schema, "[toy]\nn = 4\n", "toy.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->GetInt("toy.n"), 4);
  EXPECT_EQ(cfg->GetString("toy.mode"), "a");
  EXPECT_EQ(cfg->ToToml(),
            "# Resolved chainrl configuration (every key, defaults included).\n\n[toy]\nn = 4\n"
            "mode = \"a\"\n");
  auto b = cfg->WithOverrides({"toy.mode=b"});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->GetString("toy.mode"), "b");
  EXPECT_EQ(b->GetInt("toy.n"), 4);
  auto c = b->WithOverrides({"toy.mode=c"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("toy.mode"), std::string::npos) << c.status().ToString();
  // The run schema's keys are unknown to this one.
  EXPECT_FALSE(cfg->WithOverrides({"run.seed=1"}).ok());
  EXPECT_FALSE(ParseConfig(schema, "[run]\nseed = 1\n", "toy.toml").ok());
}

TEST(ConfigTest, CommittedDocsAreCurrent) {
  std::ifstream in(std::string(CHAINRL_SOURCE_DIR) + "/docs/CONFIG.md");
  ASSERT_TRUE(in.good()) << "docs/CONFIG.md is missing: run `chainrl config docs`";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(ss.str() == RenderConfigDocs())
      << "docs/CONFIG.md is stale: run `chainrl config docs` and commit the result";
}

TEST(ConfigTest, ShippedConfigsValidate) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(CHAINRL_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".toml") continue;
    auto cfg = LoadConfig(e.path().string());
    EXPECT_TRUE(cfg.ok()) << cfg.status().ToString();
    ++n;
  }
  EXPECT_GT(n, 0);
}

}  // namespace
}  // namespace chainrl
