// The configuration keys the learner owns: the training sections (algorithm.name's values from
// learner/objective_list.h) and the learner process's checkpoint, data-parallel and warm-up
// sections.
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

}  // namespace chainrl
