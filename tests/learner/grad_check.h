// Autograd gradients checked against central finite differences, for the loss tests in float64.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace chainrl::testing {

// The largest relative error |fd - ad| / max(1e-3, |fd| + |ad|) between autograd's gradient `ad`
// of loss() and the central difference fd = (loss(p + h) - loss(p - h)) / 2h, h = 1e-6, over every
// entry p of every tensor in `params`. REQUIRES: `params` are float64 leaves that require grad
// (their gradients are reset first); loss() returns a scalar and depends on them.
template <typename LossFn>
double MaxRelativeGradientError(const std::vector<torch::Tensor>& params, LossFn&& loss) {
  for (torch::Tensor p : params) p.mutable_grad() = torch::Tensor();
  loss().backward();
  double worst = 0;
  for (const torch::Tensor& p : params) {
    const torch::Tensor g = p.grad().clone();
    torch::Tensor flat = p.detach().view({-1});
    for (int64_t k = 0; k < flat.numel(); ++k) {
      const double h = 1e-6, v = flat[k].item<double>();
      double up, down;
      {
        torch::NoGradGuard ng;
        flat[k] = v + h;
        up = loss().template item<double>();
        flat[k] = v - h;
        down = loss().template item<double>();
        flat[k] = v;
      }
      const double fd = (up - down) / (2 * h), ad = g.view({-1})[k].item<double>();
      worst = std::max(worst, std::abs(fd - ad) / std::max(1e-3, std::abs(fd) + std::abs(ad)));
    }
  }
  return worst;
}

// Gradients by parameter name.
using Grads = std::map<std::string, torch::Tensor>;

// Worst over parameters of max|a − b| / max|b| (absolute where b is all zero).
inline double MaxRelErr(const Grads& a, const Grads& b) {
  double worst = 0;
  for (const auto& [k, v] : b) {
    const double scale = v.abs().max().item<double>();
    const double diff = (a.at(k) - v).abs().max().item<double>();
    worst = std::max(worst, scale > 0 ? diff / scale : diff);
  }
  return worst;
}

// The largest |gradient| over every parameter.
inline double MaxAbs(const Grads& g) {
  double worst = 0;
  for (const auto& [k, v] : g) worst = std::max(worst, v.abs().max().item<double>());
  return worst;
}

}  // namespace chainrl::testing
