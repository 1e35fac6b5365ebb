// libFuzzer harness: a JSONL dataset of preference pairs (data/jsonl.h ParsePreferencesJsonl, as
// LoadPreferencesJsonl reads a file), under both bad-line policies.
#include "data/jsonl.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::AsText(data, size);
  data::JsonlStats stats;
  auto strict =
      data::ParsePreferencesJsonl(text, "fuzz/pref.jsonl", {}, data::BadLinePolicy::kError);
  auto lenient =
      data::ParsePreferencesJsonl(text, "fuzz/pref.jsonl", {}, data::BadLinePolicy::kSkip, &stats);
  CHAINRL_FUZZ_CHECK(lenient.ok(), lenient.status().message());
  CHAINRL_FUZZ_CHECK(stats.examples + stats.skipped == stats.lines, "lines not accounted for");
  CHAINRL_FUZZ_CHECK(strict.ok() == (stats.skipped == 0), "the two policies disagree");
  for (const auto& p : *lenient)
    CHAINRL_FUZZ_CHECK(!p.chosen.empty() && !p.rejected.empty(), p.source);
  return 0;
}
