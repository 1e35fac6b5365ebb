// libFuzzer harness: core/json_file.h's bounded JSON reading (CheckJson, ParseJson), which every
// JSON file chainrl reads goes through. Both must agree on every input; what parses must print
// and parse again to the same value. The first byte picks the depth bound (small bounds reach
// the nesting check quickly).
#include "core/json_file.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;
  const int max_depth = data[0] < 128 ? kMaxJsonDepth : 1 + data[0] % 16;
  const std::string_view text = fuzz::AsText(data + 1, size - 1);
  const Status checked = CheckJson(text, "fuzz.json", max_depth);
  auto parsed = ParseJson(text, "fuzz.json", max_depth);
  CHAINRL_FUZZ_CHECK(checked.ok() == parsed.ok(), checked.ToString());
  if (!parsed.ok()) {
    CHAINRL_FUZZ_CHECK(parsed.status().message().rfind("fuzz.json: ", 0) == 0,
                       parsed.status().message());
    return 0;
  }
  const std::string printed = parsed->dump();
  auto again = ParseJson(printed, "printed.json", max_depth);
  CHAINRL_FUZZ_CHECK(again.ok(), again.status().ToString());
  CHAINRL_FUZZ_CHECK(*again == *parsed, printed);
  return 0;
}
