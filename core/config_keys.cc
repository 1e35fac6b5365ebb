// How a layer declares its configuration keys, and core's own sections: [run] and [metrics].
#include "core/config_keys.h"

#include <cstdint>
#include <regex>

namespace chainrl {
namespace {

using Strings = std::vector<std::string>;

std::string CheckDevice(const ConfigValue& v) {
  static const std::regex re("cpu|cuda|cuda:[0-9]+");
  const std::string& s = std::get<std::string>(v);
  if (!std::regex_match(s, re)) return "'" + s + "' is not a device (expected cpu, cuda or cuda:N)";
  // Device indices are 8-bit in LibTorch: a larger one would throw where the device is made.
  if (s.size() > 5 && (s.size() > 8 || std::stoi(s.substr(5)) > 127))
    return "'" + s + "': the device index must be at most 127";
  return "";
}

std::string CheckAddress(const ConfigValue& v) {
  static const std::regex re(R"((\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5})");
  const std::string& s = std::get<std::string>(v);
  if (s.empty() || std::regex_match(s, re)) return "";
  return "'" + s + "' is not HOST:PORT (port 0 picks a free one)";
}

}  // namespace

KeySpec Bool(std::string key, bool def, std::string doc) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kBool;
  k.default_value = def;
  k.doc = std::move(doc);
  return k;
}

KeySpec Int(std::string key, int64_t def, std::optional<double> lo, std::optional<double> hi,
            std::string doc) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kInt;
  k.default_value = def;
  k.min = lo;
  k.max = hi;
  k.doc = std::move(doc);
  return k;
}

KeySpec Float(std::string key, double def, std::optional<double> lo, std::optional<double> hi,
              std::string doc, bool lo_exclusive) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kFloat;
  k.default_value = def;
  k.min = lo;
  k.max = hi;
  k.min_exclusive = lo_exclusive;
  k.doc = std::move(doc);
  return k;
}

KeySpec Str(std::string key, std::string def, std::string doc, Strings choices) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kString;
  k.default_value = std::move(def);
  k.choices = std::move(choices);
  k.doc = std::move(doc);
  return k;
}

KeySpec StrList(std::string key, Strings def, std::string doc, Strings choices) {
  KeySpec k;
  k.key = std::move(key);
  k.type = ValueType::kStringList;
  k.default_value = std::move(def);
  k.choices = std::move(choices);
  k.doc = std::move(doc);
  return k;
}

KeySpec IntList(std::string key, std::vector<int64_t> def, std::optional<double> lo,
                std::optional<double> hi, std::string doc) {
  KeySpec k = Int(std::move(key), 0, lo, hi, std::move(doc));
  k.type = ValueType::kIntList;
  k.default_value = std::move(def);
  return k;
}

KeySpec FloatList(std::string key, std::vector<double> def, std::optional<double> lo,
                  std::optional<double> hi, std::string doc) {
  KeySpec k = Float(std::move(key), 0, lo, hi, std::move(doc));
  k.type = ValueType::kFloatList;
  k.default_value = std::move(def);
  return k;
}

KeySpec Required(KeySpec k) {
  k.required = true;
  return k;
}

KeySpec Checked(KeySpec k, std::string (*check)(const ConfigValue&)) {
  k.check = check;
  return k;
}

KeySpec Refusing(KeySpec k, ConfigValue value, std::string reason) {
  k.refused.push_back({std::move(value), std::move(reason)});
  return k;
}

std::string CheckEndpoint(const ConfigValue& v) {
  const std::string& s = std::get<std::string>(v);
  if (s.empty() || s.rfind("tcp://", 0) == 0 || s.rfind("ipc://", 0) == 0) return "";
  return "'" + s + "' is not an endpoint (expected tcp://HOST:PORT or ipc://PATH)";
}

void AddSection(ConfigSchema* schema, std::string dotted, std::string doc) {
  schema->section_docs[dotted] = std::move(doc);
  schema->sections.push_back(std::move(dotted));
}

