#include "learner/held_out_eval.h"

#include "core/log.h"
#include "learner/eval_samples.h"
#include "learner/prompt_inputs.h"
#include "model/decoder.h"
#include "rollout/evaluate.h"

namespace chainrl::learner {

Result<nlohmann::json> EvaluateHeldOut(const Config& c, model::DecoderModel& model,
                                       const PromptInputs& prompts, rewards::RewardPool& rewards,
                                       const std::vector<data::Example>& examples,
                                       const std::string& label, int64_t step) {
  rollout::EvalOptions eo;
  eo.max_new_tokens = c.GetInt("rollout.max_new_tokens");
  eo.max_batch = c.GetInt("rollout.max_batch_size");
  eo.stop_strings = c.GetStringList("rollout.stop_strings");
  eo.embedding_cache = prompts.embeddings();
  eo.placeholder_token_id = prompts.placeholder_id();
  model.eval();
  CHAINRL_ASSIGN_OR_RETURN(auto r,
                           rollout::Evaluate(model, prompts.renderer(), rewards, examples, eo));
  // The first examples, for people to read (the run report): records come in example order.
  std::vector<EvalSample> kept;
  for (size_t i = 0;
       i < examples.size() && i < r.records.size() && kept.size() < kEvalSamplesPerEval; ++i) {
    const rollout::EvalRecord& rec = r.records[i];
    kept.push_back(
        EvalSample::Of(examples[i], rec.response, rec.correct, rec.reward, rec.tokens, rec.finish));
  }
  // Model output need not be valid UTF-8: invalid bytes are written as U+FFFD.
  log::Event(kEvalSamplesEvent,
             EvalSamplesRecord(label, step, kept)
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  return nlohmann::json{{"label", label},
                        {"step", step},
                        {"examples", r.examples},
                        {"accuracy", r.accuracy},
                        {"mean_reward", r.mean_reward},
                        {"mean_length", r.mean_length},
                        {"truncated_fraction", r.truncated_fraction},
                        {"seconds", r.seconds}};
}

}  // namespace chainrl::learner
