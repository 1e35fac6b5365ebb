// chainrl's run configuration: the schema assembled from the sections every layer owns, and
// loading, parsing and documenting a run file against it. This is the one place that knows every
// layer's keys; the layers below know only their own.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace chainrl {

// The run schema: core's [run], then each layer's sections in documentation order (model, data,
// rollout, actors, learner, rewards), core's [metrics], and the learner process's sections. Built
// once; lives for the whole process.
const ConfigSchema& RunConfigSchema();

// LoadConfig / ParseConfig of core/config.h against RunConfigSchema().
Result<Config> LoadConfig(const std::string& path, const std::vector<std::string>& overrides = {},
                          std::vector<ConfigIssue>* issues = nullptr);
Result<Config> ParseConfig(std::string_view text, const std::string& source_name,
                           const std::vector<std::string>& overrides = {},
                           std::vector<ConfigIssue>* issues = nullptr);

// docs/CONFIG.md, generated from RunConfigSchema() (`chainrl config docs`).
std::string RenderConfigDocs();

}  // namespace chainrl
