// Levelled, timestamped logging to stderr tagged with the process role (launcher, learner,
// actor-N), plus an optional JSONL event log in the run directory. Thread-safe.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

#include "core/status.h"

namespace chainrl::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Sets the role printed on every line ("launcher", "learner", "actor-3"). Default: "chainrl".
void SetRole(std::string role);
const std::string& Role();
// Lines below `level` are dropped. Default kInfo; the CHAINRL_LOG_LEVEL environment variable
// (debug|info|warn|error) overrides it at start-up.
void SetLevel(Level level);
Level GetLevel();
// Parses "debug|info|warn|error".
Result<Level> ParseLevel(std::string_view text);

// Opens (appends to) `path` as the JSONL event log; one JSON object per line. Replaces any
// previously opened log. Error if the file cannot be opened.
Status OpenEventLog(const std::string& path);
void CloseEventLog();

// Writes one line "2026-11-22T05:07:11.123Z INFO  [learner] message" to stderr, and the same as a
// JSON object {"ts":..,"level":..,"role":..,"msg":..} to the event log if one is open.
void Write(Level level, std::string_view message);

// Appends a structured event {"ts":..,"role":..,"event":name, ...fields} to the event log only.
// `fields_json` is a serialized JSON object whose members are merged in ("{}" for none).
void Event(std::string_view name, std::string_view fields_json = "{}");

// Stream-style helper: CHAINRL_LOG(kInfo) << "step " << step;
class Line {
 public:
  explicit Line(Level level) : level_(level) {}
  ~Line() { Write(level_, os_.str()); }
  template <typename T>
  Line& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  Level level_;
  std::ostringstream os_;
};

}  // namespace chainrl::log

#define CHAINRL_LOG(level)                                         \
  if (::chainrl::log::Level::level < ::chainrl::log::GetLevel()) { \
  } else                                                           \
    ::chainrl::log::Line(::chainrl::log::Level::level)
