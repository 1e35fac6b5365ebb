// Logging: stderr lines and the JSONL event log.
#include "core/log.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include <nlohmann/json.hpp>

namespace chainrl::log {
namespace {

struct State {
  std::mutex mu;
  std::string role = "chainrl";
  Level level = Level::kInfo;
  std::FILE* events = nullptr;
  State() {
    if (const char* env = std::getenv("CHAINRL_LOG_LEVEL")) {
      auto parsed = ParseLevel(env);
      if (parsed.ok()) level = *parsed;
    }
  }
};

State& GetState() {
  static State* s = new State();  // never destroyed: logging works during static teardown
  return *s;
}

std::string Timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  int ms = static_cast<int>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "DEBUG";
    case Level::kInfo:
      return "INFO";
    case Level::kWarn:
      return "WARN";
    case Level::kError:
      return "ERROR";
  }
  return "?";
}

void WriteEventLocked(State& s, const nlohmann::json& j) {
  if (!s.events) return;
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), s.events);
  std::fflush(s.events);
}

}  // namespace

void SetRole(std::string role) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.role = std::move(role);
}

const std::string& Role() { return GetState().role; }

void SetLevel(Level level) { GetState().level = level; }
Level GetLevel() { return GetState().level; }

Result<Level> ParseLevel(std::string_view text) {
  if (text == "debug") return Level::kDebug;
  if (text == "info") return Level::kInfo;
  if (text == "warn" || text == "warning") return Level::kWarn;
  if (text == "error") return Level::kError;
  return InvalidArgument("unknown log level '" + std::string(text) +
                         "' (expected debug, info, warn or error)");
}

Status OpenEventLog(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) return IoError(path + ": cannot open the event log for appending");
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.events) std::fclose(s.events);
  s.events = f;
  return Status::Ok();
}

void CloseEventLog() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.events) std::fclose(s.events);
  s.events = nullptr;
}

void Write(Level level, std::string_view message) {
  State& s = GetState();
  if (level < s.level) return;
  std::string ts = Timestamp();
  std::lock_guard<std::mutex> lock(s.mu);
  std::fprintf(stderr, "%s %-5s [%s] %.*s\n", ts.c_str(), LevelName(level), s.role.c_str(),
               static_cast<int>(message.size()), message.data());
  if (s.events) {
    WriteEventLocked(
        s,
        {{"ts", ts}, {"level", LevelName(level)}, {"role", s.role}, {"msg", std::string(message)}});
  }
}

void Event(std::string_view name, std::string_view fields_json) {
  State& s = GetState();
  nlohmann::json j = {{"ts", Timestamp()}, {"role", s.role}, {"event", std::string(name)}};
  auto fields = nlohmann::json::parse(fields_json, nullptr, /*allow_exceptions=*/false);
  if (fields.is_object()) {
    for (auto& [k, v] : fields.items()) j[k] = v;
  } else {
    j["fields_unparsed"] = std::string(fields_json);
  }
  std::lock_guard<std::mutex> lock(s.mu);
  WriteEventLocked(s, j);
}

}  // namespace chainrl::log
