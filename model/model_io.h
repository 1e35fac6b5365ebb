// Loading and saving whole models in Hugging Face layout: config.json + model.safetensors (or
// shards with model.safetensors.index.json) + generation_config.json. Loading is a name-for-name
// copy of HF's keys into DecoderModel's parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "core/config.h"
#include "model/decoder.h"
#include "model/hf_config.h"
#include "model/safetensors.h"

namespace chainrl::model {

// The model's parameters by HF key (views of the live parameters, not copies).
TensorMap ModelStateDict(DecoderModel& model);

// Copies `tensors` into the model's parameters, converting dtype and device. On the CPU, a tensor
// that already has the parameter's dtype becomes the parameter's storage without a copy (a
// copy-on-write view of the mapped file). Error, naming `source`, listing every missing name,
// every unexpected name and every shape mismatch. Ignored: "lm_head.weight" when the embeddings
// are tied, and "*.rotary_emb.inv_freq" buffers written by old exporters.
Status LoadStateDict(DecoderModel& model, const TensorMap& tensors, const std::string& source);

// Like LoadStateDict but always copies into the parameters' existing storage (same checks and
// errors), so tensors that alias the parameters (optimizer state, views handed to other parts)
// stay valid and the storage stays owned by the model; for resuming training.
Status CopyStateDict(DecoderModel& model, const TensorMap& tensors, const std::string& source);

// A new model of `model`'s configuration built with `options`, holding a copy of its weights
// (dtype and device converted) and of its LoRA adapters if it has them (in options.dtype): a
// frozen reference, or an inference copy in another dtype.
std::shared_ptr<DecoderModel> CopyModel(DecoderModel& model, const ModelOptions& options);

// Reads `dir`/config.json and the weights; the model is built with `options` (dtype, device).
// REQUIRES nothing; every failure is an error naming the file.
Result<std::shared_ptr<DecoderModel>> LoadModel(const std::string& dir,
                                                const ModelOptions& options = {});

// Reads `dir`/config.json only and builds the model with freshly initialised parameters, for a
// process whose weights come from elsewhere (an actor on a host without the weight files).
Result<std::shared_ptr<DecoderModel>> BuildModelFromConfig(const std::string& dir,
                                                           const ModelOptions& options = {});

// InvalidArgument naming `where`, the first parameter holding NaN or infinite values and how many:
// a policy with them samples nothing its learner can accept (every logprob is NaN), so it is
// refused when loaded rather than left to stall a run.
Status CheckFiniteParameters(DecoderModel& model, const std::string& where);

// Writes config.json (torch_dtype = the parameters' dtype), generation_config.json and the
// weights into `dir` (created if needed); one file when `shard_bytes` <= 0 or the weights fit,
// shards of at most `shard_bytes` otherwise. Weights are saved in the parameters' dtype, so
// SaveModel -> LoadModel with the same dtype is bit-exact.
Status SaveModel(DecoderModel& model, const std::string& dir, int64_t shard_bytes = 0);
// SaveModel with `tensors` (HF keys of `model`'s parameters, e.g. merged LoRA weights) as the
// weights; config.json names the model's parameter dtype.
Status SaveModelDir(DecoderModel& model, const std::string& dir, const TensorMap& tensors,
                    int64_t shard_bytes = 0);

// generation_config.json with bos/eos token ids taken from the config's extra keys if present.
Status SaveGenerationConfig(const ModelConfig& config, const std::string& path);

// Copies the tokenizer files present in `from` (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, vocab.json, merges.txt, tokenizer.model, added_tokens.json,
// chat_template.jinja) into `to`. Error naming the file that could not be copied.
Status CopyTokenizerFiles(const std::string& from, const std::string& to);

// The HF torch_dtype name ("float32", "bfloat16", "float16") of a dtype, and back.
std::string TorchDtypeName(torch::ScalarType type);
Result<torch::ScalarType> ParseTorchDtype(const std::string& name);

// Who holds a model: the learner trains it (parameters in model.dtype, the master weights, and
// compute in model.compute_dtype: mixed precision when they differ); actors, the frozen reference
// and evaluation only run it (parameters and compute both in model.compute_dtype: inference keeps
// no master copy).
enum class ModelRole { kTraining, kInference };

// The options of a model for `role` from run.device, model.dtype and model.compute_dtype. Errors
// name the key: a device torch does not know, CUDA asked where there is none, or a compute dtype
// the device cannot run (probed with one small matrix product and softmax, e.g. float16 on a CPU
// build without half-precision matmul).
Result<ModelOptions> ModelOptionsFromConfig(const Config& config, ModelRole role);

// An error naming run.device when `options` place the model on a GPU: the learner and actor
// processes run on the CPU in this version (their batches and transfers are host tensors).
Status RequireCpuProcess(const ModelOptions& options, const Config& config);

}  // namespace chainrl::model
