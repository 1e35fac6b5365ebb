// Policy and SFT updates over packed sequences (see rl_step.h).
#include "learner/rl_step.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <span>

#include <torch/torch.h>

#include "core/check.h"
#include "learner/advantages.h"
#include "learner/data_parallel.h"
#include "learner/objective.h"
#include "learner/objectives.h"
#include "learner/preference.h"
#include "learner/streambp.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;

// The reference's forwards: when the reference is the policy itself (a LoRA policy, whose reference
// is its base), its adapters are off for the scope.
class ReferenceForwards {
 public:
  ReferenceForwards(model::DecoderModel& policy, model::DecoderModel& reference) {
    if (&policy == &reference) {
      CHAINRL_CHECK(policy.has_lora(), "the reference is the policy itself, without adapters");
      off_.emplace(policy);
    }
  }

 private:
  std::optional<model::LoraDisabled> off_;
};

// The tensors an update changes, whose gradients the ranks sum.
std::vector<Tensor> TrainableTensors(model::DecoderModel& model) {
  std::vector<Tensor> out;
  for (auto& [name, t] : model.TrainableParameters()) out.push_back(t);
  return out;
}

// One flattened sequence: prompt + response, with per-response-token data.
struct Seq {
  const std::vector<int32_t>* prompt = nullptr;
  const std::vector<int32_t>* response = nullptr;
  const std::vector<float>* behaviour = nullptr;  // may be null (SFT)
  const std::vector<VersionRun>* versions = nullptr;  // may be null (SFT)
  double advantage = 0;
  double reward = 0;
  bool correct = false;
  int64_t group = 0;                // index of its group in the batch (DRPO)
  double mean_entropy = 0;          // DMMPT: the policy's mean token entropy before the update
  std::vector<float> old_logprobs;  // recomputed, when asked
  std::vector<float> ref_logprobs;  // reference model, when KL is on
  const torch::Tensor* embeds = nullptr;  // prompt embeddings [n, hidden], when given
  std::vector<int64_t> embed_at;          // the prompt positions taking their rows
  int64_t length() const { return static_cast<int64_t>(prompt->size() + response->size()); }
};

// Tensors of a micro-batch. Position t predicts token t + 1; response token j of row b sits at
// position P_b - 1 + j.
struct Packed {
  Tensor ids, attention, targets, mask;  // [B,T] int64, int64, int64, float
  Tensor behaviour, old_lp, ref_lp;      // [B,T] float (zeros outside the mask)
  Tensor advantages;                     // [B] float
  model::EmbeddingSplice splice;         // prompt embeddings of the rows that have some
  int64_t T = 0;
};

