// End-to-end tests of the `chainrl` command: help, dispatch, exit codes, config errors.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "apps/run_config.h"
#include "tests/apps/train_run.h"

#include <nlohmann/json.hpp>

namespace {

using chainrl::testing::Chainrl;
using chainrl::testing::CmdResult;
using chainrl::testing::ReadText;

std::string TempDir() {
  auto d = std::filesystem::temp_directory_path() / ("chainrl_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d.string();
}

TEST(CliTest, HelpListsEverySubcommand) {
  CmdResult r = Chainrl("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* c : {"train", "learner", "actor", "generate", "eval", "tokenize", "init-model",
                        "export", "bench", "config", "version"})
    EXPECT_NE(r.out.find(std::string("  ") + c + " "), std::string::npos) << c << "\n" << r.out;
  EXPECT_EQ(Chainrl("").code, 2);
  CmdResult u = Chainrl("frobnicate");
  EXPECT_EQ(u.code, 2);
  EXPECT_NE(u.out.find("unknown command 'frobnicate'"), std::string::npos);
}

TEST(CliTest, EverySubcommandHasHelp) {
  for (const char* c : {"train", "learner", "actor", "generate", "eval", "tokenize", "init-model",
                        "export", "bench", "config", "version"}) {
    CmdResult r = Chainrl(std::string(c) + " --help");
    // Implemented commands print their usage and exit 0; those not built yet say so and exit 1.
    if (r.code == 0) {
      EXPECT_NE(r.out.find("usage: chainrl"), std::string::npos) << c << "\n" << r.out;
    } else {
      EXPECT_EQ(r.code, 1) << c << "\n" << r.out;
      EXPECT_NE(r.out.find("not implemented yet"), std::string::npos) << c << "\n" << r.out;
    }
  }
}

TEST(CliTest, BrokenConfigExitsTwoWithPositions) {
  std::string dir = TempDir();
  std::string path = dir + "/broken.toml";
  std::ofstream(path)
      << "[model]\npath = \"m\"\n[learner]\nlr = \"fast\"\n[rollout]\ntemprature = 1\n";
  CmdResult r = Chainrl("train " + path);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(path + ":4:6: learner.lr: expected a float, got a string"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(path + ":6:1: rollout.temprature: unknown key (did you mean "
                              "'rollout.temperature'?)"),
            std::string::npos)
      << r.out;
  CmdResult o = Chainrl("train " + path + " --set learner.lr=1e-6 --set rollout=3");
  EXPECT_EQ(o.code, 2);
  EXPECT_EQ(o.out.find("learner.lr: expected a float"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("--set:2:1: rollout: is a table, not a key"), std::string::npos) << o.out;
  // A reward plugin that is not a shared library: a configuration error before anything starts.
  std::string plug = dir + "/plug.toml";
  std::ofstream(plug) << "[model]\npath = \"m\"\n[[rewards]]\nname = \"mine\"\npath = \"" + path +
                             "\"\n";
  CmdResult bad_plugin = Chainrl("train " + plug);
  EXPECT_EQ(bad_plugin.code, 2) << bad_plugin.out;
  EXPECT_NE(bad_plugin.out.find("reward 'mine': '" + path + "' is not a shared library"),
            std::string::npos)
      << bad_plugin.out;
  CmdResult missing = Chainrl("train " + dir + "/nope.toml");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.out.find("nope.toml: no such config file"), std::string::npos);
  CmdResult badflag = Chainrl("train " + path + " --frobnicate");
  EXPECT_EQ(badflag.code, 2);
  EXPECT_NE(badflag.out.find("unknown option '--frobnicate'"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Values the schema knows but that are not implemented, and combinations the learner cannot run,
// exit 2 before anything starts, naming the key.
TEST(CliTest, RefusedValuesExitTwoNamingTheKey) {
  std::string dir = TempDir();
  std::string path = dir + "/run.toml";
  std::ofstream(path) << "[model]\npath = \"" << dir << "/no-model\"\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--set learner.stale_policy=correct",
       "learner.stale_policy = \"correct\" trains groups past learner.max_off_policy_steps with "
       "the rollout correction (docs/ALGORITHMS.md §2.4), and none is on"},
      {"--set algorithm.name=sft", "algorithm.name: 'sft' is refused: an SFT-only run"},
      {"--set rollout.compute_entropy=true",
       "rollout.compute_entropy: true is refused: per-token sample entropy is not implemented yet"},
      {"--set curriculum.budget_schedule=step",
       "curriculum.budget_schedule = \"step\" needs curriculum.budget_milestone_steps"},
      {"--set distributed.learner_ranks=2 --set run.device=cuda",
       "distributed.backend = 'auto' means 'nccl' on run.device = 'cuda'"},
      {"--set distributed.learner_ranks=2 --set distributed.backend=nccl",
       "distributed.backend = 'nccl'"},
      {"--set learner.bind=tcp://0.0.0.0:5555",
       "learner.bind = \"tcp://0.0.0.0:5555\" reaches beyond this host, and the learner has no "
       "keys"},
      {"--set learner.bind=tcp://[::]:5555", "Set security.learner_secret_key_file"},
      {"--set security.learner_secret_key_file=/nope.key", "security.authorized_keys_file is not"},
  };
  for (const auto& [sets, message] : cases) {
    CmdResult r = Chainrl("train " + path + " --check " + sets);
    EXPECT_EQ(r.code, 2) << sets << "\n" << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << sets << "\n" << r.out;
  }
  // A rank of a torchrun-style learner refuses the backend before it joins the group.
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "1", 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", "29513", 1);
  CmdResult rank = Chainrl("learner " + path + " --set run.device=cuda:0");
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(v);
  EXPECT_EQ(rank.code, 2) << rank.out;
  EXPECT_NE(rank.out.find("distributed.backend = 'auto' means 'nccl' on run.device = 'cuda:0'"),
            std::string::npos)
      << rank.out;
  std::filesystem::remove_all(dir);
}

// `chainrl keys` makes a pair and never overwrites one; a learner bound beyond loopback on a
// network declared trusted starts with a warning; with keys, the launcher's actors need theirs.
TEST(CliTest, KeysAndWhatTheLauncherChecks) {
  std::string dir = TempDir();
  std::string path = dir + "/run.toml";
  std::ofstream(path) << "[model]\npath = \"" << dir << "/no-model\"\n"
                      << "[[rewards]]\nname = \"short\"\nkind = \"length\"\n"
                      << "options = { target_tokens = 16, max_tokens = 48 }\n";
  CmdResult made = Chainrl("keys learner --dir " + dir + "/keys");
  ASSERT_EQ(made.code, 0) << made.out;
  const std::string pub = ReadText(dir + "/keys/learner.pub");
  ASSERT_EQ(pub.size(), 40u + 1 + 7 + 1) << pub;  // "<key> learner\n"
  EXPECT_NE(made.out.find(pub.substr(0, 40)), std::string::npos) << made.out;
  const std::string secret = ReadText(dir + "/keys/learner.key");
  CmdResult again = Chainrl("keys learner --dir " + dir + "/keys");
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.out.find("never overwritten"), std::string::npos) << again.out;
  EXPECT_EQ(ReadText(dir + "/keys/learner.key"), secret);
  CmdResult trusted = Chainrl("train " + path +
                              " --check --set learner.bind=tcp://0.0.0.0:5555 --set "
                              "security.trusted_network=true");
  EXPECT_EQ(trusted.code, 0) << trusted.out;
  EXPECT_NE(trusted.out.find("SECURITY: learner.bind = tcp://0.0.0.0:5555 is reachable beyond "
                             "this host WITHOUT authentication"),
            std::string::npos)
      << trusted.out;
  const std::string keyed =
      " --check --set learner.bind=tcp://0.0.0.0:5555 --set "
      "security.learner_secret_key_file=" +
      dir + "/keys/learner.key --set security.authorized_keys_file=" + dir + "/keys/learner.pub";
  CmdResult no_actor_key = Chainrl("train " + path + keyed);
  EXPECT_EQ(no_actor_key.code, 2) << no_actor_key.out;
  EXPECT_NE(no_actor_key.out.find("set security.actor_secret_key_file"), std::string::npos)
      << no_actor_key.out;
  ASSERT_EQ(Chainrl("keys host-a --dir " + dir + "/keys").code, 0);
  CmdResult ok = Chainrl("train " + path + keyed + " --set security.actor_secret_key_file=" + dir +
                         "/keys/host-a.key");
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_EQ(ok.out.find("SECURITY:"), std::string::npos) << ok.out;
  std::filesystem::remove_all(dir);
}

// A learner started as one of several torchrun-style ranks would train and publish on its own,
// as would every other rank: refused with the reason, as are malformed rank variables.
// A rank other than 0 started by a torchrun-style launcher joins rank 0's group first: with no
// rank 0 at MASTER_ADDR:MASTER_PORT it fails within distributed.timeout_seconds, naming the
// address, and creates no run directory of its own (only rank 0 writes one).
TEST(CliTest, LearnerRankWithoutRankZeroFailsNamingTheAddress) {
  std::string dir = TempDir();
  std::string path = dir + "/run.toml";
  std::ofstream(path) << "[model]\npath = \"" << dir << "/no-model\"\n";
  const std::string cmd =
      "learner " + path + " --run-dir " + dir + "/run-dp --set distributed.timeout_seconds=1";
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "1", 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", "29511", 1);
  const auto t0 = std::chrono::steady_clock::now();
  CmdResult two = Chainrl(cmd);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  setenv("RANK", "one", 1);
  CmdResult bad = Chainrl(cmd);
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(v);
  EXPECT_EQ(two.code, 1) << two.out;
  EXPECT_NE(two.out.find("rank 1 of 2 could not form the group at 127.0.0.1:29511"),
            std::string::npos)
      << two.out;
  EXPECT_LT(seconds, 30.0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/run-dp"));
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("RANK='one' is not an integer in [0, 1]"), std::string::npos) << bad.out;
  std::filesystem::remove_all(dir);
}

TEST(CliTest, ConfigShowAndDocs) {
  std::string dir = TempDir();
  std::string path = dir + "/ok.toml";
  std::ofstream(path) << "[model]\npath = \"m\"\n";
  CmdResult r = Chainrl("config show " + path + " --set rollout.temperature=0.25");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rollout]"), std::string::npos);
  EXPECT_NE(r.out.find("temperature = 0.25\n"), std::string::npos) << r.out;
  CmdResult d = Chainrl("config docs --stdout");
  EXPECT_EQ(d.code, 0);
  EXPECT_EQ(d.out, chainrl::RenderConfigDocs());
  std::filesystem::remove_all(dir);
}

