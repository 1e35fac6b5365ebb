// config.json parsing and writing for qwen2 / qwen3 / llama.
#include "model/hf_config.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include "core/json_file.h"

namespace chainrl::model {
namespace {

using json = nlohmann::ordered_json;

// Typed key readers: absent keys keep the default; present keys of the wrong type are errors.
class Reader {
 public:
  Reader(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  Status Int(const char* key, int64_t* out, bool required) {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (required) return InvalidArgument(source_ + ": missing required key '" + key + "'");
      return Status::Ok();
    }
    if (!it->is_number_integer())
      return InvalidArgument(source_ + ": key '" + key + "' must be an integer, got " + it->dump());
    *out = it->get<int64_t>();
    return Status::Ok();
  }
  Status Float(const char* key, double* out) {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return Status::Ok();
    if (!it->is_number())
      return InvalidArgument(source_ + ": key '" + key + "' must be a number, got " + it->dump());
    *out = it->get<double>();
    return Status::Ok();
  }
  Status Bool(const char* key, bool* out) {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return Status::Ok();
    if (!it->is_boolean())
      return InvalidArgument(source_ + ": key '" + key + "' must be true or false, got " +
                             it->dump());
    *out = it->get<bool>();
    return Status::Ok();
  }
  Status String(const char* key, std::string* out) {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return Status::Ok();
    if (!it->is_string())
      return InvalidArgument(source_ + ": key '" + key + "' must be a string, got " + it->dump());
    *out = it->get<std::string>();
    return Status::Ok();
  }

 private:
  const json& j_;
  std::string source_;
};

}  // namespace

Result<Architecture> ParseArchitecture(const std::string& model_type) {
  if (model_type == "qwen2") return Architecture::kQwen2;
  if (model_type == "qwen3") return Architecture::kQwen3;
  if (model_type == "llama") return Architecture::kLlama;
  return Unimplemented("unsupported model_type '" + model_type +
                       "' (supported: qwen2, qwen3, llama)");
}

const char* ArchitectureName(Architecture arch) {
  switch (arch) {
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kQwen3:
      return "qwen3";
    case Architecture::kLlama:
      return "llama";
  }
  return "unknown";
}

Status ModelConfig::Validate(const std::string& source) const {
  auto positive = [&](const char* key, int64_t v) -> Status {
    if (v <= 0)
      return InvalidArgument(source + ": key '" + key + "' must be positive, got " +
                             std::to_string(v));
    return Status::Ok();
  };
  CHAINRL_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  CHAINRL_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  CHAINRL_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  CHAINRL_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  CHAINRL_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  CHAINRL_RETURN_IF_ERROR(positive("num_key_value_heads", num_key_value_heads));
  CHAINRL_RETURN_IF_ERROR(positive("head_dim", head_dim));
  CHAINRL_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  if (num_attention_heads % num_key_value_heads != 0)
    return InvalidArgument(
        source + ": key 'num_key_value_heads' (" + std::to_string(num_key_value_heads) +
        ") must divide num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  if (head_dim % 2 != 0)
    return InvalidArgument(source + ": key 'head_dim' must be even for rotary embeddings, got " +
                           std::to_string(head_dim));
  if (!(rms_norm_eps > 0)) return InvalidArgument(source + ": key 'rms_norm_eps' must be positive");
  if (!(rope_theta > 0)) return InvalidArgument(source + ": key 'rope_theta' must be positive");
  if (rope_scaling) {
    const auto& s = *rope_scaling;
    if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor) ||
        s.original_max_position_embeddings <= 0)
      return InvalidArgument(source +
                             ": key 'rope_scaling' needs factor > 0, 0 < low_freq_factor "
                             "< high_freq_factor and original_max_position_embeddings > 0");
  }
  return Status::Ok();
}

