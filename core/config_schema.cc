// chainrl's run-configuration schema: every TOML key, its type, default, valid range and one line
// of documentation. docs/CONFIG.md is generated from this file (`chainrl config docs`).
#include <cstdint>
#include <limits>
#include <regex>

#include "core/config.h"

namespace chainrl {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
using Strings = std::vector<std::string>;

KeySpec Bool(std::string key, bool def, std::string doc) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kBool;
  k.default_value = def;
  k.doc = std::move(doc);
  return k;
}

KeySpec Int(std::string key, int64_t def, std::optional<double> lo, std::optional<double> hi,
            std::string doc) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kInt;
  k.default_value = def;
  k.min = lo;
  k.max = hi;
  k.doc = std::move(doc);
  return k;
}

KeySpec Float(std::string key, double def, std::optional<double> lo, std::optional<double> hi,
              std::string doc, bool lo_exclusive = false) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kFloat;
  k.default_value = def;
  k.min = lo;
  k.max = hi;
  k.min_exclusive = lo_exclusive;
  k.doc = std::move(doc);
  return k;
}

KeySpec Str(std::string key, std::string def, std::string doc, Strings choices = {}) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kString;
  k.default_value = std::move(def);
  k.choices = std::move(choices);
  k.doc = std::move(doc);
  return k;
}

KeySpec StrList(std::string key, Strings def, std::string doc, Strings choices = {}) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kStringList;
  k.default_value = std::move(def);
  k.choices = std::move(choices);
  k.doc = std::move(doc);
  return k;
}

KeySpec IntList(std::string key, std::vector<int64_t> def, std::optional<double> lo,
                std::optional<double> hi, std::string doc) {
  KeySpec k = Int(std::move(key), 0, lo, hi, std::move(doc));
  k.type = ValueType::kIntList;
  k.default_value = std::move(def);
  return k;
}

KeySpec FloatList(std::string key, std::vector<double> def, std::optional<double> lo,
                  std::optional<double> hi, std::string doc) {
  KeySpec k = Float(std::move(key), 0, lo, hi, std::move(doc));
  k.type = ValueType::kFloatList;
  k.default_value = std::move(def);
  return k;
}

KeySpec Required(KeySpec k) {
  k.required = true;
  return k;
}

KeySpec Checked(KeySpec k, std::string (*check)(const ConfigValue&)) {
  k.check = check;
  return k;
}

KeySpec Refusing(KeySpec k, ConfigValue value, std::string reason) {
  k.refused.push_back({std::move(value), std::move(reason)});
  return k;
}

Strings AlgorithmNames() {
  Strings names = PolicyGradientAlgorithms();
  const Strings& preference = PreferenceAlgorithms();
  names.insert(names.end(), preference.begin(), preference.end());
  return names;
}

std::string CheckDevice(const ConfigValue& v) {
  static const std::regex re("cpu|cuda|cuda:[0-9]+");
  const std::string& s = std::get<std::string>(v);
  if (std::regex_match(s, re)) return "";
  return "'" + s + "' is not a device (expected cpu, cuda or cuda:N)";
}

std::string CheckEndpoint(const ConfigValue& v) {
  const std::string& s = std::get<std::string>(v);
  if (s.empty() || s.rfind("tcp://", 0) == 0 || s.rfind("ipc://", 0) == 0) return "";
  return "'" + s + "' is not an endpoint (expected tcp://HOST:PORT or ipc://PATH)";
}

std::string CheckAddress(const ConfigValue& v) {
  static const std::regex re(R"((\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5})");
  const std::string& s = std::get<std::string>(v);
  if (s.empty() || std::regex_match(s, re)) return "";
  return "'" + s + "' is not HOST:PORT (port 0 picks a free one)";
}

