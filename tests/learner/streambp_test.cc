// Streaming backprop, LM head part: the chunked head + loss with per-chunk backward gives the same
// loss and parameter gradients as ordinary backprop through the full logits, for GRPO (with KL
// and entropy terms) and SFT, with ragged masks, over chunk sizes that do and do not divide T.
#include "learner/streambp.h"

#include <gtest/gtest.h>

#include <iostream>

#include "learner/objectives.h"
#include "learner/preference.h"
#include "model/decoder.h"
#include "model/model_io.h"
#include "tests/model/tiny_model.h"

namespace chainrl::learner {
namespace {

struct Batch {
  torch::Tensor ids, targets, mask, old_lp, ref_lp, adv;
};

std::shared_ptr<model::DecoderModel> Model(bool tied) {
  return chainrl::testing::TinyModel(/*seed=*/3, /*vocab=*/50, /*initializer_range=*/0.1, tied);
}

Batch MakeBatch() {
  torch::manual_seed(0);
  const int64_t B = 3, T = 13;
  Batch b;
  b.ids = torch::randint(0, 50, {B, T}, torch::kLong);
  b.targets = torch::roll(b.ids, -1, 1);
  b.mask = torch::zeros({B, T});
  // Prompts of 3, 5 and 2 tokens; responses of 9, 4 (then padding) and 10 tokens.
  b.mask.index_put_({0, torch::indexing::Slice(2, 11)}, 1);
  b.mask.index_put_({1, torch::indexing::Slice(4, 8)}, 1);
  b.mask.index_put_({2, torch::indexing::Slice(1, 11)}, 1);
  b.old_lp = -torch::rand({B, T}) * 4 - 0.1;
  b.ref_lp = -torch::rand({B, T}) * 4 - 0.1;
  b.adv = torch::tensor({1.2, -0.7, 0.3});
  return b;
}

std::map<std::string, torch::Tensor> Grads(model::DecoderModel& m) {
  std::map<std::string, torch::Tensor> g;
  for (const auto& p : m.named_parameters()) g[p.key()] = p.value().grad().clone();
  return g;
}

double MaxRelErr(const std::map<std::string, torch::Tensor>& a,
                 const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  for (const auto& [k, v] : b) {
    double scale = v.abs().max().item<double>();
    double diff = (a.at(k) - v).abs().max().item<double>();
    worst = std::max(worst, scale > 0 ? diff / scale : diff);
  }
  return worst;
}

enum class Objective { kGrpo, kSft };

void CheckExact(Objective obj, bool tied, double temperature) {
  auto m = Model(tied);
  Batch b = MakeBatch();
  PolicyLossOptions opts;
  opts.set_kl_coef(0.05).set_entropy_coef(0.01).set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean);
  const double total_tokens = b.mask.sum().item<double>();

  // Ordinary backprop through the full [B, T, V] logits.
  m->zero_grad();
  auto logits = m->Logits(m->Forward(b.ids)) / temperature;
  auto logp_all = torch::log_softmax(logits, -1);
  auto logp = logp_all.gather(-1, b.targets.unsqueeze(-1)).squeeze(-1);
  auto entropy = -(logp_all.exp() * logp_all).sum(-1);
  torch::Tensor loss;
  if (obj == Objective::kGrpo) {
    TokenLossInputs in{logp, b.old_lp, b.ref_lp, b.mask, b.adv, entropy, {}, {}};
    loss = PolicyLoss(in, ComputeNormalisers(b.mask, opts), opts).loss;
  } else {
    loss = SftLoss(logp, b.mask, total_tokens);
  }
  loss.backward();
  auto want = Grads(*m);
  const double want_loss = loss.item<double>();

