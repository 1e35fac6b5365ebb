// Model directories in HF layout: name-for-name weight loading, saving config + weights.
#include "model/model_io.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace chainrl::model {
namespace fs = std::filesystem;

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 50);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (shown < names.size()) out += ", ... (" + std::to_string(names.size() - shown) + " more)";
  return out;
}

}  // namespace

std::string TorchDtypeName(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat:
      return "float32";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kHalf:
      return "float16";
    case torch::kDouble:
      return "float64";
    default:
      return c10::toString(type);
  }
}

Result<torch::ScalarType> ParseTorchDtype(const std::string& name) {
  if (name == "float32" || name == "float") return torch::kFloat;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16" || name == "half") return torch::kHalf;
  if (name == "float64") return torch::kDouble;
  return InvalidArgument("unknown dtype '" + name + "' (float32, bfloat16, float16, float64)");
}

TensorMap ModelStateDict(DecoderModel& model) {
  TensorMap out;
  for (const auto& p : model.named_parameters()) out.emplace(p.key(), p.value());
  return out;
}

namespace {

// Every missing name, unexpected name and shape mismatch between `tensors` and the model.
Status CheckStateDict(DecoderModel& model, const TensorMap& tensors, const std::string& source) {
  auto params = model.named_parameters();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& p : params) {
    auto it = tensors.find(p.key());
    if (it == tensors.end()) {
      missing.push_back(p.key());
    } else if (it->second.sizes() != p.value().sizes()) {
      std::ostringstream os;
      os << p.key() << " (file " << it->second.sizes() << ", model " << p.value().sizes() << ")";
      mismatched.push_back(os.str());
    }
  }
  for (const auto& [name, t] : tensors) {
    if (params.contains(name)) continue;
    if (name == "lm_head.weight" && model.config().tie_word_embeddings) continue;
    if (EndsWith(name, ".rotary_emb.inv_freq")) continue;
    unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = source + ": weights do not match the " +
                      ArchitectureName(model.config().arch) + " model of config.json:";
    if (!missing.empty()) msg += " missing tensors: " + JoinNames(missing) + ";";
    if (!unexpected.empty()) msg += " unexpected tensors: " + JoinNames(unexpected) + ";";
    if (!mismatched.empty()) msg += " shape mismatches: " + JoinNames(mismatched) + ";";
    msg.pop_back();
    return Corrupt(msg);
  }
  return Status::Ok();
}

}  // namespace

Status LoadStateDict(DecoderModel& model, const TensorMap& tensors, const std::string& source) {
  CHAINRL_RETURN_IF_ERROR(CheckStateDict(model, tensors, source));
  auto params = model.named_parameters();
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const torch::Tensor& src = tensors.at(p.key());
    torch::Tensor& dst = p.value();
    if (src.device() == dst.device() && src.scalar_type() == dst.scalar_type() &&
        src.is_contiguous()) {
      dst.set_data(src);  // zero-copy: the parameter now lives in the (copy-on-write) mapping
    } else {
      dst.copy_(src);
    }
  }
  return Status::Ok();
}

Status CopyStateDict(DecoderModel& model, const TensorMap& tensors, const std::string& source) {
  CHAINRL_RETURN_IF_ERROR(CheckStateDict(model, tensors, source));
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) p.value().copy_(tensors.at(p.key()));
  return Status::Ok();
}

std::shared_ptr<DecoderModel> CopyModel(DecoderModel& model, const ModelOptions& options) {
  CHAINRL_CHECK(!model.lora_merged(), "CopyModel of a model whose LoRA adapters are merged");
  auto copy = std::make_shared<DecoderModel>(model.config(), options);
  const Status st = CopyStateDict(*copy, ModelStateDict(model), "model copy");
  CHAINRL_CHECK(st.ok(), st.ToString());  // same configuration: the names and shapes agree
  if (model.has_lora()) {  // the adapters too, in the copy's dtype, switched as the original's
    const Status lora = copy->AttachLora(model.lora_options(), 0, options.dtype);
    CHAINRL_CHECK(lora.ok(), lora.ToString());
    torch::NoGradGuard no_grad;
    auto from = model.LoraParameters();
    auto to = copy->LoraParameters();
    for (size_t i = 0; i < to.size(); ++i) to[i].second.copy_(from[i].second);
    copy->set_lora_enabled(model.lora_enabled());
  }
  return copy;
}

Result<std::shared_ptr<DecoderModel>> BuildModelFromConfig(const std::string& dir,
                                                           const ModelOptions& options) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  CHAINRL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  try {
    return std::make_shared<DecoderModel>(config, options);
  } catch (const std::exception& e) {
    return Internal(config_path + ": cannot build the model: " + e.what());
  }
}

