// Tests of whole-model load/save in HF layout: bit-exact round trips (single file and shards,
// float32 and bfloat16), dtype conversion on load, and errors listing missing/extra tensors.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>

#include <nlohmann/json.hpp>

#include "apps/run_config.h"
#include "model/flat_weights.h"
#include "model/lora_io.h"
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

// A model with NaN or infinite weights (a broken conversion) is refused when the learner loads it,
// naming the parameter, instead of stalling a run whose every trajectory would be rejected.
TEST(ModelIo, NonFiniteParametersAreNamed) {
  DecoderModel m(Tiny(Architecture::kLlama, false));
  m.InitWeights(7);
  EXPECT_TRUE(CheckFiniteParameters(m, "models/m").ok());
  {
    torch::NoGradGuard g;
    auto w = m.named_parameters()["model.layers.1.mlp.up_proj.weight"];
    w.view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
    w.view(-1)[5] = std::numeric_limits<float>::infinity();
  }
  Status st = CheckFiniteParameters(m, "models/m");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "models/m: parameter 'model.layers.1.mlp.up_proj.weight' holds 2 NaN or infinite "
            "values (of 384); such a policy cannot be trained or sampled");
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

// Weights published in the actors' dtype: float32 master weights packed as bfloat16 land in a
// bfloat16 model exactly as a cast of the master weights, in half the bytes; the formats agree,
// and a receiver of another dtype refuses them by name.
TEST(FlatWeights, PackedInTheReceiversDtype) {
  ModelConfig c = Tiny(Architecture::kQwen2, /*tied=*/false);
  DecoderModel master(c);
  master.InitWeights(5);
  DecoderModel actor(c, ModelOptions().set_dtype(torch::kBFloat16));
  const size_t n32 = FlatWeightsBytes(master), n16 = FlatWeightsBytes(master, torch::kBFloat16);
  EXPECT_EQ(n16 * 2, n32);
  EXPECT_EQ(n16, FlatWeightsBytes(actor));
  EXPECT_EQ(FlatWeightsFormat(master, torch::kBFloat16), FlatWeightsFormat(actor));
  EXPECT_NE(FlatWeightsFormat(master), FlatWeightsFormat(actor));
  std::vector<uint8_t> buf(n16);
  PackFlatWeights(master, buf.data(), torch::kBFloat16);
  ASSERT_TRUE(
      UnpackFlatWeights(actor, buf, FlatWeightsFormat(master, torch::kBFloat16), "learner").ok());
  auto a = actor.named_parameters();
  for (const auto& p : master.named_parameters())
    EXPECT_TRUE(BitEqual(a[p.key()], p.value().to(torch::kBFloat16))) << p.key();
  std::vector<uint8_t> full(n32);
  PackFlatWeights(master, full.data());
  Status st = UnpackFlatWeights(actor, full, FlatWeightsFormat(master), "learner");
  EXPECT_NE(st.message().find("learner: full weights of format"), std::string::npos)
      << st.ToString();
}

