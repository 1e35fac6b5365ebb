// LoRA: the adapters' gradients through every objective family and path are the chain rule of the
// merged weights' (dL/dA = s Bᵀ G, dL/dB = s G Aᵀ with G = dL/dW of the model holding
// W + s B A), the reference of a LoRA policy is its base, and checkpoints carry the adapters.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "learner/checkpoint.h"
#include "learner/optimizer.h"
#include "learner/rl_step.h"
#include "learner/run_options.h"
#include "model/decoder.h"
#include "model/lora_io.h"
#include "model/model_io.h"
#include "tests/learner/grad_check.h"
#include "tests/model/tiny_model.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;
using torch::Tensor;

constexpr int64_t kVocab = 50;
constexpr int64_t kHuge = 1 << 20;

model::LoraOptions AllTargets(int64_t rank = 4, double alpha = 8, bool rslora = false) {
  model::LoraOptions o;
  o.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  o.rank = rank;
  o.alpha = alpha;
  o.rslora = rslora;
  return o;
}

// A tiny LoRA policy: base from `seed`, frozen; adapters with B drawn non-zero (a policy some
// updates away from its base, so that both A's and B's gradients are non-trivial).
std::shared_ptr<model::DecoderModel> LoraPolicy(uint64_t seed, const model::LoraOptions& lo) {
  auto m = chainrl::testing::TinyModel(chainrl::testing::TinyConfig(kVocab, 0.1, false), seed);
  EXPECT_TRUE(m->AttachLora(lo, seed + 100).ok());
  for (auto& p : m->parameters()) p.requires_grad_(false);
  torch::NoGradGuard ng;
  torch::manual_seed(static_cast<uint64_t>(seed) + 7);
  for (auto& [name, t] : m->LoraParameters())
    if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.05);
  return m;
}

// The plain model holding the merged weights W + s B A (float32), every parameter trainable.
std::shared_ptr<model::DecoderModel> Merged(model::DecoderModel& lora) {
  auto m = std::make_shared<model::DecoderModel>(lora.config());
  model::TensorMap t;
  for (auto& [k, v] : lora.MergedParameters(torch::kFloat32)) t.emplace(k, v);
  EXPECT_TRUE(model::CopyStateDict(*m, t, "merged").ok());
  return m;
}

// The base alone (adapters dropped).
std::shared_ptr<model::DecoderModel> Base(model::DecoderModel& lora) {
  auto m = std::make_shared<model::DecoderModel>(lora.config());
  EXPECT_TRUE(model::CopyStateDict(*m, model::ModelStateDict(lora), "base").ok());
  return m;
}

using chainrl::testing::Grads;
using chainrl::testing::MaxAbs;
using chainrl::testing::MaxRelErr;

Grads AdapterGrads(model::DecoderModel& m) {
  Grads g;
  for (auto& [name, t] : m.LoraParameters())
    g[name] = t.grad().defined() ? t.grad().detach().clone() : torch::zeros_like(t);
  return g;
}

// What the adapters' gradients must be, from the merged model's weight gradients.
Grads ChainRule(model::DecoderModel& lora, model::DecoderModel& merged) {
  const double s = lora.lora_options().Scale();
  auto params = merged.named_parameters();
  auto adapters = lora.LoraParameters();
  Grads want;
  for (size_t i = 0; i < adapters.size(); i += 2) {
    const std::string& a_name = adapters[i].first;  // base_model.model.<module>.lora_A.weight
    const std::string module =
        a_name.substr(std::string("base_model.model.").size(),
                      a_name.size() - std::string("base_model.model.").size() -
                          std::string(".lora_A.weight").size());
    const Tensor G = params[module + ".weight"].grad();
    const Tensor A = adapters[i].second.detach(), B = adapters[i + 1].second.detach();
    want[a_name] = s * torch::matmul(B.t(), G);
    want[adapters[i + 1].first] = s * torch::matmul(G, A.t());
  }
  return want;
}

std::vector<int32_t> Tokens(std::mt19937& gen, int n) {
  std::uniform_int_distribution<int32_t> tok(0, kVocab - 1);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(tok(gen));
  return out;
}