Packed Pack(const std::vector<Seq*>& rows, bool with_old, bool with_ref) {
  Packed p;
  int64_t T = 0;
  for (const Seq* s : rows) T = std::max(T, s->length());
  const int64_t B = static_cast<int64_t>(rows.size());
  p.T = T;
  std::vector<int64_t> ids(B * T, 0), att(B * T, 0), tgt(B * T, 0);
  std::vector<float> mask(B * T, 0), beh(B * T, 0), old(B * T, 0), ref(B * T, 0), adv(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    const Seq& s = *rows[b];
    const int64_t P = static_cast<int64_t>(s.prompt->size());
    const int64_t L = s.length();
    for (int64_t t = 0; t < L; ++t) {
      ids[b * T + t] = t < P ? (*s.prompt)[t] : (*s.response)[t - P];
      att[b * T + t] = 1;
    }
    for (int64_t t = 0; t + 1 < L; ++t) tgt[b * T + t] = ids[b * T + t + 1];
    const int64_t R = static_cast<int64_t>(s.response->size());
    for (int64_t j = 0; j < R; ++j) {
      const int64_t t = P - 1 + j;
      mask[b * T + t] = 1;
      if (s.behaviour) beh[b * T + t] = (*s.behaviour)[j];
      if (with_old) old[b * T + t] = s.old_logprobs[j];
      if (with_ref) ref[b * T + t] = s.ref_logprobs[j];
    }
    adv[b] = static_cast<float>(s.advantage);
  }
  std::vector<int64_t> spliced;
  std::vector<Tensor> spliced_rows;
  for (int64_t b = 0; b < B; ++b) {
    const Seq& s = *rows[b];
    if (s.embeds == nullptr) continue;
    for (int64_t t : s.embed_at) spliced.push_back(b * T + t);
    spliced_rows.push_back(*s.embeds);
  }
  if (!spliced.empty()) {
    p.splice.index = torch::tensor(spliced, torch::kInt64);
    p.splice.rows = torch::cat(spliced_rows);
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  p.ids = torch::from_blob(ids.data(), {B, T}, i64).clone();
  p.attention = torch::from_blob(att.data(), {B, T}, i64).clone();
  p.targets = torch::from_blob(tgt.data(), {B, T}, i64).clone();
  p.mask = torch::from_blob(mask.data(), {B, T}, f32).clone();
  p.behaviour = torch::from_blob(beh.data(), {B, T}, f32).clone();
  p.old_lp = with_old ? torch::from_blob(old.data(), {B, T}, f32).clone() : p.behaviour;
  if (with_ref) p.ref_lp = torch::from_blob(ref.data(), {B, T}, f32).clone();
  p.advantages = torch::from_blob(adv.data(), {B}, f32).clone();
  return p;
}

// Rows cut into micro-batches whose padded size (rows x longest) stays within `budget` tokens.
std::vector<std::vector<Seq*>> MicroBatches(const std::vector<Seq*>& rows, int64_t budget) {
  std::vector<std::vector<Seq*>> out;
  std::vector<Seq*> cur;
  int64_t longest = 0;
  for (Seq* s : rows) {
    const int64_t l = std::max(longest, s->length());
    if (!cur.empty() && l * static_cast<int64_t>(cur.size() + 1) > budget) {
      out.push_back(std::move(cur));
      cur.clear();
      longest = 0;
    }
    cur.push_back(s);
    longest = std::max(longest, s->length());
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// Per-token logprobs [B,T] of `targets` at `temperature`, without gradients, the LM head run
// learner.logits_chunk_tokens positions at a time.
// With streaming on, the trunk also runs chunk by chunk (StreamHidden), so old/reference logprobs
// of long sequences never hold a whole sequence's attention.
Tensor NoGradLogprobs(model::DecoderModel& m, const Packed& p, double temperature,
                      const LearnerRunOptions& o) {
  torch::NoGradGuard ng;
  Tensor hidden;
  if (o.streambp) {
    const int64_t chunk = StreamBpOptionsFor(o, m.config(), p.T).layer_chunk_tokens;
    hidden = StreamHidden(m, p.ids, p.attention, chunk > 0 ? chunk : p.T, p.splice);
  } else {
    hidden = m.Forward(p.ids, {}, p.attention, p.splice);
  }
  std::vector<Tensor> parts;
  const int64_t chunk = o.logits_chunk_tokens;
  CHAINRL_CHECK(chunk >= 1, "logits_chunk_tokens " << chunk);
  for (int64_t t0 = 0; t0 < p.T; t0 += chunk) {
    const int64_t t1 = std::min(p.T, t0 + chunk);
    Tensor logits = m.Logits(hidden.slice(1, t0, t1)).to(torch::kFloat32);
    parts.push_back(TokenLogprobs(logits, p.targets.slice(1, t0, t1), temperature));
  }
  return torch::cat(parts, 1);
}

// Forward + backward of `loss_fn` over the packed rows: streaming backprop or plain autograd.
double Backward(model::DecoderModel& m, const Packed& p, const LearnerRunOptions& o,
                double temperature, bool want_entropy, const ChunkLossFn& loss_fn) {
  if (o.streambp) {
    StreamBpOptions so = StreamBpOptionsFor(o, m.config(), p.T);
    so.head.temperature = temperature;
    so.head.want_entropy = want_entropy;
    return StreamBackward(m, p.ids, p.attention, p.targets, loss_fn, so, p.splice);
  }
  Tensor hidden = m.Forward(p.ids, {}, p.attention, p.splice);
  Tensor logits = m.Logits(hidden).to(torch::kFloat32);
  Tensor lp = TokenLogprobs(logits, p.targets, temperature);
  Tensor ent = want_entropy ? TokenEntropy(logits, temperature) : Tensor();
  Tensor loss = loss_fn(0, p.T, lp, ent);
  loss.backward();
  return loss.item<double>();
}

std::vector<float> RowSlice(const Tensor& lp, int64_t b, int64_t start, int64_t n) {
  Tensor r = lp[b].slice(0, start, start + n).contiguous().to(torch::kFloat32);
  return std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + n);
}

// Fills seq->old_logprobs (or ref_logprobs) with `m`'s logprobs of each response.
void FillLogprobs(model::DecoderModel& m, std::vector<Seq>& seqs, int64_t budget,
                  double temperature, bool ref, const LearnerRunOptions& o) {
  std::vector<Seq*> rows;
  for (auto& s : seqs) rows.push_back(&s);
  for (const auto& mb : MicroBatches(rows, budget)) {
    Packed p = Pack(mb, false, false);
    Tensor lp = NoGradLogprobs(m, p, temperature, o);
    for (size_t b = 0; b < mb.size(); ++b) {
      Seq& s = *mb[b];
      auto v = RowSlice(lp, static_cast<int64_t>(b), static_cast<int64_t>(s.prompt->size()) - 1,
                        static_cast<int64_t>(s.response->size()));
      (ref ? s.ref_logprobs : s.old_logprobs) = std::move(v);
    }
  }
}

// DMMPT: each row's mean full-vocabulary entropy over its response, without gradients.
void FillMeanEntropy(model::DecoderModel& m, const std::vector<Seq*>& rows, int64_t budget,
                     double temperature, const LearnerRunOptions& o) {
  torch::NoGradGuard ng;
  for (const auto& mb : MicroBatches(rows, budget)) {
    Packed p = Pack(mb, false, false);
    Tensor hidden;
    if (o.streambp) {
      const int64_t chunk = StreamBpOptionsFor(o, m.config(), p.T).layer_chunk_tokens;
      hidden = StreamHidden(m, p.ids, p.attention, chunk > 0 ? chunk : p.T);
    } else {
      hidden = m.Forward(p.ids, {}, p.attention);
    }
    Tensor sum = torch::zeros({p.ids.size(0)}, torch::kFloat64);
    const int64_t chunk = o.logits_chunk_tokens;
    CHAINRL_CHECK(chunk >= 1, "logits_chunk_tokens " << chunk);
    for (int64_t t0 = 0; t0 < p.T; t0 += chunk) {
      const int64_t t1 = std::min(p.T, t0 + chunk);
      Tensor logits = m.Logits(hidden.slice(1, t0, t1)).to(torch::kFloat32);
      Tensor ent = TokenEntropy(logits, temperature).to(torch::kFloat64);
      sum += (ent * p.mask.slice(1, t0, t1).to(torch::kFloat64)).sum(1);
    }
    for (size_t b = 0; b < mb.size(); ++b)
      mb[b]->mean_entropy = sum[static_cast<int64_t>(b)].item<double>() /
                            std::max<double>(1.0, static_cast<double>(mb[b]->response->size()));
  }
}

Normalisers SliceNorm(const Normalisers& n, int64_t r0, int64_t r1) {
  Normalisers s = n;
  s.seq_weights = n.seq_weights.slice(0, r0, r1);
  s.seq_lengths = n.seq_lengths.slice(0, r0, r1);
  return s;
}

// The batch as rows: every non-empty response with its group's prompt (and prompt embeddings),
// the caller's advantages when it set them, and whether overlong filtering keeps it.
struct BatchRows {
  std::vector<Seq> seqs;
  std::vector<double> rewards;
  std::vector<int64_t> groups;  // index of each row's group
  std::vector<double> given;    // advantages the caller set on the samples
  std::vector<bool> keep;       // false: a truncated response that overlong filtering drops
};

Result<BatchRows> FlattenGroups(const std::vector<GroupData>& groups,
                                const model::DecoderModel& model, bool overlong_filtering) {
  BatchRows out;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GroupData& group = groups[g];
    const std::string where = "group " + std::to_string(group.group_id) + ": ";
    std::vector<int64_t> embed_at;
    if (group.prompt_embeddings.defined()) {
      const Tensor& e = group.prompt_embeddings;
      embed_at = model::PlaceholderPositions(group.prompt, group.placeholder_token_id);
      if (e.dim() != 2 || e.size(1) != model.config().hidden_size)
        return InvalidArgument(where + "prompt embeddings must be [rows, " +
                               std::to_string(model.config().hidden_size) + "]");
      if (e.size(0) != static_cast<int64_t>(embed_at.size()))
        return InvalidArgument(where + std::to_string(e.size(0)) + " prompt embedding rows but " +
                               std::to_string(embed_at.size()) + " placeholder tokens " +
                               std::to_string(group.placeholder_token_id));
    }
    for (const auto& s : group.samples) {
      if (s.tokens.empty()) continue;  // nothing to learn from an empty response
      if (s.behaviour_logprobs.size() != s.tokens.size())
        return InvalidArgument(where + "logprobs and tokens differ in length");
      if (group.prompt.empty()) return InvalidArgument(where + "empty prompt");
      out.rewards.push_back(s.reward);
      out.groups.push_back(static_cast<int64_t>(g));
      Seq q;
      q.prompt = &group.prompt;
      q.response = &s.tokens;
      q.behaviour = &s.behaviour_logprobs;
      q.versions = &s.versions;
      q.reward = s.reward;
      if (!embed_at.empty()) {
        q.embeds = &group.prompt_embeddings;
        q.embed_at = embed_at;
      }
      q.correct = s.correct;
      q.group = static_cast<int64_t>(g);
      if (s.advantage) out.given.push_back(*s.advantage);
      out.seqs.push_back(std::move(q));
      out.keep.push_back(!(overlong_filtering && s.truncated()));
    }
  }
  return out;
}

// The whole batch's figures on every rank: each rank's loss and statistics are its share.
Status SumAcrossRanks(DataParallel& dp, RlStepStats* stats) {
  PolicyLossStats& p = stats->policy;
  std::vector<double*> sums = {&stats->loss,           &p.tokens,         &p.clipped_tokens,
                               &p.dual_clipped_tokens, &p.ratio_sum,      &p.approx_kl_sum,
                               &p.ref_kl_sum,          &p.entropy_sum,    &p.mismatch_tokens,
                               &p.mismatch_abs_sum,    &p.mismatch_k3_sum};
  std::vector<double> f;
  for (double* x : sums) f.push_back(*x);
  f.push_back(static_cast<double>(stats->sequences));
  f.push_back(static_cast<double>(stats->response_tokens));
  f.push_back(static_cast<double>(stats->mastered_masked_tokens));
  CHAINRL_RETURN_IF_ERROR(dp.AllReduce(&f));
  for (size_t i = 0; i < sums.size(); ++i) *sums[i] = f[i];
  stats->sequences = static_cast<int64_t>(f[sums.size()]);
  stats->response_tokens = static_cast<int64_t>(f[sums.size() + 1]);
  stats->mastered_masked_tokens = static_cast<int64_t>(f[sums.size() + 2]);
  std::vector<double> worst = {p.mismatch_abs_max};
  CHAINRL_RETURN_IF_ERROR(dp.AllReduce(&worst, /*max=*/true));
  p.mismatch_abs_max = worst[0];
  std::vector<double> msums = stats->mismatch.Sums(), mmax = stats->mismatch.Maxima();
  CHAINRL_RETURN_IF_ERROR(dp.AllReduce(&msums));
  CHAINRL_RETURN_IF_ERROR(dp.AllReduce(&mmax, /*max=*/true));
  stats->mismatch.FromReduced(msums, mmax);
  return Status::Ok();
}

// The driver's side of one policy update: everything but the objective's loss (objective.h).
class PolicyUpdate {
 public:
  PolicyUpdate(model::DecoderModel& model, Optimizer& optimizer, const LearnerRunOptions& options,
               const RlStepOptions& step, PolicyObjective& objective, DataParallel* dp,
               BatchRows& batch, std::vector<std::vector<float>>* before_update)
      : model_(model),
        optimizer_(optimizer),
        options_(options),
        step_(step),
        objective_(objective),
        dp_(dp),
        batch_(batch),
        before_update_(before_update) {}

  // Rows [r0, r1) of the batch: the objective's preparation, the chunked backward of its loss,
  // the gradients summed across ranks, and the optimiser step.
  Status MiniBatch(int64_t epoch, int64_t r0, int64_t r1, RlStepStats* stats) {
    std::vector<Seq*> rows;
    for (int64_t i = r0; i < r1; ++i) rows.push_back(&batch_.seqs[i]);
    CHAINRL_ASSIGN_OR_RETURN(Normalisers norm, MiniBatchNormalisers(rows, r0));
    std::vector<ObjectiveRow> info;
    for (const Seq* s : rows) info.push_back({s->correct, s->group});
    SequencePass pass = [&](const SequencePassVisitor& visit) {
      torch::NoGradGuard ng;
      int64_t first = 0;
      for (const auto& micro : MicroBatches(rows, step_.micro_batch_tokens)) {
        Packed p = Pack(micro, step_.recompute_old_logprobs, false);
        visit({first, NoGradLogprobs(model_, p, step_.temperature, options_), p.old_lp, p.mask});
        first += static_cast<int64_t>(micro.size());
      }
    };
    CHAINRL_ASSIGN_OR_RETURN(double prepared_loss, objective_.Prepare(info, pass));
    stats->loss += prepared_loss;
    optimizer_.ZeroGrad();
    const bool capture = before_update_ != nullptr && epoch == 0 && r0 == 0;
    if (capture) before_update_->assign(rows.size(), {});
    int64_t b0 = 0;
    for (const auto& micro : MicroBatches(rows, step_.micro_batch_tokens)) {
      const int64_t b1 = b0 + static_cast<int64_t>(micro.size());
      Packed p = Pack(micro, step_.recompute_old_logprobs, options_.policy.kl_coef > 0);
      // Rollout correction from whole rows (its sequence levels need every token of a row).
      const RolloutCorrection& rc = options_.policy.rollout_correction;
      const Tensor correction =
          rc.enabled() ? RolloutCorrectionWeights(p.old_lp, p.behaviour, p.mask, rc) : Tensor();
      const Tensor mask = objective_.applies_sample_filters()
                              ? FilteredMask(p, micro, r0 + b0, epoch == 0, stats)
                              : p.mask;
      const Normalisers mn = SliceNorm(norm, b0, b1);
      PolicyLossStats mstats;
      auto loss_fn = [&](int64_t t0, int64_t t1, const Tensor& lp, const Tensor& ent) {
        ObjectiveChunk c;
        c.tokens.logprobs = lp;
        c.tokens.old_logprobs = p.old_lp.slice(1, t0, t1);
        if (options_.policy.kl_coef > 0) c.tokens.ref_logprobs = p.ref_lp.slice(1, t0, t1);
        c.tokens.mask = mask.slice(1, t0, t1);
        c.tokens.advantages = p.advantages;
        if (ent.defined()) c.tokens.entropy = ent;
        c.tokens.rollout_logprobs = p.behaviour.slice(1, t0, t1);
        if (correction.defined()) c.tokens.rollout_weights = correction.slice(1, t0, t1);
        c.response_mask = p.mask.slice(1, t0, t1);
        c.norm = &mn;
        c.first_row = b0;
        if (capture) KeepLogprobs(micro, b0, t0, t1, lp);
        return objective_.ChunkLoss(c, &mstats);
      };
      const double loss =
          Backward(model_, p, options_, step_.temperature, objective_.needs_entropy(), loss_fn);
      if (objective_.reports_chunk_loss()) {
        stats->loss += loss;
        stats->policy.Merge(mstats);
      }
      b0 = b1;
    }
    if (dp_ != nullptr) CHAINRL_RETURN_IF_ERROR(dp_->SumGradients(TrainableTensors(model_)));
    if (step_.skip_optimizer_step) return Status::Ok();
    StepResult r = optimizer_.Step();
    stats->grad_norm = r.grad_norm;
    stats->lr = r.lr;
    ++stats->optimizer_steps;
    if (r.skipped) ++stats->skipped_steps;
    return Status::Ok();
  }

 private:
  // The mini-batch's global normalisers from its response mask, filtered rows left out; under
  // data parallelism the counts are the whole mini-batch's over every rank.
  Result<Normalisers> MiniBatchNormalisers(const std::vector<Seq*>& rows, int64_t r0) {
    int64_t cmax = 0;
    for (Seq* s : rows) cmax = std::max<int64_t>(cmax, s->response->size());
    Tensor full_mask = torch::zeros({static_cast<int64_t>(rows.size()), cmax});
    for (size_t b = 0; b < rows.size(); ++b)
      if (batch_.keep[r0 + b])
        full_mask[static_cast<int64_t>(b)].slice(0, 0, rows[b]->response->size()).fill_(1);
    std::optional<GlobalCounts> global;
    if (dp_ != nullptr) {
      std::vector<double> counts = {0, 0}, longest = {static_cast<double>(cmax)};
      for (size_t b = 0; b < rows.size(); ++b)
        if (batch_.keep[r0 + b] && !rows[b]->response->empty()) {
          counts[0] += static_cast<double>(rows[b]->response->size());
          counts[1] += 1;
        }
      CHAINRL_RETURN_IF_ERROR(dp_->AllReduce(&counts));
      CHAINRL_RETURN_IF_ERROR(dp_->AllReduce(&longest, /*max=*/true));
      global = GlobalCounts{counts[0], counts[1], longest[0]};
    }
    return ComputeNormalisers(full_mask, options_.policy, global);
  }

  // Positions [t0, t1) of `lp` (rows of `micro`, the first at mini-batch row b0) into
  // *before_update_: response token j of a row sits at position P - 1 + j.
  void KeepLogprobs(const std::vector<Seq*>& micro, int64_t b0, int64_t t0, int64_t t1,
                    const Tensor& lp) {
    const Tensor v = lp.detach().to(torch::kFloat32).contiguous();
    const float* d = v.data_ptr<float>();
    const int64_t width = t1 - t0;
    for (size_t b = 0; b < micro.size(); ++b) {
      const Seq& s = *micro[b];
      const int64_t first = static_cast<int64_t>(s.prompt->size()) - 1;
      const int64_t R = static_cast<int64_t>(s.response->size());
      std::vector<float>& out = (*before_update_)[static_cast<size_t>(b0) + b];
      out.resize(static_cast<size_t>(R));
      for (int64_t t = std::max(t0, first); t < std::min(t1, first + R); ++t)
        out[static_cast<size_t>(t - first)] = d[static_cast<int64_t>(b) * width + (t - t0)];
    }
  }

  // The micro-batch's loss mask: rows dropped by overlong filtering zeroed, then UloRL's DMMPT
  // (positive = correct, whatever shaping did to the reward; p from ℓ_old). The tokens DMMPT
  // drops are counted once per update (`count`, the first epoch).
  Tensor FilteredMask(const Packed& p, const std::vector<Seq*>& micro, int64_t first, bool count,
                      RlStepStats* stats) {
    const int64_t n = static_cast<int64_t>(micro.size());
    Tensor keep_rows = torch::ones({n});
    for (int64_t b = 0; b < n; ++b) keep_rows[b] = batch_.keep[first + b] ? 1.0f : 0.0f;
    Tensor mask = p.mask * keep_rows.unsqueeze(1);
    if (!options_.mastered_token_mask) return mask;
    std::vector<double> pos, ent;
    for (const Seq* s : micro) {
      pos.push_back(s->correct ? 1.0 : 0.0);
      ent.push_back(s->mean_entropy);
    }
    MasteredTokenMaskOptions mo = options_.mastered;
    mo.positive_reward = 1.0;
    mo.prob_source = MasteredProbSource::kOld;
    Tensor kept =
        MasteredPositiveTokenKeepMask(p.old_lp, Tensor(), mask, torch::tensor(pos, torch::kFloat64),
                                      torch::tensor(ent, torch::kFloat64), mo);
    if (count) stats->mastered_masked_tokens += std::llround((mask - kept).sum().item<double>());
    return kept;
  }

  model::DecoderModel& model_;
  Optimizer& optimizer_;
  const LearnerRunOptions& options_;
  const RlStepOptions& step_;
  PolicyObjective& objective_;
  DataParallel* dp_;
  BatchRows& batch_;
  // Non-null: the first mini-batch's logprobs of its first epoch (taken before any update) go
  // here, per row, per response token.
  std::vector<std::vector<float>>* before_update_;
};

}  // namespace