TEST(CliTest, TrainCheckAcceptsShippedQuickstart) {
  CmdResult r =
      Chainrl(std::string("train ") + CHAINRL_SOURCE_DIR + "/configs/quickstart.toml --check");
  EXPECT_EQ(r.code, 0) << r.out;
}

// A byte-level BPE tokenizer with the 256 byte tokens, no merges and one special token: enough
// for the model commands, written by the test itself (no downloads).
void WriteByteTokenizer(const std::string& dir) {
  std::filesystem::create_directories(dir);
  // GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards.
  nlohmann::json vocab = nlohmann::json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int cp = printable ? b : next++;
    std::string utf8;
    if (cp < 0x80) {
      utf8 = std::string(1, static_cast<char>(cp));
    } else {
      utf8 = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    vocab[utf8] = b;
  }
  nlohmann::json tok = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 256},
         {"content", "<|endoftext|>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  std::ofstream(dir + "/tokenizer.json") << tok.dump();
  nlohmann::json cfg = {{"eos_token", "<|endoftext|>"},
                        {"chat_template",
                         "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}"}};
  std::ofstream(dir + "/tokenizer_config.json") << cfg.dump();
}

TEST(CliTest, InitModelGenerateExportRoundTrip) {
  std::string dir = TempDir();
  WriteByteTokenizer(dir + "/tok");
  CmdResult init = Chainrl(
      "init-model --arch llama --layers 2 --hidden 32 --heads 4 --kv-heads 2 "
      "--intermediate 64 --vocab-from " +
      dir + "/tok --out " + dir + "/model --seed 5");
  ASSERT_EQ(init.code, 0) << init.out;
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json",
                        "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/model/" + f)) << f;
  std::string gen = "generate --model " + dir +
                    "/model --prompt 'Two plus two is' --json "
                    "--max-new-tokens 8 --seed 11 --num-samples 3";
  CmdResult a = Chainrl(gen), b = Chainrl(gen);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out) << "seeded generation must be reproducible";
  std::istringstream lines(a.out);
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["id"], "sample-" + std::to_string(n));
    EXPECT_LE(j["tokens"].size(), 8u);
    EXPECT_EQ(j["tokens"].size(), j["logprobs"].size());
    for (const auto& lp : j["logprobs"]) EXPECT_LE(lp.get<double>(), 0.0);
    ++n;
  }
  EXPECT_EQ(n, 3);
  CmdResult chat = Chainrl("generate --model " + dir +
                           "/model --prompt hi --chat --system 'be brief' "
                           "--max-new-tokens 4 --temperature 0");
  EXPECT_EQ(chat.code, 0) << chat.out;
  CmdResult exp = Chainrl("export " + dir + "/model --out " + dir + "/exported --dtype bfloat16");
  ASSERT_EQ(exp.code, 0) << exp.out;
  std::ifstream cfg(dir + "/exported/config.json");
  auto j = nlohmann::json::parse(cfg);
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_TRUE(std::filesystem::exists(dir + "/exported/tokenizer.json"));
  CmdResult again = Chainrl("generate --model " + dir + "/exported --prompt x --max-new-tokens 3");
  EXPECT_EQ(again.code, 0) << again.out;
  // Errors are exit 2 and name what is wrong.
  CmdResult missing = Chainrl("generate --model " + dir + "/nope --prompt x");
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find(dir + "/nope"), std::string::npos) << missing.out;
  // More new tokens than the model's context holds: refused before any cache is allocated.
  CmdResult huge =
      Chainrl("generate --model " + dir + "/model --prompt x --max-new-tokens 1000000000");
  EXPECT_EQ(huge.code, 2) << huge.out;
  EXPECT_NE(huge.out.find("and --max-new-tokens (1000000000) exceed the model's context of "),
            std::string::npos)
      << huge.out;
  CmdResult bad_export = Chainrl("export " + dir + "/nope --out " + dir + "/x");
  EXPECT_EQ(bad_export.code, 2) << bad_export.out;
  CmdResult bad_arch = Chainrl(
      "init-model --arch gpt2 --layers 1 --hidden 8 --heads 1 "
      "--kv-heads 1 --intermediate 8 --vocab-size 10 --out " +
      dir + "/y");
  EXPECT_EQ(bad_arch.code, 2) << bad_arch.out;
  // --dtype: the same model in bfloat16; an unknown dtype is exit 2 naming the option.
  CmdResult bf16 = Chainrl("generate --model " + dir +
                           "/model --prompt 'Two plus two is' --max-new-tokens 4 --dtype bfloat16");
  EXPECT_EQ(bf16.code, 0) << bf16.out;
  CmdResult bad_dtype =
      Chainrl("generate --model " + dir + "/model --prompt x --max-new-tokens 2 --dtype int3");
  EXPECT_EQ(bad_dtype.code, 2) << bad_dtype.out;
  EXPECT_NE(bad_dtype.out.find("--dtype"), std::string::npos) << bad_dtype.out;
  std::filesystem::remove_all(dir);
}

