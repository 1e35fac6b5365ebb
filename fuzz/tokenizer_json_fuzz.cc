// libFuzzer harness: a Hugging Face tokenizer.json, with a tokenizer_config.json after a
// "\n#tokenizer_config.json\n" line (model/tokenizer.h Tokenizer::FromJsonText: the BPE model,
// normalizer, pre-tokenizer regexes, post-processor, added tokens). A tokenizer that loads then
// encodes a few texts (and the input itself) and decodes the ids.
#include "fuzz/fuzz_input.h"
#include "model/tokenizer.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [json, config] = fuzz::SplitAt(fuzz::AsText(data, size), "\n#tokenizer_config.json\n");
  auto tok = Tokenizer::FromJsonText(json, config, "fuzz/tokenizer.json");
  if (!tok.ok()) return 0;
  const std::string texts[] = {"Hello, world! 12345 héllo  日本語\n\tdone", " <|im_end|> x",
                               std::string(json.substr(0, 256))};
  for (const std::string& text : texts) {
    for (bool special : {false, true}) {
      auto ids = tok->Encode(text, special);
      if (!ids.ok()) continue;  // e.g. text that is not UTF-8
      for (int32_t id : *ids)
        CHAINRL_FUZZ_CHECK(id >= 0 && id < tok->vocab_size(), "id " + std::to_string(id));
      auto decoded = tok->Decode(*ids);
      CHAINRL_FUZZ_CHECK(decoded.ok(), decoded.status().message());
    }
  }
  std::vector<int32_t> every;
  for (int32_t id = 0; id < std::min<int64_t>(tok->vocab_size(), 512); ++id) every.push_back(id);
  (void)tok->Decode(every, /*skip_special=*/true);
  (void)tok->DecodeBytes(every);
  return 0;
}