Result<RlStepStats> RunPolicyUpdate(model::DecoderModel& model, Optimizer& optimizer,
                                    const std::vector<GroupData>& groups,
                                    const LearnerRunOptions& options, const RlStepOptions& step) {
  if (options.policy.kl_coef > 0 && step.reference == nullptr)
    return InvalidArgument("algorithm.kl_coef > 0 needs a reference model");
  if (options.policy.rollout_correction.enabled() && !step.recompute_old_logprobs)
    return InvalidArgument(
        "algorithm.rollout_is / rollout_mask need the learner's recomputed logprobs "
        "(learner.old_logprobs = \"recompute\")");
  CHAINRL_ASSIGN_OR_RETURN(std::unique_ptr<PolicyObjective> objective,
                           MakePolicyObjective(options));
  CHAINRL_ASSIGN_OR_RETURN(BatchRows batch,
                           FlattenGroups(groups, model, options.overlong_filtering));
  std::vector<Seq>& seqs = batch.seqs;
  RlStepStats stats;
  DataParallel* dp = MultiRank(step.data_parallel);
  if (dp != nullptr && options.drpo)
    return InvalidArgument(
        "length_shaping.methods 'drpo' scores the whole batch at once: it cannot run data "
        "parallel");
  // Under data parallelism an empty shard still takes part in every collective of the step.
  if (seqs.empty() && dp == nullptr) return stats;
  if (!batch.given.empty() && batch.given.size() != seqs.size())
    return InvalidArgument("advantages given for " + std::to_string(batch.given.size()) + " of " +
                           std::to_string(seqs.size()) + " samples: all or none");
  std::vector<double> adv = batch.given.empty()
                                ? GroupAdvantages(batch.rewards, batch.groups, options.advantages)
                                : std::move(batch.given);
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].advantage = adv[i];
  model.train();
  if (step.recompute_old_logprobs)
    FillLogprobs(model, seqs, step.micro_batch_tokens, step.temperature, /*ref=*/false, options);
  if (options.policy.kl_coef > 0) {
    ReferenceForwards ref(model, *step.reference);
    FillLogprobs(*step.reference, seqs, step.micro_batch_tokens, step.temperature, /*ref=*/true,
                 options);
  }
  if (options.mastered_token_mask && objective->applies_sample_filters()) {
    std::vector<Seq*> positive;
    for (size_t i = 0; i < seqs.size(); ++i)
      if (seqs[i].correct && batch.keep[i]) positive.push_back(&seqs[i]);
    FillMeanEntropy(model, positive, step.micro_batch_tokens, step.temperature, options);
  }
  const int64_t n = static_cast<int64_t>(seqs.size());
  int64_t mbs = std::max<int64_t>(1, std::min<int64_t>(step.mini_batches, n));
  if (options.drpo && mbs > 1)
    return InvalidArgument(
        "length_shaping.methods 'drpo' scores whole groups: it needs learner.mini_batches = 1");
  if (dp != nullptr) {  // every rank runs as many mini-batches as the smallest shard allows
    std::vector<double> fewest = {static_cast<double>(-mbs)};
    CHAINRL_RETURN_IF_ERROR(dp->AllReduce(&fewest, /*max=*/true));
    mbs = static_cast<int64_t>(-fewest[0]);
  }
  for (auto& s : seqs) stats.response_tokens += static_cast<int64_t>(s.response->size());
  stats.sequences = n;
  const bool measure = step.policy_version >= 0;
  std::vector<std::vector<float>> before_update;  // the first mini-batch's, without recompute
  PolicyUpdate update(model, optimizer, options, step, *objective, dp, batch,
                      measure && !step.recompute_old_logprobs ? &before_update : nullptr);
  for (int64_t epoch = 0; epoch < step.ppo_epochs; ++epoch) {
    stats.loss = 0;
    stats.policy = PolicyLossStats();
    for (int64_t mb = 0; mb < mbs; ++mb)
      CHAINRL_RETURN_IF_ERROR(update.MiniBatch(epoch, n * mb / mbs, n * (mb + 1) / mbs, &stats));
  }
  if (measure) {
    const RolloutCorrection& rc = options.policy.rollout_correction;
    const MismatchBounds bounds{rc.is_cap, rc.mask_low, rc.mask_high};
    for (size_t i = 0; i < seqs.size(); ++i) {
      const Seq& s = seqs[i];
      std::span<const float> learner;
      if (step.recompute_old_logprobs) {
        learner = s.old_logprobs;
      } else if (i < before_update.size()) {
        learner = before_update[i];
      }
      stats.mismatch.AddRow(learner, *s.behaviour, *s.versions, step.policy_version, bounds);
    }
  }
  if (dp != nullptr) CHAINRL_RETURN_IF_ERROR(SumAcrossRanks(*dp, &stats));
  return stats;
}

