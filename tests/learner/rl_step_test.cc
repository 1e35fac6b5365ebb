// RunPolicyUpdate and RunSftUpdate on tiny Qwen2-style models: the gradient is the same through
// streaming backprop and plain autograd and over any micro-batch split, and equals slow per-sample
// reference losses written out by hand here (GRPO, SFT), plus the edge cases of the batch.
#include "learner/rl_step.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "learner/advantages.h"
#include "learner/objective.h"
#include "learner/objectives.h"
#include "model/decoder.h"
#include "tests/learner/grad_check.h"
#include "tests/model/tiny_model.h"

namespace chainrl::learner {
namespace {

using chainrl::testing::Grads;
using chainrl::testing::MaxAbs;
using chainrl::testing::MaxRelErr;
using torch::Tensor;

constexpr int64_t kVocab = 50;
constexpr int64_t kHuge = 1 << 20;  // micro_batch_tokens that keep a mini-batch in one piece

std::shared_ptr<model::DecoderModel> TinyModel(uint64_t seed, bool tied) {
  return chainrl::testing::TinyModel(seed, kVocab, /*initializer_range=*/0.1, tied);
}

std::vector<std::pair<std::string, Tensor>> Named(model::DecoderModel& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

// Every parameter's gradient (zeros where autograd left none).
Grads TakeGrads(model::DecoderModel& m) {
  Grads g;
  for (const auto& p : m.named_parameters()) {
    const Tensor& grad = p.value().grad();
    g[p.key()] = grad.defined() ? grad.detach().clone() : torch::zeros_like(p.value());
  }
  return g;
}

Tensor Ids(const std::vector<int32_t>& prompt, const std::vector<int32_t>& response) {
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  ids.insert(ids.end(), response.begin(), response.end());
  return torch::tensor(ids, torch::kLong).unsqueeze(0);
}

// Per-response-token logprobs [R] of one unpadded sequence at `temperature`, with gradient: the
// full [1, L, V] logits, log-softmax, and response token j read at position P − 1 + j.
Tensor SequenceLogprobs(model::DecoderModel& m, const std::vector<int32_t>& prompt,
                        const std::vector<int32_t>& response, double temperature) {
  const Tensor logits = m.Logits(m.Forward(Ids(prompt, response)))[0] / temperature;
  const Tensor lsm = torch::log_softmax(logits, -1);
  const int64_t P = static_cast<int64_t>(prompt.size());
  const int64_t R = static_cast<int64_t>(response.size());
  std::vector<int64_t> resp(response.begin(), response.end());
  return lsm.slice(0, P - 1, P - 1 + R)
      .gather(1, torch::tensor(resp, torch::kLong).unsqueeze(1))
      .squeeze(1);
}

// Groups with ragged prompts and responses (the longest sequence is 12 tokens), random tokens,
// and behaviour logprobs = `m`'s own logprobs at `temperature` plus uniform noise in ±noise, so
// that some ratios fall inside the clip range and some outside.
std::vector<GroupData> MakeGroups(model::DecoderModel& m, double temperature,
                                  const std::vector<std::vector<double>>& rewards,
                                  double noise = 0.3, uint32_t seed = 11) {
  const std::vector<int64_t> prompt_len = {3, 5, 2};
  const std::vector<std::vector<int64_t>> resp_len = {{6, 2, 7}, {1, 7, 4}, {9, 3, 5, 8}};
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> tok(0, kVocab - 1);
  std::uniform_real_distribution<double> jitter(-noise, noise);
  std::vector<GroupData> groups;
  torch::NoGradGuard ng;
  for (size_t g = 0; g < prompt_len.size(); ++g) {
    GroupData gd;
    gd.group_id = 100 + g;
    for (int64_t i = 0; i < prompt_len[g]; ++i) gd.prompt.push_back(tok(gen));
    for (size_t s = 0; s < resp_len[g].size(); ++s) {
      SampleData sd;
      for (int64_t i = 0; i < resp_len[g][s]; ++i) sd.tokens.push_back(tok(gen));
      Tensor lp = SequenceLogprobs(m, gd.prompt, sd.tokens, temperature).contiguous();
      for (int64_t i = 0; i < lp.size(0); ++i)
        sd.behaviour_logprobs.push_back(static_cast<float>(lp[i].item<double>() + jitter(gen)));
      sd.reward = rewards[g][s % rewards[g].size()];
      gd.samples.push_back(std::move(sd));
    }
    groups.push_back(std::move(gd));
  }
  return groups;
}

const std::vector<std::vector<double>> kMixedRewards = {{1, 0, 0.5}, {0, 0, 1}, {1, 1, 0, 0.25}};

struct Path {
  const char* name;
  bool streambp;
  int64_t layer_chunk, logits_chunk, micro_batch_tokens;
};
// Plain autograd in one piece is the baseline (first). 30 tokens per micro-batch cuts the 10
// sequences (5 to 12 tokens) into 4 micro-batches; 12 tokens into 10, one sequence each.
const std::vector<Path> kPaths = {
    {"autograd, one micro-batch", false, 0, 512, kHuge},
    {"autograd, micro-batches of 30 tokens", false, 0, 512, 30},
    {"streambp 4/6 (chunks divide T=12), one micro-batch", true, 4, 6, kHuge},
    {"streambp 5/7 (chunks do not divide T), one micro-batch", true, 5, 7, kHuge},
    {"streambp 3/5, micro-batches of 30 tokens", true, 3, 5, 30},
    {"streambp 1/2, one sequence per micro-batch", true, 1, 2, 12},
    // learner.logits_chunk_tokens = 1 also chunks the no-gradient passes (recomputed old and
    // reference logprobs) one position at a time.
    {"streambp 3/1, one logits position per chunk", true, 3, 1, kHuge},
    {"autograd, no-gradient passes one logits position per chunk", false, 0, 1, kHuge},
};

LearnerRunOptions WithPath(LearnerRunOptions o, const Path& p) {
  o.streambp = p.streambp;
  o.layer_chunk_tokens = p.layer_chunk;
  o.logits_chunk_tokens = p.logits_chunk;
  o.memory_budget_bytes = 1 << 30;
  return o;
}

struct Update {
  Grads grads;
  RlStepStats stats;
};

// One RunPolicyUpdate with the optimiser step skipped; the gradients it left behind.
Update PolicyGrads(model::DecoderModel& m, const std::vector<GroupData>& groups,
                   const LearnerRunOptions& o, RlStepOptions s) {
  auto opt = Optimizer::Create(Named(m), o.optimizer);
  EXPECT_TRUE(opt.ok());
  s.skip_optimizer_step = true;
  auto r = RunPolicyUpdate(m, **opt, groups, o, s);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  Update u;
  u.stats = r.ok() ? *r : RlStepStats();
  u.grads = TakeGrads(m);
  return u;
}

struct Config {
  const char* name;
  PolicyLossOptions policy;
  AdvantageEstimator estimator = AdvantageEstimator::kGrpo;
  double temperature = 1.0;
  bool reference = false;
  bool recompute = false;
  bool expect_clipping = true;
};

// 1. Every algorithm's gradient is identical through every path (streaming or not, any chunks,
// any micro-batch split).
TEST(RlStepTest, GradientIsExactOverStreamingChunksAndMicroBatches) {
  auto m = TinyModel(3, /*tied=*/false);
  auto ref = TinyModel(8, /*tied=*/false);
  std::vector<Config> configs;
  configs.push_back({"GRPO seq-mean-token-mean",
                     PolicyLossOptions().set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean),
                     AdvantageEstimator::kGrpo, 0.8});
  configs.push_back({"DAPO token-mean, clip-higher 0.28, entropy bonus",
                     PolicyLossOptions()
                         .set_loss_agg_mode(LossAggMode::kTokenMean)
                         .set_clip_ratio_high(0.28)
                         .set_entropy_coef(0.01)});
  configs.push_back({"Dr.GRPO seq-mean-token-sum-norm",
                     PolicyLossOptions().set_loss_agg_mode(LossAggMode::kSeqMeanTokenSumNorm),
                     AdvantageEstimator::kDrGrpo});
  configs.push_back({"GSPO",
                     PolicyLossOptions()
                         .set_policy_loss(PolicyLossKind::kGspo)
                         .set_clip_ratio_low(0.03)
                         .set_clip_ratio_high(0.04),
                     AdvantageEstimator::kGrpo, 0.9});
  configs.push_back(
      {"GRPO with k3 KL to a reference model",
       PolicyLossOptions().set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean).set_kl_coef(0.05),
       AdvantageEstimator::kGrpo, 1.0, /*reference=*/true});
  configs.push_back({"DAPO with recomputed old logprobs",
                     PolicyLossOptions().set_clip_ratio_high(0.28), AdvantageEstimator::kGrpo, 1.0,
                     false, /*recompute=*/true, /*expect_clipping=*/false});
  for (const Config& c : configs) {
    SCOPED_TRACE(c.name);
    auto groups = MakeGroups(*m, c.temperature, kMixedRewards);
    LearnerRunOptions o;
    o.policy = c.policy;
    o.advantages.set_estimator(c.estimator);
    RlStepOptions s;
    s.temperature = c.temperature;
    s.recompute_old_logprobs = c.recompute;
    if (c.reference) s.reference = ref.get();
    Update base;
    for (size_t i = 0; i < kPaths.size(); ++i) {
      const Path& p = kPaths[i];
      SCOPED_TRACE(p.name);
      s.micro_batch_tokens = p.micro_batch_tokens;
      Update u = PolicyGrads(*m, groups, WithPath(o, p), s);
      EXPECT_EQ(u.stats.sequences, 10);
      EXPECT_EQ(u.stats.response_tokens, 52);
      EXPECT_EQ(u.stats.optimizer_steps, 0);
      if (i == 0) {
        base = u;
        // The case is not trivial: a real gradient, and the clip both active and inactive.
        EXPECT_GT(MaxAbs(base.grads), 1e-4);
        EXPECT_EQ(base.stats.policy.tokens, 52);
        if (c.expect_clipping) {
          EXPECT_GT(base.stats.policy.clip_fraction(), 0.05);
          EXPECT_LT(base.stats.policy.clip_fraction(), 0.95);
        } else {
          EXPECT_EQ(base.stats.policy.clip_fraction(), 0);
        }
        if (c.reference) {
          EXPECT_GT(base.stats.policy.ref_kl(), 1e-3);
        }
        continue;
      }
      fprintf(stderr, "%s | %s: err %.3g clip %.3f refkl %.4f maxg %.3g loss %.6f\n", c.name,
              p.name, MaxRelErr(u.grads, base.grads), base.stats.policy.clip_fraction(),
              base.stats.policy.ref_kl(), MaxAbs(base.grads), u.stats.loss);
      EXPECT_LE(MaxRelErr(u.grads, base.grads), 1e-5);
      EXPECT_NEAR(u.stats.loss, base.stats.loss, 1e-5 * std::max(1.0, std::abs(base.stats.loss)));
      EXPECT_NEAR(u.stats.policy.clipped_tokens, base.stats.policy.clipped_tokens, 0.5);
    }
  }
}

// Hand-written GRPO: advantages (R − mean)/(Bessel std + 1e-6) per group, each sample forwarded
// alone (no padding), ratio against the behaviour logprobs, clipped surrogate, and the aggregation
// written out. `in_loss[i]` false drops sample i from the loss and its denominators (its reward
// still counts in its group's baseline). Returns the loss; `advantages` receives Â per sample.
// `gspo`: the sequence ratio s_i = exp(mean_t(ℓ − ℓ_old)) with its full gradient, one clipped
// surrogate per sequence, averaged over sequences (GSPO's objective; `mode` is then ignored).
Tensor HandGrpoLoss(model::DecoderModel& m, const std::vector<GroupData>& groups,
                    double temperature, double eps_low, double eps_high, LossAggMode mode,
                    const std::vector<bool>& in_loss, std::vector<double>* advantages,
                    bool gspo = false) {
  advantages->clear();
  for (const auto& g : groups) {
    std::vector<double> r;
    for (const auto& s : g.samples)
      if (!s.tokens.empty()) r.push_back(s.reward);
    double mean = 0, var = 0;
    for (double x : r) mean += x / static_cast<double>(r.size());
    for (double x : r) var += (x - mean) * (x - mean);
    const double sd = r.size() > 1 ? std::sqrt(var / static_cast<double>(r.size() - 1)) : 0;
    for (double x : r) advantages->push_back(r.size() > 1 ? (x - mean) / (sd + 1e-6) : 0.0);
  }
  std::vector<Tensor> per_sample;  // Σ_t surrogate
  std::vector<double> lengths;
  size_t i = 0;
  for (const auto& g : groups) {
    for (const auto& s : g.samples) {
      if (s.tokens.empty()) continue;
      const size_t k = i++;
      if (!in_loss.empty() && !in_loss[k]) continue;
      const Tensor lp = SequenceLogprobs(m, g.prompt, s.tokens, temperature);
      const Tensor old = torch::tensor(s.behaviour_logprobs, torch::kFloat32);
      const double len = static_cast<double>(s.tokens.size());
      const Tensor ratio = gspo ? torch::exp((lp - old).mean()) : torch::exp(lp - old);
      const double a = (*advantages)[k];
      const Tensor surrogate =
          torch::maximum(-a * ratio, -a * ratio.clamp(1.0 - eps_low, 1.0 + eps_high));
      // GSPO: the sequence's one term, entered as |o_i| equal tokens of a seq-mean-token-mean.
      per_sample.push_back(gspo ? surrogate * len : surrogate.sum());
      lengths.push_back(len);
    }
  }
  double total_tokens = 0;
  for (double l : lengths) total_tokens += l;
  Tensor loss = torch::zeros({});
  for (size_t j = 0; j < per_sample.size(); ++j) {
    if (mode == LossAggMode::kTokenMean && !gspo)
      loss = loss + per_sample[j] / total_tokens;
    else  // seq-mean-token-mean
      loss = loss + per_sample[j] / (lengths[j] * static_cast<double>(per_sample.size()));
  }
  return loss;
}

// 2. RunPolicyUpdate's gradient and loss equal the hand-written GRPO loss's, through autograd and
// streaming backprop, in one or several micro-batches, for token-mean and seq-mean-token-mean, and
// GSPO's sequence-ratio objective.
TEST(RlStepTest, GrpoGradientMatchesHandWrittenReference) {
  auto m = TinyModel(5, /*tied=*/true);
  const double temperature = 0.7;
  auto groups = MakeGroups(*m, temperature, kMixedRewards, 0.3, 23);
  struct Case {
    LossAggMode mode;
    bool gspo;
    double eps_low, eps_high;
  };
  for (Case c : {Case{LossAggMode::kTokenMean, false, 0.2, 0.28},
                 Case{LossAggMode::kSeqMeanTokenMean, false, 0.2, 0.28},
                 Case{LossAggMode::kSeqMeanTokenMean, true, 0.03, 0.04}}) {
    SCOPED_TRACE(std::string(LossAggModeName(c.mode)) + (c.gspo ? " GSPO" : ""));
    m->zero_grad();
    std::vector<double> adv;
    Tensor loss =
        HandGrpoLoss(*m, groups, temperature, c.eps_low, c.eps_high, c.mode, {}, &adv, c.gspo);
    loss.backward();
    const Grads want = TakeGrads(*m);
    ASSERT_GT(MaxAbs(want), 1e-4);
    // The hand advantages are GroupAdvantages'.
    std::vector<double> rewards;
    std::vector<int64_t> gids;
    for (size_t g = 0; g < groups.size(); ++g)
      for (const auto& s : groups[g].samples) {
        rewards.push_back(s.reward);
        gids.push_back(static_cast<int64_t>(g));
      }
    const std::vector<double> lib = GroupAdvantages(rewards, gids);
    ASSERT_EQ(lib.size(), adv.size());
    for (size_t i = 0; i < adv.size(); ++i) EXPECT_NEAR(lib[i], adv[i], 1e-9) << i;

    LearnerRunOptions o;
    o.policy.set_loss_agg_mode(c.mode)
        .set_clip_ratio_low(c.eps_low)
        .set_clip_ratio_high(c.eps_high)
        .set_policy_loss(c.gspo ? PolicyLossKind::kGspo : PolicyLossKind::kVanilla);
    RlStepOptions s;
    s.temperature = temperature;
    for (const Path& p : {kPaths[0], kPaths[1], kPaths[3], kPaths[4]}) {
      SCOPED_TRACE(p.name);
      s.micro_batch_tokens = p.micro_batch_tokens;
      Update u = PolicyGrads(*m, groups, WithPath(o, p), s);
      EXPECT_LE(MaxRelErr(u.grads, want), 1e-5);
      EXPECT_NEAR(u.stats.loss, loss.item<double>(), 1e-5);
      EXPECT_GT(u.stats.policy.clip_fraction(), 0.05);
      EXPECT_LT(u.stats.policy.clip_fraction(), 0.95);
    }
  }
}

// 2b. CISPO through the objective seam (algorithm.name = "cispo"): RunPolicyUpdate's gradient and
// loss equal a hand-written per-sample CISPO loss, −sg(clip(r, 1 − ε_low, 1 + ε_high))·Â·ℓ
// token-mean, on every path. Unlike the clipped surrogate, a clipped token keeps its gradient:
// the same batch with GRPO's clip gives another gradient.
TEST(RlStepTest, CispoGradientMatchesHandWrittenReference) {
  auto m = TinyModel(5, /*tied=*/true);
  const double temperature = 0.7;
  auto groups = MakeGroups(*m, temperature, kMixedRewards, 0.3, 23);
  const double eps_low = 1.0, eps_high = 0.1;
  m->zero_grad();
  std::vector<double> adv;
  HandGrpoLoss(*m, groups, temperature, 0.2, 0.2, LossAggMode::kTokenMean, {}, &adv);
  m->zero_grad();
  Tensor loss = torch::zeros({});
  double total = 0, clipped = 0;
  for (const auto& g : groups)
    for (const auto& smp : g.samples) total += static_cast<double>(smp.tokens.size());
  size_t k = 0;
  for (const auto& g : groups) {
    for (const auto& smp : g.samples) {
      const Tensor lp = SequenceLogprobs(*m, g.prompt, smp.tokens, temperature);
      const Tensor old = torch::tensor(smp.behaviour_logprobs, torch::kFloat32);
      const Tensor r = torch::exp(lp - old).detach();
      clipped += ((r > 1 + eps_high) | (r < 1 - eps_low)).sum().item<double>();
      loss = loss + (-adv[k++] * r.clamp(1 - eps_low, 1 + eps_high) * lp).sum() / total;
    }
  }
  loss.backward();
  const Grads want = TakeGrads(*m);
  ASSERT_GT(MaxAbs(want), 1e-4);
  ASSERT_GT(clipped, 3);  // the cap is active on some tokens
  LearnerRunOptions o;
  o.algorithm = "cispo";
  o.policy = *PolicyLossPreset("cispo");
  o.policy.set_clip_ratio_high(eps_high);
  ASSERT_EQ(o.policy.loss_agg_mode, LossAggMode::kTokenMean);
  ASSERT_EQ(o.policy.clip_ratio_low, eps_low);
  RlStepOptions s;
  s.temperature = temperature;
  for (const Path& p : {kPaths[0], kPaths[1], kPaths[3], kPaths[4]}) {
    SCOPED_TRACE(p.name);
    s.micro_batch_tokens = p.micro_batch_tokens;
    Update u = PolicyGrads(*m, groups, WithPath(o, p), s);
    EXPECT_LE(MaxRelErr(u.grads, want), 1e-5);
    EXPECT_NEAR(u.stats.loss, loss.item<double>(), 1e-5);
    EXPECT_EQ(u.stats.policy.tokens, total);
    EXPECT_EQ(u.stats.policy.clipped_tokens, clipped);
  }
  LearnerRunOptions clip = o;
  clip.algorithm = "dapo";
  Update ppo = PolicyGrads(*m, groups, WithPath(clip, kPaths[0]), s);
  EXPECT_GT(MaxRelErr(ppo.grads, want), 1e-2);
}

// Rollout correction through the driver: with recomputed old logprobs (ratio 1 at the first
// step) and token TIS, each token's gradient is −Â·min(exp(ℓ_old − ℓ_behaviour), C)·∇ℓ (decoupled
// PPO); a token mask drops exactly the tokens whose ratio is out of bounds. Without recomputed
// logprobs the correction is refused.
TEST(RlStepTest, RolloutCorrectionMatchesHandWrittenReference) {
  auto m = TinyModel(5, /*tied=*/true);
  const double temperature = 0.9, cap = 1.15;
  auto groups = MakeGroups(*m, temperature, kMixedRewards, 0.3, 31);
  m->zero_grad();
  std::vector<double> adv;
  HandGrpoLoss(*m, groups, temperature, 0.2, 0.2, LossAggMode::kTokenMean, {}, &adv);
  m->zero_grad();
  Tensor loss = torch::zeros({});
  double total = 0, weight_sum = 0, out_of_bounds = 0;
  for (const auto& g : groups)
    for (const auto& smp : g.samples) total += static_cast<double>(smp.tokens.size());
  size_t k = 0;
  for (const auto& g : groups) {
    for (const auto& smp : g.samples) {
      const Tensor lp = SequenceLogprobs(*m, g.prompt, smp.tokens, temperature);
      const Tensor rho =
          torch::exp(lp.detach() - torch::tensor(smp.behaviour_logprobs, torch::kFloat32));
      const Tensor w = rho.clamp_max(cap);
      weight_sum += w.sum().item<double>();
      out_of_bounds += ((rho < 0.85) | (rho > 1.2)).sum().item<double>();
      loss = loss + (-adv[k++] * w * torch::exp(lp - lp.detach())).sum() / total;
    }
  }
  loss.backward();
  const Grads want = TakeGrads(*m);
  ASSERT_GT(MaxAbs(want), 1e-4);
  ASSERT_GT(out_of_bounds, 3);
  LearnerRunOptions o;
  o.policy.set_loss_agg_mode(LossAggMode::kTokenMean);
  o.policy.rollout_correction.is = RolloutIsLevel::kToken;
  o.policy.rollout_correction.is_cap = cap;
  RlStepOptions s;
  s.temperature = temperature;
  s.recompute_old_logprobs = true;
  for (const Path& p : {kPaths[0], kPaths[1], kPaths[3], kPaths[4]}) {
    SCOPED_TRACE(p.name);
    s.micro_batch_tokens = p.micro_batch_tokens;
    Update u = PolicyGrads(*m, groups, WithPath(o, p), s);
    EXPECT_LE(MaxRelErr(u.grads, want), 1e-4);
    EXPECT_NEAR(u.stats.loss, loss.item<double>(), 1e-5);
    EXPECT_NEAR(u.stats.policy.correction_weight_sum, weight_sum, 1e-3);
    EXPECT_EQ(u.stats.policy.correction_zeroed, 0);
  }
  // IcePop-style token mask in [0.85, 1.2]: the dropped tokens are counted.
  LearnerRunOptions masked = o;
  masked.policy.rollout_correction.mask = RolloutMaskLevel::kToken;
  masked.policy.rollout_correction.mask_low = 0.85;
  masked.policy.rollout_correction.mask_high = 1.2;
  s.micro_batch_tokens = kPaths[0].micro_batch_tokens;
  Update u = PolicyGrads(*m, groups, WithPath(masked, kPaths[0]), s);
  EXPECT_EQ(u.stats.policy.correction_zeroed, out_of_bounds);
  // No recomputed logprobs: nothing to correct toward, refused.
  s.recompute_old_logprobs = false;
  auto opt = Optimizer::Create(Named(*m), o.optimizer);
  ASSERT_TRUE(opt.ok());
  auto refused = RunPolicyUpdate(*m, **opt, groups, o, s);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("recompute"), std::string::npos);
}

