// Tests of the decoder: RoPE against its closed form (with llama3 scaling), GQA attention against a
// per-head loop, the full model against a naive float64 reference written here, the KV cache
// (prefill + token-by-token, ragged chunks) against the uncached forward, padding, tied embeddings.
//
// The naive reference below stands in for Hugging Face's modeling_qwen2/qwen3/llama (Python torch
// is not installed on the build machines): it is written independently from the formulas, token by
// token and head by head in float64.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <cmath>
#include <iostream>
#include <thread>

#include "model/attention.h"
#include "model/decoder.h"
#include "model/model_io.h"

namespace chainrl::model {
namespace {

ModelConfig TinyConfig(Architecture arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  if (arch == Architecture::kQwen3) {
    c.head_dim = 12;  // explicit head_dim != hidden / heads
    c.rope_theta = 1000000.0;
  }
  if (arch == Architecture::kLlama) {
    c.attention_bias = true;
    c.mlp_bias = true;
    c.rms_norm_eps = 1e-5;
    // A short original context so the llama3 scaling changes low frequencies at this head_dim.
    c.rope_scaling = Llama3RopeScaling{8.0, 1.0, 4.0, 16};
  }
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();
  return c;
}

// A model with every parameter random (norm weights around 1, biases nonzero), so the comparison
// exercises every term.
std::shared_ptr<DecoderModel> RandomModel(const ModelConfig& c, uint64_t seed,
                                          torch::ScalarType dtype = torch::kFloat) {
  auto m = std::make_shared<DecoderModel>(c, ModelOptions().set_dtype(dtype));
  torch::NoGradGuard g;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : m->named_parameters()) {
    torch::Tensor r = torch::empty(p.value().sizes(), torch::kFloat).normal_(0.0, 0.2, gen);
    const std::string& n = p.key();
    if (n.find("norm") != std::string::npos) r.mul_(0.5).add_(1.0);
    p.value().copy_(r);
  }
  return m;
}

// ---------------------------------------------------------------- naive float64 reference
double RefInvFreq(const ModelConfig& c, int64_t i) {
  const double f = std::pow(c.rope_theta, -2.0 * i / c.head_dim);
  if (!c.rope_scaling) return f;
  const auto& s = *c.rope_scaling;
  const double wavelen = 2 * M_PI / f;
  const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  if (wavelen < high_wavelen) return f;
  if (wavelen > low_wavelen) return f / s.factor;
  const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
  return (1 - smooth) * f / s.factor + smooth * f;
}

struct Ref {
  ModelConfig c;
  std::map<std::string, torch::Tensor> w;  // float64 copies by HF key

  torch::Tensor W(const std::string& n) const { return w.at(n); }
  bool Has(const std::string& n) const { return w.count(n) > 0; }

  // x: [D] -> x / sqrt(mean(x^2) + eps) * weight
  torch::Tensor Norm(const torch::Tensor& x, const std::string& n) const {
    const double ms = (x * x).sum().item<double>() / x.size(0);
    return x / std::sqrt(ms + c.rms_norm_eps) * W(n);
  }
  torch::Tensor Lin(const torch::Tensor& x, const std::string& n) const {
    torch::Tensor y = torch::mv(W(n + ".weight"), x);
    if (Has(n + ".bias")) y = y + W(n + ".bias");
    return y;
  }
  // Rotates pairs (i, i + D/2) by angle pos * inv_freq[i].
  torch::Tensor Rope(const torch::Tensor& x, int64_t pos) const {
    torch::Tensor y = x.clone();
    const int64_t half = c.head_dim / 2;
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * RefInvFreq(c, i);
      const double x1 = x[i].item<double>(), x2 = x[i + half].item<double>();
      y[i] = x1 * std::cos(a) - x2 * std::sin(a);
      y[i + half] = x2 * std::cos(a) + x1 * std::sin(a);
    }
    return y;
  }

