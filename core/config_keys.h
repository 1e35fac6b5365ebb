// How a layer declares its configuration keys, and core's own sections. Each layer owns the keys
// its code reads: it adds its sections with an Add...Keys(ConfigSchema*) in its own
// config_keys.{h,cc}, built with the functions below; apps/run_config.h assembles chainrl's run
// schema from every layer's part.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"

namespace chainrl {

// A key of each type with its default and one line of documentation. Numbers and number-list
// elements take an inclusive range (nullopt: unbounded); `choices` (empty: any) restrict strings
// and string-list elements.
KeySpec Bool(std::string key, bool def, std::string doc);
KeySpec Int(std::string key, int64_t def, std::optional<double> lo, std::optional<double> hi,
            std::string doc);
// `lo_exclusive`: the lower bound itself is out of range.
KeySpec Float(std::string key, double def, std::optional<double> lo, std::optional<double> hi,
              std::string doc, bool lo_exclusive = false);
KeySpec Str(std::string key, std::string def, std::string doc,
            std::vector<std::string> choices = {});
KeySpec StrList(std::string key, std::vector<std::string> def, std::string doc,
                std::vector<std::string> choices = {});
KeySpec IntList(std::string key, std::vector<int64_t> def, std::optional<double> lo,
                std::optional<double> hi, std::string doc);
KeySpec FloatList(std::string key, std::vector<double> def, std::optional<double> lo,
                  std::optional<double> hi, std::string doc);

// `k`, required (it has no default a run could use).
KeySpec Required(KeySpec k);
// `k` with an extra check returning an error message, or "" when the value is valid.
KeySpec Checked(KeySpec k, std::string (*check)(const ConfigValue&));
// `k` refusing `value` with `reason` (a value the code does not implement: never accepted and
// silently treated as another).
KeySpec Refusing(KeySpec k, ConfigValue value, std::string reason);

// Appends section `dotted` (e.g. "model.init") with its documentation paragraph; sections are
// documented in the order they are added.
void AddSection(ConfigSchema* schema, std::string dotted, std::string doc);

// A check for ZeroMQ endpoints: empty, tcp://HOST:PORT or ipc://PATH.
std::string CheckEndpoint(const ConfigValue& v);

// [run]: the run as a whole (name, seed, device, outputs), read by every process.
void AddRunKeys(ConfigSchema* schema);
// [metrics]: the Prometheus metrics every process serves.
void AddMetricsKeys(ConfigSchema* schema);
// [security]: CURVE keys of the learner and actors (core/security.h reads them).
void AddSecurityKeys(ConfigSchema* schema);

}  // namespace chainrl