// The train/inference mismatch at equal weights (docs/ALGORITHMS.md §2.2) is taken against the
// policy before the update, on tokens sampled by the learner's version only, through every path:
// the recomputation ("recompute"), or the first mini-batch's first epoch (the behaviour's logprobs
// as ℓ_old), whatever the chunks and micro-batches. Staleness counts every token.
TEST(RlStepTest, MismatchAtEqualWeightsIsTheLearnersBeforeTheUpdate) {
  auto m = TinyModel(6, /*tied=*/false);
  const double temperature = 0.8;
  auto groups = MakeGroups(*m, temperature, kMixedRewards, 0.05, 41);
  // Group 0's samples: the first 2 tokens from version 3, the rest from 5; the others all 5.
  for (size_t g = 0; g < groups.size(); ++g)
    for (SampleData& smp : groups[g].samples) {
      const int64_t n = static_cast<int64_t>(smp.tokens.size());
      smp.versions = g == 0 && n > 2 ? std::vector<VersionRun>{{3, 2}, {5, n - 2}}
                                     : std::vector<VersionRun>{{5, n}};
    }
  LearnerRunOptions o;
  o.policy.set_loss_agg_mode(LossAggMode::kTokenMean);
  o.policy.rollout_correction.is_cap = 1.02;
  o.policy.rollout_correction.mask_low = 0.97;
  o.policy.rollout_correction.mask_high = 1.03;
  const MismatchBounds bounds{1.02, 0.97, 1.03};
  // By hand: the model's logprobs now, before any update. `rows` < 0: every row.
  auto expected = [&](int64_t rows) {
    PolicyMismatch want;
    int64_t row = 0;
    torch::NoGradGuard ng;
    for (const auto& g : groups)
      for (const auto& smp : g.samples) {
        const Tensor lp = SequenceLogprobs(*m, g.prompt, smp.tokens, temperature).contiguous();
        std::vector<float> l(lp.data_ptr<float>(), lp.data_ptr<float>() + lp.numel());
        const bool measured = rows < 0 || row < rows;
        want.AddRow(measured ? l : std::vector<float>(), smp.behaviour_logprobs, smp.versions, 5,
                    bounds);
        ++row;
      }
    return want;
  };
  auto check = [](const PolicyMismatch& got, const PolicyMismatch& want) {
    EXPECT_EQ(got.tokens(), want.tokens());
    EXPECT_NEAR(got.k1(), want.k1(), 1e-6);
    EXPECT_NEAR(got.k3(), want.k3(), 1e-7);
    EXPECT_NEAR(got.abs_mean(), want.abs_mean(), 1e-6);
    EXPECT_NEAR(got.abs_max(), want.abs_max(), 1e-5);
    EXPECT_EQ(got.token_mask(), want.token_mask());
    EXPECT_EQ(got.sequence_mask(), want.sequence_mask());
    EXPECT_EQ(got.stale_tokens(), want.stale_tokens());
    EXPECT_NEAR(got.staleness_mean(), want.staleness_mean(), 1e-12);
    EXPECT_EQ(got.staleness_max(), 2);
  };
  const PolicyMismatch all = expected(-1);
  ASSERT_GT(all.tokens(), 40);
  ASSERT_LT(all.tokens(), all.stale_tokens());  // group 0's first tokens are stale
  ASSERT_GT(all.token_mask(), 0.0);
  ASSERT_LT(all.token_mask(), 1.0);
  RlStepOptions s;
  s.temperature = temperature;
  s.policy_version = 5;
  s.ppo_epochs = 2;  // the second epoch's logprobs are after an update: never measured
  for (const bool recompute : {true, false})
    for (const Path& p : {kPaths[0], kPaths[4], kPaths[5]}) {
      SCOPED_TRACE(std::string(p.name) + (recompute ? ", recompute" : ", behaviour"));
      auto fresh = TinyModel(6, /*tied=*/false);
      s.recompute_old_logprobs = recompute;
      s.micro_batch_tokens = p.micro_batch_tokens;
      auto opt = Optimizer::Create(Named(*fresh), o.optimizer);
      ASSERT_TRUE(opt.ok());
      auto r = RunPolicyUpdate(*fresh, **opt, groups, WithPath(o, p), s);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->optimizer_steps, 2);
      check(r->mismatch, all);
    }
  // Two mini-batches with the behaviour's logprobs: the second trains after the first's update, so
  // only the first's rows (5 of 10) are measured; staleness still counts every row.
  s.recompute_old_logprobs = false;
  s.ppo_epochs = 1;
  s.mini_batches = 2;
  s.micro_batch_tokens = kHuge;
  auto fresh = TinyModel(6, /*tied=*/false);
  auto opt = Optimizer::Create(Named(*fresh), o.optimizer);
  ASSERT_TRUE(opt.ok());
  auto r = RunPolicyUpdate(*fresh, **opt, groups, WithPath(o, kPaths[0]), s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  check(r->mismatch, expected(5));
  // No version given: nothing measured.
  s.policy_version = -1;
  auto none = RunPolicyUpdate(*fresh, **opt, groups, WithPath(o, kPaths[0]), s);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->mismatch.stale_tokens(), 0);
}

