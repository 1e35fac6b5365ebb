// Hugging Face `config.json` for the decoder families chainrl runs (qwen2, qwen3, llama): parse
// with validation (errors name the file and key), write back keeping keys we do not interpret.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/status.h"

namespace chainrl::model {

enum class Architecture { kQwen2, kQwen3, kLlama };

// "qwen2" | "qwen3" | "llama" -> Architecture; error naming the value otherwise.
Result<Architecture> ParseArchitecture(const std::string& model_type);
const char* ArchitectureName(Architecture arch);  // the HF model_type

// rope_scaling {"rope_type": "llama3", ...} (Llama 3.1+): frequencies between the two wavelength
// bounds are interpolated, long wavelengths divided by `factor`.
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// The architecture hyper-parameters, with HF's defaults where a key is optional.
struct ModelConfig {
  Architecture arch = Architecture::kQwen2;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 32768;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double initializer_range = 0.02;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama/qwen3: bias on q,k,v,o. qwen2 always has q,k,v bias.
  bool mlp_bias = false;        // llama only
  std::optional<Llama3RopeScaling> rope_scaling;
  std::string torch_dtype = "float32";
  // The whole original JSON object (serialized), so keys we do not interpret (token ids,
  // architectures, transformers_version, ...) survive a parse -> write round trip. May be empty.
  std::string extra_json;

  // Qwen2 puts a bias on q/k/v (never o); llama and qwen3 follow attention_bias on all four.
  bool qkv_bias() const { return arch == Architecture::kQwen2 || attention_bias; }
  bool o_bias() const { return arch != Architecture::kQwen2 && attention_bias; }
  bool qk_norm() const { return arch == Architecture::kQwen3; }

  // Checks the invariants the decoder relies on (positive sizes, heads divisible by kv heads,
  // even head_dim); error naming `source` and the key.
  Status Validate(const std::string& source = "config") const;
};

// Parses config.json text; `source` names the file in errors. Rejects unsupported model types and
// features we do not implement (sliding window, rope scaling other than llama3, activations other
// than silu) with kUnimplemented, naming the key.
Result<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source);
Result<ModelConfig> LoadModelConfig(const std::string& path);

// config.json text (2-space indented): extra_json's keys, overwritten by ours.
std::string ModelConfigToJson(const ModelConfig& config);
Status SaveModelConfig(const ModelConfig& config, const std::string& path);

}  // namespace chainrl::model