  Normalisers norm = ComputeNormalisers(b.mask, opts);
  for (int64_t chunk : {1, 3, 5, 13, 64}) {
    m->zero_grad();
    auto hidden = m->Forward(b.ids);
    auto fn = [&](int64_t t0, int64_t t1, const torch::Tensor& lp, const torch::Tensor& ent) {
      auto sl = [&](const torch::Tensor& x) { return x.narrow(1, t0, t1 - t0); };
      if (obj == Objective::kSft) return SftLoss(lp, sl(b.mask), total_tokens);
      TokenLossInputs in{lp, sl(b.old_lp), sl(b.ref_lp), sl(b.mask), b.adv, ent, {}, {}};
      return PolicyLoss(in, norm, opts).loss;
    };
    auto res = ChunkedHeadBackward(hidden, m->LmHeadWeight(), b.targets, fn,
                                   ChunkedHeadOptions()
                                       .set_chunk_tokens(chunk)
                                       .set_temperature(temperature)
                                       .set_want_entropy(obj == Objective::kGrpo));
    hidden.backward(res.grad_hidden);
    EXPECT_NEAR(res.loss, want_loss, 1e-6 * std::max(1.0, std::abs(want_loss)))
        << "chunk " << chunk;
    double err = MaxRelErr(Grads(*m), want);
    EXPECT_LE(err, 1e-5) << "chunk " << chunk << " tied " << tied;
  }
}

TEST(StreamBpHeadTest, GrpoGradientsEqualOrdinaryBackprop) {
  CheckExact(Objective::kGrpo, /*tied=*/false, 1.0);
  CheckExact(Objective::kGrpo, /*tied=*/true, 0.7);
}

TEST(StreamBpHeadTest, SftGradientsEqualOrdinaryBackprop) {
  CheckExact(Objective::kSft, /*tied=*/false, 1.0);
  CheckExact(Objective::kSft, /*tied=*/true, 1.0);
}

}  // namespace
}  // namespace chainrl::learner

