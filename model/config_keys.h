// The configuration keys the model layer owns: [model], [model.init] (with the architectures a
// created model may have) and [tokenizer].
#pragma once

namespace chainrl {

struct ConfigSchema;

// Adds [model], [model.init] and [tokenizer] to `schema`, in that order.
void AddModelKeys(ConfigSchema* schema);

}  // namespace chainrl