// A vocabulary far larger than the tokenizer is refused when the model is made; one padded as
// checkpoints pad it (to a multiple of 128) is accepted, and a generation that samples a padding
// id is printed whole, the id marked, with a warning: never thrown away.
TEST(CliTest, VocabularyPastTheTokenizerIsRefusedOrMarked) {
  std::string dir = TempDir();
  const std::string shape =
      "init-model --arch qwen2 --layers 1 --hidden 32 --heads 2 --kv-heads 1 --intermediate 64 "
      "--tokenizer bytes --seed 3 ";
  CmdResult huge = Chainrl(shape + "--vocab-size 151936 --out " + dir + "/huge");
  EXPECT_EQ(huge.code, 2) << huge.out;
  EXPECT_NE(huge.out.find("vocab size 151936 is larger than the tokenizer's"), std::string::npos)
      << huge.out;
  EXPECT_NE(huge.out.find("would have no token"), std::string::npos) << huge.out;
  CmdResult padded = Chainrl(shape + "--vocab-size 384 --out " + dir + "/padded");
  ASSERT_EQ(padded.code, 0) << padded.out;
  // An untrained model samples the 100-odd padding rows often: 64 tokens at temperature 1 hold
  // some with near certainty, whatever the seed.
  CmdResult gen = Chainrl("generate --model " + dir +
                          "/padded --prompt 'abc' --max-new-tokens 64 --seed 1 --json");
  ASSERT_EQ(gen.code, 0) << gen.out;
  EXPECT_NE(gen.out.find("<|id:"), std::string::npos) << gen.out;
  EXPECT_NE(gen.out.find("have no token in"), std::string::npos) << gen.out;
  std::filesystem::remove_all(dir);
}

