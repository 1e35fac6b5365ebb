// AdamW with decay / no-decay parameter groups, warm-up + cosine or constant learning-rate
// schedule, global-norm gradient clipping, gradient accumulation, and optimizer + schedule state
// save/load so that a resumed run continues bit-identically.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace chainrl::learner {

enum class LrSchedule { kConstant, kCosine };
Result<LrSchedule> ParseLrSchedule(std::string_view name);  // "constant" | "cosine"
const char* LrScheduleName(LrSchedule s);

struct OptimizerOptions {
#define CHAINRL_LEARNER_ARG(type, name, init) \
  type name = init;                           \
  OptimizerOptions& set_##name(type v) {      \
    name = v;                                 \
    return *this;                             \
  }
  CHAINRL_LEARNER_ARG(double, lr, 1e-6)  // peak learning rate
  CHAINRL_LEARNER_ARG(double, beta1, 0.9)
  CHAINRL_LEARNER_ARG(double, beta2, 0.999)
  CHAINRL_LEARNER_ARG(double, eps, 1e-8)
  CHAINRL_LEARNER_ARG(double, weight_decay, 0.01)  // applied to the decay group only
  CHAINRL_LEARNER_ARG(double, max_grad_norm,
                      1.0)  // ≤ 0 disables clipping (the norm is still returned)
  CHAINRL_LEARNER_ARG(LrSchedule, lr_scheduler, LrSchedule::kConstant)
  CHAINRL_LEARNER_ARG(int64_t, lr_warmup_steps, 0)  // linear warm-up over this many optimizer steps
  CHAINRL_LEARNER_ARG(int64_t, total_steps,
                      0)  // cosine: steps until the minimum (REQUIRED > warm-up)
  CHAINRL_LEARNER_ARG(double, min_lr_ratio, 0.0)  // cosine floor as a fraction of lr
  CHAINRL_LEARNER_ARG(bool, skip_nonfinite_grad,
                      true)  // skip the update when the grad norm is inf/NaN
#undef CHAINRL_LEARNER_ARG
};
Status ValidateOptimizerOptions(const OptimizerOptions& options);

// The learning-rate multiplier for optimizer step s (0-based: the s-th update):
//   warm-up (s < W): (s + 1)/W, so the first update is not wasted at lr 0;
//   constant: 1 afterwards;
//   cosine: r + (1 − r)·½(1 + cos(π·p)), p = min(1, (s − W)/(total − W)), r = min_lr_ratio.
double LrMultiplier(const OptimizerOptions& options, int64_t step);

// No weight decay for parameters with fewer than 2 dimensions (biases, norm gains, scalars) or
// whose name's last component contains "norm" or "bias" (covers e.g. 2-D norm weights of fused
// layouts); embeddings and projection matrices decay, as in the usual transformer recipe.
bool IsNoDecayParameter(const std::string& name, const torch::Tensor& parameter);

struct StepResult {
  double grad_norm = 0;  // global L2 norm before clipping
  double lr = 0;         // learning rate used for this update
  bool skipped = false;  // non-finite grad norm: no update, no schedule advance
};

// Owns a torch::optim::AdamW over two groups (decay, no decay). Not thread-safe.
class Optimizer {
 public:
  // InvalidArgument on bad options or when no parameter requires grad.
  static Result<std::unique_ptr<Optimizer>> Create(
      const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters,
      const OptimizerOptions& options);

  // Clips the gradients to max_grad_norm, sets this step's learning rate, runs AdamW, zeroes the
  // gradients and advances the schedule.
  StepResult Step();
  void ZeroGrad();
  // Replaces the hyper-parameters (lr, betas, eps, weight decay, clipping, schedule) from the next
  // Step() on, e.g. at a curriculum stage; the moments and the step count (schedule position) are
  // kept. InvalidArgument (and no change) on bad options.
  Status SetOptions(const OptimizerOptions& options);
  const OptimizerOptions& options() const { return options_; }
  int64_t step() const { return step_; }
  double current_lr() const;
  torch::optim::AdamW& adamw() { return *adamw_; }

  // Optimizer moments + step counters + schedule position, and the parameter names as a
  // fingerprint. IoError naming the path on write/read failure; Corrupt when the file does not
  // match this optimizer's parameters.
  Status Save(const std::string& path) const;
  Status Load(const std::string& path);

 private:
  Optimizer() = default;
  OptimizerOptions options_;
  std::vector<torch::Tensor> params_;
  std::string fingerprint_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
  int64_t step_ = 0;
};

// Gradient accumulation: call Add() after each micro-batch's backward; it returns true when the
// optimizer should step (every `micro_batches` calls). loss_scale() is 1/micro_batches, for losses
// that are means per micro-batch; losses built with global normalisers (objectives.h) need 1.
class GradientAccumulation {
 public:
  explicit GradientAccumulation(int64_t micro_batches) : micro_batches_(micro_batches) {}
  bool Add() {
    if (++count_ < micro_batches_) return false;
    count_ = 0;
    return true;
  }
  double loss_scale() const { return 1.0 / static_cast<double>(micro_batches_); }
  int64_t pending() const { return count_; }

 private:
  int64_t micro_batches_;
  int64_t count_ = 0;
};

}  // namespace chainrl::learner