namespace {

// The backward of RunPreferenceUpdate on this rank's pairs, its loss scaled as a part of the mean
// over `global_pairs` pairs; fills stats (loss, accuracy and margin of these pairs, their count
// and tokens).
Status PreferenceBackward(model::DecoderModel& model, const std::vector<PreferencePairData>& pairs,
                          const LearnerRunOptions& options, const RlStepOptions& step,
                          bool needs_ref, double global_pairs, PreferenceStepStats* out_stats) {
  const PreferenceOptions& po = options.preference;
  PreferenceStepStats& stats = *out_stats;
  const int64_t B = static_cast<int64_t>(pairs.size());
  const int64_t M = static_cast<int64_t>(pairs[0].rejected.size());
  // Rows: pair b's chosen at b·(1 + M), its rejected ones after it.
  std::vector<Seq> seqs;
  for (int64_t b = 0; b < B; ++b) {
    const PreferencePairData& p = pairs[b];
    if (p.prompt.empty() || p.chosen.empty() || static_cast<int64_t>(p.rejected.size()) != M ||
        M < 1)
      return InvalidArgument("preference pair " + std::to_string(b) +
                             ": an empty prompt or chosen response, or not " + std::to_string(M) +
                             " rejected responses");
    Seq c;
    c.prompt = &p.prompt;
    c.response = &p.chosen;
    seqs.push_back(c);
    for (const auto& r : p.rejected) {
      if (r.empty())
        return InvalidArgument("preference pair " + std::to_string(b) +
                               ": empty rejected response");
      Seq q;
      q.prompt = &p.prompt;
      q.response = &r;
      seqs.push_back(q);
    }
  }
  for (const auto& q : seqs) stats.response_tokens += static_cast<int64_t>(q.response->size());
  FillLogprobs(model, seqs, step.micro_batch_tokens, step.temperature, /*ref=*/false, options);
  if (needs_ref) {
    ReferenceForwards ref(model, *step.reference);
    FillLogprobs(*step.reference, seqs, step.micro_batch_tokens, step.temperature, /*ref=*/true,
                 options);
  }
  auto total = [](const std::vector<float>& v) {
    double t = 0;
    for (float x : v) t += x;
    return t;
  };
  const int64_t W = 1 + M;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  Tensor cw = torch::zeros({B}, f64), rw = torch::zeros({B}, f64), lw = torch::zeros({B}, f64);
  Tensor cl = torch::zeros({B, M}, f64), rl = torch::zeros({B, M}, f64),
         ll = torch::zeros({B, M}, f64);
  for (int64_t b = 0; b < B; ++b) {
    const Seq& c = seqs[b * W];
    cw[b] = total(c.old_logprobs);
    if (needs_ref) rw[b] = total(c.ref_logprobs);
    lw[b] = static_cast<double>(c.response->size());
    for (int64_t m = 0; m < M; ++m) {
      const Seq& r = seqs[b * W + 1 + m];
      cl[b][m] = total(r.old_logprobs);
      if (needs_ref) rl[b][m] = total(r.ref_logprobs);
      ll[b][m] = static_cast<double>(r.response->size());
    }
  }
  PreferenceInputs in;
  in.chosen_logps = cw;
  in.rejected_logps = M == 1 ? cl.reshape({B}) : cl;
  in.chosen_lengths = lw;
  in.rejected_lengths = M == 1 ? ll.reshape({B}) : ll;
  if (needs_ref) {
    in.ref_chosen_logps = rw;
    in.ref_rejected_logps = M == 1 ? rl.reshape({B}) : rl;
  }
  CHAINRL_ASSIGN_OR_RETURN(PreferenceOutput out, PreferenceLoss(in, po));
  stats.loss = out.loss.item<double>();
  stats.reward_accuracy = out.reward_accuracy;
  stats.reward_margin = out.reward_margin;
  stats.pairs = B;
  CHAINRL_ASSIGN_OR_RETURN(SequenceGradCoefficients g, PreferenceSequenceGrads(in, po));
  // This rank's pairs are B of the global_pairs the loss averages.
  const double part = static_cast<double>(B) / global_pairs;
  const Tensor gc = g.chosen.to(torch::kFloat64).reshape({B}) * part;
  const Tensor gr = g.rejected.to(torch::kFloat64).reshape({B, M}) * part;
  for (int64_t b = 0; b < B; ++b) {
    seqs[b * W].advantage = gc[b].item<double>();
    for (int64_t m = 0; m < M; ++m) seqs[b * W + 1 + m].advantage = gr[b][m].item<double>();
  }
  // Σ_seq coefficient · Σ_t m·ℓ: linear in ℓ, so chunks add up exactly.
  std::vector<Seq*> rows;
  for (auto& q : seqs) rows.push_back(&q);
  for (const auto& micro : MicroBatches(rows, step.micro_batch_tokens)) {
    Packed p = Pack(micro, false, false);
    const Tensor coef = p.advantages.to(torch::kFloat32).unsqueeze(1);
    auto loss_fn = [&](int64_t t0, int64_t t1, const Tensor& lp, const Tensor&) {
      return (lp * p.mask.slice(1, t0, t1) * coef).sum();
    };
    Backward(model, p, options, step.temperature, false, loss_fn);
  }
  return Status::Ok();
}

}  // namespace

