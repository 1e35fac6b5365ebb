// Tests of whole-model load/save in HF layout: bit-exact round trips (single file and shards,
// float32 and bfloat16), dtype conversion on load, and errors listing missing/extra tensors.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model/model_io.h"

namespace chainrl::model {
namespace {
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("chainrl_model_io_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

ModelConfig Tiny(Architecture arch, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = arch == Architecture::kQwen3 ? 6 : 4;
  c.tie_word_embeddings = tied;
  c.extra_json = R"({"bos_token_id": 1, "eos_token_id": 2, "custom_key": "kept"})";
  return c;
}

bool BitEqual(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  torch::Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()) == 0;
}

void ExpectSameWeights(DecoderModel& a, DecoderModel& b) {
  auto sa = ModelStateDict(a), sb = ModelStateDict(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [k, t] : sa) EXPECT_TRUE(BitEqual(t, sb.at(k))) << k;
}

TEST(ModelIo, SaveLoadRoundTripIsBitExact) {
  for (auto arch : {Architecture::kQwen2, Architecture::kQwen3, Architecture::kLlama}) {
    for (bool tied : {false, true}) {
      fs::path dir = TempDir(std::string(ArchitectureName(arch)) + (tied ? "_tied" : ""));
      DecoderModel m(Tiny(arch, tied));
      m.InitWeights(42);
      ASSERT_TRUE(SaveModel(m, dir.string()).ok());
      EXPECT_TRUE(fs::exists(dir / "config.json"));
      EXPECT_TRUE(fs::exists(dir / "generation_config.json"));
      EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
      auto loaded = LoadModel(dir.string());
      ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
      ExpectSameWeights(m, **loaded);
      EXPECT_EQ((*loaded)->named_parameters().contains("lm_head.weight"), !tied);
      torch::NoGradGuard g;
      torch::Tensor ids = torch::tensor({3, 1, 4, 1, 5}, torch::kLong).view({1, 5});
      EXPECT_TRUE(
          torch::equal(m.Logits(m.Forward(ids)), (*loaded)->Logits((*loaded)->Forward(ids))));
    }
  }
}

TEST(ModelIo, ShardedRoundTripAndConfigKeys) {
  fs::path dir = TempDir("sharded");
  DecoderModel m(Tiny(Architecture::kQwen2, false));
  m.InitWeights(3);
  ASSERT_TRUE(SaveModel(m, dir.string(), 4000).ok());
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  auto loaded = LoadModel(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameWeights(m, **loaded);
  std::ifstream in(dir / "config.json");
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["custom_key"], "kept");
  EXPECT_EQ(j["model_type"], "qwen2");
  EXPECT_EQ(j["torch_dtype"], "float32");
  std::ifstream gin(dir / "generation_config.json");
  auto g = nlohmann::json::parse(gin);
  EXPECT_EQ(g["eos_token_id"], 2);
}

TEST(ModelIo, Bfloat16FilesLoadBitExactOrConverted) {
  fs::path dir = TempDir("bf16");
  DecoderModel m(Tiny(Architecture::kLlama, false), ModelOptions().set_dtype(torch::kBFloat16));
  m.InitWeights(5);
  ASSERT_TRUE(SaveModel(m, dir.string()).ok());
  auto same = LoadModel(dir.string(), ModelOptions().set_dtype(torch::kBFloat16));
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  ExpectSameWeights(m, **same);
  auto f32 = LoadModel(dir.string());  // converted to float32 (exactly: bf16 -> f32 is lossless)
  ASSERT_TRUE(f32.ok());
  for (const auto& [k, t] : ModelStateDict(**f32)) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat);
    EXPECT_TRUE(BitEqual(t.to(torch::kBFloat16), ModelStateDict(m).at(k))) << k;
  }
}

TEST(ModelIo, MissingAndExtraTensorsAreListed) {
  fs::path dir = TempDir("mismatch");
  DecoderModel m(Tiny(Architecture::kQwen2, false));
  m.InitWeights(1);
  ASSERT_TRUE(SaveModel(m, dir.string()).ok());
  TensorMap w = LoadSafetensorsDir(dir.string()).value();
  TensorMap changed;
  for (const auto& [k, t] : w) changed[k] = t.clone();
  changed.erase("model.layers.1.mlp.up_proj.weight");
  changed.erase("model.norm.weight");
  changed["model.layers.7.mlp.up_proj.weight"] = torch::zeros({2});
  changed["model.layers.0.self_attn.q_proj.weight"] = torch::zeros({3, 3});
  changed["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch::zeros({2});  // ignored
  ASSERT_TRUE(SaveSafetensors((dir / "model.safetensors").string(), changed).ok());
  auto r = LoadModel(dir.string());
  ASSERT_FALSE(r.ok());
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensors: model.layers.1.mlp.up_proj.weight, model.norm.weight"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("unexpected tensors: model.layers.7.mlp.up_proj.weight"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model.layers.0.self_attn.q_proj.weight (file [3, 3]"), std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("inv_freq"), std::string::npos) << msg;

  // An unsupported architecture in config.json is an error naming the file and key.
  std::ofstream(dir / "config.json") << R"({"model_type":"gpt2","vocab_size":5})";
  auto bad = LoadModel(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("config.json: key 'model_type'"), std::string::npos)
      << bad.status().ToString();
}

TEST(ModelIo, InitWeightsFollowsHfInitialisation) {
  ModelConfig c = Tiny(Architecture::kLlama, false);
  c.attention_bias = true;
  c.mlp_bias = true;
  c.vocab_size = 4000;
  DecoderModel m(c);
  m.InitWeights(9);
  auto p = m.named_parameters();
  EXPECT_TRUE(torch::equal(p["model.norm.weight"], torch::ones({16})));
  EXPECT_TRUE(torch::equal(p["model.layers.0.self_attn.q_proj.bias"], torch::zeros({16})));
  torch::Tensor e = p["model.embed_tokens.weight"];
  EXPECT_NEAR(e.std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(e.mean().item<double>(), 0.0, 0.001);
  DecoderModel m2(c);
  m2.InitWeights(9);
  ExpectSameWeights(m, m2);  // deterministic for a seed
}

}  // namespace
}  // namespace chainrl::model
