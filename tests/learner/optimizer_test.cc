// Tests for learner/optimizer.h: schedule by hand, decay groups, clipping against a reference
// AdamW fed hand-clipped gradients, non-finite skip, and bit-identical resume on CPU.
#include "learner/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>

namespace chainrl::learner {
namespace {

using torch::Tensor;
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

TEST(OptimizerTest, ScheduleByHand) {
  const auto w = OptimizerOptions().set_lr_warmup_steps(4);
  EXPECT_EQ(LrMultiplier(w, 0), 0.25);
  EXPECT_EQ(LrMultiplier(w, 3), 1.0);
  EXPECT_EQ(LrMultiplier(w, 400), 1.0);
  const auto c = OptimizerOptions()
                     .set_lr_scheduler(LrSchedule::kCosine)
                     .set_lr_warmup_steps(2)
                     .set_total_steps(12);
  EXPECT_EQ(LrMultiplier(c, 1), 1.0);
  EXPECT_EQ(LrMultiplier(c, 2), 1.0);
  EXPECT_NEAR(LrMultiplier(c, 7), 0.5, 1e-15);
  EXPECT_NEAR(LrMultiplier(c, 12), 0.0, 1e-15);
  EXPECT_NEAR(LrMultiplier(c, 99), 0.0, 1e-15);
  EXPECT_NEAR(LrMultiplier(OptimizerOptions(c).set_min_lr_ratio(0.1), 7), 0.55, 1e-15);
  EXPECT_NEAR(LrMultiplier(c, 4), 0.5 * (1 + std::cos(std::numbers::pi * 0.2)), 1e-15);
  EXPECT_FALSE(ValidateOptimizerOptions(OptimizerOptions(c).set_total_steps(2)).ok());
  EXPECT_EQ(*ParseLrSchedule("cosine"), LrSchedule::kCosine);
  auto bad = ParseLrSchedule("linear");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("constant, cosine"), std::string::npos);
}

TEST(OptimizerTest, NoDecayRule) {
  const Tensor mat = torch::zeros({4, 4}), vec = torch::zeros({4});
  EXPECT_FALSE(IsNoDecayParameter("layers.0.mlp.up_proj.weight", mat));
  EXPECT_FALSE(IsNoDecayParameter("embed_tokens.weight", mat));
  EXPECT_TRUE(IsNoDecayParameter("layers.0.mlp.up_proj.bias", vec));
  EXPECT_TRUE(IsNoDecayParameter("layers.0.input_layernorm.weight", vec));
  EXPECT_TRUE(IsNoDecayParameter("norm.weight", vec));
  EXPECT_TRUE(IsNoDecayParameter("layers.0.post_attention_layernorm.weight", mat));  // by name
  EXPECT_TRUE(IsNoDecayParameter("head.bias", mat));
}

std::vector<std::pair<std::string, Tensor>> TinyParams(uint64_t seed) {
  torch::manual_seed(seed);
  return {{"proj.weight", torch::randn({3, 4}, kF64).requires_grad_(true)},
          {"proj.bias", torch::randn({3}, kF64).requires_grad_(true)},
          {"final_norm.weight", torch::randn({3}, kF64).requires_grad_(true)}};
}

TEST(OptimizerTest, WeightDecayOnlyOnDecayGroup) {
  auto params = TinyParams(1);
  const Tensor w0 = params[0].second.detach().clone(), b0 = params[1].second.detach().clone();
  auto opt = Optimizer::Create(params, OptimizerOptions().set_lr(0.1).set_weight_decay(0.5));
  ASSERT_TRUE(opt.ok());
  ASSERT_EQ((*opt)->adamw().param_groups().size(), 2u);
  // Zero gradients: Adam's step is 0/(0 + eps) = 0, so only decay moves: w ← w·(1 − lr·wd).
  for (auto& [n, p] : params) p.mutable_grad() = torch::zeros_like(p);
  const StepResult r = (*opt)->Step();
  EXPECT_EQ(r.grad_norm, 0.0);
  EXPECT_EQ(r.lr, 0.1);
  EXPECT_TRUE(torch::allclose(params[0].second, w0 * 0.95, 0, 1e-15));
  EXPECT_TRUE(torch::equal(params[1].second, b0));
  EXPECT_EQ((*opt)->step(), 1);
}

TEST(OptimizerTest, ClipsLikeAReferenceAdamW) {
  auto params = TinyParams(2);
  auto ref_params = TinyParams(2);
  const auto o = OptimizerOptions().set_lr(0.01).set_weight_decay(0.1).set_max_grad_norm(0.5);
  auto opt = Optimizer::Create(params, o);
  ASSERT_TRUE(opt.ok());
  auto mk = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(0.01).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<Tensor>{ref_params[0].second}, mk(0.1));
  groups.emplace_back(std::vector<Tensor>{ref_params[1].second, ref_params[2].second}, mk(0.0));
  torch::optim::AdamW ref(std::move(groups), torch::optim::AdamWOptions(0.01));
  torch::manual_seed(9);
  for (int s = 0; s < 3; ++s) {
    std::vector<Tensor> grads;
    for (auto& [n, p] : params) grads.push_back(torch::randn_like(p) * (s + 1));
    double sq = 0;
    for (auto& g : grads) sq += g.pow(2).sum().item<double>();
    const double norm = std::sqrt(sq), coef = std::min(1.0, 0.5 / (norm + 1e-6));
    for (size_t i = 0; i < grads.size(); ++i) {
      params[i].second.mutable_grad() = grads[i].clone();
      ref_params[i].second.mutable_grad() = grads[i] * coef;
    }
    const StepResult r = (*opt)->Step();
    ref.step();
    EXPECT_NEAR(r.grad_norm, norm, 1e-12);
    for (size_t i = 0; i < grads.size(); ++i)
      EXPECT_TRUE(torch::allclose(params[i].second, ref_params[i].second, 0, 1e-14));
  }
}