Result<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source) {
  CHAINRL_RETURN_IF_ERROR(CheckJson(json_text, source));  // key order kept: ordered_json
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgument(source + ": not a JSON object");
  Reader r(j, source);
  ModelConfig c;
  std::string model_type;
  CHAINRL_RETURN_IF_ERROR(r.String("model_type", &model_type));
  if (model_type.empty()) return InvalidArgument(source + ": missing required key 'model_type'");
  auto arch = ParseArchitecture(model_type);
  if (!arch.ok()) return arch.status().WithPrefix(source + ": key 'model_type'");
  c.arch = *arch;
  CHAINRL_RETURN_IF_ERROR(r.Int("vocab_size", &c.vocab_size, true));
  CHAINRL_RETURN_IF_ERROR(r.Int("hidden_size", &c.hidden_size, true));
  CHAINRL_RETURN_IF_ERROR(r.Int("intermediate_size", &c.intermediate_size, true));
  CHAINRL_RETURN_IF_ERROR(r.Int("num_hidden_layers", &c.num_hidden_layers, true));
  CHAINRL_RETURN_IF_ERROR(r.Int("num_attention_heads", &c.num_attention_heads, true));
  c.num_key_value_heads = c.num_attention_heads;
  CHAINRL_RETURN_IF_ERROR(r.Int("num_key_value_heads", &c.num_key_value_heads, false));
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  CHAINRL_RETURN_IF_ERROR(r.Int("head_dim", &c.head_dim, false));
  CHAINRL_RETURN_IF_ERROR(r.Int("max_position_embeddings", &c.max_position_embeddings, false));
  CHAINRL_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps));
  CHAINRL_RETURN_IF_ERROR(r.Float("rope_theta", &c.rope_theta));
  CHAINRL_RETURN_IF_ERROR(r.Float("initializer_range", &c.initializer_range));
  CHAINRL_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  CHAINRL_RETURN_IF_ERROR(r.Bool("attention_bias", &c.attention_bias));
  CHAINRL_RETURN_IF_ERROR(r.Bool("mlp_bias", &c.mlp_bias));
  CHAINRL_RETURN_IF_ERROR(r.String("torch_dtype", &c.torch_dtype));
  if (c.arch == Architecture::kQwen2) c.attention_bias = false;  // qwen2 ignores the key

  std::string act = "silu";
  CHAINRL_RETURN_IF_ERROR(r.String("hidden_act", &act));
  if (act != "silu")
    return Unimplemented(source + ": key 'hidden_act' is '" + act + "'; only 'silu' is supported");
  bool sliding = false;
  CHAINRL_RETURN_IF_ERROR(r.Bool("use_sliding_window", &sliding));
  if (sliding)
    return Unimplemented(source +
                         ": key 'use_sliding_window' is true; sliding-window attention "
                         "is not supported");
  if (c.mlp_bias && c.arch != Architecture::kLlama)
    return InvalidArgument(source + ": key 'mlp_bias' is only meaningful for llama");

  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object()) return InvalidArgument(source + ": key 'rope_scaling' must be an object");
    std::string type;
    Reader sr(*rs, source + ": rope_scaling");
    CHAINRL_RETURN_IF_ERROR(sr.String("type", &type));
    CHAINRL_RETURN_IF_ERROR(sr.String("rope_type", &type));
    if (type == "llama3") {
      Llama3RopeScaling s;
      CHAINRL_RETURN_IF_ERROR(sr.Float("factor", &s.factor));
      CHAINRL_RETURN_IF_ERROR(sr.Float("low_freq_factor", &s.low_freq_factor));
      CHAINRL_RETURN_IF_ERROR(sr.Float("high_freq_factor", &s.high_freq_factor));
      CHAINRL_RETURN_IF_ERROR(
          sr.Int("original_max_position_embeddings", &s.original_max_position_embeddings, false));
      c.rope_scaling = s;
    } else if (type != "default") {
      return Unimplemented(source + ": key 'rope_scaling' has type '" + type +
                           "'; only 'llama3' and 'default' are supported");
    }
  }
  c.extra_json = j.dump();
  CHAINRL_RETURN_IF_ERROR(c.Validate(source));
  return c;
}

Result<ModelConfig> LoadModelConfig(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(const std::string text, ReadFileBounded(path, kMaxSmallJsonBytes));
  return ParseModelConfig(text, path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j = json::object();
  if (!c.extra_json.empty()) {
    try {
      j = json::parse(c.extra_json);
    } catch (const std::exception&) {
      j = json::object();
    }
    if (!j.is_object()) j = json::object();
  }
  const char* arch_class = c.arch == Architecture::kQwen2   ? "Qwen2ForCausalLM"
                           : c.arch == Architecture::kQwen3 ? "Qwen3ForCausalLM"
                                                            : "LlamaForCausalLM";
  if (!j.contains("architectures")) j["architectures"] = {arch_class};
  j["model_type"] = ArchitectureName(c.arch);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["initializer_range"] = c.initializer_range;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = c.torch_dtype;
  if (c.arch != Architecture::kQwen2) j["attention_bias"] = c.attention_bias;
  if (c.arch == Architecture::kLlama) j["mlp_bias"] = c.mlp_bias;
  if (c.arch == Architecture::kQwen2 && !j.contains("use_sliding_window"))
    j["use_sliding_window"] = false;
  if (c.rope_scaling) {
    const auto& s = *c.rope_scaling;
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", s.factor},
                         {"low_freq_factor", s.low_freq_factor},
                         {"high_freq_factor", s.high_freq_factor},
                         {"original_max_position_embeddings", s.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  return j.dump(2) + "\n";
}

Status SaveModelConfig(const ModelConfig& config, const std::string& path) {
  const std::string text = ModelConfigToJson(config);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return IoError(path + ": cannot write");
    out << text;
    if (!out.flush()) return IoError(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return IoError(path + ": rename failed");
  return Status::Ok();
}

}  // namespace chainrl::model
