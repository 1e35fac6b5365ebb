// The configuration keys the rollout layer owns: [rollout] (sampling, batching, segments).
#pragma once

namespace chainrl {

struct ConfigSchema;

// Adds [rollout] to `schema`.
void AddRolloutKeys(ConfigSchema* schema);

}  // namespace chainrl
