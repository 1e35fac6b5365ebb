// The configuration keys the actors own: [actors].
#pragma once

namespace chainrl {

struct ConfigSchema;

// Adds [actors] to `schema`.
void AddActorKeys(ConfigSchema* schema);

}  // namespace chainrl
