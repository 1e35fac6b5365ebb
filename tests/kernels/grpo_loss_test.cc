// The fused GRPO-family loss: the CPU reference equals the learner's PolicyLoss (value, gradient
// by autograd, statistics) on random inputs for every clipping, KL and entropy setting, and the
// CUDA kernel equals the reference when a GPU is present (skipped with a message otherwise).
#include "kernels/grpo_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>
#include <string>
#include <vector>

#include "learner/objectives.h"
#include "tests/kernels/cuda_test_util.h"

#ifdef CHAINRL_KERNELS_CUDA
#include "kernels/grpo_loss_cuda.h"
#endif

namespace chainrl::kernels {
namespace {

struct Inputs {
  int64_t b = 0, t = 0;
  std::vector<float> lp, old, ref, ent, adv_tok, w_tok, adv_seq;
  std::vector<double> w_seq;
  std::vector<uint8_t> mask;
};

// B sequences of T tokens: logprobs near the old ones (some far, to reach the clamps), a mask
// with holes and an empty row, advantages of both signs (a zero one too).
Inputs RandomInputs(int64_t b, int64_t t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Inputs in;
  in.b = b;
  in.t = t;
  for (int64_t i = 0; i < b; ++i) {
    const float a = i == 1 ? 0.f : n(rng);
    const double w = 1.0 / static_cast<double>(1 + i);
    in.adv_seq.push_back(a);
    in.w_seq.push_back(w);
    for (int64_t j = 0; j < t; ++j) {
      const float old = -std::abs(n(rng)) * 2.f;
      const float spread = u(rng) < 0.1f ? 30.f : 0.4f;
      in.old.push_back(old);
      in.lp.push_back(std::min(0.f, old + spread * n(rng)));
      in.ref.push_back(std::min(0.f, old + 0.5f * n(rng)));
      in.ent.push_back(3.f * u(rng));
      in.mask.push_back(i != b - 1 && u(rng) < 0.85f ? 1 : 0);
      in.adv_tok.push_back(a);
      in.w_tok.push_back(static_cast<float>(w));
    }
  }
  return in;
}

struct Outputs {
  std::vector<float> loss, g_lp, g_ent;
  GrpoLossStats stats;
};

// The reference on every token of `in` (KL and entropy inputs given).
Outputs Reference(const Inputs& in, const GrpoLossParams& p) {
  const int64_t n = in.b * in.t;
  Outputs o;
  o.loss.resize(n);
  o.g_lp.resize(n);
  o.g_ent.resize(n);
  GrpoLossReference(in.lp.data(), in.old.data(), in.ref.data(), in.ent.data(), in.adv_tok.data(),
                    in.w_tok.data(), in.mask.data(), n, p, o.loss.data(), o.g_lp.data(),
                    o.g_ent.data(), &o.stats);
  return o;
}

struct Setting {
  std::string name;
  GrpoLossParams p;
};

std::vector<Setting> Settings() {
  std::vector<Setting> s;
  GrpoLossParams p;
  s.push_back({"grpo-k3", p});
  s.back().p.kl_coef = 0.04f;
  p = GrpoLossParams();
  p.clip_high = 0.28f;
  s.push_back({"dapo-clip-higher", p});
  p.dual_clip_c = 3.f;
  p.kl_coef = 5e-4f;
  s.push_back({"dual-clip-k3", p});
  p = GrpoLossParams();
  p.kl_coef = 0.1f;
  p.kl_k3_plus = true;
  p.kl_clamp = 2.f;
  p.entropy_coef = 0.01f;
  p.log_ratio_clamp = 5.f;
  s.push_back({"k3plus-entropy-clamps", p});
  return s;
}

learner::PolicyLossOptions Options(const GrpoLossParams& p) {
  learner::PolicyLossOptions o;
  o.clip_ratio_low = p.clip_low;
  o.clip_ratio_high = p.clip_high;
  o.dual_clip_c = p.dual_clip_c;
  o.log_ratio_clamp = p.log_ratio_clamp;
  o.kl_coef = p.kl_coef;
  o.kl_estimator = p.kl_k3_plus ? learner::KlEstimator::kK3Plus : learner::KlEstimator::kK3;
  o.kl_clamp = p.kl_clamp;
  o.entropy_coef = p.entropy_coef;
  return o;
}

TEST(GrpoLossReferenceTest, EqualsTheLearnersPolicyLossAndItsAutogradGradient) {
  for (const Setting& s : Settings()) {
    const Inputs in = RandomInputs(6, 40, 7);
    const int64_t n = in.b * in.t;
    const Outputs expected = Reference(in, s.p);
    const std::vector<float>&loss = expected.loss, &g_lp = expected.g_lp, &g_ent = expected.g_ent;
    const GrpoLossStats& st = expected.stats;

    auto mat = [&](const std::vector<float>& v) {
      return torch::tensor(v, torch::kFloat).reshape({in.b, in.t});
    };
    learner::TokenLossInputs ti;
    ti.logprobs = mat(in.lp).set_requires_grad(true);
    ti.old_logprobs = mat(in.old);
    ti.ref_logprobs = mat(in.ref);
    ti.entropy = mat(in.ent).set_requires_grad(true);
    ti.mask = torch::tensor(std::vector<int64_t>(in.mask.begin(), in.mask.end()))
                  .reshape({in.b, in.t})
                  .to(torch::kFloat);
    ti.advantages = torch::tensor(in.adv_seq, torch::kFloat);
    learner::Normalisers norm;
    norm.seq_weights = torch::tensor(in.w_seq, torch::kDouble);
    const learner::PolicyLossOptions o = Options(s.p);
    learner::TokenLossOutput out = learner::PolicyLoss(ti, norm, o);
    out.loss.backward();

    double sum = 0;
    for (float x : loss) sum += x;
    const double want = out.loss.item<double>();
    EXPECT_NEAR(sum, want, 1e-5 * std::max(1.0, std::abs(want))) << s.name;
    const torch::Tensor glp = ti.logprobs.grad().reshape({-1});
    // No entropy term: autograd leaves no gradient (zeros).
    const torch::Tensor gent =
        ti.entropy.grad().defined() ? ti.entropy.grad().reshape({-1}) : torch::zeros({n});
    double worst_lp = 0, worst_ent = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
      scale = std::max(scale, std::abs(glp[i].item<double>()));
      worst_lp = std::max(worst_lp, std::abs(g_lp[i] - glp[i].item<double>()));
      worst_ent = std::max(worst_ent, std::abs(g_ent[i] - gent[i].item<double>()));
    }
    EXPECT_GT(scale, 1e-3) << s.name << ": the loss has a gradient";
    EXPECT_LE(worst_lp, 1e-5 * scale) << s.name;
    EXPECT_LE(worst_ent, 1e-7) << s.name;
    EXPECT_EQ(st.tokens, out.stats.tokens) << s.name;
    EXPECT_EQ(st.clipped, out.stats.clipped_tokens) << s.name;
    EXPECT_EQ(st.dual_clipped, out.stats.dual_clipped_tokens) << s.name;
    EXPECT_NEAR(st.ratio_sum, out.stats.ratio_sum, 1e-4 * std::abs(out.stats.ratio_sum)) << s.name;
    EXPECT_NEAR(st.approx_kl_sum, out.stats.approx_kl_sum, 1e-3) << s.name;
    EXPECT_NEAR(st.ref_kl_sum, out.stats.ref_kl_sum, 1e-3) << s.name;
    EXPECT_NEAR(st.entropy_sum, out.stats.entropy_sum, 1e-3) << s.name;
  }
  // The settings reach every branch: clipped and dual-clipped tokens exist.
  const Inputs in = RandomInputs(6, 40, 7);
  std::vector<float> loss(in.lp.size());
  GrpoLossStats st;
  GrpoLossReference(in.lp.data(), in.old.data(), nullptr, nullptr, in.adv_tok.data(),
                    in.w_tok.data(), in.mask.data(), static_cast<int64_t>(in.lp.size()),
                    Settings()[2].p, loss.data(), nullptr, nullptr, &st);
  EXPECT_GT(st.clipped, 0);
  EXPECT_GT(st.dual_clipped, 0);
}

#ifdef CHAINRL_KERNELS_CUDA
TEST(GrpoLossCudaTest, MatchesReferenceOnRandomInputs) {
  CHAINRL_SKIP_WITHOUT_GPU();
  using testing::DeviceBuffer;
  for (const Setting& s : Settings()) {
    for (int64_t t : {1, 257, 4096}) {
      const Inputs in = RandomInputs(7, t, 19);
      const int64_t n = in.b * in.t;
      const Outputs expected = Reference(in, s.p);
      const std::vector<float>&loss = expected.loss, &g_lp = expected.g_lp, &g_ent = expected.g_ent;
      const GrpoLossStats& st = expected.stats;
      DeviceBuffer<float> lp(in.lp), old(in.old), ref(in.ref), ent(in.ent), adv(in.adv_tok),
          w(in.w_tok), d_loss(n), d_glp(n), d_gent(n);
      DeviceBuffer<uint8_t> mask(in.mask);
      DeviceBuffer<double> stats(kGrpoLossStatCount);
      ASSERT_EQ(
          GrpoLossCuda(lp.get(), old.get(), ref.get(), ent.get(), adv.get(), w.get(), mask.get(), n,
                       s.p, d_loss.get(), d_glp.get(), d_gent.get(), stats.get(), nullptr),
          cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto got_loss = d_loss.Read(), got_glp = d_glp.Read(), got_gent = d_gent.Read();
      const auto got_st = stats.Read();
      for (int64_t i = 0; i < n; ++i) {
        // float32 arithmetic against the float64 reference: relative 1e-5 (ratios up to e^20).
        EXPECT_NEAR(got_loss[i], loss[i], 1e-5f * std::max(1.f, std::abs(loss[i])))
            << s.name << " token " << i;
        EXPECT_NEAR(got_glp[i], g_lp[i], 1e-5f * std::max(1.f, std::abs(g_lp[i])))
            << s.name << " token " << i;
        EXPECT_EQ(got_gent[i], g_ent[i]) << s.name << " token " << i;
      }
      EXPECT_EQ(got_st[0], st.tokens);
      EXPECT_EQ(got_st[1], st.clipped);
      EXPECT_EQ(got_st[2], st.dual_clipped);
      EXPECT_NEAR(got_st[3], st.ratio_sum, 1e-5 * std::max(1.0, std::abs(st.ratio_sum)));
    }
  }
}
#endif

}  // namespace
}  // namespace chainrl::kernels
