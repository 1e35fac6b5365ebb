// What an actor on a fresh host needs of a run besides weights, as the learner serves it over the
// (authenticated) work channel: the run's config and the model's small files (config.json,
// generation_config.json, the tokenizer and chat template files). Reward plugins are the one thing
// an actor host installs itself.
#pragma once

#include <string>

#include "core/config.h"
#include "core/status.h"
#include "core/wire.h"

namespace chainrl {

// The model's files an actor reads, by name, looked for in model.path and tokenizer.path.
const std::vector<std::string>& RunFileNames();

// The run files of `config` (the learner's resolved config): its TOML and the files of
// RunFileNames() present in tokenizer.path (or model.path) and model.path. NotFound naming the
// directory when config.json is missing there; InvalidArgument (ReadFileBounded's, prefixed) when
// they exceed `max_bytes` together.
Result<wire::RunFiles> CollectRunFiles(const Config& config, size_t max_bytes);

// Writes `files` into `dir`: DIR/run.toml and DIR/model/NAME for each model file (directories
// created; each file written atomically). Names are checked again (plain names only). Returns
// DIR/run.toml.
Result<std::string> WriteRunFiles(const wire::RunFiles& files, const std::string& dir);

}  // namespace chainrl