// 3. Groups whose rewards are all equal have zero advantage and contribute nothing: all-uniform
// batches give exactly zero gradients; a uniform group beside others only changes the token-mean
// denominator.
TEST(RlStepTest, UniformGroupsContributeZeroGradient) {
  auto m = TinyModel(3, /*tied=*/false);
  auto uniform = MakeGroups(*m, 1.0, {{1}, {0}, {0.5}});
  LearnerRunOptions o;
  o.policy.set_loss_agg_mode(LossAggMode::kTokenMean).set_clip_ratio_high(0.28);
  RlStepOptions s;
  for (const Path& p : {kPaths[0], kPaths[4]}) {
    SCOPED_TRACE(p.name);
    s.micro_batch_tokens = p.micro_batch_tokens;
    Update u = PolicyGrads(*m, uniform, WithPath(o, p), s);
    EXPECT_EQ(u.stats.sequences, 10);
    EXPECT_EQ(MaxAbs(u.grads), 0.0);
    EXPECT_EQ(u.stats.loss, 0.0);
  }
  // Group 1 uniform, groups 0 and 2 mixed; versus groups 0 and 2 alone.
  auto mixed = MakeGroups(*m, 1.0, {{1, 0, 0.5}, {0.3}, {1, 1, 0, 0.25}});
  std::vector<GroupData> without = {mixed[0], mixed[2]};
  const double tokens_with = 52, tokens_without = 52 - (1 + 7 + 4);
  for (const Path& p : {kPaths[0], kPaths[4]}) {
    SCOPED_TRACE(p.name);
    s.micro_batch_tokens = p.micro_batch_tokens;
    Update with = PolicyGrads(*m, mixed, WithPath(o, p), s);
    Update alone = PolicyGrads(*m, without, WithPath(o, p), s);
    ASSERT_GT(MaxAbs(alone.grads), 1e-4);
    Grads scaled;
    for (auto& [k, v] : with.grads) scaled[k] = v * (tokens_with / tokens_without);
    EXPECT_LE(MaxRelErr(scaled, alone.grads), 1e-5);
  }
}

