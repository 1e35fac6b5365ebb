// LoRA adapters in files and configs: [lora] to LoraOptions, the PEFT adapter directory
// (adapter_config.json + adapter_model.safetensors, what peft's PeftModel.from_pretrained loads),
// and the merged Hugging Face model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/status.h"
#include "model/decoder.h"

namespace chainrl::model {

// [lora] of `config`: nullopt when lora.enabled is false. InvalidArgument naming the key.
Result<std::optional<LoraOptions>> LoraOptionsFromConfig(const Config& config);

// Gives `model` the adapters [lora] asks for, in `dtype`, A drawn from run.seed (every process
// of a run starts from the same adapters; actors are sent the learner's before they generate).
// Without [lora] nothing. Returns whether adapters were attached.
Result<bool> AttachLoraFromConfig(DecoderModel& model, const Config& config,
                                  torch::ScalarType dtype);

// Writes `dir`/adapter_config.json (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
// lora_dropout, target_modules, use_rslora, base_model_name_or_path = `base_model`) and
// `dir`/adapter_model.safetensors (PEFT's tensor names, DecoderModel::LoraParameters, in float32).
// REQUIRES model.has_lora(). IoError naming the file.
Status SaveLoraAdapter(DecoderModel& model, const std::string& dir, const std::string& base_model);

// Copies `dir`/adapter_model.safetensors into the model's adapters after checking
// adapter_config.json against them (rank, alpha, targets, rsLoRA): an error names the file and
// the first field or tensor that differs; nothing is changed then.
Status LoadLoraAdapter(DecoderModel& model, const std::string& dir);

// Whether `dir` holds a PEFT adapter (adapter_config.json).
bool HasLoraAdapter(const std::string& dir);

// Writes the model with its adapters merged (W + s B A in float32, then cast to the model's
// dtype) as a Hugging Face model directory, as SaveModel does for plain models.
Status SaveMergedModel(DecoderModel& model, const std::string& dir, int64_t shard_bytes = 0);

}  // namespace chainrl::model
