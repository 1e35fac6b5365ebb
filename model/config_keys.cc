// The keys of [model], [model.init] and [tokenizer]: the policy, the model created for a run
// and the tokenizer.
#include "model/config_keys.h"

#include "core/config_keys.h"

namespace chainrl {

void AddModelKeys(ConfigSchema* schema) {
  AddSection(schema, "model",
             "The policy: a Hugging Face model directory (config.json, safetensors).");
  AddSection(schema, "model.init",
             "A randomly initialised model, created at `model.path` when `enabled` and the "
             "directory does not exist yet (used by the quickstart and tests).");
  AddSection(schema, "lora",
             "Low-rank adapters (LoRA) on the attention and MLP projections, docs/ALGORITHMS.md "
             "§10. The same section must be in force for the learner and every actor.");
  AddSection(schema, "tokenizer", "The tokenizer (`tokenizer.json`) and chat template.");
  auto& k = schema->keys;
  k.push_back(Required(Str("model.path", "", "Hugging Face model directory of the policy.")));
  k.push_back(Str("model.dtype", "float32",
                  "Dtype of the learner's (master) weights, of checkpoints and of the exported "
                  "model.",
                  {"float32", "bfloat16", "float16"}));
  k.push_back(Str("model.compute_dtype", "float32",
                  "Dtype of matrix products, KV caches and actor weights: with float32 "
                  "model.dtype, bfloat16 here is mixed precision (autocast-style).",
                  {"float32", "bfloat16", "float16"}));
  k.push_back(Str("model.reference_path", "",
                  "Frozen reference model for KL; empty means the initial policy weights."));
  k.push_back(Bool("model.init.enabled", false,
                   "Create a random model at `model.path` if that directory does not exist."));
  k.push_back(Str("model.init.arch", "qwen2", "Architecture of the created model.",
                  {"qwen2", "qwen3", "llama"}));
  k.push_back(Int("model.init.layers", 2, 1, 512, "Decoder layers."));
  k.push_back(Int("model.init.hidden", 128, 8, 65536, "Hidden size."));
  k.push_back(Int("model.init.heads", 4, 1, 1024, "Attention heads."));
  k.push_back(Int("model.init.kv_heads", 2, 1, 1024, "Key/value heads (grouped-query attention)."));
  k.push_back(Int("model.init.intermediate", 384, 8, 1 << 20, "MLP intermediate size."));
  k.push_back(Int("model.init.vocab_size", 0, 0, 1 << 24,
                  "Vocabulary size; 0 takes it from the tokenizer."));
  k.push_back(Bool("model.init.tie_embeddings", true, "Tie the LM head to the input embeddings."));
  k.push_back(Int("model.init.max_position", 4096, 16, 1 << 24, "max_position_embeddings."));
  k.push_back(Float("model.init.rope_theta", 10000.0, 1.0, std::nullopt, "RoPE base."));
  k.push_back(Str("model.init.tokenizer", "bytes",
                  "'bytes': a byte-level tokenizer with a ChatML template (259 tokens); otherwise "
                  "a tokenizer directory whose files are copied."));
  k.push_back(Int("model.init.seed", 0, 0, std::nullopt, "Seed of the random initialisation."));

  // lora
  k.push_back(Bool("lora.enabled", false,
                   "Train low-rank adapters on the frozen base model instead of every weight: only "
                   "the adapters get gradients, optimizer state, checkpoints' moments and weight "
                   "publication; the KL/DPO reference is the base (adapters off), not a copy."));
  k.push_back(StrList(
      "lora.targets", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
      "Projections of every layer that get an adapter.",
      {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}));
  k.push_back(Int("lora.rank", 16, 1, 65536, "Adapter rank r."));
  k.push_back(Float("lora.alpha", 32.0, 0.0, std::nullopt,
                    "Scale numerator: the update is (alpha / r) B A, or (alpha / sqrt(r)) B A "
                    "with rslora.",
                    /*lo_exclusive=*/true));
  k.push_back(Float("lora.dropout", 0.0, 0.0, 0.999,
                    "Dropout on the adapters' input in training forwards; needs "
                    "learner.streambp = false (streaming backprop recomputes forwards, which "
                    "must draw the same values)."));
  k.push_back(Bool("lora.rslora", false, "Rank-stabilised scaling alpha / sqrt(r)."));
  k.push_back(Bool("lora.actor_merge", true,
                   "Actors fold each update's adapters into their weights (W0 + s B A in float32 "
                   "from a kept copy of W0, then cast): no adapter products in the decode "
                   "(chainrl bench lora: 1.17-1.31x the unmerged decode's tokens/s on the "
                   "Qwen2.5-0.5B shape), at the memory of a second copy of the adapted "
                   "projections' weights; false applies them unmerged."));
  k.push_back(Str("lora.base_dtype", "model",
                  "Dtype of the learner's frozen base weights: 'model' keeps model.dtype; "
                  "'compute' holds them in model.compute_dtype (bfloat16 halves their memory, and "
                  "the learner then computes as the actors do). The adapters stay float32.",
                  {"model", "compute"}));

  // tokenizer
  k.push_back(
      Str("tokenizer.path", "", "Directory with tokenizer.json; empty means `model.path`."));
  k.push_back(Bool("tokenizer.use_chat_template", true,
                   "Render prompts through the chat template of tokenizer_config.json."));
  k.push_back(Str("tokenizer.chat_template", "",
                  "A Jinja chat template overriding the one in tokenizer_config.json."));
  k.push_back(Str("tokenizer.system_prompt", "", "System message prepended to every prompt."));
}

}  // namespace chainrl
