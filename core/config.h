// The TOML configuration machinery: a schema in code (ConfigSchema) is the single source of truth
// for every key's type, default, valid range and documentation. Each layer declares the keys it
// owns (core/config_keys.h); chainrl's run schema is assembled in apps/run_config.h. Loading is
// strict: every problem (syntax, unknown key, wrong type, out of range, missing key, bad --set) is
// collected and reported at once, each naming file:line:column and the dotted key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/status.h"

namespace chainrl {

enum class ValueType {
  kBool,
  kInt,
  kFloat,
  kString,
  kStringList,
  kIntList,
  kFloatList,
  kTable,      // an opaque table handed to a plugin, kept as TOML text
  kOverrides,  // an inline table of dotted schema keys -> values (stage overrides); kept as a list
               // of "key=value" strings in TOML syntax, validated like --set
};

using ConfigValue = std::variant<bool, int64_t, double, std::string, std::vector<std::string>,
                                 std::vector<int64_t>, std::vector<double>>;

// A value the schema knows but refuses, and why (e.g. a feature not implemented yet): loading fails
// naming the key, the value and the reason, rather than accepting it and doing something else.
struct RefusedValue {
  ConfigValue value;
  std::string reason;  // "importance-sampling correction of stale samples is not implemented yet"
};

// One key of the schema.
struct KeySpec {
  std::string key;  // dotted, e.g. "learner.lr"; inside an array of tables, the element key
  ValueType type = ValueType::kString;
  ConfigValue default_value;
  bool required = false;
  std::optional<double> min, max;  // numbers and number-list elements, inclusive
  bool min_exclusive = false;
  std::vector<std::string> choices;  // strings and string-list elements; empty = any
  std::vector<RefusedValue> refused;  // checked before choices and range
  std::string doc;                    // one line
  // Extra validation beyond type/range/choices; returns an error message or "" when valid.
  std::string (*check)(const ConfigValue&) = nullptr;
};

// An array of tables (`[[rewards]]`, `[[curriculum.stages]]`) and the keys of its elements.
struct ArraySpec {
  std::string name;  // dotted
  std::string doc;
  std::vector<KeySpec> keys;
};

struct ConfigSchema {
  std::vector<std::string> sections;  // in documentation order, dotted ("model.init")
  std::map<std::string, std::string> section_docs;
  std::vector<KeySpec> keys;
  std::vector<ArraySpec> arrays;

  const KeySpec* FindKey(std::string_view dotted) const;
  const ArraySpec* FindArray(std::string_view dotted) const;
  bool IsSection(std::string_view dotted) const;
};

// One problem found while loading. `file` is the config path, or "--set" for command-line
// overrides (then `line` is the override's 1-based index and `column` the offending character).
struct ConfigIssue {
  std::string file;
  int line = 0;     // 1-based; 0 when the problem has no position (a missing key)
  int column = 0;   // 1-based
  std::string key;  // dotted key concerned, "" for a syntax error
  std::string message;
  // "run.toml:3:7: learner.lr: expected a float, got a string"
  std::string ToString() const;
};

using ConfigTable = std::map<std::string, ConfigValue>;

// A fully resolved, validated configuration: every schema key has a value (its default unless set).
// It remembers the schema it was loaded with (ToToml and WithOverrides use it), which must outlive
// it. Immutable after loading; safe to share between threads.
class Config {
 public:
  // Accessors. REQUIRES: `key` is a schema key of that type (a programming error otherwise, which
  // fails fast naming the key).
  bool GetBool(std::string_view key) const;
  int64_t GetInt(std::string_view key) const;
  double GetFloat(std::string_view key) const;
  const std::string& GetString(std::string_view key) const;
  const std::vector<std::string>& GetStringList(std::string_view key) const;
  const std::vector<int64_t>& GetIntList(std::string_view key) const;
  const std::vector<double>& GetFloatList(std::string_view key) const;
  const ConfigValue& Get(std::string_view key) const;
  // The elements of an array of tables, each with every element key resolved.
  const std::vector<ConfigTable>& GetArray(std::string_view name) const;
  // Where a value came from: "run.toml:3:7", "--set", or "default".
  std::string SourceOf(std::string_view key) const;

  // The resolved configuration as TOML (every key, defaults included, in schema order).
  std::string ToToml() const;
  // A copy with `sets` ("key=value", TOML value syntax) applied and validated; used for --set and
  // curriculum stage overrides. Errors are reported like LoadConfig's.
  Result<Config> WithOverrides(const std::vector<std::string>& sets,
                               std::vector<ConfigIssue>* issues = nullptr) const;

 private:
  friend class ConfigBuilder;
  const ConfigSchema* schema_ = nullptr;
  std::map<std::string, ConfigValue, std::less<>> values_;
  std::map<std::string, std::string, std::less<>> sources_;
  std::map<std::string, std::vector<ConfigTable>, std::less<>> arrays_;
};

// Bounds on a run configuration: its size, and how deep its keys (table headers, dotted keys,
// inline tables) nest tables. Run configs are a few KB and nest 3 levels.
inline constexpr uint64_t kMaxConfigBytes = 16ull << 20;
inline constexpr int kMaxConfigTableDepth = 128;

// Loads `path`, applies `overrides` ("key=value"), validates everything against `schema`, which
// must outlive the Config. On failure returns kInvalidArgument (or kNotFound for a missing file)
// whose message lists every problem, one per line; `issues`, when given, receives them as
// structured values.
Result<Config> LoadConfig(const ConfigSchema& schema, const std::string& path,
                          const std::vector<std::string>& overrides = {},
                          std::vector<ConfigIssue>* issues = nullptr);
// The same from text; `source_name` is used in messages in place of a path.
Result<Config> ParseConfig(const ConfigSchema& schema, std::string_view text,
                           const std::string& source_name,
                           const std::vector<std::string>& overrides = {},
                           std::vector<ConfigIssue>* issues = nullptr);

// The reference of `schema` in Markdown: one `## [section]` per section in order, each with its
// paragraph and a table of its keys and arrays, then the top-level arrays of tables.
std::string RenderSchemaDocs(const ConfigSchema& schema);

// Formats a value in TOML syntax ("1e-06", "\"cpu\"", "[1, 2]").
std::string FormatConfigValue(const ConfigValue& v);
const char* ValueTypeName(ValueType t);

}  // namespace chainrl