Result<PreferenceStepStats> RunPreferenceUpdate(model::DecoderModel& model, Optimizer& optimizer,
                                                const std::vector<PreferencePairData>& pairs,
                                                const LearnerRunOptions& options,
                                                const RlStepOptions& step) {
  const PreferenceOptions& po = options.preference;
  const bool needs_ref =
      (po.loss_type == PreferenceLossType::kDpo || po.loss_type == PreferenceLossType::kIpo) &&
      !po.reference_free;
  if (needs_ref && step.reference == nullptr)
    return InvalidArgument("algorithm.name = '" +
                           std::string(PreferenceLossTypeName(po.loss_type)) +
                           "' needs a reference model (or algorithm.reference_free = true)");
  PreferenceStepStats stats;
  DataParallel* dp = MultiRank(step.data_parallel);
  const int64_t B = static_cast<int64_t>(pairs.size());
  std::vector<double> global = {static_cast<double>(B)};  // every rank's pairs: the loss's mean
  if (dp != nullptr) CHAINRL_RETURN_IF_ERROR(dp->AllReduce(&global));
  const double global_pairs = global[0];
  if (global_pairs == 0) return stats;
  model.train();
  optimizer.ZeroGrad();
  if (B > 0)
    CHAINRL_RETURN_IF_ERROR(
        PreferenceBackward(model, pairs, options, step, needs_ref, global_pairs, &stats));
  if (dp != nullptr) {  // the whole batch's gradient and figures on every rank
    CHAINRL_RETURN_IF_ERROR(dp->SumGradients(TrainableTensors(model)));
    const double w = static_cast<double>(B) / global_pairs;
    std::vector<double> f = {stats.loss * w, stats.reward_accuracy * w, stats.reward_margin * w,
                             static_cast<double>(stats.response_tokens)};
    CHAINRL_RETURN_IF_ERROR(dp->AllReduce(&f));
    stats.loss = f[0];
    stats.reward_accuracy = f[1];
    stats.reward_margin = f[2];
    stats.response_tokens = static_cast<int64_t>(f[3]);
    stats.pairs = static_cast<int64_t>(global_pairs);
  }
  if (step.skip_optimizer_step) return stats;
  StepResult r = optimizer.Step();
  stats.grad_norm = r.grad_norm;
  stats.lr = r.lr;
  return stats;
}

