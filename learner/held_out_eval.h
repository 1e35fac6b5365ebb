// The learner's held-out evaluation: the policy decodes the held-out examples with the run's
// sampling caps (greedy, rollout.max_new_tokens, rollout.max_batch_size, rollout.stop_strings) and
// the reward pool scores them; the result is the record the run keeps in its evaluations, its
// events and its summary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"
#include "rewards/reward_pool.h"

namespace chainrl::model {
class DecoderModel;
}

namespace chainrl::learner {

class PromptInputs;

// {label, step, examples, accuracy, mean_reward, mean_length, truncated_fraction, seconds} of
// `examples` decoded by `model` (put in eval mode) at policy step `step`. Also appends an
// "eval_samples" event (learner/eval_samples.h) with the first examples' prompts, responses,
// references and verdicts to the event log, when one is open. rollout::Evaluate's errors.
Result<nlohmann::json> EvaluateHeldOut(const Config& c, model::DecoderModel& model,
                                       const PromptInputs& prompts, rewards::RewardPool& rewards,
                                       const std::vector<data::Example>& examples,
                                       const std::string& label, int64_t step);

}  // namespace chainrl::learner