  // One sequence of ids at the given positions; returns [T, hidden] after the final norm.
  torch::Tensor Forward(const std::vector<int64_t>& ids, const std::vector<int64_t>& pos) const {
    const int64_t T = ids.size(), D = c.head_dim, H = c.num_attention_heads;
    const int64_t group = H / c.num_key_value_heads;
    std::vector<torch::Tensor> x;
    for (int64_t t = 0; t < T; ++t) x.push_back(W("model.embed_tokens.weight")[ids[t]].clone());
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      std::vector<torch::Tensor> q(T), k(T), v(T);
      for (int64_t t = 0; t < T; ++t) {
        torch::Tensor h = Norm(x[t], p + "input_layernorm.weight");
        q[t] = Lin(h, p + "self_attn.q_proj").view({H, D});
        k[t] = Lin(h, p + "self_attn.k_proj").view({c.num_key_value_heads, D});
        v[t] = Lin(h, p + "self_attn.v_proj").view({c.num_key_value_heads, D});
        for (int64_t hh = 0; hh < H; ++hh) {
          torch::Tensor qh = q[t][hh];
          if (c.qk_norm()) qh = Norm(qh, p + "self_attn.q_norm.weight");
          q[t][hh] = Rope(qh, pos[t]);
        }
        for (int64_t g = 0; g < c.num_key_value_heads; ++g) {
          torch::Tensor kh = k[t][g];
          if (c.qk_norm()) kh = Norm(kh, p + "self_attn.k_norm.weight");
          k[t][g] = Rope(kh, pos[t]);
        }
      }
      std::vector<torch::Tensor> nx(T);
      for (int64_t t = 0; t < T; ++t) {
        torch::Tensor attn = torch::zeros({H * D}, torch::kDouble);
        for (int64_t hh = 0; hh < H; ++hh) {
          const int64_t g = hh / group;
          std::vector<double> s;
          for (int64_t j = 0; j <= t; ++j)
            s.push_back(torch::dot(q[t][hh], k[j][g]).item<double>() / std::sqrt(double(D)));
          double mx = *std::max_element(s.begin(), s.end()), z = 0;
          for (double& e : s) z += (e = std::exp(e - mx));
          for (int64_t j = 0; j <= t; ++j) attn.narrow(0, hh * D, D).add_(v[j][g] * (s[j] / z));
        }
        torch::Tensor r = x[t] + Lin(attn, p + "self_attn.o_proj");
        torch::Tensor h = Norm(r, p + "post_attention_layernorm.weight");
        torch::Tensor gate = Lin(h, p + "mlp.gate_proj");
        torch::Tensor act = gate / (1 + torch::exp(-gate)) * Lin(h, p + "mlp.up_proj");
        nx[t] = r + Lin(act, p + "mlp.down_proj");
      }
      x = nx;
    }
    std::vector<torch::Tensor> out;
    for (auto& t : x) out.push_back(Norm(t, "model.norm.weight"));
    return torch::stack(out);
  }
};

Ref MakeRef(DecoderModel& m) {
  Ref r{m.config(), {}};
  for (const auto& [n, t] : ModelStateDict(m)) r.w[n] = t.detach().to(torch::kDouble);
  return r;
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

class Families : public ::testing::TestWithParam<Architecture> {};

// ---------------------------------------------------------------- RoPE
TEST(Rope, InverseFrequenciesMatchClosedForm) {
  ModelConfig c = TinyConfig(Architecture::kQwen2);
  c.head_dim = 64;
  c.rope_theta = 1000000.0;
  torch::Tensor f = RopeInverseFrequencies(c);
  ASSERT_EQ(f.size(0), 32);
  for (int64_t i = 0; i < 32; ++i)
    EXPECT_NEAR(f[i].item<double>() / std::pow(1e6, -2.0 * i / 64), 1.0, 1e-6) << i;
}

TEST(Rope, Llama3ScalingMatchesHandComputedFrequencies) {
  // Llama 3.1's own settings: theta 500000, factor 8, low 1, high 4, original context 8192.
  ModelConfig c = TinyConfig(Architecture::kLlama);
  c.head_dim = 16;
  c.rope_theta = 500000.0;
  c.rope_scaling = Llama3RopeScaling{8.0, 1.0, 4.0, 8192};
  torch::Tensor f = RopeInverseFrequencies(c);
  // By hand: f_i = 500000^(-i/8). Wavelength 2*pi/f_i against the bounds 8192/4 = 2048 (kept
  // below) and 8192/1 = 8192 (divided by 8 above):
  //   i=0..3: f = 1, 0.193923, 0.0376060, 0.00729266 -> wavelengths 6.3, 32.4, 167.1, 861.6: kept.
  //   i=4: f = 0.00141421, wavelength 4442.9: medium band, smooth s = (8192/4442.9 - 1) / 3
  //        = 0.281283, f' = (1 - s) f / 8 + s f.
  //   i=5..7: wavelengths 22911, 118143, 609226 > 8192: f / 8.
  const double s4 = 0.28128260516325104;
  const double expected[8] = {1.0,
                              0.19392274474868576,
                              0.03760603093086393,
                              0.007292664737217109,
                              0.001414213562373095 * ((1 - s4) / 8 + s4),
                              0.0002742481756762073 / 8,
                              5.318295896944988e-05 / 8,
                              1.031338537721246e-05 / 8};
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_NEAR(f[i].item<double>() / expected[i], 1.0, 2e-5) << i;
    EXPECT_NEAR(f[i].item<double>() / RefInvFreq(c, i), 1.0, 1e-6) << i;
  }
}