TEST(OptimizerTest, SkipsNonFiniteGradients) {
  auto params = TinyParams(3);
  const Tensor w0 = params[0].second.detach().clone();
  auto opt = Optimizer::Create(params, OptimizerOptions().set_lr(0.1));
  for (auto& [n, p] : params) p.mutable_grad() = torch::ones_like(p);
  params[1].second.mutable_grad()[0] = std::nan("");
  const StepResult r = (*opt)->Step();
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ((*opt)->step(), 0);
  EXPECT_TRUE(torch::equal(params[0].second, w0));
}

// Fixed data, a tiny regression model; one optimizer step per call.
void TrainSteps(std::vector<std::pair<std::string, Tensor>>& params, Optimizer& opt, int from,
                int to) {
  for (int s = from; s < to; ++s) {
    torch::manual_seed(100 + s);  // per-step data, independent of where a run was resumed
    const Tensor x = torch::randn({5, 4}, kF64), y = torch::randn({5, 3}, kF64);
    const Tensor out =
        (torch::matmul(x, params[0].second.t()) + params[1].second) * params[2].second;
    (out - y).pow(2).mean().backward();
    opt.Step();
  }
}

TEST(OptimizerTest, ResumeIsBitIdentical) {
  const auto o = OptimizerOptions()
                     .set_lr(0.05)
                     .set_weight_decay(0.1)
                     .set_max_grad_norm(0.3)
                     .set_lr_scheduler(LrSchedule::kCosine)
                     .set_lr_warmup_steps(3)
                     .set_total_steps(10);
  const int n = 10, k = 4;
  auto straight = TinyParams(5);
  auto opt_a = std::move(Optimizer::Create(straight, o).value());
  TrainSteps(straight, *opt_a, 0, n);

  auto first = TinyParams(5);
  auto opt_b = std::move(Optimizer::Create(first, o).value());
  TrainSteps(first, *opt_b, 0, k);
  const std::string path = std::string(CHAINRL_BINARY_DIR) + "/optimizer_test_state.pt";
  ASSERT_TRUE(opt_b->Save(path).ok());
  // New parameter objects and optimizer: copy the weights, load the optimizer state.
  auto resumed = TinyParams(77);
  {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < resumed.size(); ++i) resumed[i].second.copy_(first[i].second);
  }
  auto opt_c = std::move(Optimizer::Create(resumed, o).value());
  ASSERT_TRUE(opt_c->Load(path).ok());
  EXPECT_EQ(opt_c->step(), k);
  EXPECT_EQ(opt_c->current_lr(), opt_b->current_lr());
  TrainSteps(resumed, *opt_c, k, n);
  for (size_t i = 0; i < straight.size(); ++i)
    EXPECT_TRUE(torch::equal(straight[i].second, resumed[i].second)) << straight[i].first;
  // Without the optimizer state the run diverges (the test can fail).
  auto cold = TinyParams(77);
  {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < cold.size(); ++i) cold[i].second.copy_(first[i].second);
  }
  auto opt_d = std::move(Optimizer::Create(cold, o).value());
  TrainSteps(cold, *opt_d, k, n);
  EXPECT_FALSE(torch::equal(straight[0].second, cold[0].second));

  // Errors: a missing file names the path; other parameters are Corrupt.
  auto missing = opt_c->Load(path + ".nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find(".nope"), std::string::npos);
  std::vector<std::pair<std::string, Tensor>> other = {
      {"other.weight", torch::zeros({3, 4}, kF64).requires_grad_(true)}};
  auto opt_e = std::move(Optimizer::Create(other, o).value());
  auto wrong = opt_e->Load(path);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.code(), StatusCode::kCorrupt);
  std::remove(path.c_str());
}

TEST(OptimizerTest, GradientAccumulation) {
  GradientAccumulation acc(3);
  EXPECT_DOUBLE_EQ(acc.loss_scale(), 1.0 / 3.0);
  EXPECT_FALSE(acc.Add());
  EXPECT_FALSE(acc.Add());
  EXPECT_EQ(acc.pending(), 2);
  EXPECT_TRUE(acc.Add());
  EXPECT_EQ(acc.pending(), 0);
  EXPECT_FALSE(acc.Add());
  auto none = Optimizer::Create({{"w", torch::zeros({2})}}, OptimizerOptions());
  ASSERT_FALSE(none.ok());
}

}  // namespace
}  // namespace chainrl::learner
