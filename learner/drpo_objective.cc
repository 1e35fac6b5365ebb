// DRPO as an objective (docs/ALGORITHMS.md §4.10, §6.3): a loss over sequence scores
// s_i = mean_t ℓ and the token-mean KL, both linear in ℓ. The preparation pass gives s and the
// KL, autograd on DrpoLoss gives dL/ds_i and dL/dKL, and each chunk's Σ_i c_i·Σ_t m·ℓ with
// c_i = (dL/ds_i)/|o_i| − (dL/dKL)/N_tokens has exactly the gradient of the loss.
#include "learner/objective.h"
#include "learner/run_options.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;

class Drpo : public PolicyObjective {
 public:
  explicit Drpo(const DrpoOptions& options) : options_(options) {}

  // DRPO scores whole groups: overlong filtering and the DMMPT mask do not apply.
  bool applies_sample_filters() const override { return false; }
  bool reports_chunk_loss() const override { return false; }

  Result<double> Prepare(const std::vector<ObjectiveRow>& rows, const SequencePass& pass) override {
    std::vector<double> score, len, correct, group;
    double kl_sum = 0, tokens = 0;
    pass([&](const SequencePassPart& part) {
      const Tensor lp = part.logprobs.to(torch::kFloat64);
      const Tensor m = part.mask.to(torch::kFloat64);
      const Tensor sums = (lp * m).sum(1), lens = m.sum(1);
      kl_sum += ((part.old_logprobs.to(torch::kFloat64) - lp) * m).sum().item<double>();
      tokens += lens.sum().item<double>();
      for (int64_t b = 0; b < lp.size(0); ++b) {
        const double l = std::max(1.0, lens[b].item<double>());
        const ObjectiveRow& row = rows[part.first_row + b];
        score.push_back(sums[b].item<double>() / l);
        len.push_back(l);
        correct.push_back(row.correct ? 1.0 : 0.0);
        group.push_back(static_cast<double>(row.group));
      }
    });
    torch::AutoGradMode grad_on(true);
    Tensor s_leaf = torch::tensor(score, torch::kFloat64).requires_grad_(true);
    Tensor kl_leaf =
        torch::tensor(kl_sum / std::max(1.0, tokens), torch::kFloat64).requires_grad_(true);
    Tensor loss = DrpoLoss(
        s_leaf, torch::tensor(len, torch::kFloat64), torch::tensor(correct, torch::kFloat64),
        torch::tensor(group, torch::kFloat64).to(torch::kInt64), kl_leaf, options_);
    auto g = torch::autograd::grad({loss}, {s_leaf, kl_leaf}, {}, false, false, true);
    const double g_kl = g[1].defined() ? g[1].item<double>() : 0.0;
    std::vector<double> c;
    for (size_t b = 0; b < len.size(); ++b) {
      const double g_s = g[0].defined() ? g[0][static_cast<int64_t>(b)].item<double>() : 0.0;
      c.push_back(g_s / len[b] - g_kl / std::max(1.0, tokens));
    }
    coefficients_ = torch::tensor(c, torch::kFloat64).to(torch::kFloat32).unsqueeze(1);
    return loss.item<double>();
  }

  Tensor ChunkLoss(const ObjectiveChunk& chunk, PolicyLossStats*) override {
    const Tensor coef = coefficients_.narrow(0, chunk.first_row, chunk.response_mask.size(0));
    return (chunk.tokens.logprobs * chunk.response_mask * coef).sum();
  }

 private:
  DrpoOptions options_;
  Tensor coefficients_;  // [rows, 1] float32: c_i per row of the mini-batch, from Prepare
};

}  // namespace

std::unique_ptr<PolicyObjective> MakeDrpoObjective(const LearnerRunOptions& options) {
  return std::make_unique<Drpo>(options.drpo_options);
}

}  // namespace chainrl::learner