TEST(Rope, TablesAreCosSinOfPositionTimesFrequency) {
  ModelConfig c = TinyConfig(Architecture::kQwen2);
  DecoderModel m(c);
  torch::Tensor pos = torch::tensor({0, 1, 7, 300}, torch::kLong).view({1, 4});
  auto [cos, sin] = m.RopeTables(pos);
  ASSERT_EQ(cos.sizes(), (std::vector<int64_t>{1, 1, 4, c.head_dim}));
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t d = 0; d < c.head_dim; ++d) {
      const double a = pos[0][t].item<double>() *
                       std::pow(c.rope_theta, -2.0 * (d % (c.head_dim / 2)) / c.head_dim);
      EXPECT_NEAR(cos[0][0][t][d].item<double>(), std::cos(a), 1e-4);
      EXPECT_NEAR(sin[0][0][t][d].item<double>(), std::sin(a), 1e-4);
    }
}

// ---------------------------------------------------------------- attention
TEST(AttentionMasks, CausalIsBottomRightAligned) {
  torch::Tensor m = CausalMask(2, 4, torch::kCPU).to(torch::kLong);
  EXPECT_TRUE(torch::equal(m, torch::tensor({1, 1, 1, 0, 1, 1, 1, 1}, torch::kLong).view({2, 4})));
  torch::Tensor p = PaddedCausalMask(torch::tensor({0, 1, 1}, torch::kLong).view({1, 3}));
  // The padding query row attends to everything (kept finite); real rows skip the padding key.
  EXPECT_TRUE(torch::equal(p.to(torch::kLong).view({3, 3}),
                           torch::tensor({1, 1, 1, 0, 1, 0, 0, 1, 1}, torch::kLong).view({3, 3})));
}

// softmax(q k^T * scale, masked) v one (batch, head) at a time, kv head = h / (Hq / Hkv).
torch::Tensor PerHeadAttention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& mask, double scale) {
  const int64_t B = q.size(0), Hq = q.size(1), Hkv = k.size(1);
  torch::Tensor out = torch::zeros_like(q);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t g = h / (Hq / Hkv);
      torch::Tensor s = torch::matmul(q[b][h], k[b][g].t()) * scale;  // [Tq, Tk]
      s.masked_fill_(mask[b][0].logical_not(), -INFINITY);
      out[b][h] = torch::matmul(torch::softmax(s, -1), v[b][g]);
    }
  return out;
}

TEST(AttentionGqa, MatchesPerHeadLoopForSeveralKvHeadCounts) {
  torch::manual_seed(7);
  const int64_t B = 2, Hq = 4, Tq = 3, Tk = 7, D = 8;
  for (int64_t hkv : {1, 2, 4}) {
    torch::Tensor q = torch::randn({B, Hq, Tq, D});
    torch::Tensor k = torch::randn({B, hkv, Tk, D});
    torch::Tensor v = torch::randn({B, hkv, Tk, D});
    torch::Tensor causal =
        CausalMask(Tq, Tk, torch::kCPU).view({1, 1, Tq, Tk}).expand({B, 1, Tq, Tk});
    torch::Tensor got = Attention(q, k, v, causal, 0.3);
    EXPECT_LT(MaxDiff(got, PerHeadAttention(q, k, v, causal, 0.3)), 1e-5) << hkv;
    // Random padding on top, keeping key 0 so every row has a key.
    torch::Tensor pad = torch::rand({B, 1, 1, Tk}) > 0.4;
    pad.narrow(3, 0, 1).fill_(true);
    torch::Tensor m = causal.logical_and(pad);
    EXPECT_LT(MaxDiff(Attention(q, k, v, m, 0.3), PerHeadAttention(q, k, v, m, 0.3)), 1e-5) << hkv;
    // Strided k/v (a slice of a longer buffer, as the cache passes them).
    torch::Tensor kb = torch::randn({B, hkv, Tk + 5, D});
    torch::Tensor vb = torch::randn({B, hkv, Tk + 5, D});
    EXPECT_LT(MaxDiff(Attention(q, kb.narrow(2, 0, Tk), vb.narrow(2, 0, Tk), m, 0.3),
                      PerHeadAttention(q, kb.narrow(2, 0, Tk), vb.narrow(2, 0, Tk), m, 0.3)),
              1e-5);
  }
}

