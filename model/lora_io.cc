// LoRA adapters in configs and files (see lora_io.h).
#include "model/lora_io.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/file_io.h"
#include "core/json_file.h"
#include "model/model_io.h"
#include "model/safetensors.h"

namespace chainrl::model {

namespace fs = std::filesystem;

Result<std::optional<LoraOptions>> LoraOptionsFromConfig(const Config& config) {
  if (!config.GetBool("lora.enabled")) return std::optional<LoraOptions>();
  LoraOptions o;
  o.targets = config.GetStringList("lora.targets");
  o.rank = config.GetInt("lora.rank");
  o.alpha = config.GetFloat("lora.alpha");
  o.dropout = config.GetFloat("lora.dropout");
  o.rslora = config.GetBool("lora.rslora");
  CHAINRL_RETURN_IF_ERROR(ValidateLoraOptions(o));
  return std::optional<LoraOptions>(o);
}

Result<bool> AttachLoraFromConfig(DecoderModel& model, const Config& config,
                                  torch::ScalarType dtype) {
  CHAINRL_ASSIGN_OR_RETURN(std::optional<LoraOptions> lora, LoraOptionsFromConfig(config));
  if (!lora) return false;
  CHAINRL_RETURN_IF_ERROR(
      model.AttachLora(*lora, static_cast<uint64_t>(config.GetInt("run.seed")), dtype));
  return true;
}

Status SaveLoraAdapter(DecoderModel& model, const std::string& dir, const std::string& base_model) {
  CHAINRL_CHECK(model.has_lora(), "SaveLoraAdapter without adapters");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create directory: " + ec.message());
  const LoraOptions& o = model.lora_options();
  // The fields peft's LoraConfig reads; the rest take its defaults.
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model;
  j["r"] = o.rank;
  j["lora_alpha"] = o.alpha;
  j["lora_dropout"] = o.dropout;
  j["target_modules"] = o.targets;
  j["use_rslora"] = o.rslora;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  j["modules_to_save"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["use_dora"] = false;
  CHAINRL_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(dir) / "adapter_config.json").string(), j.dump(2) + "\n"));
  TensorMap tensors;
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : model.LoraParameters())
    tensors.emplace(name, t.detach().to(torch::kCPU, torch::kFloat32).contiguous());
  return SaveSafetensors((fs::path(dir) / "adapter_model.safetensors").string(), tensors);
}

bool HasLoraAdapter(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / "adapter_config.json", ec);
}

Status LoadLoraAdapter(DecoderModel& model, const std::string& dir) {
  if (!model.has_lora())
    return InvalidArgument(dir +
                           " holds LoRA adapters and this model has none: set [lora] as "
                           "the run that wrote them did");
  const std::string config_path = (fs::path(dir) / "adapter_config.json").string();
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFile(config_path, kMaxSmallJsonBytes));
  const LoraOptions& o = model.lora_options();
  auto field = [&](const char* key) -> Result<nlohmann::json> {
    auto it = j.is_object() ? j.find(key) : j.end();
    if (it == j.end()) return InvalidArgument(config_path + ": no '" + key + "'");
    return *it;
  };
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json r, field("r"));
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json alpha, field("lora_alpha"));
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json targets, field("target_modules"));
  if (!r.is_number_integer() || r.get<int64_t>() != o.rank)
    return InvalidArgument(config_path + ": r = " + r.dump() + ", lora.rank is " +
                           std::to_string(o.rank));
  if (!alpha.is_number() || std::abs(alpha.get<double>() - o.alpha) > 1e-9 * o.alpha)
    return InvalidArgument(config_path + ": lora_alpha = " + alpha.dump() + ", lora.alpha is " +
                           std::to_string(o.alpha));
  std::set<std::string> want(o.targets.begin(), o.targets.end()), have;
  if (targets.is_array()) {
    for (const auto& t : targets)
      if (t.is_string()) have.insert(t.get<std::string>());
  }
  if (have != want)
    return InvalidArgument(config_path + ": target_modules = " + targets.dump() +
                           " differ from lora.targets");
  const auto rs = j.find("use_rslora");
  const bool rslora = rs != j.end() && rs->is_boolean() && rs->get<bool>();
  if (rslora != o.rslora)
    return InvalidArgument(config_path + ": use_rslora = " + (rslora ? "true" : "false") +
                           ", lora.rslora is " + (o.rslora ? "true" : "false"));
  const std::string weights = (fs::path(dir) / "adapter_model.safetensors").string();
  CHAINRL_ASSIGN_OR_RETURN(TensorMap tensors, LoadSafetensors(weights));
  auto params = model.LoraParameters();
  for (const auto& [name, t] : params) {
    auto it = tensors.find(name);
    if (it == tensors.end()) return InvalidArgument(weights + ": no tensor '" + name + "'");
    if (it->second.sizes() != t.sizes())
      return InvalidArgument(weights + ": '" + name + "' has shape " +
                             c10::str(it->second.sizes()) + ", the model's adapter " +
                             c10::str(t.sizes()));
  }
  if (tensors.size() != params.size())
    return InvalidArgument(weights + ": " + std::to_string(tensors.size()) +
                           " tensors, the model has " + std::to_string(params.size()) +
                           " adapter tensors");
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : params) t.copy_(tensors.at(name));
  return Status::Ok();
}

Status SaveMergedModel(DecoderModel& model, const std::string& dir, int64_t shard_bytes) {
  if (!model.has_lora()) return SaveModel(model, dir, shard_bytes);
  TensorMap merged;
  for (auto& [name, t] : model.MergedParameters(model.options().dtype))
    merged.emplace(name, std::move(t));
  return SaveModelDir(model, dir, merged, shard_bytes);
}

}  // namespace chainrl::model
