// libFuzzer harness: frames from peers (core/wire.h Decoder: size, magic and version, Protobuf
// parsing, then Validate against the limits). A frame that decodes must validate, encode again
// and decode to the same message; one that does not is counted under exactly one reason.
#include <google/protobuf/util/message_differencer.h>

#include "core/wire.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static wire::Decoder* decoder = new wire::Decoder();
  static wire::Envelope* out = new wire::Envelope();  // reused, as a socket's owner does
  const uint64_t before = decoder->counters().Total();
  wire::RejectReason reason = wire::RejectReason::kCount;
  const Status st = decoder->Decode("fuzz-peer", data, size, out, &reason);
  if (!st.ok()) {
    CHAINRL_FUZZ_CHECK(reason != wire::RejectReason::kCount, st.message());
    CHAINRL_FUZZ_CHECK(decoder->counters().Total() == before + 1, st.message());
    CHAINRL_FUZZ_CHECK(st.message().find("fuzz-peer") != std::string::npos, st.message());
    return 0;
  }
  CHAINRL_FUZZ_CHECK(decoder->counters().Total() == before, "a decoded frame was counted");
  const Status valid = wire::Validate(*out, decoder->limits());
  CHAINRL_FUZZ_CHECK(valid.ok(), valid.message());
  auto frame = wire::EncodeFrame(*out);
  CHAINRL_FUZZ_CHECK(frame.ok(), frame.status().message());
  wire::Envelope again;
  const Status st2 = decoder->Decode("fuzz-peer", frame->data(), frame->size(), &again);
  CHAINRL_FUZZ_CHECK(st2.ok(), st2.message());
  CHAINRL_FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*out, again),
                     out->ShortDebugString());
  return 0;
}
