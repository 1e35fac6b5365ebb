// AdamW with parameter groups, LR schedule, clipping and resumable state.
#include "learner/optimizer.h"

#include <cmath>
#include <numbers>

#include "core/check.h"

namespace chainrl::learner {

Result<LrSchedule> ParseLrSchedule(std::string_view name) {
  if (name == "constant") return LrSchedule::kConstant;
  if (name == "cosine") return LrSchedule::kCosine;
  return InvalidArgument("lr_scheduler: unknown value \"" + std::string(name) +
                         "\"; valid values: constant, cosine");
}

const char* LrScheduleName(LrSchedule s) {
  return s == LrSchedule::kCosine ? "cosine" : "constant";
}

Status ValidateOptimizerOptions(const OptimizerOptions& o) {
  if (!(o.lr >= 0)) return InvalidArgument("lr must be >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) return InvalidArgument("beta1 must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) return InvalidArgument("beta2 must be in [0, 1)");
  if (!(o.eps > 0)) return InvalidArgument("eps must be > 0");
  if (!(o.weight_decay >= 0)) return InvalidArgument("weight_decay must be >= 0");
  if (o.lr_warmup_steps < 0) return InvalidArgument("lr_warmup_steps must be >= 0");
  if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1))
    return InvalidArgument("min_lr_ratio must be in [0, 1]");
  if (o.lr_scheduler == LrSchedule::kCosine && o.total_steps <= o.lr_warmup_steps)
    return InvalidArgument("total_steps = " + std::to_string(o.total_steps) +
                           ": the cosine schedule needs total_steps > lr_warmup_steps (" +
                           std::to_string(o.lr_warmup_steps) + ")");
  return Status::Ok();
}

double LrMultiplier(const OptimizerOptions& o, int64_t step) {
  if (step < o.lr_warmup_steps)
    return static_cast<double>(step + 1) / static_cast<double>(o.lr_warmup_steps);
  if (o.lr_scheduler == LrSchedule::kConstant) return 1.0;
  const double p = std::min(1.0, static_cast<double>(step - o.lr_warmup_steps) /
                                     static_cast<double>(o.total_steps - o.lr_warmup_steps));
  return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

bool IsNoDecayParameter(const std::string& name, const torch::Tensor& parameter) {
  if (parameter.dim() < 2) return true;
  const size_t dot = name.rfind('.');
  const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
  const std::string owner = dot == std::string::npos ? "" : name.substr(0, dot);
  const size_t owner_dot = owner.rfind('.');
  const std::string module = owner_dot == std::string::npos ? owner : owner.substr(owner_dot + 1);
  return last.find("bias") != std::string::npos || last.find("norm") != std::string::npos ||
         module.find("norm") != std::string::npos;
}

Result<std::unique_ptr<Optimizer>> Optimizer::Create(
    const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters,
    const OptimizerOptions& options) {
  CHAINRL_RETURN_IF_ERROR(ValidateOptimizerOptions(options));
  std::vector<torch::Tensor> decay, no_decay;
  std::unique_ptr<Optimizer> opt(new Optimizer());
  opt->options_ = options;
  for (const auto& [name, p] : named_parameters) {
    if (!p.requires_grad()) continue;
    (IsNoDecayParameter(name, p) ? no_decay : decay).push_back(p);
    opt->fingerprint_ += name + (IsNoDecayParameter(name, p) ? ":n;" : ":d;");
    opt->params_.push_back(p);
  }
  if (opt->params_.empty()) return InvalidArgument("optimizer: no parameter requires grad");
  auto make = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(options.lr * LrMultiplier(options, 0))
            .betas({options.beta1, options.beta2})
            .eps(options.eps)
            .weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, make(options.weight_decay));
  if (!no_decay.empty()) groups.emplace_back(no_decay, make(0.0));
  opt->adamw_ = std::make_unique<torch::optim::AdamW>(
      std::move(groups), torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay));
  return opt;
}

double Optimizer::current_lr() const { return options_.lr * LrMultiplier(options_, step_); }

void Optimizer::ZeroGrad() { adamw_->zero_grad(); }

Status Optimizer::SetOptions(const OptimizerOptions& options) {
  CHAINRL_RETURN_IF_ERROR(ValidateOptimizerOptions(options));
  // The decay group is first when it exists (Create); the no-decay group keeps weight decay 0.
  const bool has_decay = fingerprint_.find(":d;") != std::string::npos;
  options_ = options;
  auto& groups = adamw_->param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    auto& o = static_cast<torch::optim::AdamWOptions&>(groups[i].options());
    o.lr(current_lr()).betas({options.beta1, options.beta2}).eps(options.eps);
    o.weight_decay(has_decay && i == 0 ? options.weight_decay : 0.0);
  }
  return Status::Ok();
}

StepResult Optimizer::Step() {
  torch::NoGradGuard no_grad;
  StepResult r;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params_)
    if (p.grad().defined()) norms.push_back(p.grad().detach().to(torch::kFloat64).norm());
  r.grad_norm = norms.empty() ? 0.0 : torch::stack(norms).norm().item<double>();
  if (!std::isfinite(r.grad_norm) && options_.skip_nonfinite_grad) {
    r.skipped = true;
    r.lr = current_lr();
    ZeroGrad();
    return r;
  }
  if (options_.max_grad_norm > 0) {
    const double coef = options_.max_grad_norm / (r.grad_norm + 1e-6);
    if (coef < 1.0)
      for (auto& p : params_)
        if (p.grad().defined()) p.grad().mul_(coef);
  }
  r.lr = current_lr();
  for (auto& group : adamw_->param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(r.lr);
  adamw_->step();
  ZeroGrad();
  ++step_;
  return r;
}

Status Optimizer::Save(const std::string& path) const {
  try {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive state;
    adamw_->save(state);
    archive.write("adamw", state);
    archive.write("step", c10::IValue(step_));
    archive.write("fingerprint", c10::IValue(fingerprint_));
    archive.save_to(path);
  } catch (const std::exception& e) {
    return IoError("optimizer state " + path + ": " + e.what());
  }
  return Status::Ok();
}

Status Optimizer::Load(const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue fp, step;
    if (!archive.try_read("fingerprint", fp) || !fp.isString())
      return Corrupt("optimizer state " + path + ": no parameter fingerprint");
    if (fp.toStringRef() != fingerprint_)
      return Corrupt("optimizer state " + path +
                     ": saved for different parameters (names or decay groups differ)");
    if (!archive.try_read("step", step) || !step.isInt())
      return Corrupt("optimizer state " + path + ": no step counter");
    torch::serialize::InputArchive state;
    archive.read("adamw", state);
    adamw_->load(state);
    step_ = step.toInt();
  } catch (const std::exception& e) {
    return IoError("optimizer state " + path + ": " + e.what());
  }
  return Status::Ok();
}

}  // namespace chainrl::learner
