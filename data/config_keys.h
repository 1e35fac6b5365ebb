// The configuration keys the data layer owns: [data].
#pragma once

namespace chainrl {

struct ConfigSchema;

// Adds [data] to `schema`.
void AddDataKeys(ConfigSchema* schema);

}  // namespace chainrl
