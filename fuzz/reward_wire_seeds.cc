// Writes seed streams for reward_wire_fuzz into the folder given: the piece-size byte, then frames
// of every message of the reward worker protocol as the pool and a worker write them (one message
// per seed, and one conversation of all of them).
#include <cstdio>
#include <fstream>
#include <limits>

#include "rewards/reward_wire.h"

using namespace chainrl;
using namespace chainrl::rewards;

namespace {

std::string Frame(std::string_view payload) {
  std::string out;
  const auto n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.append(payload);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::vector<std::string> payloads;
  payloads.push_back(wire::EncodeInit({"/opt/rewards/last_line_answer.so", "strict = true\n"}));
  payloads.push_back(wire::EncodeInitReply({true, "last_line_answer", "1.2.0", ""}));
  payloads.push_back(wire::EncodeInitReply({false, "", "", "options: unknown key 'x'"}));
  std::vector<RewardInput> samples(3);
  samples[0] = {"ex-1", "What is 2+2?", "4", {19, 220, 17}, "stop", "\"4\"", "{}"};
  samples[1] = {"ex-2", "Name a prime.", "", {}, "length", "null", "{\"tags\":[\"a\"]}"};
  samples[2].token_ids = {-1, 0, 2147483647};
  std::vector<const RewardInput*> ptrs;
  for (const RewardInput& s : samples) ptrs.push_back(&s);
  payloads.push_back(wire::EncodeScore(ptrs));
  wire::ScoreReply reply;
  reply.calls = 3;
  reply.outputs.push_back({1.0, false, "", {{"format", 0.5}, {"answer", 1.0}}});
  reply.outputs.push_back({0.0, true, "plugin raised: bad answer", {}});
  reply.outputs.push_back({std::numeric_limits<double>::quiet_NaN(), false, "nan", {{"x", -0.0}}});
  payloads.push_back(wire::EncodeScoreReply(reply));
  // A seed the decoders refuse would only start the fuzzer bare.
  wire::InitRequest init;
  wire::InitReply init_reply;
  std::vector<RewardInput> decoded_samples;
  wire::ScoreReply decoded_reply;
  const Status checks[] = {wire::DecodeInit(payloads[0], &init),
                           wire::DecodeInitReply(payloads[1], &init_reply),
                           wire::DecodeInitReply(payloads[2], &init_reply),
                           wire::DecodeScore(payloads[3], &decoded_samples),
                           wire::DecodeScoreReply(payloads[4], &decoded_reply)};
  for (const Status& st : checks) {
    if (st.ok()) continue;
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }

  std::string conversation(1, static_cast<char>(6));  // pieces of 7 bytes
  for (size_t i = 0; i < payloads.size(); ++i) {
    const std::string seed = std::string(1, static_cast<char>(255)) + Frame(payloads[i]);
    char name[32];
    std::snprintf(name, sizeof name, "/message-%02zu", i);
    std::ofstream(argv[1] + std::string(name), std::ios::binary) << seed;
    conversation += Frame(payloads[i]);
  }
  std::ofstream(argv[1] + std::string("/conversation"), std::ios::binary) << conversation;
  return 0;
}