// A LoRA model publishes its adapters alone: the bytes of A and B, in the receiver's dtype; an
// actor with the same [lora] takes them onto its own base and forwards as the learner does; an
// actor without adapters, or with another rank, refuses them and says why.
TEST(FlatWeights, LoraPublishesTheAdaptersAloneAndMismatchedReceiversRefuse) {
  ModelConfig c = Tiny(Architecture::kQwen2, /*tied=*/false);
  LoraOptions lo;
  lo.targets = {"q_proj", "v_proj", "down_proj"};
  lo.rank = 4;
  lo.alpha = 8;
  DecoderModel learner(c);
  learner.InitWeights(5);
  ASSERT_TRUE(learner.AttachLora(lo, 1).ok());
  {
    torch::NoGradGuard ng;
    for (auto& [n, t] : learner.LoraParameters()) t.normal_(0, 0.1);
  }
  size_t adapter_bytes = 0;
  for (auto& [n, t] : learner.LoraParameters()) adapter_bytes += t.numel() * 2;  // as bfloat16
  const size_t n = FlatWeightsBytes(learner, torch::kBFloat16);
  EXPECT_EQ(n, adapter_bytes);
  size_t full_bytes = 0;
  for (const auto& p : learner.named_parameters()) full_bytes += p.value().numel() * 2;
  EXPECT_LT(n * 5, full_bytes);
  std::vector<uint8_t> buf(n);
  PackFlatWeights(learner, buf.data(), torch::kBFloat16);
  const std::string format = FlatWeightsFormat(learner, torch::kBFloat16);
  EXPECT_EQ(format.rfind(kLoraFlatPrefix, 0), 0u) << format;

  auto actor_model = [&](const std::optional<LoraOptions>& l) {
    auto a = std::make_shared<DecoderModel>(c, ModelOptions().set_dtype(torch::kBFloat16));
    a->InitWeights(5);  // the same base, read from model.path in a run
    if (l) EXPECT_TRUE(a->AttachLora(*l, 2, torch::kBFloat16).ok());
    return a;
  };
  auto actor = actor_model(lo);
  ASSERT_TRUE(UnpackFlatWeights(*actor, buf, format, "learner").ok());
  auto mine = actor->LoraParameters();
  auto theirs = learner.LoraParameters();
  ASSERT_EQ(mine.size(), theirs.size());
  for (size_t i = 0; i < mine.size(); ++i)
    EXPECT_TRUE(BitEqual(mine[i].second, theirs[i].second.to(torch::kBFloat16))) << mine[i].first;
  {
    torch::NoGradGuard ng;
    const torch::Tensor ids = torch::randint(0, c.vocab_size, {1, 7}, torch::kLong);
    auto inference = CopyModel(learner, ModelOptions().set_dtype(torch::kBFloat16));
    EXPECT_TRUE(torch::equal(actor->Logits(actor->Forward(ids)),
                             inference->Logits(inference->Forward(ids))));
  }
  // Merged into the weights (lora.actor_merge): merging is from the kept base each time, so two
  // updates merged one after the other give the weights of the second merged alone; the logits
  // are the unmerged ones up to bfloat16 rounding.
  {
    torch::NoGradGuard ng;
    const torch::Tensor ids = torch::randint(0, c.vocab_size, {1, 7}, torch::kLong);
    auto twice = actor_model(lo);
    auto once = actor_model(lo);
    std::vector<uint8_t> first(n);
    {
      auto other = CopyModel(learner, ModelOptions());
      for (auto& [name, t] : other->LoraParameters()) t.mul_(-3.0);
      PackFlatWeights(*other, first.data(), torch::kBFloat16);
    }
    ASSERT_TRUE(UnpackFlatWeights(*twice, first, format, "learner").ok());
    twice->MergeLora();
    ASSERT_TRUE(UnpackFlatWeights(*twice, buf, format, "learner").ok());
    twice->MergeLora();
    ASSERT_TRUE(UnpackFlatWeights(*once, buf, format, "learner").ok());
    once->MergeLora();
    EXPECT_TRUE(once->lora_merged());
    auto pt = twice->named_parameters();
    for (const auto& p : once->named_parameters())
      EXPECT_TRUE(BitEqual(pt[p.key()], p.value())) << p.key();
    const torch::Tensor merged = once->Logits(once->Forward(ids)).to(torch::kFloat);
    const torch::Tensor unmerged = actor->Logits(actor->Forward(ids)).to(torch::kFloat);
    EXPECT_LE((merged - unmerged).abs().max().item<double>(),
              0.05 * std::max(1.0, unmerged.abs().max().item<double>()));
    EXPECT_FALSE(torch::equal(
        merged, actor_model(std::nullopt)->Logits(actor_model(std::nullopt)->Forward(ids))));
  }
  Status st = UnpackFlatWeights(*actor_model(std::nullopt), buf, format, "learner");
  EXPECT_NE(st.message().find("LoRA adapters were published and this model takes full weights"),
            std::string::npos)
      << st.ToString();
  LoraOptions rank8 = lo;
  rank8.rank = 8;
  st = UnpackFlatWeights(*actor_model(rank8), buf, format, "learner");
  EXPECT_NE(st.message().find("LoRA rank, targets or scale"), std::string::npos) << st.ToString();
}

