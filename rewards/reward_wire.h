// The private protocol between RewardPool and chainrl-reward-worker: length-prefixed frames on a
// stream socket, each an encoded init or score request or reply. Both ends are built together.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards::wire {

// Message tags (first byte of a frame's payload).
inline constexpr char kInit = 'I';        // host -> worker: path, options TOML
inline constexpr char kInitReply = 'i';   // worker -> host: ok, plugin name, version, error
inline constexpr char kScore = 'S';       // host -> worker: samples
inline constexpr char kScoreReply = 's';  // worker -> host: outputs
// Frames above this size are refused (a broken peer, not a real batch).
inline constexpr uint32_t kMaxFrameBytes = 1u << 30;

struct InitRequest {
  std::string path;
  std::string options_toml;
};
struct InitReply {
  bool ok = false;
  std::string plugin_name, plugin_version, error;
};
// One sample's raw output as the plugin gave it (the host decides what counts as an error).
struct SampleOutput {
  double score = 0;
  bool plugin_error = false;  // status CHAINRL_REWARD_ERROR or an exception
  std::string message;
  std::vector<std::pair<std::string, double>> components;
};
struct ScoreReply {
  uint32_t calls = 0;  // plugin score calls the worker made for this request
  std::vector<SampleOutput> outputs;
};

std::string EncodeInit(const InitRequest& m);
std::string EncodeInitReply(const InitReply& m);
std::string EncodeScore(const std::vector<const RewardInput*>& samples);
std::string EncodeScoreReply(const ScoreReply& m);
// Decoders take any bytes (a worker runs an untrusted plugin): Corrupt on a mistagged, truncated
// or overlong payload, naming the field, its byte offset and the bytes left. Every count is
// checked against the bytes left before anything is allocated for it, so memory stays
// proportional to the payload.
Status DecodeInit(std::string_view payload, InitRequest* m);
Status DecodeInitReply(std::string_view payload, InitReply* m);
Status DecodeScore(std::string_view payload, std::vector<RewardInput>* samples);
Status DecodeScoreReply(std::string_view payload, ScoreReply* m);

// Writes one frame (4-byte little-endian length, payload), retrying short writes; never raises
// SIGPIPE. IoError if the peer is gone.
Status WriteFrame(int fd, std::string_view payload);
// Blocking read of one whole frame. IoError on end of stream or a read error.
Result<std::string> ReadFrame(int fd);

// Incremental frame reader for a non-blocking poll loop.
class FrameBuffer {
 public:
  // Appends bytes read from the socket.
  void Append(const char* data, size_t n) { buf_.append(data, n); }
  // Moves a complete frame into *payload and returns true; false if more bytes are needed.
  // Sets *corrupt when the length prefix is impossible.
  bool Next(std::string* payload, bool* corrupt);
  void Clear() { buf_.clear(); }

 private:
  std::string buf_;
};

}  // namespace chainrl::rewards::wire