// The ragged decode kernel against the per-head reference over each row's own keys: head dims
// with a compiled-in size and without, several kv-head counts, a row with no keys (zeros), a row
// using the whole buffer, float32 and bfloat16 caches.
TEST(DecodeAttention, MatchesPerHeadAttentionOverEachRowsLength) {
  torch::manual_seed(9);
  const int64_t B = 4, Hq = 8, Tmax = 40;
  const std::vector<int64_t> lengths = {7, 0, 40, 1};
  for (int64_t D : {32, 64, 128, 12})
    for (int64_t hkv : {1, 2, 8})
      for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
        torch::Tensor q = torch::randn({B, Hq, 1, D}).mul_(2.0).to(dtype);
        torch::Tensor k = torch::randn({B, hkv, Tmax, D}).to(dtype);
        torch::Tensor v = torch::randn({B, hkv, Tmax, D}).to(dtype);
        const double scale = 1.0 / std::sqrt(static_cast<double>(D));
        torch::Tensor got = DecodeAttention(q, k, v, lengths, scale);
        ASSERT_EQ(got.sizes(), q.sizes());
        ASSERT_EQ(got.scalar_type(), dtype);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t L = lengths[b];
          if (L == 0) {
            EXPECT_EQ(got[b].abs().max().item<double>(), 0.0);
            continue;
          }
          torch::Tensor want = PerHeadAttention(q.narrow(0, b, 1).to(torch::kFloat),
                                                k.narrow(0, b, 1).narrow(2, 0, L).to(torch::kFloat),
                                                v.narrow(0, b, 1).narrow(2, 0, L).to(torch::kFloat),
                                                torch::ones({1, 1, 1, L}, torch::kBool), scale);
          // bfloat16: the output is rounded to 8 significant bits.
          EXPECT_LT(MaxDiff(got.narrow(0, b, 1), want), dtype == torch::kFloat ? 1e-5 : 2e-2)
              << "D " << D << " kv heads " << hkv << " row " << b;
        }
      }
}

// ---------------------------------------------------------------- whole model
TEST_P(Families, MatchesNaiveReference) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 11);
  Ref ref = MakeRef(*m);
  torch::NoGradGuard g;
  std::vector<std::vector<int64_t>> seqs = {{3, 17, 60, 5, 5, 9, 42}, {0, 1, 2, 3, 58, 59, 13}};
  torch::Tensor ids =
      torch::tensor({3, 17, 60, 5, 5, 9, 42, 0, 1, 2, 3, 58, 59, 13}, torch::kLong).view({2, 7});
  torch::Tensor h = m->Forward(ids);
  for (int64_t b = 0; b < 2; ++b) {
    torch::Tensor r = ref.Forward(seqs[b], {0, 1, 2, 3, 4, 5, 6});
    EXPECT_LT(MaxDiff(h[b], r), 1e-4) << ArchitectureName(c.arch) << " sequence " << b;
  }
  // Positions far from 0 exercise the (scaled) rotary frequencies.
  torch::Tensor pos = torch::arange(40, 47, torch::kLong).view({1, 7});
  torch::Tensor h2 = m->Forward(ids.narrow(0, 0, 1), pos);
  EXPECT_LT(MaxDiff(h2[0], ref.Forward(seqs[0], {40, 41, 42, 43, 44, 45, 46})), 1e-4);
}

