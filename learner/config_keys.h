// The configuration keys the learner owns: the training sections (with the values of
// algorithm.name) and the learner process's checkpoint, data-parallel and warm-up sections.
#pragma once

#include <string>
#include <vector>

namespace chainrl {

struct ConfigSchema;

// Adds [learner], [algorithm], [length_shaping] and [curriculum] (with the array
// [[curriculum.stages]]) to `schema`, in that order.
void AddLearnerKeys(ConfigSchema* schema);
// Adds [checkpoint], [distributed] and [sft] to `schema`, in that order.
void AddLearnerProcessKeys(ConfigSchema* schema);

// The values of `algorithm.name`: the policy-gradient recipes that learner/objectives.h's
// PolicyLossPreset builds, then the preference losses of learner/preference.h. The schema's
// choices are the two lists in this order, and the learner picks an objective's family by the
// list that holds its name.
const std::vector<std::string>& PolicyGradientAlgorithms();
const std::vector<std::string>& PreferenceAlgorithms();

}  // namespace chainrl
