// Held-out evaluation with the rollout engine and the reward pool; see evaluate.h.
#include "rollout/evaluate.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include <torch/torch.h>

#include "core/stopwatch.h"
#include "model/decoder.h"
#include "model/model_io.h"
#include "rollout/engine.h"

namespace chainrl::rollout {

Result<EvalResult> Evaluate(model::DecoderModel& model, const PromptRenderer& prompts,
                            rewards::RewardPool& rewards,
                            const std::vector<data::Example>& examples,
                            const EvalOptions& options) {
  if (examples.empty()) return InvalidArgument("evaluation: no examples");
  if (options.max_new_tokens < 1 || options.max_batch < 1 || options.samples_per_prompt < 1 ||
      options.temperature < 0 || options.top_k < 0 || !(options.top_p > 0 && options.top_p <= 1))
    return InvalidArgument(
        "evaluation: need max_new_tokens >= 1, max_batch >= 1, samples_per_prompt >= 1, "
        "temperature >= 0, top_k >= 0, 0 < top_p <= 1");
  if (rewards.specs().empty()) return InvalidArgument("evaluation: the reward pool is empty");
  const auto start = std::chrono::steady_clock::now();
  const int64_t samples = static_cast<int64_t>(options.samples_per_prompt);

  // Render every prompt first, so a bad example fails before any generation.
  std::vector<std::string> prompt_texts;
  std::vector<std::vector<int32_t>> prompt_ids;
  prompt_texts.reserve(examples.size());
  prompt_ids.reserve(examples.size());
  int64_t longest_prompt = 0;
  for (const auto& ex : examples) {
    CHAINRL_ASSIGN_OR_RETURN(std::string text, prompts.RenderText(ex));
    CHAINRL_ASSIGN_OR_RETURN(std::vector<int32_t> ids, prompts.Render(ex));
    longest_prompt = std::max<int64_t>(longest_prompt, static_cast<int64_t>(ids.size()));
    prompt_texts.push_back(std::move(text));
    prompt_ids.push_back(std::move(ids));
  }

  std::vector<GenerationRequest> requests;
  requests.reserve(examples.size() * static_cast<size_t>(samples));
  for (size_t i = 0; i < examples.size(); ++i) {
    for (int64_t s = 0; s < samples; ++s) {
      GenerationRequest r;
      // Indices, not example ids: ids need not be unique across files.
      r.id = std::to_string(i) + "/" + std::to_string(s);
      r.prompt = prompt_ids[i];
      r.max_new_tokens = options.max_new_tokens;
      r.sampling = {options.temperature, options.top_k, options.top_p,
                    options.seed + static_cast<uint64_t>(i) * static_cast<uint64_t>(samples) +
                        static_cast<uint64_t>(s)};
      r.stop_strings = options.stop_strings;
      r.stop_token_ids = options.stop_token_ids;
      if (!examples[i].embeddings.empty()) {
        if (!options.embedding_cache)
          return InvalidArgument("evaluation: example " + examples[i].source +
                                 " carries prompt embeddings but no embedding cache was given");
        CHAINRL_ASSIGN_OR_RETURN(r.embeddings, ParseEmbeddingRef(examples[i].embeddings));
        r.placeholder_token_id = options.placeholder_token_id;
      }
      requests.push_back(std::move(r));
    }
  }

  EngineOptions eo;
  eo.max_batch = std::min<int64_t>(options.max_batch, static_cast<int64_t>(requests.size()));
  eo.max_seq_len = longest_prompt + options.max_new_tokens;
  eo.eos_token_ids = prompts.stop_token_ids();
  eo.embedding_cache = options.embedding_cache;
  const Tokenizer& tok = prompts.tokenizer();
  if (!options.stop_strings.empty()) {
    eo.token_bytes = [&tok](int32_t id) {
      auto b = tok.DecodeBytes({id});
      return b.ok() ? *b : std::string();
    };
  }
  // The engine shares ownership of its model; this one belongs to the caller. Under mixed
  // precision, generation runs on one copy of the weights in the compute dtype (as actors hold
  // them) instead of casting every weight at every decode step.
  std::shared_ptr<model::DecoderModel> borrowed(&model, [](model::DecoderModel*) {});
  if (model.options().Mixed()) {
    borrowed = model::CopyModel(model, model::ModelOptions()
                                           .set_dtype(model.options().ComputeDtype())
                                           .set_device(model.options().device));
  }
  std::vector<GenerationResult> generated;
  {
    torch::NoGradGuard no_grad;
    RolloutEngine engine(borrowed, eo);
    CHAINRL_ASSIGN_OR_RETURN(generated, engine.Generate(requests));
  }

  EvalResult result;
  result.examples = static_cast<int64_t>(examples.size());
  result.samples = static_cast<int64_t>(generated.size());
  std::vector<rewards::RewardInput> inputs;
  inputs.reserve(generated.size());
  result.records.reserve(generated.size());
  for (size_t k = 0; k < generated.size(); ++k) {
    const GenerationResult& g = generated[k];
    const data::Example& ex = examples[k / static_cast<size_t>(samples)];
    std::string text;
    if (g.stop_text_bytes >= 0) {
      // stop_text_bytes counts the raw bytes of every generated token up to the stop string (none
      // for ids beyond the tokenizer: padding rows of the model's embedding).
      std::vector<int32_t> known;
      for (int32_t id : g.tokens)
        if (id >= 0 && id < tok.vocab_size()) known.push_back(id);
      CHAINRL_ASSIGN_OR_RETURN(std::string raw, tok.DecodeBytes(known, /*skip_special=*/false));
      text = raw.substr(0, std::min(raw.size(), static_cast<size_t>(g.stop_text_bytes)));
    } else {
      CHAINRL_ASSIGN_OR_RETURN(text, prompts.DecodeResponse(g.tokens));
    }
    EvalRecord rec;
    rec.example_id = ex.id;
    rec.response = text;
    rec.tokens = static_cast<int64_t>(g.tokens.size());
    rec.token_ids = g.tokens;
    rec.finish = FinishReasonName(g.finish);
    result.records.push_back(std::move(rec));

    rewards::RewardInput in;
    in.example_id = ex.id;
    in.prompt = prompt_texts[k / static_cast<size_t>(samples)];
    in.response = std::move(text);
    in.token_ids = g.tokens;
    in.finish_reason = FinishReasonName(g.finish);
    in.answer_json = ex.answer.dump();
    in.metadata_json = ex.metadata.is_object() ? ex.metadata.dump() : "{}";
    inputs.push_back(std::move(in));
  }
  CHAINRL_ASSIGN_OR_RETURN(std::vector<rewards::RewardResult> scores, rewards.Score(inputs));
  if (scores.size() != inputs.size())
    return Internal("evaluation: the reward pool returned " + std::to_string(scores.size()) +
                    " results for " + std::to_string(inputs.size()) + " samples");

  int64_t correct = 0, truncated = 0, tokens = 0;
  double reward_sum = 0;
  for (size_t k = 0; k < scores.size(); ++k) {
    EvalRecord& rec = result.records[k];
    const rewards::RewardResult& sc = scores[k];
    rec.reward = sc.total;
    rec.correct = sc.correct();
    correct += rec.correct ? 1 : 0;
    truncated += generated[k].finish == FinishReason::kLength ? 1 : 0;
    tokens += rec.tokens;
    reward_sum += rec.reward;
  }
  const double n = static_cast<double>(result.samples);
  result.accuracy = static_cast<double>(correct) / n;
  result.mean_reward = reward_sum / n;
  result.mean_length = static_cast<double>(tokens) / n;
  result.truncated_fraction = static_cast<double>(truncated) / n;
  result.seconds = SecondsSince(start);
  return result;
}

}  // namespace chainrl::rollout