TEST_P(Families, ParameterNamesAreHfKeys) {
  ModelConfig c = TinyConfig(GetParam());
  DecoderModel m(c);
  auto p = m.named_parameters();
  const std::string a = "model.layers.1.self_attn.";
  EXPECT_TRUE(p.contains("model.embed_tokens.weight"));
  EXPECT_TRUE(p.contains("model.norm.weight"));
  EXPECT_TRUE(p.contains("lm_head.weight"));
  EXPECT_TRUE(p.contains("model.layers.0.input_layernorm.weight"));
  EXPECT_TRUE(p.contains("model.layers.0.post_attention_layernorm.weight"));
  EXPECT_TRUE(p.contains(a + "q_proj.weight"));
  EXPECT_TRUE(p.contains("model.layers.1.mlp.down_proj.weight"));
  const bool qwen2 = c.arch == Architecture::kQwen2, qwen3 = c.arch == Architecture::kQwen3;
  const bool llama = c.arch == Architecture::kLlama;  // TinyConfig sets attention and mlp bias
  EXPECT_EQ(p.contains(a + "q_proj.bias"), qwen2 || llama);
  EXPECT_EQ(p.contains(a + "v_proj.bias"), qwen2 || llama);
  EXPECT_EQ(p.contains(a + "o_proj.bias"), llama);
  EXPECT_EQ(p.contains(a + "q_norm.weight"), qwen3);
  EXPECT_EQ(p.contains(a + "k_norm.weight"), qwen3);
  EXPECT_EQ(p.contains("model.layers.1.mlp.up_proj.bias"), llama);
  EXPECT_EQ(p[a + "q_proj.weight"].sizes(),
            (std::vector<int64_t>{c.num_attention_heads * c.head_dim, c.hidden_size}));
  EXPECT_EQ(p[a + "k_proj.weight"].sizes(),
            (std::vector<int64_t>{c.num_key_value_heads * c.head_dim, c.hidden_size}));
}

TEST_P(Families, KvCacheTokenByTokenEqualsUncachedForward) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 5);
  torch::NoGradGuard g;
  const int64_t B = 2, T = 10;
  torch::Tensor ids = torch::randint(c.vocab_size, {B, T}, torch::kLong);
  torch::Tensor full = m->Forward(ids);
  KvCache cache(c, B, 16, torch::kFloat, torch::kCPU);
  torch::Tensor pos = torch::arange(T, torch::kLong).view({1, T}).expand({B, T});
  std::vector<torch::Tensor> parts = {
      m->ForwardCached(ids.narrow(1, 0, 4), pos.narrow(1, 0, 4), cache)};
  for (int64_t t = 4; t < T; ++t)
    parts.push_back(m->ForwardCached(ids.narrow(1, t, 1), pos.narrow(1, t, 1), cache));
  EXPECT_EQ(cache.lengths(), (std::vector<int64_t>{T, T}));
  EXPECT_LT(MaxDiff(torch::cat(parts, 1), full), 1e-5);
}

TEST_P(Families, KvCacheRaggedChunksEqualUncachedForward) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 6);
  torch::NoGradGuard g;
  const int64_t B = 2, T = 9;
  torch::Tensor ids = torch::randint(c.vocab_size, {B, T}, torch::kLong);
  torch::Tensor full = m->Forward(ids);
  // Row 0 arrives in chunks of 3, 2, 4 tokens; row 1 in 1, 5, 3: the rows' cache lengths differ
  // at every step after the first, and each step's input is padded to the longer chunk.
  const std::vector<std::vector<int64_t>> chunks = {{3, 1}, {2, 5}, {4, 3}};
  KvCache cache(c, B, 16, torch::kFloat, torch::kCPU);
  std::vector<std::vector<torch::Tensor>> got(B);
  for (const auto& n_new : chunks) {
    const int64_t W = std::max(n_new[0], n_new[1]);
    torch::Tensor step_ids = torch::zeros({B, W}, torch::kLong);
    torch::Tensor step_pos = torch::zeros({B, W}, torch::kLong);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = cache.length(b);
      step_ids[b].narrow(0, 0, n_new[b]).copy_(ids[b].narrow(0, s, n_new[b]));
      step_pos[b].narrow(0, 0, n_new[b]).copy_(torch::arange(s, s + n_new[b], torch::kLong));
    }
    torch::Tensor h = m->ForwardCached(step_ids, step_pos, cache, n_new);
    for (int64_t b = 0; b < B; ++b) got[b].push_back(h[b].narrow(0, 0, n_new[b]));
  }
  for (int64_t b = 0; b < B; ++b)
    EXPECT_LT(MaxDiff(torch::cat(got[b], 0), full[b]), 1e-5) << "row " << b;
  // Truncating a row and re-feeding reproduces the same states.
  cache.SetLength(1, 6);
  torch::Tensor again = m->ForwardCached(
      ids.narrow(1, 6, 3), torch::arange(6, 9, torch::kLong).view({1, 3}).expand({B, 3}), cache,
      {0, 3});
  EXPECT_LT(MaxDiff(again[1], full[1].narrow(0, 6, 3)), 1e-5);
}

