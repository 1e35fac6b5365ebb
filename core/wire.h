// Framing, validation and decoding of chainrl's wire messages (core/proto/wire.proto).
// A frame is an 8-byte header (magic "CRLW", u16 little-endian schema version, u16 zero) followed
// by one serialized wire::Envelope. Decoding checks size, magic and version before any parsing.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/proto/wire.pb.h"
#include "core/status.h"

namespace chainrl::wire {

// The schema version this build speaks. Bump it on any change that old peers would misread.
inline constexpr uint16_t kSchemaVersion = 1;
inline constexpr size_t kHeaderBytes = 8;

// Bounds every decoded message must respect. Enforced before parsing (frame size) and after
// (counts, ranges, consistency). Defaults suit 256k-entry vocabularies and 1M-token samples.
struct Limits {
  size_t max_frame_bytes = size_t{256} << 20;    // whole frame, header included
  uint32_t vocab_size = 1u << 18;                // token ids must lie in [0, vocab_size)
  uint32_t max_tokens = 1u << 20;                // per prompt or per token segment
  uint32_t max_group_size = 1024;                // G, samples per trajectory, carried segments
  uint32_t max_items_per_batch = 1024;           // work items per batch and credits per request
  uint32_t max_string_bytes = 4u << 20;          // prompt text, diagnostics, messages
  uint32_t max_name_bytes = 256;                 // sender, actor ids, map keys, host names
  uint32_t max_map_entries = 256;                // reward components / diagnostics per sample
  uint32_t max_stop_entries = 256;               // stop tokens / stop strings
  uint32_t max_weight_chunk_bytes = 256u << 20;  // one weights chunk
  uint32_t max_chunks_per_request = 4096;
  uint64_t max_weight_bytes = uint64_t{1} << 42;  // 4 TiB: one weights snapshot
  // |reward| and each |reward component|: the bound on a reward plugin's score
  // (rewards/reward_pool.h); a larger one would swamp every advantage of its group.
  double max_abs_reward = 1e6;
};

// Why a frame was rejected. Every rejection is counted under exactly one reason.
enum class RejectReason : int {
  kTruncated = 0,    // shorter than the header
  kBadMagic,         // not a chainrl frame
  kOversized,        // larger than Limits::max_frame_bytes (rejected before parsing)
  kVersionMismatch,  // header or envelope speaks another schema version
  kMalformed,        // the Protobuf body does not parse
  kInvalid,          // parsed, but a field breaks the schema's rules
  kCount
};
const char* RejectReasonName(RejectReason reason);

// Per-reason rejection counts. Thread-safe (relaxed atomics): a metrics thread may read them
// while the socket's owner writes.
class RejectCounters {
 public:
  void Add(RejectReason r) { counts_[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t Get(RejectReason r) const {
    return counts_[static_cast<int>(r)].load(std::memory_order_relaxed);
  }
  uint64_t Total() const;

 private:
  std::array<std::atomic<uint64_t>, static_cast<int>(RejectReason::kCount)> counts_{};
};

// An Envelope stamped with this build's schema version and `sender`.
Envelope MakeEnvelope(std::string_view sender);
// An ErrorReply envelope.
Envelope MakeError(std::string_view sender, ErrorCode code, std::string_view message);

// Bytes the frame of `env` occupies (header included). Computes and caches the Protobuf sizes.
size_t FrameSize(const Envelope& env);
// Writes the frame of `env` into out[0, size). REQUIRES: size == FrameSize(env), called after
// FrameSize with `env` unchanged since. Returns InvalidArgument if env.schema_version is not ours.
Status EncodeFrameTo(const Envelope& env, uint8_t* out, size_t size);
// Convenience: the whole frame as a string.
Result<std::string> EncodeFrame(const Envelope& env);

// Checks every field of `env` against `limits`; the message names the offending field path
// (e.g. "trajectory.samples[2].completion.behaviour_logprobs[17]: 0.5 is > 0").
Status Validate(const Envelope& env, const Limits& limits);

// Decodes and validates frames from peers. Not thread-safe (one per socket owner); counters()
// may be read from any thread.
class Decoder {
 public:
  // The first Decoder routes Protobuf's own log lines (e.g. one per invalid UTF-8 string in a
  // garbage frame) to chainrl's debug log, so hostile peers cannot flood stderr.
  explicit Decoder(Limits limits = {});

  // Decodes one frame received from `peer` into `*out` (reusing its memory). On failure returns
  // an error naming the peer and the reason, counts it, and stores the reason in *reason if given.
  Status Decode(std::string_view peer, const void* data, size_t size, Envelope* out,
                RejectReason* reason = nullptr);

  // Counts a rejection decided outside Decode (e.g. a message with the wrong number of frames)
  // and returns its error naming `peer`.
  Status Reject(std::string_view peer, RejectReason r, const std::string& why,
                RejectReason* reason = nullptr);

  const Limits& limits() const { return limits_; }
  const RejectCounters& counters() const { return counters_; }

 private:
  Limits limits_;
  RejectCounters counters_;
};

// The ErrorCode an error reply should carry for a rejection reason.
ErrorCode ErrorCodeFor(RejectReason reason);

// Per-token policy versions <-> runs. Compress yields the shortest run list; Expand REQUIRES a
// valid run list (see Validate).
PolicyVersionRuns CompressPolicyVersions(std::span<const int64_t> per_token);
std::vector<int64_t> ExpandPolicyVersions(const PolicyVersionRuns& runs);
// Appends `tail` to `runs` (the tokens of a later segment), joining a first run of `tail` to the
// last run of `runs` when their versions are equal.
void AppendPolicyVersionRuns(PolicyVersionRuns* runs, const PolicyVersionRuns& tail);
// The oldest version in `runs`, or INT64_MAX when empty.
int64_t OldestPolicyVersion(const PolicyVersionRuns& runs);

}  // namespace chainrl::wire