void AddRunKeys(ConfigSchema* schema) {
  AddSection(schema, "run", "The run as a whole: name, seed, where outputs go.");
  auto& k = schema->keys;
  k.push_back(
      Str("run.name", "chainrl", "Name of the run, used in logs and as the `run_id` label."));
  k.push_back(Int("run.seed", 0, 0, std::nullopt, "Seed of every random stream of the run."));
  k.push_back(
      Str("run.run_dir", "",
          "Output directory; empty means `runs/<name>-<timestamp>`. `--run-dir` overrides."));
  k.push_back(Int("run.total_steps", 100, 0, std::nullopt,
                  "Number of learner updates to run; 0 runs the SFT warm-up alone (then its "
                  "evaluation and the export; no actors are started)."));
  k.push_back(
      Checked(Str("run.device", "cpu", "Device of the learner and actors: cpu, cuda, cuda:N."),
              CheckDevice));
  k.push_back(Str("run.log_level", "info", "Least severe log level printed.",
                  {"debug", "info", "warn", "error"}));
  k.push_back(Int("run.eval_every", 0, 0, std::nullopt,
                  "Evaluate on the held-out set every N steps (0: only at the end)."));
}

void AddMetricsKeys(ConfigSchema* schema) {
  AddSection(schema, "metrics", "Prometheus metrics served by every process.");
  auto& k = schema->keys;
  k.push_back(Bool("metrics.enabled", true, "Serve /metrics from every process."));
  k.push_back(Checked(Str("metrics.address", "127.0.0.1:0",
                          "HOST:PORT of the launcher's /metrics; port 0 picks a free one. Other "
                          "processes always pick free ports on the same host."),
                      CheckAddress));
  k.push_back(Checked(Str("metrics.bind", "127.0.0.1:0",
                          "HOST:PORT where every learner rank and actor serves /metrics: "
                          "0.0.0.0:0 (or an interface's address) lets Prometheus on another host "
                          "scrape them; port 0 picks a free one, written to "
                          "RUN_DIR/metrics-ROLE.addr. /metrics has no authentication "
                          "(docs/SECURITY.md)."),
                      CheckAddress));
  k.push_back(Str("metrics.pushgateway", "",
                  "Pushgateway URL to push final metrics to at the end of a run (empty: off)."));
  k.push_back(Float("metrics.progress_interval_seconds", 1.0, 0.0, 3600.0,
                    "Interval of the live progress line; 0 disables it."));
}

void AddSecurityKeys(ConfigSchema* schema) {
  AddSection(schema, "security",
             "CURVE encryption and authentication of the learner's endpoints (docs/SECURITY.md). "
             "Make keys with `chainrl keys NAME`.");
  auto& k = schema->keys;
  k.push_back(Str("security.learner_secret_key_file", "",
                  "The learner's key pair file (NAME.key, mode 0600). Set, every learner endpoint "
                  "(work, trajectories, weights) speaks CURVE and admits only the keys in "
                  "security.authorized_keys_file. Required to bind beyond loopback unless "
                  "security.trusted_network is set."));
  k.push_back(
      Str("security.authorized_keys_file", "",
          "The actors allowed to connect: one `<public key> <name>` line per key (the .pub "
          "files of `chainrl keys`, concatenated). An actor's identity is its key's name."));
  k.push_back(Str("security.learner_public_key", "",
                  "Actors: the learner's public key (its 40 characters, or the path of its .pub "
                  "file). Empty: taken from security.learner_secret_key_file when the actor can "
                  "read it (same host), else no CURVE."));
  k.push_back(Str("security.actor_secret_key_file", "",
                  "Actors: this actor's key pair file (NAME.key, mode 0600), whose public key is "
                  "in the learner's authorized keys."));
  k.push_back(Bool("security.trusted_network", false,
                   "Allow the learner to bind beyond loopback without keys: anyone who can reach "
                   "its ports can then pull weights and prompts and submit trajectories. Logged "
                   "as a warning at start."));
}

}  // namespace chainrl
