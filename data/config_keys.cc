// The keys of [data]: where examples come from and how they are read.
#include "data/config_keys.h"

#include "core/config_keys.h"

namespace chainrl {

void AddDataKeys(ConfigSchema* schema) {
  AddSection(schema, "data",
             "Training and evaluation data: a built-in synthetic task or JSONL files.");
  auto& k = schema->keys;
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
  k.push_back(
      Float("data.task_brief_fraction", 0.3, 0.0, 1.0, "Share with only the result of each step."));
  k.push_back(Float("data.task_direct_fraction", 0.1, 0.0, 1.0,
                    "Share with the answer alone. The four shares are normalised."));
  // Generated examples are held in memory (a few hundred bytes each): bounded at 10 million.
  k.push_back(Int("data.num_train_examples", 20000, 1, 10'000'000,
                  "Examples generated for training (data.source = task)."));
  k.push_back(Int("data.num_eval_examples", 200, 0, 10'000'000, "Held-out examples."));
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
}

}  // namespace chainrl