Config RunConfig(const std::vector<std::string>& sets) {
  auto c = ParseConfig("[model]\npath = \"models/m\"\n", "run.toml", sets);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

TEST(LoraOptionsFromConfig, OffByDefaultAndEveryKeyTakenOrRefused) {
  auto none = LoraOptionsFromConfig(RunConfig({}));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto on = LoraOptionsFromConfig(RunConfig({"lora.enabled=true", "lora.rank=8", "lora.alpha=4",
                                             "lora.rslora=true", "lora.targets=[\"q_proj\"]"}));
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  ASSERT_TRUE(on->has_value());
  EXPECT_EQ((*on)->rank, 8);
  EXPECT_EQ((*on)->targets, std::vector<std::string>{"q_proj"});
  EXPECT_DOUBLE_EQ((*on)->Scale(), 4.0 / std::sqrt(8.0));
  // The default targets: every projection; scale alpha / r.
  auto all = LoraOptionsFromConfig(RunConfig({"lora.enabled=true"}));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)->targets.size(), 7u);
  EXPECT_DOUBLE_EQ((*all)->Scale(), 2.0);
  // Unknown targets and repeated ones are refused, naming the key.
  auto bad = ParseConfig("[model]\npath = \"m\"\n", "run.toml",
                         {"lora.enabled=true", "lora.targets=[\"qkv\"]"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("lora.targets"), std::string::npos)
      << bad.status().ToString();
  auto twice = LoraOptionsFromConfig(
      RunConfig({"lora.enabled=true", "lora.targets=[\"q_proj\", \"q_proj\"]"}));
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("named twice"), std::string::npos);
}

TEST(ModelOptionsFromConfig, TrainingKeepsMasterWeightsInferenceHoldsTheComputeDtype) {
  Config mixed = RunConfig({"model.dtype=\"float32\"", "model.compute_dtype=\"bfloat16\""});
  auto train = ModelOptionsFromConfig(mixed, ModelRole::kTraining);
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ(train->dtype, torch::kFloat);
  EXPECT_EQ(train->ComputeDtype(), torch::kBFloat16);
  EXPECT_TRUE(train->Mixed());
  EXPECT_TRUE(train->device.is_cpu());
  auto infer = ModelOptionsFromConfig(mixed, ModelRole::kInference);
  ASSERT_TRUE(infer.ok()) << infer.status().ToString();
  EXPECT_EQ(infer->dtype, torch::kBFloat16);
  EXPECT_FALSE(infer->Mixed());
  EXPECT_TRUE(RequireCpuProcess(*infer, mixed).ok());

  auto defaults = ModelOptionsFromConfig(RunConfig({}), ModelRole::kTraining);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->dtype, torch::kFloat);
  EXPECT_FALSE(defaults->Mixed());
}

TEST(ModelOptionsFromConfig, DeviceErrorsNameTheKey) {
  Config cuda = RunConfig({"run.device=\"cuda\""});
  auto o = ModelOptionsFromConfig(cuda, ModelRole::kTraining);
  if (torch::cuda::is_available()) {
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    Status st = RequireCpuProcess(*o, cuda);
    EXPECT_NE(st.message().find("run.device is 'cuda'"), std::string::npos) << st.ToString();
  } else {
    ASSERT_FALSE(o.ok());
    EXPECT_NE(o.status().message().find("run.device is 'cuda' but CUDA is not available"),
              std::string::npos)
        << o.status().ToString();
  }
  // float16 compute: either the device runs it, or the error names the key and says why.
  auto half = ModelOptionsFromConfig(RunConfig({"model.compute_dtype=\"float16\""}),
                                     ModelRole::kTraining);
  std::cout << "float16 compute on cpu: "
            << (half.ok() ? std::string("supported") : half.status().message()) << "\n";
  if (!half.ok()) {
    EXPECT_NE(half.status().message().find("model.compute_dtype 'float16' is not supported on cpu"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace chainrl::model
