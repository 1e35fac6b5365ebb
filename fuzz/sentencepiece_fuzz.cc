// libFuzzer harness: a SentencePiece tokenizer.model (model/tokenizer_sentencepiece.h: the
// ModelProto decoded from protobuf wire format by hand). A model that loads encodes a few texts;
// every id must name a piece, and the ids decode.
#include "fuzz/fuzz_input.h"
#include "model/tokenizer_sentencepiece.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  SentencePieceModel model;
  if (!model.Load(fuzz::AsText(data, size), "fuzz/tokenizer.model").ok()) return 0;
  const int64_t pieces = static_cast<int64_t>(model.pieces().size());
  for (const char* text :
       {"Hello world", "  the cat sat on the mat  ", "naïve 日本語 🤖", "\n\t"}) {
    std::vector<int32_t> ids;
    model.Encode(text, &ids);
    for (int32_t id : ids)
      CHAINRL_FUZZ_CHECK(id >= 0 && id < pieces,
                         "id " + std::to_string(id) + " of " + std::to_string(pieces) + " pieces");
    std::string decoded;
    model.Decode(ids, /*at_start=*/true, &decoded);
  }
  return 0;
}
