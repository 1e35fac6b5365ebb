// libFuzzer harness: a JSONL dataset of RL/SFT examples (data/jsonl.h ParseExamplesJsonl, as
// LoadExamplesJsonl reads a file), under both bad-line policies.
#include "data/jsonl.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::AsText(data, size);
  data::JsonlStats stats;
  auto strict = data::ParseExamplesJsonl(text, "fuzz/train.jsonl", {}, data::BadLinePolicy::kError);
  auto lenient =
      data::ParseExamplesJsonl(text, "fuzz/train.jsonl", {}, data::BadLinePolicy::kSkip, &stats);
  CHAINRL_FUZZ_CHECK(lenient.ok(), lenient.status().message());
  CHAINRL_FUZZ_CHECK(stats.examples + stats.skipped == stats.lines, "lines not accounted for");
  CHAINRL_FUZZ_CHECK(strict.ok() == (stats.skipped == 0), "the two policies disagree");
  if (!strict.ok())
    CHAINRL_FUZZ_CHECK(strict.status().message().rfind("fuzz/train.jsonl:", 0) == 0,
                       strict.status().message());
  return 0;
}