ConfigSchema Build() {
  ConfigSchema s;
  s.sections = {"run",        "model",          "model.init", "tokenizer",  "data",
                "rollout",    "actors",         "learner",    "algorithm",  "length_shaping",
                "curriculum", "rewards_common", "metrics",    "checkpoint", "distributed",
                "sft"};
  s.section_docs = {
      {"run", "The run as a whole: name, seed, where outputs go."},
      {"model", "The policy: a Hugging Face model directory (config.json, safetensors)."},
      {"model.init",
       "A randomly initialised model, created at `model.path` when `enabled` and the directory "
       "does not exist yet (used by the quickstart and tests)."},
      {"tokenizer", "The tokenizer (`tokenizer.json`) and chat template."},
      {"data", "Training and evaluation data: a built-in synthetic task or JSONL files."},
      {"rollout", "Generation by the actors: sampling, batching, segments and truncation."},
      {"actors", "The actor processes and their connection to the learner."},
      {"learner", "The learner process: optimiser, batching, staleness, streaming backprop."},
      {"algorithm", "The objective and its coefficients, named as peer frameworks name them."},
      {"length_shaping", "Length rewards and penalties added to the task reward."},
      {"curriculum",
       "Token-budget schedules, difficulty filtering and weighting, and multi-stage runs."},
      {"rewards_common",
       "Settings shared by every reward; each reward itself is one `[[rewards]]` table."},
      {"metrics", "Prometheus metrics served by every process."},
      {"checkpoint", "Checkpoints: where, how often, how many are kept, resume."},
      {"sft",
       "Supervised warm-up before RL: cross-entropy on the reference solutions of the training "
       "data (built-in tasks carry them; JSONL data in the answer field), run by the learner."},
      {"distributed",
       "Data parallelism of the learner over c10d process groups. `chainrl train` starts "
       "`learner_ranks` learner processes on this host; torchrun, Slurm or Kubernetes can start "
       "`chainrl learner` ranks themselves (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Rank 0 "
       "talks to the actors, checkpoints and publishes weights, and splits every update's batch "
       "across the ranks; gradients are summed, so each step equals one process's on the whole "
       "batch. Every rank must be able to read checkpoint.dir to resume; under a launcher that "
       "restarts failed groups (torchrun --max-restarts), set checkpoint.resume = \"latest\" and a "
       "fixed run.run_dir, so that a restarted rank 0 finds the checkpoints."},
  };

  const std::vector<std::optional<double>> none;
  auto& k = s.keys;
  // run
  k.push_back(
      Str("run.name", "chainrl", "Name of the run, used in logs and as the `run_id` label."));
  k.push_back(Int("run.seed", 0, 0, std::nullopt, "Seed of every random stream of the run."));
  k.push_back(
      Str("run.run_dir", "",
          "Output directory; empty means `runs/<name>-<timestamp>`. `--run-dir` overrides."));
  k.push_back(Int("run.total_steps", 100, 1, std::nullopt, "Number of learner updates to run."));
  k.push_back(
      Checked(Str("run.device", "cpu", "Device of the learner and actors: cpu, cuda, cuda:N."),
              CheckDevice));
  k.push_back(Str("run.log_level", "info", "Least severe log level printed.",
                  {"debug", "info", "warn", "error"}));
  k.push_back(Int("run.eval_every", 0, 0, std::nullopt,
                  "Evaluate on the held-out set every N steps (0: only at the end)."));

  // model
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

  // tokenizer
  k.push_back(
      Str("tokenizer.path", "", "Directory with tokenizer.json; empty means `model.path`."));
  k.push_back(Bool("tokenizer.use_chat_template", true,
                   "Render prompts through the chat template of tokenizer_config.json."));
  k.push_back(Str("tokenizer.chat_template", "",
                  "A Jinja chat template overriding the one in tokenizer_config.json."));
  k.push_back(Str("tokenizer.system_prompt", "", "System message prepended to every prompt."));

  // data
  k.push_back(Str("data.source", "task", "Where examples come from.", {"task", "jsonl"}));
  k.push_back(Str("data.task", "arithmetic", "Built-in synthetic task family (data.source = task).",
                  {"arithmetic", "countdown"}));
  k.push_back(Int("data.task_min_size", 1, 1, 64,
                  "Smallest problem size of the task (arithmetic: operand digits)."));
  k.push_back(Int("data.task_max_size", 3, 1, 64, "Largest problem size of the task."));
  k.push_back(Str("data.embeddings_field", "embeddings",
                  "Field holding precomputed prompt embeddings, \"FILE.safetensors#TENSOR\" (FILE "
                  "relative to the JSONL file), spliced at data.embedding_placeholder."));
  k.push_back(Str("data.embedding_placeholder", "",
                  "The token (text of one token of the tokenizer) whose occurrences in a prompt "
                  "take the rows of its embeddings, in order. Required when examples carry them."));
  k.push_back(Str("data.task_ops", "+-*",
                  "Arithmetic task: the operations drawn, a non-empty subset of \"+-*\"."));
  k.push_back(Float("data.task_verbose_fraction", 0.6, 0.0, 1.0,
                    "Worked solutions (SFT warm-up): share written step by step in words."));
  k.push_back(Float("data.task_compact_fraction", 0.0, 0.0, 1.0,
                    "Share with the same steps in terse notation (arithmetic; about a third of "
                    "the tokens)."));
  k.push_back(Float("data.task_brief_fraction", 0.3, 0.0, 1.0,
                    "Share with only the result of each step."));
  k.push_back(Float("data.task_direct_fraction", 0.1, 0.0, 1.0,
                    "Share with the answer alone. The four shares are normalised."));
  k.push_back(Int("data.num_train_examples", 20000, 1, std::nullopt,
                  "Examples generated for training (data.source = task)."));
  k.push_back(Int("data.num_eval_examples", 200, 0, std::nullopt, "Held-out examples."));
  k.push_back(StrList("data.train_files", {}, "JSONL training files (data.source = jsonl)."));
  k.push_back(StrList("data.eval_files", {}, "JSONL held-out files."));
  k.push_back(Str("data.prompt_field", "prompt", "Field holding the prompt text."));
  k.push_back(Str("data.messages_field", "messages",
                  "Field holding chat messages (used instead of prompt_field when present)."));
  k.push_back(Str("data.answer_field", "answer", "Field holding the reference answer."));
  k.push_back(Str("data.id_field", "id", "Field holding the example id (line number if absent)."));
  k.push_back(Str("data.chosen_field", "chosen", "Preference data: the chosen response."));
  k.push_back(Str("data.rejected_field", "rejected",
                  "Preference data: the rejected response (a string or a list for LOGO)."));
  k.push_back(
      Str("data.on_bad_line", "error",
          "A malformed JSONL line stops the run naming file:line, or is skipped and counted.",
          {"error", "skip"}));
  k.push_back(Bool("data.shuffle", true, "Shuffle the training order each epoch (seeded)."));
  k.push_back(StrList("data.difficulty_buckets", {},
                      "Names of difficulty buckets (an example's `difficulty` field)."));
  k.push_back(FloatList("data.bucket_weights", {}, 0.0, std::nullopt,
                        "Sampling weight of each difficulty bucket, same order."));

  // rollout
  k.push_back(Int("rollout.group_size", 8, 1, 1024, "Samples per prompt (G)."));
  k.push_back(Int("rollout.prompts_per_step", 16, 1, 1 << 20, "Prompt groups trained per step."));
  k.push_back(Int("rollout.max_new_tokens", 512, 1, 1 << 24,
                  "Upper bound of a response's length (the curriculum's budget can lower it)."));
  k.push_back(Float("rollout.temperature", 1.0, 0.0, 10.0, "Sampling temperature; 0 is greedy."));
  k.push_back(Int("rollout.top_k", 0, 0, std::nullopt, "Top-k sampling; 0 disables."));
  k.push_back(Float("rollout.top_p", 1.0, 0.0, 1.0, "Nucleus sampling mass; 1 disables.", true));
  k.push_back(
      StrList("rollout.stop_strings", {}, "Strings that end a response (matched across tokens)."));
  k.push_back(IntList("rollout.stop_token_ids", {}, 0, std::nullopt,
                      "Token ids that end a response, in addition to the tokenizer's EOS."));
  k.push_back(Int("rollout.max_batch_size", 64, 1, 1 << 16, "Sequences decoded together."));
  k.push_back(Int("rollout.segment_tokens", 0, 0, 1 << 24,
                  "Segment rollout: new tokens per sample per lease; a sample still going "
                  "comes back unfinished and the learner carries it into a later lease, "
                  "preferably to the same actor, which resumes it from the KV it kept unless "
                  "new weights arrived meanwhile. 0 decodes to the end."));
  k.push_back(Float("rollout.segment_min_occupancy", 0.0, 0.0, 1.0,
                    "Segment rollout: an actor's generation ends once nothing waits and fewer "
                    "sequences are busy than this fraction of the most at once, instead of idling "
                    "the freed slots while the rest finish their segments; those come back "
                    "unfinished with fewer new tokens and are carried into a later lease. 0 runs "
                    "every sample to its segment end."));
  k.push_back(Bool("rollout.repetition_detection", true,
                   "End a sample that loops (flagged for the repetition penalty)."));
  k.push_back(Int("rollout.repetition_min_repeats", 8, 2, 1 << 20,
                  "Repeats of a trailing block that count as a loop."));
  k.push_back(Refusing(
      Bool("rollout.compute_entropy", false,
           "Per-token entropy of the sampling distribution, computed by the actors' engine. Only "
           "false is accepted: the trajectories sent to the learner have no field for it, so "
           "true is refused (not implemented yet). The learner's entropy of the policy is the "
           "chainrl_entropy metric."),
      true,
      "per-token sample entropy is not implemented yet (the trajectories sent to the learner "
      "have no field for it)"));
  k.push_back(Int("rollout.embedding_cache_bytes", 256ll << 20, 1, std::nullopt,
                  "Bound of the prompt-embedding cache (LRU)."));
  k.push_back(Int("rollout.prompt_hold_bytes", 256ll << 20, 0, std::nullopt,
                  "Bound of the prompt KV an actor holds for group members that start after "
                  "the first (more samples than free slots), so that a group's prompt is "
                  "prefilled once; 0 prefills it again for each batch of them."));

  // actors
  k.push_back(Int("actors.count", 2, 0, 1024, "Actor processes started by `chainrl train`."));
  k.push_back(Checked(Str("actors.connect", "",
                          "Learner endpoint for `chainrl actor` (tcp://HOST:PORT or ipc://PATH)."),
                      CheckEndpoint));
  k.push_back(Int("actors.threads", 1, 1, 1024,
                  "Intra-op (LibTorch) compute threads of each actor process. The environment "
                  "variable CHAINRL_THREADS, when it holds a positive integer, overrides it (as it "
                  "does learner.threads)."));
  k.push_back(Int("actors.credits", 2, 1, 1024, "Work items an actor may hold at once."));
  k.push_back(Float("actors.heartbeat_interval_seconds", 1.0, 0.01, 3600.0,
                    "Interval between an actor's heartbeats."));
  k.push_back(
      Float("actors.heartbeat_timeout_seconds", 10.0, 0.05, 86400.0,
            "Silence after which the learner declares an actor dead and re-leases its work."));
  k.push_back(Int("actors.max_restarts", 10, 0, std::nullopt,
                  "Restarts of one actor by the launcher before the run fails."));
  k.push_back(Float("actors.restart_backoff_seconds", 1.0, 0.0, 3600.0,
                    "First restart delay; doubles on each restart of the same actor."));

  // learner
  k.push_back(Checked(Str("learner.bind", "ipc://",
                          "Endpoint the learner binds; `ipc://` alone means a socket in the run "
                          "directory. Loopback unless set otherwise."),
                      CheckEndpoint));
  k.push_back(Int("learner.threads", 0, 0, 1024,
                  "Compute threads; 0 uses every core (shared by the learner ranks on one host)."));
  k.push_back(Float("learner.lr", 1e-6, 0.0, 1.0, "Peak learning rate (AdamW).", true));
  k.push_back(Float("learner.weight_decay", 0.01, 0.0, 10.0,
                    "Decoupled weight decay; norms and biases are never decayed."));
  k.push_back(Float("learner.adam_beta1", 0.9, 0.0, 1.0, "AdamW beta1."));
  k.push_back(Float("learner.adam_beta2", 0.999, 0.0, 1.0, "AdamW beta2."));
  k.push_back(Float("learner.adam_eps", 1e-8, 0.0, 1.0, "AdamW epsilon.", true));
  k.push_back(Str("learner.lr_schedule", "constant", "Learning-rate schedule after warm-up.",
                  {"constant", "cosine"}));
  k.push_back(Int("learner.warmup_steps", 0, 0, std::nullopt, "Linear warm-up steps."));
  k.push_back(Float("learner.min_lr_ratio", 0.0, 0.0, 1.0, "Cosine floor as a fraction of lr."));
  k.push_back(Float("learner.max_grad_norm", 1.0, 0.0, std::nullopt,
                    "Clip the global gradient norm; 0 disables."));
  k.push_back(Int("learner.ppo_epochs", 1, 1, 1024, "Passes over each rollout batch."));
  k.push_back(Int("learner.mini_batches", 1, 1, 1 << 20, "Optimiser steps per pass."));
  k.push_back(Int("learner.micro_batch_tokens", 8192, 1, std::nullopt,
                  "Tokens per forward/backward (gradient accumulation beyond it)."));
  k.push_back(Int("learner.max_off_policy_steps", 1, 0, 1 << 20,
                  "Staleness bound: policy versions a trajectory may lag the learner."));
  k.push_back(Refusing(
      Str("learner.stale_policy", "drop",
          "What happens to a result older than the bound: drop discards it and the group is "
          "generated again; flag trains on it like any other (its ratio is still taken against "
          "its behaviour logprobs and clipped), counted as flagged in the work ledger. correct "
          "(importance-sampling correction) is refused: not implemented yet.",
          {"drop", "flag"}),
      std::string("correct"),
      "importance-sampling correction of stale samples is not implemented yet"));
  k.push_back(Float("learner.lease_timeout_seconds", 1800.0, 0.0, 1e8,
                    "A lease of prompt groups not completed within this time is revoked and its "
                    "groups handed out again, even if its actor is alive.",
                    true));
  k.push_back(Int("learner.lease_max_attempts", 5, 0, 1 << 20,
                  "Revoked leases after which a prompt group is declared lost and not handed out "
                  "again (a prompt that kills every actor must not stall the run); 0 retries "
                  "forever."));
  k.push_back(Str("learner.old_logprobs", "behaviour",
                  "Importance-ratio denominator: stored behaviour logprobs, or recomputed by the "
                  "learner for the whole sample (segment rollouts).",
                  {"behaviour", "recompute"}));
  k.push_back(
      Bool("learner.streambp", true,
           "Streaming backprop: exact gradients with activation memory bounded by a chunk."));
  k.push_back(Int("learner.logits_chunk_tokens", 512, 1, std::nullopt,
                  "Tokens per chunk of the LM head: the loss's forward and backward, and the "
                  "no-gradient passes (recomputed old logprobs, reference logprobs, DMMPT "
                  "entropies)."));
  k.push_back(
      Int("learner.layer_chunk_tokens", 0, 0, std::nullopt,
          "Tokens per chunk of the layer-wise backward; 0 chooses from memory_budget_bytes."));
  k.push_back(Int("learner.memory_budget_bytes", 0, 0, std::nullopt,
                  "Activation memory budget for automatic chunk sizes; 0 is 1/4 of free memory."));

  // algorithm
  k.push_back(Refusing(
      Str("algorithm.name", "grpo",
          "The objective. A policy-gradient recipe (clip, KL and aggregation of "
          "learner/objectives.h PolicyLossPreset): grpo, dr_grpo, dapo, gspo, dler (clip "
          "0.2/0.28, dual clip 10, k3 KL 5e-4, token-mean), campo (the same without KL) or "
          "cispo (clipped, stop-gradient importance weights on every token); "
          "dapo, dler and campo also turn on algorithm.dynamic_sampling. Or a preference loss: "
          "dpo, ipo, simpo, logo. [algorithm] keys set in the file override the recipe. dler "
          "and campo set the loss only: their length rewards are length_shaping.methods "
          "\"dler\" and \"campo_repetition\". sft is refused: an SFT-only run is not "
          "implemented; supervised fine-tuning is the [sft] warm-up before RL.",
          AlgorithmNames()),
      std::string("sft"),
      "an SFT-only run is not implemented; supervised fine-tuning runs as the warm-up before "
      "RL (sft.steps)"));
  k.push_back(Str("algorithm.loss_agg_mode", "seq-mean-token-mean", "Loss aggregation.",
                  {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"}));
  k.push_back(Float("algorithm.clip_ratio_low", 0.2, 0.0, 1.0, "PPO clip epsilon below 1."));
  k.push_back(Float("algorithm.clip_ratio_high", 0.2, 0.0, 100.0,
                    "PPO clip epsilon above 1 (DAPO clip-higher: 0.28)."));
  k.push_back(Float("algorithm.dual_clip_c", 0.0, 0.0, std::nullopt,
                    "Dual-clip bound for negative advantages (> 1 enables; 3 or 10 typical)."));
  k.push_back(Float("algorithm.kl_coef", 0.0, 0.0, std::nullopt,
                    "Coefficient of the KL to the reference model; 0 loads no reference."));
  k.push_back(Str("algorithm.kl_estimator", "k3", "KL estimator.", {"k3", "k3+"}));
  k.push_back(Float("algorithm.entropy_coef", 0.0, 0.0, std::nullopt, "Entropy bonus."));
  k.push_back(Bool("algorithm.norm_adv_by_std", true,
                   "Divide group advantages by their std (false for Dr.GRPO)."));
  k.push_back(Float("algorithm.adv_eps", 1e-6, 0.0, 1.0, "Epsilon added to the group std."));
  k.push_back(Int("algorithm.loss_length_norm", 0, 0, std::nullopt,
                  "Constant L_max of seq-mean-token-sum-norm; 0 uses rollout.max_new_tokens."));
  k.push_back(Bool("algorithm.dynamic_sampling", false,
                   "DAPO: over-generate until the batch holds only informative groups."));
  k.push_back(Int("algorithm.max_num_gen_batches", 10, 0, std::nullopt,
                  "DAPO: after this many generation rounds without a full batch, a step trains "
                  "on the groups it has (0: unlimited)."));
  k.push_back(Bool("algorithm.overlong_filtering", false, "Mask the loss of truncated samples."));
  k.push_back(Bool("algorithm.mastered_token_mask", false,
                   "UloRL DMMPT: mask mastered positive tokens against entropy collapse."));
  k.push_back(Float("algorithm.mastered_prob_threshold", 0.99, 0.0, 1.0, "DMMPT tau."));
  k.push_back(
      Float("algorithm.mastered_entropy_threshold", 0.2, 0.0, std::nullopt, "DMMPT sigma."));
  k.push_back(Float("algorithm.beta", 0.1, 0.0, std::nullopt,
                    "DPO/IPO beta; SimPO/LOGO reward scale.", true));
  k.push_back(Float("algorithm.label_smoothing", 0.0, 0.0, 0.5, "cDPO/SimPO label smoothing."));
  k.push_back(Bool("algorithm.reference_free", false, "DPO with a uniform reference."));
  k.push_back(
      Float("algorithm.gamma_beta_ratio", 0.25, 0.0, std::nullopt, "SimPO/LOGO margin ratio."));
  k.push_back(Bool("algorithm.simpo_hinge", false, "SimPO hinge loss instead of sigmoid."));
  k.push_back(Float("algorithm.sft_weight", 0.0, 0.0, std::nullopt,
                    "Weight of the chosen-response cross-entropy (LOGO lambda)."));
  k.push_back(Str("algorithm.preference_source", "offline",
                  "Preference pairs from a JSONL file or from each group's best/worst rollouts.",
                  {"offline", "online"}));

  // length shaping
  k.push_back(StrList("length_shaping.methods", {},
                      "Length rewards/penalties: at most one of dler, laser, laser_d, laser_de, "
                      "grpo_lambda sets the base reward; kimi, dapo_overlong, campo_repetition add "
                      "to it.",
                      {"kimi", "dapo_overlong", "dler", "laser", "laser_d", "laser_de",
                       "grpo_lambda", "drpo", "campo_repetition"}));
  k.push_back(
      Float("length_shaping.kimi_weight", 0.4, 0.0, std::nullopt, "Kimi length reward weight."));
  k.push_back(Int("length_shaping.overlong_buffer_len", 128, 0, std::nullopt,
                  "DAPO soft overlong punishment: L_cache."));
  k.push_back(Float("length_shaping.overlong_penalty_factor", 1.0, 0.0, std::nullopt,
                    "DAPO soft overlong punishment factor."));
  k.push_back(Float("length_shaping.laser_alpha", 0.5, 0.0, std::nullopt, "LASER reward alpha."));
  k.push_back(Int("length_shaping.laser_target_tokens", 256, 1, std::nullopt,
                  "LASER target length L_T (LASER-D's initial targets)."));
  k.push_back(Str("length_shaping.laser_mode", "reward", "LASER variant.",
                  {"reward", "penalty", "hybrid"}));
  k.push_back(Int("length_shaping.laser_d_update_every", 20, 1, std::nullopt,
                  "LASER-D/DE: steps between target updates (thresholds: multiples of "
                  "rollout.max_new_tokens/16)."));
  k.push_back(Float("length_shaping.grpo_lambda_fraction", 0.2, 0.0, 1.0,
                    "GRPO-lambda: fraction of groups (highest correctness) that are penalised."));
  k.push_back(Float("length_shaping.drpo_lambda", 0.1, 0.0, std::nullopt,
                    "DRPO length temperature.", true));
  k.push_back(Float("length_shaping.drpo_tau", 10.0, 0.0, std::nullopt, "DRPO tau.", true));
  k.push_back(Float("length_shaping.repetition_penalty", 0.1, 0.0, std::nullopt,
                    "CAMPO penalty for looping responses that hit the length limit."));

  // curriculum
  k.push_back(Str("curriculum.budget_schedule", "constant",
                  "Token budget per step (\"train long, think short\"): constant; linear from "
                  "budget_start to budget_end over budget_period steps; exponential, "
                  "budget_start times budget_decay every budget_period steps; step, the budget "
                  "of the last of budget_milestone_steps reached (budget_start before the "
                  "first). Steps count from budget_start_step.",
                  {"constant", "linear", "exponential", "step"}));
  k.push_back(Int("curriculum.budget_start", 0, 0, std::nullopt,
                  "Budget at step 0; 0 uses rollout.max_new_tokens."));
  k.push_back(Int("curriculum.budget_end", 0, 0, std::nullopt,
                  "Final budget (linear); floor (exponential, step)."));
  k.push_back(
      Float("curriculum.budget_decay", 0.7, 0.0, 1.0, "Exponential decay factor gamma.", true));
  k.push_back(Int("curriculum.budget_period", 10, 1, std::nullopt,
                  "Steps per decay (exponential) or to reach the end (linear)."));
  k.push_back(IntList("curriculum.budget_milestone_steps", {}, 0, std::nullopt,
                      "Step schedule: the steps (counted from budget_start_step, strictly "
                      "increasing) at which the budget changes. Required by, and only allowed "
                      "with, budget_schedule = \"step\"."));
  k.push_back(IntList("curriculum.budget_milestone_tokens", {}, 1, std::nullopt,
                      "Step schedule: the budget from each of budget_milestone_steps on, same "
                      "order and length; each at most rollout.max_new_tokens."));
  k.push_back(Int("curriculum.budget_start_step", 0, 0, std::nullopt,
                  "Step at which the schedule starts (the budget is budget_start before it)."));
  k.push_back(Bool("curriculum.filter_uniform_groups", false,
                   "Drop groups whose samples are all correct or all wrong."));
  k.push_back(Str("curriculum.soft_weighting", "none",
                  "VL-Cogito difficulty soft weighting of advantages.",
                  {"none", "easy", "medium", "hard"}));

  // rewards_common
  k.push_back(Int("rewards_common.workers_per_plugin", 2, 1, 256,
                  "Worker processes per plugin reward, scoring calls in parallel."));
  k.push_back(Float("rewards_common.init_deadline_seconds", 10.0, 0.0, 3600.0,
                    "Time for a worker to start, load its plugin and run its init.", true));
  k.push_back(Str("rewards_common.worker_path", "",
                  "The reward worker executable; empty: $CHAINRL_REWARD_WORKER, else "
                  "chainrl-reward-worker next to chainrl."));

  // metrics
  k.push_back(Bool("metrics.enabled", true, "Serve /metrics from every process."));
  k.push_back(Checked(Str("metrics.address", "127.0.0.1:0",
                          "HOST:PORT of the launcher's /metrics; port 0 picks a free one. Other "
                          "processes always pick free ports on the same host."),
                      CheckAddress));
  k.push_back(Str("metrics.pushgateway", "",
                  "Pushgateway URL to push final metrics to at the end of a run (empty: off)."));
  k.push_back(Float("metrics.progress_interval_seconds", 1.0, 0.0, 3600.0,
                    "Interval of the live progress line; 0 disables it."));

  // checkpoint
  k.push_back(Int("sft.steps", 0, 0, std::nullopt,
                  "Optimiser steps of supervised warm-up before RL; 0 skips it."));
  k.push_back(Int("sft.batch_size", 32, 1, 1 << 20, "Examples per warm-up step."));
  k.push_back(Float("sft.lr", 1e-3, 0.0, 1.0, "Peak learning rate of the warm-up (AdamW).", true));
  k.push_back(Int("sft.warmup_steps", 0, 0, std::nullopt, "Linear warm-up steps of the warm-up."));
  k.push_back(Int("checkpoint.every", 0, 0, std::nullopt,
                  "Checkpoint every N steps (0: only at the end)."));
  k.push_back(Int("checkpoint.keep", 2, 1, 1000, "Checkpoints kept (oldest deleted first)."));
  k.push_back(Str("checkpoint.dir", "", "Checkpoint directory; empty means RUN_DIR/checkpoints."));
  k.push_back(Str("checkpoint.resume", "",
                  "Resume from this checkpoint directory, or \"latest\" in checkpoint.dir."));
  k.push_back(Bool("checkpoint.export_hf", true, "Export a Hugging Face directory at the end."));

  // distributed
  k.push_back(Str("distributed.backend", "auto",
                  "c10d backend of the data-parallel learner (read only when it has more than "
                  "one rank). auto is gloo when run.device is cpu and nccl when it is cuda or "
                  "cuda:N. nccl, named or resolved from auto, is refused with an error naming "
                  "this key: this build has no NCCL process group (Debian's LibTorch has no "
                  "NCCL, and chainrl's data parallelism creates Gloo groups only); set gloo.",
                  {"auto", "gloo", "nccl"}));
  k.push_back(Float("distributed.timeout_seconds", 600.0, 1.0, std::nullopt,
                    "Rendezvous and collective timeout (ranks waiting for rank 0 between steps "
                    "wait without one)."));
  k.push_back(Int("distributed.learner_ranks", 1, 1, 256,
                  "Learner processes `chainrl train` starts as one data-parallel learner."));

  // arrays of tables
  ArraySpec rewards;
  rewards.name = "rewards";
  rewards.doc =
      "One table per reward; the task reward of a sample is the weighted sum. `kind` is a built-in "
      "verifier or `plugin` (a shared library at `path`, run in isolated worker processes).";
  rewards.keys = {
      Required(Str("name", "", "Name used in metrics and logs.")),
      Str("kind", "plugin", "Built-in reward or a plugin.",
          {"plugin", "math", "exact_match", "regex", "format", "length", "task"}),
      Str("path", "", "Shared library of a plugin (kind = plugin)."),
      Float("weight", 1.0, -kInf, kInf, "Weight in the sum."),
      Float("deadline_seconds", 10.0, 0.0, 86400.0, "Time limit per batch call.", true),
      Float("error_score", 0.0, -kInf, kInf, "Score of a sample whose reward failed."),
      Int("batch_size", 8, 1, 4096, "Samples per plugin call (the deadline covers one call)."),
  };
  KeySpec options;
  options.key = "options";
  options.type = ValueType::kTable;
  options.default_value = std::string();
  options.doc = "Table handed to the reward's init as TOML text.";
  rewards.keys.push_back(options);
  s.arrays.push_back(rewards);

  ArraySpec stages;
  stages.name = "curriculum.stages";
  stages.doc =
      "Multi-stage runs: from `start_step` on, the stage's `overrides` (dotted keys, any key of "
      "this schema) apply. Stages are sorted by start_step.";
  stages.keys = {
      Required(Str("name", "", "Name of the stage (metrics label).")),
      Required(Int("start_step", 0, 0, std::nullopt, "First step of the stage.")),
  };
  KeySpec over;
  over.key = "overrides";
  over.type = ValueType::kOverrides;
  over.default_value = std::vector<std::string>();
  over.doc = "Inline table of dotted keys and values, e.g. { \"rollout.max_new_tokens\" = 256 }.";
  stages.keys.push_back(over);
  s.arrays.push_back(stages);
  (void)none;
  return s;
}

}  // namespace

const std::vector<std::string>& PolicyGradientAlgorithms() {
  static const Strings* names =
      new Strings{"grpo", "dr_grpo", "dapo", "gspo", "dler", "campo", "cispo"};
  return *names;
}

const std::vector<std::string>& PreferenceAlgorithms() {
  static const Strings* names = new Strings{"dpo", "ipo", "simpo", "logo"};
  return *names;
}

const ConfigSchema& RunConfigSchema() {
  static const ConfigSchema* schema = new ConfigSchema(Build());
  return *schema;
}

}  // namespace chainrl