Result<double> RunSftUpdate(model::DecoderModel& model, Optimizer& optimizer,
                            const std::vector<SftExample>& batch, const LearnerRunOptions& options,
                            int64_t micro_batch_tokens, bool skip_optimizer_step,
                            DataParallel* data_parallel) {
  DataParallel* dp = MultiRank(data_parallel);
  std::vector<Seq> seqs;
  double total = 0;
  for (const auto& e : batch) {
    if (e.prompt.empty() || e.response.empty()) continue;
    Seq s;
    s.prompt = &e.prompt;
    s.response = &e.response;
    total += static_cast<double>(e.response.size());
    seqs.push_back(std::move(s));
  }
  if (dp != nullptr) {  // the mean is over every rank's response tokens
    std::vector<double> t = {total};
    CHAINRL_RETURN_IF_ERROR(dp->AllReduce(&t));
    total = t[0];
  }
  if (total == 0) return InvalidArgument("an SFT batch without any prompt and response");
  model.train();
  optimizer.ZeroGrad();
  std::vector<Seq*> rows;
  for (auto& s : seqs) rows.push_back(&s);
  double loss = 0;
  for (const auto& micro : MicroBatches(rows, micro_batch_tokens)) {
    Packed p = Pack(micro, false, false);
    auto loss_fn = [&](int64_t t0, int64_t t1, const Tensor& lp, const Tensor&) {
      return SftLoss(lp, p.mask.slice(1, t0, t1), total);
    };
    loss += Backward(model, p, options, 1.0, false, loss_fn);
  }
  if (dp != nullptr) {  // the whole batch's gradient and loss on every rank
    CHAINRL_RETURN_IF_ERROR(dp->SumGradients(TrainableTensors(model)));
    std::vector<double> l = {loss};
    CHAINRL_RETURN_IF_ERROR(dp->AllReduce(&l));
    loss = l[0];
  }
  if (!skip_optimizer_step) optimizer.Step();
  return loss;
}

std::vector<PreferencePairData> OnlinePreferencePairs(const std::vector<GroupData>& groups,
                                                      int64_t num_rejected) {
  PairSelectionOptions ps;
  ps.num_rejected = num_rejected;
  std::vector<PreferencePairData> pairs;
  for (const auto& g : groups) {
    std::vector<double> r;
    for (const auto& smp : g.samples) r.push_back(smp.reward);
    if (static_cast<int64_t>(r.size()) <= ps.num_rejected) continue;
    auto sel = SelectGroupPair(r, ps);
    if (!sel || g.samples[sel->chosen].tokens.empty()) continue;
    PreferencePairData p;
    p.prompt = g.prompt;
    p.chosen = g.samples[sel->chosen].tokens;
    for (int64_t j : sel->rejected)
      if (!g.samples[j].tokens.empty()) p.rejected.push_back(g.samples[j].tokens);
    if (static_cast<int64_t>(p.rejected.size()) == ps.num_rejected) pairs.push_back(std::move(p));
  }
  return pairs;
}

}  // namespace chainrl::learner
