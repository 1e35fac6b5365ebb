#include "learner/held_out_eval.h"

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
