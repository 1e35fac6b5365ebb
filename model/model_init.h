// Creating a randomly initialised model directory in Hugging Face layout (`chainrl init-model`,
// and `chainrl train` when [model.init] is enabled).
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "model/hf_config.h"

namespace chainrl::model {

struct InitModelSpec {
  Architecture arch = Architecture::kQwen2;
  int64_t layers = 2, hidden = 128, heads = 4, kv_heads = 0 /*0: heads*/, intermediate = 384;
  int64_t head_dim = 0;  // 0: hidden / heads
  int64_t max_position = 32768;
  double rope_theta = 10000.0;
  bool tie_embeddings = false;
  std::string dtype = "float32";
  uint64_t seed = 0;
  // Where the vocabulary comes from: "bytes" writes the byte-level tokenizer (byte_tokenizer.h);
  // any other non-empty value is a tokenizer directory whose files are copied; empty means no
  // tokenizer, vocab_size must then be set.
  std::string tokenizer;
  int64_t vocab_size = 0;  // 0: from the tokenizer
};

struct InitModelReport {
  int64_t vocab_size = 0;
  int64_t parameters = 0;
};

// Writes config.json, model.safetensors, generation_config.json and the tokenizer files into
// `out` (created). Errors name the option or file at fault.
Result<InitModelReport> InitModelDir(const InitModelSpec& spec, const std::string& out);

}  // namespace chainrl::model