// Decode steps over rows of different cache lengths, one row idle at every other step: the
// ragged path (each row attends to its own length) and the padded path (the longest row's length
// with a mask) both reproduce the uncached forward.
TEST_P(Families, RaggedDecodeStepsEqualPaddedPathAndUncachedForward) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 12);
  torch::NoGradGuard g;
  const int64_t B = 3, T = 12;
  torch::Tensor ids = torch::randint(c.vocab_size, {B, T}, torch::kLong);
  torch::Tensor full = m->Forward(ids);
  for (bool ragged : {true, false}) {
    m->set_ragged_decode(ragged);
    KvCache cache(c, B, 16, torch::kFloat, torch::kCPU);
    const std::vector<int64_t> prompt = {2, 6, 4};
    torch::Tensor pids = torch::zeros({B, 6}, torch::kLong),
                  ppos = torch::zeros({B, 6}, torch::kLong);
    for (int64_t b = 0; b < B; ++b) {
      pids[b].narrow(0, 0, prompt[b]).copy_(ids[b].narrow(0, 0, prompt[b]));
      ppos[b].narrow(0, 0, prompt[b]).copy_(torch::arange(prompt[b], torch::kLong));
    }
    (void)m->ForwardCached(pids, ppos, cache, prompt);
    for (int step = 0; step < 6; ++step) {
      std::vector<int64_t> n_new = {1, step % 2 == 0 ? 0 : 1, 1};
      torch::Tensor sid = torch::zeros({B, 1}, torch::kLong),
                    spos = torch::zeros({B, 1}, torch::kLong);
      for (int64_t b = 0; b < B; ++b) {
        sid[b][0] = ids[b][cache.length(b)];
        spos[b][0] = cache.length(b);
      }
      std::vector<int64_t> at = cache.lengths();
      torch::Tensor h = m->ForwardCached(sid, spos, cache, n_new);
      for (int64_t b = 0; b < B; ++b) {
        if (n_new[b] == 0) continue;
        EXPECT_LT(MaxDiff(h[b][0], full[b][at[b]]), 1e-5)
            << (ragged ? "ragged" : "padded") << " step " << step << " row " << b;
      }
    }
  }
}

TEST_P(Families, LeftPaddedBatchMatchesUnpaddedSingles) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 8);
  torch::NoGradGuard g;
  torch::Tensor a = torch::randint(c.vocab_size, {1, 7}, torch::kLong);
  torch::Tensor b = torch::randint(c.vocab_size, {1, 4}, torch::kLong);
  torch::Tensor ids = torch::zeros({2, 7}, torch::kLong);
  ids[0].copy_(a[0]);
  ids[1].narrow(0, 3, 4).copy_(b[0]);
  torch::Tensor mask = torch::ones({2, 7}, torch::kLong);
  mask[1].narrow(0, 0, 3).zero_();
  torch::Tensor h = m->Forward(ids, {}, mask);
  EXPECT_TRUE(torch::isfinite(h).all().item<bool>());
  EXPECT_LT(MaxDiff(h[0], m->Forward(a)[0]), 1e-5);
  EXPECT_LT(MaxDiff(h[1].narrow(0, 3, 4), m->Forward(b)[0]), 1e-5);
}

