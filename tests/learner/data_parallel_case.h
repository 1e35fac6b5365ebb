// The batch the data-parallel test trains, shared by the test (one process, whole batch) and its
// worker processes (one shard each): the tiny decoder, five groups with ragged prompts and
// responses, behaviour logprobs near the model's own, and a loss aggregation mode.
#pragma once

#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "learner/data_parallel.h"
#include "learner/optimizer.h"
#include "learner/rank_messages.h"
#include "learner/rl_step.h"
#include "tests/model/tiny_model.h"

namespace chainrl::learner::dp_case {

// The GRPO-family update in each loss aggregation mode; the same with every group on rank 0 (rank
// 1's shard empty); the SFT update (each sample's response imitated after its prompt); the DPO
// update (reference-free; each group's first sample chosen over its second).
inline const std::vector<std::string> kModes = {
    "token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm", "token-mean-one-shard", "sft",
    "dpo"};

struct Case {
  std::string mode;
  std::shared_ptr<model::DecoderModel> model;
  std::vector<GroupData> groups;
  LearnerRunOptions options;
};

inline Case MakeCase(const std::string& mode) {
  Case c;
  c.mode = mode;
  c.model = chainrl::testing::TinyModel(21, 64, 0.05);
  auto agg = ParseLossAggMode(mode);
  c.options.policy.loss_agg_mode = agg.ok() ? *agg : LossAggMode::kTokenMean;
  c.options.preference.reference_free = true;
  c.options.policy.kl_coef = 0;
  c.options.optimizer.lr = 1e-3;
  const std::vector<int64_t> prompt_len = {3, 5, 2, 4, 6};
  const std::vector<std::vector<int64_t>> resp_len = {
      {6, 2, 7}, {1, 7, 4}, {9, 3, 5, 8}, {11, 2}, {4, 4, 10}};
  std::mt19937 gen(5);
  std::uniform_int_distribution<int32_t> tok(0, 63);
  std::uniform_real_distribution<double> jitter(-0.2, 0.2), reward(0, 1);
  torch::NoGradGuard ng;
  for (size_t g = 0; g < prompt_len.size(); ++g) {
    GroupData gd;
    gd.group_id = 100 + g;
    for (int64_t i = 0; i < prompt_len[g]; ++i) gd.prompt.push_back(tok(gen));
    for (int64_t len : resp_len[g]) {
      SampleData sd;
      for (int64_t i = 0; i < len; ++i) sd.tokens.push_back(tok(gen));
      std::vector<int64_t> ids(gd.prompt.begin(), gd.prompt.end());
      ids.insert(ids.end(), sd.tokens.begin(), sd.tokens.end());
      auto lsm = torch::log_softmax(
          c.model->Logits(c.model->Forward(torch::tensor(ids, torch::kLong).unsqueeze(0)))[0], -1);
      const int64_t P = static_cast<int64_t>(gd.prompt.size());
      for (int64_t j = 0; j < len; ++j)
        sd.behaviour_logprobs.push_back(
            static_cast<float>(lsm[P - 1 + j][sd.tokens[j]].item<double>() + jitter(gen)));
      sd.reward = reward(gen);
      gd.samples.push_back(std::move(sd));
    }
    c.groups.push_back(std::move(gd));
  }
  return c;
}

// Rank `rank` of `world` takes groups rank, rank + world, ... (with "-one-shard": rank 0 takes
// them all).
inline std::vector<GroupData> Shard(const std::vector<GroupData>& groups, int rank, int world,
                                    const std::string& mode) {
  if (mode.size() > 10 && mode.substr(mode.size() - 10) == "-one-shard")
    return rank == 0 ? groups : std::vector<GroupData>();
  return ShardOf(groups, rank, world);
}

// Every parameter's value (or gradient; zeros where none), flattened in parameter order.
inline torch::Tensor Flat(model::DecoderModel& m, bool grads) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : m.parameters()) {
    torch::Tensor t = grads ? p.grad() : p.detach();
    parts.push_back(t.defined() ? t.reshape({-1}).to(torch::kFloat64)
                                : torch::zeros({p.numel()}, torch::kFloat64));
  }
  return torch::cat(parts);
}

struct Outcome {
  torch::Tensor grads;   // after an update with the optimiser step skipped
  torch::Tensor params;  // after a second update (a fresh optimiser) that steps
  Status status;
};

// Two updates of `c.model` on `shard` (the whole batch when dp is null).
inline Outcome Run(Case& c, const std::vector<GroupData>& shard, DataParallel* dp) {
  Outcome o;
  auto named = c.model->named_parameters();
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : named) params.push_back({p.key(), p.value()});
  for (bool step : {false, true}) {
    auto opt = Optimizer::Create(params, c.options.optimizer);
    if (!opt.ok()) {
      o.status = opt.status();
      return o;
    }
    Status st;
    if (c.mode == "dpo") {
      std::vector<PreferencePairData> pairs;
      for (const GroupData& g : shard)
        pairs.push_back({g.prompt, g.samples[0].tokens, {g.samples[1].tokens}});
      RlStepOptions s;
      s.micro_batch_tokens = 24;
      s.skip_optimizer_step = !step;
      s.data_parallel = dp;
      st = RunPreferenceUpdate(*c.model, **opt, pairs, c.options, s).status();
    } else if (c.mode == "sft") {
      std::vector<SftExample> batch;
      for (const GroupData& g : shard)
        for (const SampleData& smp : g.samples) batch.push_back({g.prompt, smp.tokens});
      st = RunSftUpdate(*c.model, **opt, batch, c.options, 24, !step, dp).status();
    } else {
      RlStepOptions s;
      s.micro_batch_tokens = 24;  // several micro-batches per shard
      s.skip_optimizer_step = !step;
      s.data_parallel = dp;
      st = RunPolicyUpdate(*c.model, **opt, shard, c.options, s).status();
    }
    if (!st.ok()) {
      o.status = st;
      return o;
    }
    if (step) {
      o.params = Flat(*c.model, false);
    } else {
      o.grads = Flat(*c.model, true);
    }
  }
  return o;
}

}  // namespace chainrl::learner::dp_case
