// Reading files and JSON text from outside the process with bounds: a file is read whole only up
// to a size its caller names, and JSON is refused when it nests deeper than a bound before any
// deep structure is built (copying or walking a deeply nested value recurses, and a few hundred
// thousand levels overflow the stack). Errors name the file (or `where`) and the bound.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace chainrl {

// Nesting (arrays and objects) that no file chainrl reads comes near: model configs, tokenizers,
// chat templates' JSON, run records and dashboards nest fewer than 20 levels.
inline constexpr int kMaxJsonDepth = 512;
// Size bounds: small files (model and generation configs, endpoints, dashboards) and large ones
// (tokenizer.json, a run's progress and summary with its whole step history).
inline constexpr uint64_t kMaxSmallJsonBytes = 64ull << 20;
inline constexpr uint64_t kMaxLargeJsonBytes = 1ull << 30;

// The whole of file `path`. NotFound "PATH: cannot open (REASON)" when it does not exist, IoError
// with the reason when it cannot be opened otherwise;
// InvalidArgument naming its size and `max_bytes` when it is larger (refused before reading);
// IoError when reading fails.
Result<std::string> ReadFileBounded(const std::string& path, uint64_t max_bytes);

// OK when `text` is one JSON value nesting at most `max_depth` levels; the errors of ParseJson
// otherwise. For callers that parse it their own way (ordered objects, a parser callback).
Status CheckJson(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth,
                 StatusCode code = StatusCode::kInvalidArgument);

// `text` parsed as JSON. InvalidArgument "WHERE: not valid JSON (...)" when it does not parse,
// "WHERE: JSON nested deeper than MAX levels" when an array or object nests deeper than
// `max_depth`.
// `code` is the error's code for both (a caller reading its own records may want kCorrupt).
Result<nlohmann::json> ParseJson(std::string_view text, const std::string& where,
                                 int max_depth = kMaxJsonDepth,
                                 StatusCode code = StatusCode::kInvalidArgument);

// InvalidArgument "WHERE: KEY...: V is not an integer" for the first number with a fraction or an
// exponent in `j` outside the top-level keys `free` (whose values may hold any number): for state
// that holds only counts and ids, read with nlohmann's integer conversions, which are undefined
// for a double beyond the integer's range (1e300).
Status RequireIntegers(const nlohmann::json& j, const std::string& where,
                       std::initializer_list<std::string_view> free = {});

// ReadFileBounded, then ParseJson naming the file.
Result<nlohmann::json> ReadJsonFile(const std::string& path, uint64_t max_bytes,
                                    int max_depth = kMaxJsonDepth,
                                    StatusCode code = StatusCode::kInvalidArgument);

}  // namespace chainrl