// The rollout bench at smoke-test sizes: its last line is one JSON object with every headline
// figure (positive), the KV-cache comparison generated the same tokens both ways, and the segment
// comparison's steady-state window really had carried samples; --only runs one comparison, and an
// unknown one is a usage error naming the choices.
TEST(CliTest, RolloutBenchQuickPrintsEveryFigure) {
  auto last_json = [](const std::string& out) {
    std::string line, last;
    std::istringstream in(out);
    while (std::getline(in, line))
      if (!line.empty() && line[0] == '{') last = line;
    return nlohmann::json::parse(last, nullptr, false);
  };
  CmdResult r = Chainrl("bench rollout --quick");
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json j = last_json(r.out);
  ASSERT_TRUE(j.is_object()) << r.out;
  for (const char* k : {"kv_cache_speedup", "prefix_sharing_speedup", "continuous_batching_speedup",
                        "segment_rollout_speedup", "decode_tokens_per_second"}) {
    ASSERT_TRUE(j.contains(k) && j[k].is_number()) << k << "\n" << r.out;
    EXPECT_GT(j[k].get<double>(), 0.0) << k;
  }
  EXPECT_EQ(j["details"]["kv_cache"]["same_tokens"], true);
  const auto& seg = j["details"]["segments"];
  EXPECT_GT(seg["carried_tokens_at_start"].get<int64_t>(), 0) << seg.dump();
  EXPECT_GT(seg["cold_start_speedup"].get<double>(), 0.0);

  CmdResult one = Chainrl("bench rollout --quick --only segment");
  ASSERT_EQ(one.code, 0) << one.out;
  nlohmann::json o = last_json(one.out);
  ASSERT_TRUE(o.is_object()) << one.out;
  EXPECT_TRUE(o.contains("segment_rollout_speedup"));
  EXPECT_FALSE(o.contains("kv_cache_speedup"));
  CmdResult bad = Chainrl("bench rollout --quick --only kv-cache");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--only 'kv-cache': expected kv, prefix, batching, segment or decode"),
            std::string::npos)
      << bad.out;
}

}  // namespace