// Hand-written SFT: the mean token cross-entropy over every response token of the batch, each
// example forwarded alone.
Tensor HandSftLoss(model::DecoderModel& m, const std::vector<SftExample>& batch) {
  Tensor nll = torch::zeros({});
  double tokens = 0;
  for (const auto& e : batch) {
    if (e.response.empty()) continue;
    nll = nll - SequenceLogprobs(m, e.prompt, e.response, 1.0).sum();
    tokens += static_cast<double>(e.response.size());
  }
  return nll / tokens;
}

// 4. RunSftUpdate's gradient is the hand-written mean token cross-entropy's, with streaming
// backprop on and off and over several micro-batches; examples without a response are ignored.
TEST(RlStepTest, SftGradientMatchesHandWrittenCrossEntropy) {
  auto m = TinyModel(4, /*tied=*/true);
  std::mt19937 gen(5);
  std::uniform_int_distribution<int32_t> tok(0, kVocab - 1);
  std::vector<SftExample> batch;
  const std::vector<std::pair<int, int>> shape = {{4, 6}, {2, 9}, {6, 1}, {3, 0}, {5, 5}, {1, 3}};
  for (auto [p, r] : shape) {
    SftExample e;
    for (int i = 0; i < p; ++i) e.prompt.push_back(tok(gen));
    for (int i = 0; i < r; ++i) e.response.push_back(tok(gen));
    batch.push_back(std::move(e));
  }
  m->zero_grad();
  Tensor loss = HandSftLoss(*m, batch);
  loss.backward();
  const Grads want = TakeGrads(*m);
  ASSERT_GT(MaxAbs(want), 1e-4);
  for (const Path& p : kPaths) {
    SCOPED_TRACE(p.name);
    LearnerRunOptions o = WithPath(LearnerRunOptions(), p);
    auto opt = Optimizer::Create(Named(*m), o.optimizer);
    ASSERT_TRUE(opt.ok());
    auto r = RunSftUpdate(*m, **opt, batch, o, p.micro_batch_tokens, /*skip_optimizer_step=*/true);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_NEAR(*r, loss.item<double>(), 1e-5);
    EXPECT_LE(MaxRelErr(TakeGrads(*m), want), 1e-5);
  }
  // With the step: the parameters move and the gradients are consumed.
  LearnerRunOptions o;
  o.optimizer.set_lr(1e-3);
  auto opt = Optimizer::Create(Named(*m), o.optimizer);
  ASSERT_TRUE(opt.ok());
  const Tensor before = m->named_parameters()["model.embed_tokens.weight"].detach().clone();
  ASSERT_TRUE(RunSftUpdate(*m, **opt, batch, o, 30).ok());
  EXPECT_EQ((*opt)->step(), 1);
  EXPECT_GT(
      (m->named_parameters()["model.embed_tokens.weight"] - before).abs().max().item<double>(),
      1e-4);
  // Nothing to learn from.
  std::vector<SftExample> empty = {{{1, 2}, {}}};
  EXPECT_FALSE(RunSftUpdate(*m, **opt, empty, o, 30).ok());
}