// Groups of ragged samples whose behaviour logprobs are the policy's own (so ratios are near 1,
// away from the clip edges) plus a little noise.
std::vector<GroupData> MakeGroups(model::DecoderModel& m) {
  std::mt19937 gen(17);
  std::uniform_real_distribution<double> jitter(-0.05, 0.05);
  const std::vector<std::vector<double>> rewards = {{1, 0, 0.5}, {0, 0, 1, 0.25}};
  std::vector<GroupData> groups;
  torch::NoGradGuard ng;
  for (size_t g = 0; g < rewards.size(); ++g) {
    GroupData gd;
    gd.group_id = 10 + g;
    gd.prompt = Tokens(gen, 3 + static_cast<int>(g));
    for (size_t i = 0; i < rewards[g].size(); ++i) {
      SampleData sd;
      sd.tokens = Tokens(gen, 2 + static_cast<int>((g * 5 + i * 3) % 8));
      std::vector<int64_t> ids(gd.prompt.begin(), gd.prompt.end());
      ids.insert(ids.end(), sd.tokens.begin(), sd.tokens.end());
      const Tensor lsm = torch::log_softmax(
          m.Logits(m.Forward(torch::tensor(ids, torch::kLong).unsqueeze(0)))[0].to(torch::kFloat),
          -1);
      const int64_t P = static_cast<int64_t>(gd.prompt.size());
      for (size_t t = 0; t < sd.tokens.size(); ++t)
        sd.behaviour_logprobs.push_back(static_cast<float>(
            lsm[P - 1 + static_cast<int64_t>(t)][sd.tokens[t]].item<double>() + jitter(gen)));
      sd.reward = rewards[g][i];
      sd.correct = sd.reward >= 1;  // DRPO shapes the correct samples by length
      gd.samples.push_back(std::move(sd));
    }
    groups.push_back(std::move(gd));
  }
  return groups;
}

struct Path {
  const char* name;
  bool streambp;
  int64_t micro_batch_tokens;
};
const Path kPaths[] = {{"autograd, one micro-batch", false, kHuge},
                       {"streaming backprop 3/5, micro-batches of 20 tokens", true, 20}};

LearnerRunOptions WithPath(LearnerRunOptions o, const Path& p) {
  o.streambp = p.streambp;
  o.layer_chunk_tokens = p.streambp ? 3 : 0;
  o.logits_chunk_tokens = p.streambp ? 5 : 512;
  o.memory_budget_bytes = 1 << 30;
  return o;
}

struct Family {
  const char* name = "";
  LearnerRunOptions options;
  bool preference = false;
  bool sft = false;
  bool reference = false;
};

std::vector<Family> Families() {
  std::vector<Family> f;
  {
    Family x;
    x.name = "SFT";
    x.sft = true;
    f.push_back(x);
  }
  {
    Family x;
    x.name = "GRPO with k3 KL to the base";
    x.options.policy.set_kl_coef(0.05).set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean);
    x.reference = true;
    f.push_back(x);
  }
  {
    Family x;
    x.name = "DAPO token-mean, clip-higher";
    x.options.policy.set_loss_agg_mode(LossAggMode::kTokenMean).set_clip_ratio_high(0.28);
    f.push_back(x);
  }
  {
    Family x;
    x.name = "GSPO";
    x.options.policy.set_policy_loss(PolicyLossKind::kGspo);
    f.push_back(x);
  }
  {
    Family x;
    x.name = "DRPO (length shaping)";
    x.options.drpo = true;
    f.push_back(x);
  }
  {
    Family x;
    x.name = "DPO against the base";
    x.options.family = ObjectiveFamily::kPreference;
    x.options.preference.loss_type = PreferenceLossType::kDpo;
    x.preference = true;
    x.reference = true;
    f.push_back(x);
  }
  return f;
}

