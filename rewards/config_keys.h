// The configuration keys the rewards own: [rewards_common] and [[rewards]] (with the reward
// kinds).
#pragma once

namespace chainrl {

struct ConfigSchema;

// Adds [rewards_common] and the array [[rewards]] to `schema`.
void AddRewardKeys(ConfigSchema* schema);

}  // namespace chainrl
