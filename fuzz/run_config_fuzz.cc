// libFuzzer harness: a TOML run config through the real loading entry point and schema
// (apps/run_config.h ParseConfig: toml++, then every layer's keys, types, ranges and cross-key
// rules), with `--set` overrides taken from the lines after a "\n#--set\n" line. A config that
// loads must print (Config::ToToml) to TOML that loads again to the same config.
#include <algorithm>
#include <string>
#include <vector>

#include "apps/run_config.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = fuzz::AsText(data, size);
  const auto [toml, set_lines] = fuzz::SplitAt(in, "\n#--set\n");
  std::vector<std::string> overrides;
  for (std::string_view rest = set_lines; !rest.empty();) {
    const auto [line, tail] = fuzz::SplitAt(rest, "\n");
    if (!line.empty()) overrides.emplace_back(line);
    rest = tail;
  }
  std::vector<ConfigIssue> issues;
  auto config = ParseConfig(toml, "fuzz/run.toml", overrides, &issues);
  if (!config.ok()) {
    CHAINRL_FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  const std::string printed = config->ToToml();
  auto again = ParseConfig(printed, "fuzz/printed.toml");
  CHAINRL_FUZZ_CHECK(again.ok(), again.status().message() + "\n--- printed:\n" + printed);
  CHAINRL_FUZZ_CHECK(again->ToToml() == printed,
                     "printing the reloaded config differs:\n" + printed);
  return 0;
}