// One update with the optimiser step skipped, on `m` (LoRA or merged), its reference `ref`.
void RunUpdate(model::DecoderModel& m, model::DecoderModel* ref, const Family& fam,
               const Path& path, const std::vector<GroupData>& groups) {
  const LearnerRunOptions o = WithPath(fam.options, path);
  auto opt = Optimizer::Create(m.TrainableParameters(), o.optimizer);
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  (*opt)->ZeroGrad();
  if (fam.sft) {
    std::vector<SftExample> batch;
    for (const auto& g : groups)
      for (const auto& s : g.samples) batch.push_back({g.prompt, s.tokens});
    auto r = RunSftUpdate(m, **opt, batch, o, path.micro_batch_tokens, true);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    return;
  }
  RlStepOptions s;
  s.micro_batch_tokens = path.micro_batch_tokens;
  s.skip_optimizer_step = true;
  s.reference = ref;
  if (fam.preference) {
    auto r = RunPreferenceUpdate(m, **opt, OnlinePreferencePairs(groups, 1), o, s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    return;
  }
  auto r = RunPolicyUpdate(m, **opt, groups, o, s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  if (fam.reference) {
    EXPECT_GT(r->policy.ref_kl(), 1e-5);  // the adapters moved the policy off its base
  }
}

TEST(LoraTest, AdapterGradientsAreTheChainRuleOfTheMergedWeightsForEveryObjective) {
  for (const bool rslora : {false, true}) {
    auto lora = LoraPolicy(3, AllTargets(4, 8, rslora));
    auto merged = Merged(*lora);
    auto base = Base(*lora);
    const auto groups = MakeGroups(*lora);
    for (const Family& fam : Families()) {
      for (const Path& path : kPaths) {
        SCOPED_TRACE(std::string(fam.name) + " | " + path.name + (rslora ? " | rsLoRA" : ""));
        // The LoRA policy's reference is itself with the adapters off; the merged model's is
        // the base as a separate model.
        RunUpdate(*lora, fam.reference ? lora.get() : nullptr, fam, path, groups);
        merged->zero_grad();
        RunUpdate(*merged, fam.reference ? base.get() : nullptr, fam, path, groups);
        const Grads got = AdapterGrads(*lora), want = ChainRule(*lora, *merged);
        ASSERT_GT(MaxAbs(want), 1e-5);
        std::fprintf(stderr, "%s | %s%s: max |dL/d(A,B)| %.3g, relative error %.3g\n", fam.name,
                     path.name, rslora ? " | rsLoRA" : "", MaxAbs(want), MaxRelErr(got, want));
        EXPECT_LE(MaxRelErr(got, want), 1e-5) << "max |grad| " << MaxAbs(want);
        // The base took no gradient, and the adapters are switched back on.
        for (auto& p : lora->parameters()) EXPECT_FALSE(p.grad().defined());
        EXPECT_TRUE(lora->lora_enabled());
      }
    }
  }
}

Tensor LogitsOf(model::DecoderModel& m, const Tensor& ids) {
  torch::NoGradGuard ng;
  return m.Logits(m.Forward(ids)).to(torch::kFloat);
}

TEST(LoraTest, BaseReferenceMergedExportAndPeftAdapterRoundTrip) {
  auto lora = LoraPolicy(5, AllTargets(8, 16));
  auto base = Base(*lora);
  const Tensor ids = torch::randint(0, kVocab, {2, 11}, torch::kLong);
  const Tensor with = LogitsOf(*lora, ids);
  {
    model::LoraDisabled off(*lora);
    // Adapters off: exactly the base.
    EXPECT_TRUE(torch::equal(LogitsOf(*lora, ids), LogitsOf(*base, ids)));
  }
  EXPECT_GT((with - LogitsOf(*base, ids)).abs().max().item<double>(), 1e-3);
  // The merged export (float32) is the unmerged forward within 1e-6.
  const fs::path dir = fs::temp_directory_path() / ("chainrl_lora_" + std::to_string(getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(model::SaveMergedModel(*lora, (dir / "merged").string()).ok());
  auto loaded = model::LoadModel((dir / "merged").string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const double merged_err = (LogitsOf(**loaded, ids) - with).abs().max().item<double>();
  EXPECT_LE(merged_err, 1e-6 * std::max(1.0, with.abs().max().item<double>()));
  // PEFT's directory: its config and tensor names, and back into another model exactly.
  ASSERT_TRUE(model::SaveLoraAdapter(*lora, (dir / "adapter").string(), "/models/base").ok());
  auto cfg = nlohmann::json::parse(std::ifstream(dir / "adapter" / "adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 8);
  EXPECT_EQ(cfg["lora_alpha"], 16.0);
  EXPECT_EQ(cfg["base_model_name_or_path"], "/models/base");
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  auto tensors = model::LoadSafetensors((dir / "adapter" / "adapter_model.safetensors").string());
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(tensors->size(), 2u * 7u * 2u);  // 2 layers x 7 projections x (A, B)
  ASSERT_TRUE(tensors->count("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
  EXPECT_EQ(tensors->at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").sizes(),
            (std::vector<int64_t>{8, chainrl::testing::kTinyHidden}));
  auto other = LoraPolicy(5, AllTargets(8, 16));  // same base, other adapters
  {
    torch::NoGradGuard ng;
    for (auto& [n, t] : other->LoraParameters()) t.uniform_(-0.1, 0.1);
  }
  EXPECT_FALSE(torch::equal(LogitsOf(*other, ids), with));
  ASSERT_TRUE(model::LoadLoraAdapter(*other, (dir / "adapter").string()).ok());
  EXPECT_TRUE(torch::equal(LogitsOf(*other, ids), with));
  // Another rank, alpha or target list is refused, naming the file and field.
  auto rank4 = LoraPolicy(5, AllTargets(4, 16));
  Status st = model::LoadLoraAdapter(*rank4, (dir / "adapter").string());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("adapter_config.json: r = 8"), std::string::npos) << st.message();
  model::LoraOptions qv = AllTargets(8, 16);
  qv.targets = {"q_proj", "v_proj"};
  auto only_qv = LoraPolicy(5, qv);
  st = model::LoadLoraAdapter(*only_qv, (dir / "adapter").string());
  EXPECT_NE(st.message().find("target_modules"), std::string::npos) << st.message();
  fs::remove_all(dir);
}

TEST(LoraTest, CheckpointsCarryTheAdaptersAndRefuseAnotherLoraSetting) {
  auto lora = LoraPolicy(6, AllTargets(4, 8));
  LearnerRunOptions o;
  auto opt = Optimizer::Create(lora->TrainableParameters(), o.optimizer);
  ASSERT_TRUE(opt.ok());
  const fs::path root =
      fs::temp_directory_path() / ("chainrl_lora_ckpt_" + std::to_string(getpid()));
  fs::remove_all(root);
  auto dir = SaveCheckpoint(root.string(), 3, *lora, **opt, CheckpointData{}, 2);
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  EXPECT_TRUE(fs::exists(fs::path(*dir) / "adapter_model.safetensors"));
  const Tensor ids = torch::randint(0, kVocab, {1, 9}, torch::kLong);
  auto again = LoraPolicy(6, AllTargets(4, 8));
  {
    torch::NoGradGuard ng;
    for (auto& [n, t] : again->LoraParameters()) t.zero_();
  }
  auto opt2 = Optimizer::Create(again->TrainableParameters(), o.optimizer);
  ASSERT_TRUE(opt2.ok());
  auto data = LoadCheckpoint(*dir, *again, **opt2);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_TRUE(torch::equal(LogitsOf(*again, ids), LogitsOf(*lora, ids)));
  // A model without [lora] does not take a LoRA checkpoint (nor the other way round).
  auto plain = chainrl::testing::TinyModel(chainrl::testing::TinyConfig(kVocab, 0.1, false), 6);
  auto opt3 = Optimizer::Create(plain->named_parameters().pairs(), o.optimizer);
  ASSERT_TRUE(opt3.ok());
  auto refused = LoadCheckpoint(*dir, *plain, **opt3);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("lora.enabled is false"), std::string::npos)
      << refused.status().message();
  fs::remove_all(root);
}

}  // namespace
}  // namespace chainrl::learner
