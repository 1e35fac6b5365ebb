// Flat weight buffers for publication (see flat_weights.h).
#include "model/flat_weights.h"

#include <cstring>
#include <set>
#include <vector>

#include <torch/torch.h>

namespace chainrl::model {
namespace {

// What is published, in order: the LoRA adapters of a model that has them (its base is frozen and
// every receiver loads it itself), else the distinct parameters in registration order (a tied LM
// head appears once).
std::vector<std::pair<std::string, torch::Tensor>> DistinctParameters(DecoderModel& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::set<const void*> seen;
  for (auto& [name, t] : model.TrainableParameters()) {
    if (!seen.insert(t.data_ptr()).second) continue;
    out.emplace_back(name, t);
  }
  return out;
}

// "adapters" or "full weights", for errors.
std::string_view Kind(std::string_view format) {
  return format.rfind(kLoraFlatPrefix, 0) == 0 ? "LoRA adapters" : "full weights";
}

}  // namespace

std::string FlatWeightsFormat(DecoderModel& model, std::optional<torch::ScalarType> as) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over "name:dtype:shape;" of every parameter
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  if (model.has_lora()) {  // the scale is not in the tensors' shapes: alpha and rsLoRA count
    char scale[64];
    std::snprintf(scale, sizeof(scale), "lora-scale:%.17g;", model.lora_options().Scale());
    mix(scale);
  }
  for (const auto& [name, t] : DistinctParameters(model)) {
    mix(name);
    mix(std::string(":") + c10::toString(as.value_or(t.scalar_type())) + ":");
    for (int64_t d : t.sizes()) mix(std::to_string(d) + ",");
    mix(";");
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return std::string(model.has_lora() ? kLoraFlatPrefix : "chainrl-flat-v1:") + buf;
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
  if (format != mine) {
    if (Kind(format) != Kind(mine))
      return InvalidArgument(std::string(source) + ": " + std::string(Kind(format)) +
                             " were published and this model takes " + std::string(Kind(mine)) +
                             ": the publisher's [lora] section differs from this process's; "
                             "nothing loaded");
    return InvalidArgument(
        std::string(source) + ": " + std::string(Kind(format)) + " of format '" +
        std::string(format) + "' do not fit this model ('" + mine +
        "'): another architecture, size, dtype" +
        (Kind(mine) == Kind(kLoraFlatPrefix) ? ", LoRA rank, targets or scale" : "") +
        "; nothing loaded");
  }
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