// 5a. Empty responses are skipped: the gradient is that of the batch without them.
TEST(RlStepTest, EmptyResponsesAreSkipped) {
  auto m = TinyModel(3, /*tied=*/false);
  auto groups = MakeGroups(*m, 1.0, kMixedRewards);
  LearnerRunOptions o;
  o.policy.set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean);
  RlStepOptions s;
  s.micro_batch_tokens = 30;
  const Update want = PolicyGrads(*m, groups, o, s);
  auto with_empty = groups;
  SampleData e1;
  e1.reward = 5.0;  // would shift group 0's baseline if it counted
  with_empty[0].samples.insert(with_empty[0].samples.begin() + 1, e1);
  SampleData e2 = e1;
  e2.behaviour_logprobs = {-1.0f};  // no tokens: skipped before any length check
  e2.reward = -3.0;
  with_empty[2].samples.push_back(e2);
  const Update got = PolicyGrads(*m, with_empty, o, s);
  EXPECT_EQ(got.stats.sequences, 10);
  EXPECT_EQ(got.stats.response_tokens, 52);
  EXPECT_LE(MaxRelErr(got.grads, want.grads), 1e-6);
  EXPECT_NEAR(got.stats.loss, want.stats.loss, 1e-7);
  // A batch of empty responses only: nothing to do, no error.
  std::vector<GroupData> nothing = {{7, {1, 2, 3}, {e1, e1}}};
  auto opt = Optimizer::Create(Named(*m), o.optimizer);
  ASSERT_TRUE(opt.ok());
  auto r = RunPolicyUpdate(*m, **opt, nothing, o, s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sequences, 0);
  EXPECT_EQ(r->optimizer_steps, 0);
}