Result<std::shared_ptr<DecoderModel>> LoadModel(const std::string& dir,
                                                const ModelOptions& options) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  CHAINRL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  CHAINRL_ASSIGN_OR_RETURN(TensorMap tensors, LoadSafetensorsDir(dir));
  std::shared_ptr<DecoderModel> model;
  try {
    model = std::make_shared<DecoderModel>(config, options);
  } catch (const std::exception& e) {  // e.g. out of memory for a huge vocab in a corrupt config
    return Internal(config_path + ": cannot build the model: " + e.what());
  }
  CHAINRL_RETURN_IF_ERROR(LoadStateDict(*model, tensors, dir));
  return model;
}

Status SaveGenerationConfig(const ModelConfig& config, const std::string& path) {
  nlohmann::ordered_json g;
  g["_from_model_config"] = true;
  if (!config.extra_json.empty()) {
    const auto extra = nlohmann::json::parse(config.extra_json, nullptr, false);
    if (extra.is_object()) {
      for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
        if (extra.contains(key) && !extra[key].is_null()) g[key] = extra[key];
    }
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return IoError(path + ": cannot write");
  out << g.dump(2) << "\n";
  if (!out.flush()) return IoError(path + ": write failed");
  return Status::Ok();
}

Status CheckFiniteParameters(DecoderModel& model, const std::string& where) {
  torch::NoGradGuard no_grad;
  for (const auto& p : model.named_parameters()) {
    const int64_t bad = torch::logical_not(torch::isfinite(p.value())).sum().item<int64_t>();
    if (bad > 0)
      return InvalidArgument(where + ": parameter '" + p.key() + "' holds " + std::to_string(bad) +
                             " NaN or infinite values (of " + std::to_string(p.value().numel()) +
                             "); such a policy cannot be trained or sampled");
  }
  return Status::Ok();
}

Status SaveModelDir(DecoderModel& model, const std::string& dir, const TensorMap& tensors,
                    int64_t shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create directory: " + ec.message());
  ModelConfig config = model.config();
  config.torch_dtype = TorchDtypeName(model.options().dtype);
  CHAINRL_RETURN_IF_ERROR(SaveModelConfig(config, (fs::path(dir) / "config.json").string()));
  CHAINRL_RETURN_IF_ERROR(
      SaveGenerationConfig(config, (fs::path(dir) / "generation_config.json").string()));
  return SaveSafetensorsDir(dir, tensors, shard_bytes);
}

Status SaveModel(DecoderModel& model, const std::string& dir, int64_t shard_bytes) {
  return SaveModelDir(model, dir, ModelStateDict(model), shard_bytes);
}

Status CopyTokenizerFiles(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  for (const char* name :
       {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
        "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja"}) {
    std::error_code ec;
    if (!fs::exists(fs::path(from) / name, ec)) continue;
    fs::copy_file(fs::path(from) / name, fs::path(to) / name, fs::copy_options::overwrite_existing,
                  ec);
    if (ec) return IoError((fs::path(to) / name).string() + ": cannot copy: " + ec.message());
  }
  return Status::Ok();
}

Result<ModelOptions> ModelOptionsFromConfig(const Config& config, ModelRole role) {
  CHAINRL_ASSIGN_OR_RETURN(torch::ScalarType dtype, ParseTorchDtype(config.GetString("model.dtype")));
  CHAINRL_ASSIGN_OR_RETURN(torch::ScalarType compute,
                           ParseTorchDtype(config.GetString("model.compute_dtype")));
  const std::string& device_name = config.GetString("run.device");
  const torch::Device device(device_name);  // the schema admits only cpu, cuda and cuda:N
  if (device.is_cuda() && !torch::cuda::is_available())
    return InvalidArgument("run.device is '" + device_name +
                           "' but CUDA is not available to this build or machine");
  if (compute != dtype || compute != torch::kFloat) {
    // One product, softmax and cast in the compute dtype on the device: what every forward needs.
    try {
      torch::NoGradGuard no_grad;
      auto o = torch::TensorOptions().dtype(compute).device(device);
      torch::Tensor a = torch::ones({4, 8}, o), b = torch::ones({8, 8}, o);
      torch::Tensor y = torch::softmax(torch::linear(a, b), -1, torch::kFloat).to(compute);
      (void)y.sum().item<double>();
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (const size_t nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
      return InvalidArgument("model.compute_dtype '" + config.GetString("model.compute_dtype") +
                             "' is not supported on " + device.str() + " (" + what +
                             "); use float32 or bfloat16");
    }
  }
  if (role == ModelRole::kTraining)
    return ModelOptions().set_device(device).set_dtype(dtype).set_compute_dtype(compute);
  return ModelOptions().set_device(device).set_dtype(compute);
}

Status RequireCpuProcess(const ModelOptions& options, const Config& config) {
  if (options.device.is_cpu()) return Status::Ok();
  return Unimplemented("run.device is '" + config.GetString("run.device") +
                       "': the learner and actors of chainrl train run on the CPU in this "
                       "version; chainrl eval can use a GPU); set run.device = "
                       "\"cpu\"");
}

}  // namespace chainrl::model
