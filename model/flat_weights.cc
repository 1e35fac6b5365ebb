// Flat weight buffers for publication (see flat_weights.h).
#include "model/flat_weights.h"

#include <cstring>
#include <set>
#include <vector>

#include <torch/torch.h>

namespace chainrl::model {
namespace {

// The distinct parameters in registration order (a tied LM head appears once).
std::vector<std::pair<std::string, torch::Tensor>> DistinctParameters(DecoderModel& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::set<const void*> seen;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    const torch::Tensor& t = item.value();
    if (!seen.insert(t.data_ptr()).second) continue;
    out.emplace_back(item.key(), t);
  }
  return out;
}

}  // namespace

std::string FlatWeightsFormat(DecoderModel& model, std::optional<torch::ScalarType> as) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over "name:dtype:shape;" of every parameter
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  for (const auto& [name, t] : DistinctParameters(model)) {
    mix(name);
    mix(std::string(":") + c10::toString(as.value_or(t.scalar_type())) + ":");
    for (int64_t d : t.sizes()) mix(std::to_string(d) + ",");
    mix(";");
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return std::string("chainrl-flat-v1:") + buf;
}

size_t FlatWeightsBytes(DecoderModel& model, std::optional<torch::ScalarType> as) {
  size_t n = 0;
  for (const auto& [name, t] : DistinctParameters(model))
    n += t.numel() * c10::elementSize(as.value_or(t.scalar_type()));
  return n;
}

void PackFlatWeights(DecoderModel& model, uint8_t* out, std::optional<torch::ScalarType> as) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : DistinctParameters(model)) {
    torch::Tensor c = t.detach().to(torch::kCPU, as.value_or(t.scalar_type())).contiguous();
    const size_t n = c.numel() * c.element_size();
    std::memcpy(out, c.data_ptr(), n);
    out += n;
  }
}

Status UnpackFlatWeights(DecoderModel& model, std::span<const uint8_t> bytes,
                         std::string_view format, std::string_view source) {
  const std::string mine = FlatWeightsFormat(model);
  if (format != mine)
    return InvalidArgument(std::string(source) + ": weights of format '" + std::string(format) +
                           "' do not fit this model ('" + mine +
                           "'): another architecture, size or dtype");
  if (bytes.size() != FlatWeightsBytes(model))
    return InvalidArgument(std::string(source) + ": " + std::to_string(bytes.size()) +
                           " bytes of weights, the model needs " +
                           std::to_string(FlatWeightsBytes(model)));
  torch::NoGradGuard no_grad;
  const uint8_t* p = bytes.data();
  for (auto& [name, t] : DistinctParameters(model)) {
    const size_t n = t.numel() * t.element_size();
    torch::Tensor src = torch::from_blob(const_cast<uint8_t*>(p), t.sizes(),
                                         torch::TensorOptions().dtype(t.scalar_type()));
    t.copy_(src);
    p += n;
  }
  return Status::Ok();
}

}  // namespace chainrl::model