// 5b. Bad input is an InvalidArgument naming the group.
TEST(RlStepTest, BadInputIsInvalidArgumentNamingTheGroup) {
  auto m = TinyModel(3, /*tied=*/false);
  auto groups = MakeGroups(*m, 1.0, kMixedRewards);
  groups[1].group_id = 42;
  groups[1].samples[2].behaviour_logprobs.pop_back();
  LearnerRunOptions o;
  RlStepOptions s;
  auto opt = Optimizer::Create(Named(*m), o.optimizer);
  ASSERT_TRUE(opt.ok());
  auto r = RunPolicyUpdate(*m, **opt, groups, o, s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("group 42"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("logprobs"), std::string::npos) << r.status().message();
  // KL without a reference model.
  auto good = MakeGroups(*m, 1.0, kMixedRewards);
  o.policy.set_kl_coef(0.01);
  r = RunPolicyUpdate(*m, **opt, good, o, s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("kl_coef"), std::string::npos) << r.status().message();
}

// 5c. Overlong filtering: truncated samples leave the loss and its denominators (their rewards
// still set their group's baseline); without the filter they count.
TEST(RlStepTest, OverlongFilteringDropsTruncatedSamples) {
  auto m = TinyModel(6, /*tied=*/false);
  auto groups = MakeGroups(*m, 1.0, kMixedRewards, 0.3, 31);
  groups[0].samples[2].end = SampleEnd::kLength;  // sample 2
  groups[2].samples[0].end = SampleEnd::kBudget;  // sample 6
  std::vector<bool> in_loss(10, true);
  in_loss[2] = in_loss[6] = false;
  for (LossAggMode mode : {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean}) {
    SCOPED_TRACE(LossAggModeName(mode));
    LearnerRunOptions o;
    o.policy.set_loss_agg_mode(mode);
    o.overlong_filtering = true;
    m->zero_grad();
    std::vector<double> adv;
    Tensor loss = HandGrpoLoss(*m, groups, 1.0, 0.2, 0.2, mode, in_loss, &adv);
    loss.backward();
    const Grads want = TakeGrads(*m);
    for (const Path& p : {kPaths[0], kPaths[4]}) {
      SCOPED_TRACE(p.name);
      RlStepOptions s;
      s.micro_batch_tokens = p.micro_batch_tokens;
      Update u = PolicyGrads(*m, groups, WithPath(o, p), s);
      EXPECT_LE(MaxRelErr(u.grads, want), 1e-5);
      EXPECT_EQ(u.stats.policy.tokens, 52 - 7 - 9);
      // The truncated samples' logprobs do not matter at all.
      auto altered = groups;
      for (float& x : altered[0].samples[2].behaviour_logprobs) x -= 0.5f;
      for (float& x : altered[2].samples[0].behaviour_logprobs) x += 0.4f;
      Update a = PolicyGrads(*m, altered, WithPath(o, p), s);
      EXPECT_LE(MaxRelErr(a.grads, u.grads), 1e-7);
      // Without the filter they do.
      LearnerRunOptions off = WithPath(o, p);
      off.overlong_filtering = false;
      Update b = PolicyGrads(*m, altered, off, s);
      EXPECT_GT(MaxRelErr(b.grads, u.grads), 1e-2);
      EXPECT_EQ(b.stats.policy.tokens, 52);
    }
  }
}

// Without skip_optimizer_step: one optimiser step per mini-batch and epoch, parameters move.
TEST(RlStepTest, StepsOncePerMiniBatchAndEpoch) {
  auto m = TinyModel(3, /*tied=*/false);
  auto groups = MakeGroups(*m, 1.0, kMixedRewards);
  LearnerRunOptions o;
  o.optimizer.set_lr(1e-3);
  RlStepOptions s;
  s.mini_batches = 2;
  s.ppo_epochs = 2;
  s.micro_batch_tokens = 30;
  auto opt = Optimizer::Create(Named(*m), o.optimizer);
  ASSERT_TRUE(opt.ok());
  const Tensor before =
      m->named_parameters()["model.layers.0.self_attn.q_proj.weight"].detach().clone();
  auto r = RunPolicyUpdate(*m, **opt, groups, o, s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->optimizer_steps, 4);
  EXPECT_EQ(r->skipped_steps, 0);
  EXPECT_EQ((*opt)->step(), 4);
  EXPECT_GT(r->grad_norm, 0);
  EXPECT_DOUBLE_EQ(r->lr, 1e-3);
  const Tensor after = m->named_parameters()["model.layers.0.self_attn.q_proj.weight"];
  EXPECT_GT((after - before).abs().max().item<double>(), 1e-4);
}

}  // namespace
}  // namespace chainrl::learner