TEST_P(Families, PerLayerApiComposesToForward) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 9);
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(c.vocab_size, {2, 6}, torch::kLong);
  LayerContext ctx = m->MakeContext(2, 6, {}, {});
  torch::Tensor h = m->Embed(ids);
  for (int64_t i = 0; i < m->num_layers(); ++i) h = m->Layer(i, h, ctx);
  EXPECT_TRUE(torch::equal(m->FinalNorm(h), m->Forward(ids)));
}

TEST_P(Families, BackwardReachesEveryParameter) {
  ModelConfig c = TinyConfig(GetParam());
  auto m = RandomModel(c, 10);
  torch::Tensor ids = torch::randint(c.vocab_size, {2, 5}, torch::kLong);
  torch::Tensor logits = m->Logits(m->Forward(ids));
  torch::nn::functional::cross_entropy(logits.view({-1, c.vocab_size}), ids.view({-1})).backward();
  for (const auto& p : m->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
  // Gradient of one weight against a central finite difference in float64.
  auto md = RandomModel(c, 10, torch::kDouble);
  auto loss = [&]() {
    torch::Tensor l = md->Logits(md->Forward(ids));
    return torch::nn::functional::cross_entropy(l.view({-1, c.vocab_size}), ids.view({-1}));
  };
  torch::Tensor w = md->named_parameters()["model.layers.0.mlp.up_proj.weight"];
  loss().backward();
  const double analytic = w.grad()[3][5].item<double>();
  torch::NoGradGuard ng;
  const double eps = 1e-6, orig = w[3][5].item<double>();
  w[3][5] = orig + eps;
  const double lp = loss().item<double>();
  w[3][5] = orig - eps;
  const double lm = loss().item<double>();
  w[3][5] = orig;
  EXPECT_NEAR(analytic, (lp - lm) / (2 * eps), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Decoder, Families,
                         ::testing::Values(Architecture::kQwen2, Architecture::kQwen3,
                                           Architecture::kLlama),
                         [](const auto& info) {
                           return std::string(ArchitectureName(info.param));
                         });

TEST(Decoder, TiedEmbeddingsShareTheEmbeddingMatrix) {
  ModelConfig c = TinyConfig(Architecture::kQwen2);
  c.tie_word_embeddings = true;
  auto m = RandomModel(c, 12);
  auto p = m->named_parameters();
  EXPECT_FALSE(p.contains("lm_head.weight"));
  EXPECT_EQ(m->LmHeadWeight().data_ptr(), p["model.embed_tokens.weight"].data_ptr());
  torch::NoGradGuard g;
  torch::Tensor h = m->Forward(torch::tensor({1, 2, 3}, torch::kLong).view({1, 3}));
  EXPECT_LT(MaxDiff(m->Logits(h), torch::matmul(h, p["model.embed_tokens.weight"].t())), 1e-6);
  Ref ref = MakeRef(*m);
  EXPECT_LT(MaxDiff(m->Logits(h)[0], torch::matmul(ref.Forward({1, 2, 3}, {0, 1, 2}),
                                                   ref.W("model.embed_tokens.weight").t())),
            1e-4);
}

TEST(Decoder, Bfloat16ComputeTracksFloat32) {
  ModelConfig c = TinyConfig(Architecture::kQwen3);
  auto m32 = RandomModel(c, 13);
  auto m16 = RandomModel(c, 13, torch::kBFloat16);
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(c.vocab_size, {1, 6}, torch::kLong);
  torch::Tensor h16 = m16->Forward(ids);
  EXPECT_EQ(h16.scalar_type(), torch::kBFloat16);
  EXPECT_LT(MaxDiff(h16, m32->Forward(ids)), 0.15);
}

// The same random weights as RandomModel(c, seed) in float32, computing in bfloat16.
std::shared_ptr<DecoderModel> MixedModel(const ModelConfig& c, uint64_t seed) {
  return CopyModel(*RandomModel(c, seed), ModelOptions().set_compute_dtype(torch::kBFloat16));
}

double Cosine(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor x = a.to(torch::kDouble).flatten(), y = b.to(torch::kDouble).flatten();
  return (x.dot(y) / (x.norm() * y.norm())).item<double>();
}

// Mixed precision (float32 weights, bfloat16 products): logits come out in bfloat16 and differ
// from float32 by bfloat16 rounding only, closer than a pure bfloat16 model since the residual
// stream and norms stay in float32; gradients land in the float32 parameters and point where the
// float32 ones do.
TEST_P(Families, MixedPrecisionComputesInBfloat16OnFloat32Weights) {
  ModelConfig c = TinyConfig(GetParam());
  auto m32 = RandomModel(c, 21);
  auto mix = MixedModel(c, 21);
  auto m16 = RandomModel(c, 21, torch::kBFloat16);
  EXPECT_TRUE(mix->options().Mixed());
  EXPECT_EQ(mix->options().ComputeDtype(), torch::kBFloat16);
  torch::manual_seed(21);
  torch::Tensor ids = torch::randint(c.vocab_size, {2, 9}, torch::kLong);
  torch::Tensor l32 = m32->Logits(m32->Forward(ids));
  torch::Tensor lmix = mix->Logits(mix->Forward(ids));
  torch::Tensor l16;
  {
    torch::NoGradGuard g;
    l16 = m16->Logits(m16->Forward(ids));
  }
  EXPECT_EQ(lmix.scalar_type(), torch::kBFloat16);
  const double scale = l32.abs().max().item<double>();
  const double err_mix = MaxDiff(lmix, l32), err_16 = MaxDiff(l16, l32);
  std::cout << "logit scale " << scale << ", max error mixed " << err_mix << ", pure bf16 "
            << err_16 << "\n";
  EXPECT_GT(err_mix, 0.0);  // the products really ran in bfloat16
  EXPECT_LT(err_mix, 0.03 * scale);
  EXPECT_LT(err_16, 0.05 * scale);

  auto loss = [&](const torch::Tensor& logits) {
    return torch::nn::functional::cross_entropy(logits.to(torch::kFloat).view({-1, c.vocab_size}),
                                                ids.view({-1}));
  };
  loss(l32).backward();
  loss(lmix).backward();
  auto p32 = m32->named_parameters();
  for (const auto& p : mix->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kFloat) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat) << p.key();
    const double cos = Cosine(p.value().grad(), p32[p.key()].grad());
    std::cout << p.key() << " gradient cosine " << cos << "\n";
    EXPECT_GT(cos, 0.99) << p.key();
  }
}