namespace chainrl::learner {
namespace {

// Pass 1 of the two-pass scheme: per-sequence Σ_t mask·ℓ_t [B] float64 through the LM head
// `chunk` positions at a time, without gradients.
torch::Tensor ChunkedSequenceLogprobs(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                      const torch::Tensor& targets, const torch::Tensor& mask,
                                      int64_t chunk) {
  torch::NoGradGuard no_grad;
  const int64_t T = hidden.size(1);
  torch::Tensor sums = torch::zeros({hidden.size(0)}, torch::kFloat64);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t t1 = std::min(T, t0 + chunk);
    torch::Tensor logp = TokenLogprobs(torch::linear(hidden.narrow(1, t0, t1 - t0), head_weight),
                                       targets.narrow(1, t0, t1 - t0));
    sums += (logp.to(torch::kFloat64) * mask.narrow(1, t0, t1 - t0).to(torch::kFloat64)).sum(1);
  }
  return sums;
}

// DPO is a sigmoid of per-sequence sums, not additive over tokens: the two-pass scheme (sums
// without gradients, then per-chunk backward weighted by dL/dsum) equals ordinary backprop.
TEST(StreamBpHeadTest, DpoTwoPassEqualsOrdinaryBackprop) {
  auto m = Model(/*tied=*/true);
  Batch b = MakeBatch();  // rows 0, 1 chosen; rows 1, 2 rejected, paired (0 with 1, 1 with 2)
  torch::Tensor chosen_rows = torch::tensor({0, 1}), rejected_rows = torch::tensor({1, 2});
  PreferenceOptions opts;
  opts.set_beta(0.3).set_label_smoothing(0.1);
  torch::Tensor ref_c = torch::tensor({-20.0, -9.0}, torch::kFloat64);
  torch::Tensor ref_r = torch::tensor({-10.0, -22.0}, torch::kFloat64);
  torch::Tensor len = b.mask.sum(1);
  auto totals = [&](const torch::Tensor& seq) {
    PreferenceInputs in;
    in.chosen_logps = seq.index_select(0, chosen_rows);
    in.rejected_logps = seq.index_select(0, rejected_rows);
    in.ref_chosen_logps = ref_c;
    in.ref_rejected_logps = ref_r;
    in.chosen_lengths = len.index_select(0, chosen_rows);
    in.rejected_lengths = len.index_select(0, rejected_rows);
    return in;
  };
  // Ordinary backprop.
  m->zero_grad();
  auto logp = torch::log_softmax(m->Logits(m->Forward(b.ids)), -1)
                  .gather(-1, b.targets.unsqueeze(-1))
                  .squeeze(-1);
  auto seq = (logp * b.mask).sum(1).to(torch::kFloat64);
  auto direct = PreferenceLoss(totals(seq), opts);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  direct->loss.backward();
  auto want = Grads(*m);
  for (int64_t chunk : {2, 5, 13}) {
    m->zero_grad();
    auto hidden = m->Forward(b.ids);
    ChunkedHeadOptions ho;
    ho.set_chunk_tokens(chunk);
    auto sums = ChunkedSequenceLogprobs(hidden, m->LmHeadWeight(), b.targets, b.mask, chunk);
    EXPECT_LE((sums - seq.detach()).abs().max().item<double>(), 1e-4);
    auto g = PreferenceSequenceGrads(totals(sums), opts);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    // Per-sequence weight: a row that is chosen in one pair and rejected in another gets both.
    auto w = torch::zeros({3}, torch::kFloat64);
    w.index_add_(0, chosen_rows, g->chosen.to(torch::kFloat64));
    w.index_add_(0, rejected_rows, g->rejected.to(torch::kFloat64));
    auto fn = [&](int64_t t0, int64_t t1, const torch::Tensor& lp, const torch::Tensor&) {
      auto part = (lp * b.mask.narrow(1, t0, t1 - t0)).sum(1).to(torch::kFloat64);
      return (part * w).sum();
    };
    auto res = ChunkedHeadBackward(hidden, m->LmHeadWeight(), b.targets, fn, ho);
    hidden.backward(res.grad_hidden);
    EXPECT_LE(MaxRelErr(Grads(*m), want), 1e-5) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace chainrl::learner

namespace chainrl::learner {
namespace {

std::shared_ptr<model::DecoderModel> ArchModel(model::Architecture arch, int64_t kv_heads) {
  model::ModelConfig c;
  c.arch = arch;
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.head_dim = 8;
  c.tie_word_embeddings = arch != model::Architecture::kLlama;
  c.initializer_range = 0.2;
  if (arch == model::Architecture::kLlama) {
    c.attention_bias = true;
    c.rope_scaling = model::Llama3RopeScaling{};
    c.rope_scaling->factor = 8;
    c.rope_scaling->low_freq_factor = 1;
    c.rope_scaling->high_freq_factor = 4;
    c.rope_scaling->original_max_position_embeddings = 8;
  }
  auto m = std::make_shared<model::DecoderModel>(c);
  m->InitWeights(7);
  return m;
}

// The layer-wise chunked backward equals ordinary backprop: every architecture, GQA, left and
// right padding, chunk sizes that do and do not divide the length, GRPO and SFT losses.
TEST(StreamBpTest, LayerwiseChunkedBackwardEqualsOrdinaryBackprop) {
  torch::manual_seed(1);
  const int64_t B = 3, T = 13;
  auto ids = torch::randint(0, 40, {B, T}, torch::kLong);
  auto targets = torch::roll(ids, -1, 1);
  auto attn = torch::ones({B, T}, torch::kLong);
  attn.index_put_({1, torch::indexing::Slice(0, 3)}, 0);   // left padding
  attn.index_put_({2, torch::indexing::Slice(10, T)}, 0);  // right padding
  auto mask = torch::zeros({B, T});
  mask.index_put_({0, torch::indexing::Slice(2, 12)}, 1);
  mask.index_put_({1, torch::indexing::Slice(5, 12)}, 1);
  mask.index_put_({2, torch::indexing::Slice(3, 9)}, 1);
  auto old_lp = -torch::rand({B, T}) * 3 - 0.1;
  auto adv = torch::tensor({0.9, -1.1, 0.4});
  PolicyLossOptions opts;
  opts.set_loss_agg_mode(LossAggMode::kTokenMean).set_clip_ratio_high(0.28);
  Normalisers norm = ComputeNormalisers(mask, opts);
  const double total = mask.sum().item<double>();
  struct Case {
    model::Architecture arch;
    int64_t kv;
  };
  for (Case c : {Case{model::Architecture::kQwen2, 2}, Case{model::Architecture::kQwen3, 1},
                 Case{model::Architecture::kLlama, 4}}) {
    for (bool sft : {false, true}) {
      auto m = ArchModel(c.arch, c.kv);
      auto fn = [&](int64_t t0, int64_t t1, const torch::Tensor& lp, const torch::Tensor&) {
        auto sl = [&](const torch::Tensor& x) { return x.narrow(1, t0, t1 - t0); };
        if (sft) return SftLoss(lp, sl(mask), total);
        TokenLossInputs in{lp, sl(old_lp), {}, sl(mask), adv, {}, {}, {}};
        return PolicyLoss(in, norm, opts).loss;
      };
      m->zero_grad();
      auto logp = torch::log_softmax(m->Logits(m->Forward(ids, {}, attn)), -1)
                      .gather(-1, targets.unsqueeze(-1))
                      .squeeze(-1);
      auto loss = fn(0, T, logp, {});
      loss.backward();
      auto want = Grads(*m);
      for (int64_t chunk : {1, 4, 5, 13}) {
        m->zero_grad();
        StreamBpOptions so;
        so.set_layer_chunk_tokens(chunk).set_head(ChunkedHeadOptions().set_chunk_tokens(chunk + 1));
        double got_loss = StreamBackward(*m, ids, attn, targets, fn, so);
        EXPECT_NEAR(got_loss, loss.item<double>(), 1e-5 * std::max(1.0, std::abs(got_loss)));
        double err = MaxRelErr(Grads(*m), want);
        EXPECT_LE(err, 1e-5) << model::ArchitectureName(c.arch) << " sft " << sft << " chunk "
                             << chunk;
      }
      // The chunked no-grad forward gives the model's hidden states at every real token
      // (padding rows attend to whatever their chunk offers; their outputs are never used).
      torch::NoGradGuard g;
      auto h = StreamHidden(*m, ids, attn, 4);
      auto ref = m->Forward(ids, {}, attn);
      auto real = attn.to(torch::kBool).unsqueeze(-1);
      EXPECT_LE((h - ref).masked_fill(real.logical_not(), 0).abs().max().item<double>(), 1e-5);
    }
  }
}

}  // namespace
}  // namespace chainrl::learner

namespace chainrl::learner {
namespace {

// Mixed precision (float32 master weights, bfloat16 products): streaming backprop's gradients are
// those of ordinary mixed-precision backprop up to bfloat16 rounding (the products are chunked
// differently), both land in the float32 parameters, and both track float32 training.
// ||a - b|| / ||b|| over all parameters' gradients together.
double RelL2(const std::map<std::string, torch::Tensor>& a,
             const std::map<std::string, torch::Tensor>& b) {
  double num = 0, den = 0;
  for (const auto& [k, v] : b) {
    num += (a.at(k).to(torch::kDouble) - v.to(torch::kDouble)).pow(2).sum().item<double>();
    den += v.to(torch::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(num / den);
}

TEST(StreamBpTest, MixedPrecisionGradientsTrackOrdinaryBackprop) {
  torch::manual_seed(2);
  const int64_t B = 2, T = 11;
  auto ids = torch::randint(0, 40, {B, T}, torch::kLong);
  auto targets = torch::roll(ids, -1, 1);
  auto attn = torch::ones({B, T}, torch::kLong);
  attn.index_put_({1, torch::indexing::Slice(0, 2)}, 0);  // left padding
  auto mask = torch::zeros({B, T});
  mask.index_put_({0, torch::indexing::Slice(2, 10)}, 1);
  mask.index_put_({1, torch::indexing::Slice(4, 10)}, 1);
  auto old_lp = -torch::rand({B, T}) * 3 - 0.1;
  auto adv = torch::tensor({0.8, -1.3});
  PolicyLossOptions opts;
  opts.set_loss_agg_mode(LossAggMode::kTokenMean);
  Normalisers norm = ComputeNormalisers(mask, opts);
  auto fn = [&](int64_t t0, int64_t t1, const torch::Tensor& lp, const torch::Tensor&) {
    auto sl = [&](const torch::Tensor& x) { return x.narrow(1, t0, t1 - t0); };
    TokenLossInputs in{lp, sl(old_lp), {}, sl(mask), adv, {}, {}, {}};
    return PolicyLoss(in, norm, opts).loss;
  };
  auto f32 = ArchModel(model::Architecture::kQwen3, 2);
  auto mixed =
      model::CopyModel(*f32, model::ModelOptions().set_compute_dtype(torch::kBFloat16));
  auto ordinary = [&](model::DecoderModel& m) {
    m.zero_grad();
    auto logits = m.Logits(m.Forward(ids, {}, attn)).to(torch::kFloat);
    auto logp = torch::log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    auto loss = fn(0, T, logp, {});
    loss.backward();
    return loss.item<double>();
  };
  const double loss32 = ordinary(*f32);
  auto want32 = Grads(*f32);
  const double loss_mixed = ordinary(*mixed);
  auto want_mixed = Grads(*mixed);
  for (const auto& [k, g] : want_mixed) EXPECT_EQ(g.scalar_type(), torch::kFloat) << k;
  const double mixed_vs_f32 = RelL2(want_mixed, want32);
  for (int64_t chunk : {3, 11}) {
    mixed->zero_grad();
    StreamBpOptions so;
    so.set_layer_chunk_tokens(chunk).set_head(ChunkedHeadOptions().set_chunk_tokens(chunk + 1));
    const double got = StreamBackward(*mixed, ids, attn, targets, fn, so);
    auto grads = Grads(*mixed);
    const double stream_vs_mixed = RelL2(grads, want_mixed);
    std::cout << "chunk " << chunk << ": loss " << got << " (ordinary mixed " << loss_mixed
              << ", float32 " << loss32 << "); relative L2 gradient error vs ordinary mixed "
              << stream_vs_mixed << ", ordinary mixed vs float32 " << mixed_vs_f32 << "\n";
    EXPECT_NEAR(got, loss_mixed, 1e-2 * std::max(1.0, std::abs(loss_mixed)));
    EXPECT_LE(stream_vs_mixed, 0.05);
    EXPECT_LE(RelL2(grads, want32), 0.05);
  }
  EXPECT_GT(mixed_vs_f32, 0.0);
  EXPECT_LE(mixed_vs_f32, 0.05);
}

TEST(StreamBpTest, ChunksFromAMemoryBudget) {
  model::ModelConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 512;
  c.intermediate_size = 1536;
  c.num_attention_heads = 8;
  // 64 MiB at 8K tokens: layer rows cost 4 * (2 * 8192 * 8 + 4 * 1536 + 8 * 512) bytes each.
  ChunkChoice a = ChooseChunks(c, 8192, 64 << 20);
  EXPECT_EQ(a.layer_chunk_tokens, (64 << 20) / (4 * (2 * 8192 * 8 + 4 * 1536 + 8 * 512)));
  EXPECT_EQ(a.head_chunk_tokens, (64 << 20) / (4 * 3 * 32000));
  // Longer sequences get smaller layer chunks; a generous budget gives the whole sequence.
  EXPECT_LT(ChooseChunks(c, 32768, 64 << 20).layer_chunk_tokens, a.layer_chunk_tokens);
  EXPECT_EQ(ChooseChunks(c, 100, int64_t{1} << 40).layer_chunk_tokens, 100);
  EXPECT_EQ(ChooseChunks(c, 8192, 1).layer_chunk_tokens, 16);  // never below 16 rows
  EXPECT_EQ(ChooseChunks(c, 5, 1).head_chunk_tokens, 5);
}

}  // namespace
}  // namespace chainrl::learner
