// The JSON files of a learner checkpoint that are read before anything is loaded: manifest.json
// (each file's size and CRC32C) and the envelope of state.json. Parsed and shape-checked here,
// without LibTorch, so that any bytes give a value or an error naming the file (the fuzzing build
// runs them, fuzz/checkpoint_fuzz.cc). The rest of the checkpoint is learner/checkpoint.h.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace chainrl::learner {

// Version of the checkpoint layout, written to state.json and manifest.json; a directory with a
// different version is refused on load.
inline constexpr int kCheckpointFormatVersion = 1;

// manifest.json's text (from `path`, named in errors), parsed and shape-checked: an object with
// integer "format_version" (kCheckpointFormatVersion) and "step", "files" mapping each name to
// {"size": unsigned, "crc32c": unsigned below 2^32}, and "data_files", names listed in "files".
// Corrupt "PATH: ..." naming the key otherwise, "PATH: JSON nested deeper than 512 levels" for
// deep JSON (refused before it is built: walking it would overflow the stack).
Result<nlohmann::json> ParseCheckpointManifest(std::string_view text, const std::string& path);

// state.json's text parsed and checked against its manifest (`manifest_step`): an object with
// "format_version" kCheckpointFormatVersion, "step" equal to the manifest's, and "state", which
// is returned. Corrupt naming `path` otherwise, with the same depth bound.
Result<nlohmann::json> ParseCheckpointState(std::string_view text, const std::string& path,
                                            const nlohmann::json& manifest_step);

}  // namespace chainrl::learner