// The KV cache holds the compute dtype, and token-by-token cached decoding tracks the uncached
// forward within bfloat16 rounding.
TEST_P(Families, MixedPrecisionKvCacheTracksUncachedForward) {
  ModelConfig c = TinyConfig(GetParam());
  auto mix = MixedModel(c, 22);
  torch::NoGradGuard g;
  torch::manual_seed(22);
  torch::Tensor ids = torch::randint(c.vocab_size, {2, 8}, torch::kLong);
  torch::Tensor full = mix->Forward(ids);
  KvCache cache(c, 2, 8, mix->options().ComputeDtype(), torch::kCPU);
  EXPECT_EQ(cache.k(0).scalar_type(), torch::kBFloat16);
  double worst = 0;
  for (int64_t t = 0; t < 8; ++t) {
    torch::Tensor pos = torch::full({2, 1}, t, torch::kLong);
    torch::Tensor h = mix->ForwardCached(ids.narrow(1, t, 1), pos, cache);
    EXPECT_EQ(h.scalar_type(), torch::kFloat);  // the residual stream stays in float32
    worst = std::max(worst, MaxDiff(h, full.narrow(1, t, 1)));
  }
  std::cout << "cached vs uncached, max hidden difference " << worst << "\n";
  EXPECT_LT(worst, 0.1);
}

TEST(Decoder, LibTorchRunsOnSeveralThreadsWithOpenBlas) {
  // Debian's LibTorch on the reference BLAS, or on one thread, is ~10x slower.
  EXPECT_NE(dlsym(RTLD_DEFAULT, "openblas_get_config"), nullptr) << "BLAS is not OpenBLAS";
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  if (hw < 2) GTEST_SKIP() << "one CPU";
  // LibTorch's default counts physical cores (1 on two hyper-threads, where one thread is also the
  // faster choice: see bench/model_bench.cc); check that the OpenMP runtime accepts more.
  const int before = at::get_num_threads();
  at::set_num_threads(hw);
  EXPECT_GT(at::get_num_threads(), 1);
  EXPECT_NE(at::get_parallel_info().find("OpenMP"), std::string::npos) << at::get_parallel_info();
  at::set_num_threads(before);
}

}  // namespace
}  // namespace chainrl::model
