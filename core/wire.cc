// Framing, validation and decoding of chainrl's wire messages.
#include "core/wire.h"

#include "core/log.h"
#include "core/wire_scan.h"

#include <google/protobuf/stubs/logging.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_set>

namespace chainrl::wire {
namespace {

constexpr uint8_t kMagic[4] = {'C', 'R', 'L', 'W'};

std::string Str(std::string_view s) { return std::string(s); }

// A field path such as "trajectory.samples[2].completion", rendered only on the error path: the
// nodes live on the stack of the validators (or as temporaries of one full expression).
class Path {
 public:
  Path(const char* root) : lit_(root) {}  // NOLINT: implicit by design
  Path(const Path* parent, const char* lit, bool dot, int64_t index, const std::string* key)
      : parent_(parent), lit_(lit), dot_(dot), index_(index), key_(key) {}
  std::string Str() const {
    std::string s = parent_ ? parent_->Str() : std::string();
    if (dot_) s += '.';
    if (lit_) s += lit_;
    if (key_) s += *key_;
    if (index_ >= 0) s += "[" + std::to_string(index_) + "]";
    return s;
  }

 private:
  const Path* parent_ = nullptr;
  const char* lit_ = nullptr;
  bool dot_ = false;
  int64_t index_ = -1;
  const std::string* key_ = nullptr;
};
Path operator+(const Path& p, const char* lit) { return Path(&p, lit, false, -1, nullptr); }
Path operator+(const Path& p, const std::string& key) { return Path(&p, nullptr, false, -1, &key); }
Path Idx(const Path& p, const char* field, size_t i) {
  return Path(&p, field, true, static_cast<int64_t>(i), nullptr);
}
Path At(const Path& p, size_t i) {
  return Path(&p, nullptr, false, static_cast<int64_t>(i), nullptr);
}

#define CHAINRL_WIRE_REQUIRE(cond, path, what)                             \
  do {                                                                     \
    if (!(cond)) return InvalidArgument(Path(path).Str() + ": " + (what)); \
  } while (0)

Status ValidateName(std::string_view s, const Path& path, const Limits& lim, bool required) {
  CHAINRL_WIRE_REQUIRE(!required || !s.empty(), path, "must not be empty");
  CHAINRL_WIRE_REQUIRE(
      s.size() <= lim.max_name_bytes, path,
      std::to_string(s.size()) + " bytes exceeds limit " + std::to_string(lim.max_name_bytes));
  return Status::Ok();
}

Status ValidateText(std::string_view s, const Path& path, const Limits& lim) {
  CHAINRL_WIRE_REQUIRE(
      s.size() <= lim.max_string_bytes, path,
      std::to_string(s.size()) + " bytes exceeds limit " + std::to_string(lim.max_string_bytes));
  return Status::Ok();
}

template <typename Repeated>
Status ValidateTokens(const Repeated& ids, const Path& path, const Limits& lim) {
  CHAINRL_WIRE_REQUIRE(
      static_cast<uint64_t>(ids.size()) <= lim.max_tokens, path,
      std::to_string(ids.size()) + " tokens exceeds limit " + std::to_string(lim.max_tokens));
  // Branch-free (vectorizable) scan first; locate the culprit only on failure.
  if (ids.size() > 0 &&
      internal::MaxOf(ids.data(), static_cast<size_t>(ids.size())) >= lim.vocab_size) {
    for (int i = 0; i < ids.size(); ++i) {
      CHAINRL_WIRE_REQUIRE(
          ids[i] < lim.vocab_size, At(path, i),
          std::to_string(ids[i]) + " is outside [0, " + std::to_string(lim.vocab_size) + ")");
    }
  }
  return Status::Ok();
}

Status ValidateRuns(const PolicyVersionRuns& runs, uint64_t num_tokens, const Path& path) {
  CHAINRL_WIRE_REQUIRE(runs.versions_size() == runs.lengths_size(), path,
                       std::to_string(runs.versions_size()) + " versions but " +
                           std::to_string(runs.lengths_size()) + " run lengths");
  uint64_t total = 0;
  for (int i = 0; i < runs.lengths_size(); ++i) {
    CHAINRL_WIRE_REQUIRE(runs.lengths(i) >= 1, Idx(path, "lengths", i), "run length 0");
    CHAINRL_WIRE_REQUIRE(runs.versions(i) >= 0, Idx(path, "versions", i),
                         std::to_string(runs.versions(i)) + " is negative");
    total += runs.lengths(i);
  }
  CHAINRL_WIRE_REQUIRE(total == num_tokens, path,
                       "runs cover " + std::to_string(total) + " tokens but the segment has " +
                           std::to_string(num_tokens));
  return Status::Ok();
}

Status ValidateSegment(const TokenSegment& seg, const Path& path, const Limits& lim) {
  CHAINRL_RETURN_IF_ERROR(ValidateTokens(seg.token_ids(), path + ".token_ids", lim));
  CHAINRL_WIRE_REQUIRE(seg.behaviour_logprobs_size() == seg.token_ids_size(),
                       path + ".behaviour_logprobs",
                       std::to_string(seg.behaviour_logprobs_size()) + " logprobs for " +
                           std::to_string(seg.token_ids_size()) + " tokens");
  if (!internal::AllFiniteNonPositive(seg.behaviour_logprobs().data(),
                                      static_cast<size_t>(seg.behaviour_logprobs_size()))) {
    for (int i = 0; i < seg.behaviour_logprobs_size(); ++i) {
      float lp = seg.behaviour_logprobs(i);
      CHAINRL_WIRE_REQUIRE(std::isfinite(lp), Idx(path, "behaviour_logprobs", i),
                           std::to_string(lp) + " is not finite");
      CHAINRL_WIRE_REQUIRE(lp <= 0.0f, Idx(path, "behaviour_logprobs", i),
                           std::to_string(lp) + " is > 0");
    }
  }
  return ValidateRuns(seg.policy_versions(), static_cast<uint64_t>(seg.token_ids_size()),
                      path + ".policy_versions");
}

Status ValidateFinite(double v, const Path& path, bool non_negative) {
  CHAINRL_WIRE_REQUIRE(std::isfinite(v), path, std::to_string(v) + " is not finite");
  CHAINRL_WIRE_REQUIRE(!non_negative || v >= 0, path, std::to_string(v) + " is negative");
  return Status::Ok();
}

Status ValidateReward(double v, const Path& path, const Limits& lim) {
  CHAINRL_RETURN_IF_ERROR(ValidateFinite(v, path, false));
  CHAINRL_WIRE_REQUIRE(std::abs(v) <= lim.max_abs_reward, path,
                       std::to_string(v) + " is outside [-" + std::to_string(lim.max_abs_reward) +
                           ", " + std::to_string(lim.max_abs_reward) + "]");
  return Status::Ok();
}

Status ValidateSampling(const SamplingParams& s, const Path& path, const Limits& lim) {
  CHAINRL_RETURN_IF_ERROR(ValidateFinite(s.temperature(), path + ".temperature", true));
  CHAINRL_WIRE_REQUIRE(s.top_p() > 0 && s.top_p() <= 1, path + ".top_p",
                       std::to_string(s.top_p()) + " is outside (0, 1]");
  CHAINRL_WIRE_REQUIRE(s.top_k() >= 0, path + ".top_k", std::to_string(s.top_k()) + " < 0");
  CHAINRL_WIRE_REQUIRE(s.min_p() >= 0 && s.min_p() <= 1, path + ".min_p",
                       std::to_string(s.min_p()) + " is outside [0, 1]");
  CHAINRL_WIRE_REQUIRE(std::isfinite(s.repetition_penalty()) && s.repetition_penalty() > 0,
                       path + ".repetition_penalty",
                       std::to_string(s.repetition_penalty()) + " is not > 0");
  CHAINRL_WIRE_REQUIRE(static_cast<uint32_t>(s.stop_token_ids_size()) <= lim.max_stop_entries &&
                           static_cast<uint32_t>(s.stop_strings_size()) <= lim.max_stop_entries,
                       path, "more than " + std::to_string(lim.max_stop_entries) + " stop entries");
  for (int i = 0; i < s.stop_token_ids_size(); ++i)
    CHAINRL_WIRE_REQUIRE(s.stop_token_ids(i) < lim.vocab_size, Idx(path, "stop_token_ids", i),
                         std::to_string(s.stop_token_ids(i)) + " is outside the vocabulary");
  for (int i = 0; i < s.stop_strings_size(); ++i)
    CHAINRL_RETURN_IF_ERROR(
        ValidateName(s.stop_strings(i), Idx(path, "stop_strings", i), lim, true));
  return Status::Ok();
}

Status ValidateWorkItem(const WorkItem& w, const Path& path, const Limits& lim) {
  CHAINRL_WIRE_REQUIRE(w.lease_id() != 0, path + ".lease_id", "0 is not a lease");
  CHAINRL_WIRE_REQUIRE(w.group_size() >= 1 && w.group_size() <= lim.max_group_size,
                       path + ".group_size",
                       std::to_string(w.group_size()) + " is outside [1, " +
                           std::to_string(lim.max_group_size) + "]");
  CHAINRL_WIRE_REQUIRE(w.token_budget() >= 1, path + ".token_budget", "0 tokens");
  CHAINRL_WIRE_REQUIRE(w.prompt_token_ids_size() > 0 || !w.prompt_text().empty(), path,
                       "neither prompt_token_ids nor prompt_text is set");
  CHAINRL_RETURN_IF_ERROR(ValidateTokens(w.prompt_token_ids(), path + ".prompt_token_ids", lim));
  CHAINRL_RETURN_IF_ERROR(ValidateText(w.prompt_text(), path + ".prompt_text", lim));
  CHAINRL_RETURN_IF_ERROR(ValidateName(w.example_id(), path + ".example_id", lim, false));
  CHAINRL_RETURN_IF_ERROR(ValidateText(w.answer_json(), path + ".answer_json", lim));
  CHAINRL_RETURN_IF_ERROR(ValidateText(w.metadata_json(), path + ".metadata_json", lim));
  CHAINRL_RETURN_IF_ERROR(ValidateText(w.prompt_embeddings(), path + ".prompt_embeddings", lim));
  CHAINRL_WIRE_REQUIRE(w.prompt_embeddings().empty() || w.placeholder_token_id() >= 0,
                       path + ".placeholder_token_id",
                       std::to_string(w.placeholder_token_id()) + " is negative");
  CHAINRL_WIRE_REQUIRE(w.has_sampling(), path + ".sampling", "missing");
  CHAINRL_RETURN_IF_ERROR(ValidateSampling(w.sampling(), path + ".sampling", lim));
  CHAINRL_WIRE_REQUIRE(w.policy_version() >= 0, path + ".policy_version",
                       std::to_string(w.policy_version()) + " is negative");
  CHAINRL_WIRE_REQUIRE(static_cast<uint32_t>(w.carried_size()) <= w.group_size(), path + ".carried",
                       std::to_string(w.carried_size()) + " segments for a group of " +
                           std::to_string(w.group_size()));
  std::vector<bool> seen(w.group_size(), false);
  for (int i = 0; i < w.carried_size(); ++i) {
    const auto& c = w.carried(i);
    Path p = Idx(path, "carried", i);
    CHAINRL_WIRE_REQUIRE(c.sample_index() < w.group_size(), p + ".sample_index",
                         std::to_string(c.sample_index()) + " >= group_size");
    CHAINRL_WIRE_REQUIRE(!seen[c.sample_index()], p + ".sample_index",
                         std::to_string(c.sample_index()) + " appears twice");
    seen[c.sample_index()] = true;
    CHAINRL_RETURN_IF_ERROR(ValidateSegment(c.segment(), p + ".segment", lim));
    // A carried sample is unfinished: it has room for at least one more token.
    const uint32_t cap = w.max_new_tokens() > 0 ? w.max_new_tokens() : w.token_budget();
    CHAINRL_WIRE_REQUIRE(static_cast<uint32_t>(c.segment().token_ids_size()) < cap,
                         p + ".segment",
                         std::to_string(c.segment().token_ids_size()) +
                             " tokens already reach the response cap " + std::to_string(cap));
  }
  return Status::Ok();
}

Status ValidateTrajectory(const Trajectory& t, const Limits& lim) {
  const Path path("trajectory");
  CHAINRL_WIRE_REQUIRE(t.lease_id() != 0, path + ".lease_id", "0 is not a lease");
  CHAINRL_RETURN_IF_ERROR(ValidateName(t.actor_id(), path + ".actor_id", lim, false));
  CHAINRL_WIRE_REQUIRE(
      t.samples_size() >= 1 && static_cast<uint32_t>(t.samples_size()) <= lim.max_group_size,
      path + ".samples",
      std::to_string(t.samples_size()) + " samples is outside [1, " +
          std::to_string(lim.max_group_size) + "]");
  std::unordered_set<uint32_t> seen;
  for (int i = 0; i < t.samples_size(); ++i) {
    const Sample& s = t.samples(i);
    Path p = Idx(path, "samples", i);
    CHAINRL_WIRE_REQUIRE(s.sample_index() < lim.max_group_size, p + ".sample_index",
                         std::to_string(s.sample_index()) + " >= max group size");
    CHAINRL_WIRE_REQUIRE(seen.insert(s.sample_index()).second, p + ".sample_index",
                         std::to_string(s.sample_index()) + " appears twice");
    CHAINRL_RETURN_IF_ERROR(ValidateSegment(s.completion(), p + ".completion", lim));
    CHAINRL_WIRE_REQUIRE(s.finish_reason() >= FINISH_STOP && s.finish_reason() <= FINISH_UNFINISHED,
                         p + ".finish_reason",
                         std::to_string(static_cast<int>(s.finish_reason())) + " is not a reason");
    CHAINRL_RETURN_IF_ERROR(ValidateReward(s.reward(), p + ".reward", lim));
    CHAINRL_WIRE_REQUIRE(
        static_cast<uint32_t>(s.reward_components_size()) <= lim.max_map_entries &&
            static_cast<uint32_t>(s.reward_diagnostics_size()) <= lim.max_map_entries,
        p,
        "more than " + std::to_string(lim.max_map_entries) + " reward components or diagnostics");
    for (const auto& [k, v] : s.reward_components()) {
      CHAINRL_RETURN_IF_ERROR(ValidateName(k, p + ".reward_components key", lim, true));
      CHAINRL_RETURN_IF_ERROR(ValidateReward(v, p + ".reward_components[" + k + "]", lim));
    }
    for (const auto& [k, v] : s.reward_diagnostics()) {
      CHAINRL_RETURN_IF_ERROR(ValidateName(k, p + ".reward_diagnostics key", lim, true));
      CHAINRL_RETURN_IF_ERROR(ValidateText(v, p + ".reward_diagnostics[" + k + "]", lim));
    }
    const Timings& tm = s.timings();
    CHAINRL_RETURN_IF_ERROR(ValidateFinite(tm.queue_seconds(), p + ".timings.queue_seconds", true));
    CHAINRL_RETURN_IF_ERROR(
        ValidateFinite(tm.generate_seconds(), p + ".timings.generate_seconds", true));
    CHAINRL_RETURN_IF_ERROR(
        ValidateFinite(tm.reward_seconds(), p + ".timings.reward_seconds", true));
  }
  return Status::Ok();
}

Status ValidateAnnounce(const WeightAnnounce& a, const Limits& lim) {
  const Path p("weight_announce");
  CHAINRL_WIRE_REQUIRE(a.version() >= 0, p + ".version", "negative");
  CHAINRL_WIRE_REQUIRE(
      a.total_bytes() <= lim.max_weight_bytes, p + ".total_bytes",
      std::to_string(a.total_bytes()) + " exceeds limit " + std::to_string(lim.max_weight_bytes));
  CHAINRL_WIRE_REQUIRE(a.chunk_bytes() >= 1 && a.chunk_bytes() <= lim.max_weight_chunk_bytes,
                       p + ".chunk_bytes",
                       std::to_string(a.chunk_bytes()) + " is outside [1, " +
                           std::to_string(lim.max_weight_chunk_bytes) + "]");
  uint64_t expect = (a.total_bytes() + a.chunk_bytes() - 1) / a.chunk_bytes();
  CHAINRL_WIRE_REQUIRE(a.num_chunks() == expect, p + ".num_chunks",
                       std::to_string(a.num_chunks()) + " but " + std::to_string(a.total_bytes()) +
                           " bytes in chunks of " + std::to_string(a.chunk_bytes()) + " make " +
                           std::to_string(expect));
  return ValidateName(a.format(), p + ".format", lim, false);
}

}  // namespace

const char* RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kTruncated:
      return "truncated";
    case RejectReason::kBadMagic:
      return "bad_magic";
    case RejectReason::kOversized:
      return "oversized";
    case RejectReason::kVersionMismatch:
      return "version_mismatch";
    case RejectReason::kMalformed:
      return "malformed";
    case RejectReason::kInvalid:
      return "invalid";
    case RejectReason::kCount:
      break;
  }
  return "unknown";
}

uint64_t RejectCounters::Total() const {
  uint64_t t = 0;
  for (const auto& c : counts_) t += c.load(std::memory_order_relaxed);
  return t;
}

Envelope MakeEnvelope(std::string_view sender) {
  Envelope env;
  env.set_schema_version(kSchemaVersion);
  env.set_sender(Str(sender));
  return env;
}

Envelope MakeError(std::string_view sender, ErrorCode code, std::string_view message) {
  Envelope env = MakeEnvelope(sender);
  ErrorReply* e = env.mutable_error();
  e->set_code(code);
  e->set_message(Str(message.substr(0, 4096)));
  e->set_schema_version(kSchemaVersion);
  return env;
}

size_t FrameSize(const Envelope& env) { return kHeaderBytes + env.ByteSizeLong(); }

Status EncodeFrameTo(const Envelope& env, uint8_t* out, size_t size) {
  if (env.schema_version() != kSchemaVersion)
    return InvalidArgument("encode: envelope schema_version " +
                           std::to_string(env.schema_version()) + " is not " +
                           std::to_string(kSchemaVersion) + " (use wire::MakeEnvelope)");
  if (size != kHeaderBytes + static_cast<size_t>(env.GetCachedSize()))
    return Internal("encode: buffer of " + std::to_string(size) + " bytes for a frame of " +
                    std::to_string(kHeaderBytes + env.GetCachedSize()));
  std::memcpy(out, kMagic, 4);
  out[4] = static_cast<uint8_t>(kSchemaVersion & 0xff);
  out[5] = static_cast<uint8_t>(kSchemaVersion >> 8);
  out[6] = 0;
  out[7] = 0;
  env.SerializeWithCachedSizesToArray(out + kHeaderBytes);
  return Status::Ok();
}

Result<std::string> EncodeFrame(const Envelope& env) {
  std::string s(FrameSize(env), '\0');
  CHAINRL_RETURN_IF_ERROR(EncodeFrameTo(env, reinterpret_cast<uint8_t*>(s.data()), s.size()));
  return s;
}

Status Validate(const Envelope& env, const Limits& lim) {
  CHAINRL_RETURN_IF_ERROR(ValidateName(env.sender(), "sender", lim, true));
  switch (env.body_case()) {
    case Envelope::kWorkItem:
      return ValidateWorkItem(env.work_item(), "work_item", lim);
    case Envelope::kWorkBatch: {
      const auto& b = env.work_batch();
      CHAINRL_WIRE_REQUIRE(static_cast<uint32_t>(b.items_size()) <= lim.max_items_per_batch,
                           "work_batch.items",
                           std::to_string(b.items_size()) + " items exceeds limit " +
                               std::to_string(lim.max_items_per_batch));
      for (int i = 0; i < b.items_size(); ++i)
        CHAINRL_RETURN_IF_ERROR(ValidateWorkItem(b.items(i), Idx("work_batch", "items", i), lim));
      return Status::Ok();
    }
    case Envelope::kTrajectory:
      return ValidateTrajectory(env.trajectory(), lim);
    case Envelope::kWeightAnnounce:
      return ValidateAnnounce(env.weight_announce(), lim);
    case Envelope::kWeightChunkRequest: {
      const auto& r = env.weight_chunk_request();
      CHAINRL_WIRE_REQUIRE(r.version() >= 0, "weight_chunk_request.version", "negative");
      CHAINRL_WIRE_REQUIRE(r.count() >= 1 && r.count() <= lim.max_chunks_per_request,
                           "weight_chunk_request.count",
                           std::to_string(r.count()) + " is outside [1, " +
                               std::to_string(lim.max_chunks_per_request) + "]");
      return Status::Ok();
    }
    case Envelope::kWeightChunk: {
      const auto& c = env.weight_chunk();
      CHAINRL_WIRE_REQUIRE(c.version() >= 0, "weight_chunk.version", "negative");
      CHAINRL_WIRE_REQUIRE(c.size() <= lim.max_weight_chunk_bytes, "weight_chunk.size",
                           std::to_string(c.size()) + " exceeds limit " +
                               std::to_string(lim.max_weight_chunk_bytes));
      CHAINRL_WIRE_REQUIRE(
          c.offset() <= lim.max_weight_bytes && c.offset() + c.size() <= lim.max_weight_bytes,
          "weight_chunk.offset", "beyond the largest snapshot");
      return Status::Ok();
    }
    case Envelope::kHeartbeat:
      CHAINRL_WIRE_REQUIRE(env.heartbeat().policy_version() >= -1, "heartbeat.policy_version",
                           std::to_string(env.heartbeat().policy_version()) + " < -1");
      CHAINRL_WIRE_REQUIRE(
          static_cast<uint32_t>(env.heartbeat().lease_ids_size()) <= lim.max_items_per_batch,
          "heartbeat.lease_ids",
          std::to_string(env.heartbeat().lease_ids_size()) + " leases exceed limit " +
              std::to_string(lim.max_items_per_batch));
      return Status::Ok();
    case Envelope::kJoin:
      CHAINRL_RETURN_IF_ERROR(ValidateName(env.join().host(), "join.host", lim, false));
      CHAINRL_WIRE_REQUIRE(env.join().max_credits() <= lim.max_items_per_batch, "join.max_credits",
                           std::to_string(env.join().max_credits()) + " exceeds limit " +
                               std::to_string(lim.max_items_per_batch));
      return Status::Ok();
    case Envelope::kLeave:
      return ValidateText(env.leave().reason(), "leave.reason", lim);
    case Envelope::kWorkRequest:
      CHAINRL_WIRE_REQUIRE(env.work_request().credits() >= 1 &&
                               env.work_request().credits() <= lim.max_items_per_batch,
                           "work_request.credits",
                           std::to_string(env.work_request().credits()) + " is outside [1, " +
                               std::to_string(lim.max_items_per_batch) + "]");
      return Status::Ok();
    case Envelope::kWorkDeclined:
      CHAINRL_WIRE_REQUIRE(env.work_declined().lease_id() != 0, "work_declined.lease_id",
                           "must not be 0");
      return ValidateText(env.work_declined().reason(), "work_declined.reason", lim);
    case Envelope::kRunFilesRequest:
      return Status::Ok();
    case Envelope::kRunFiles: {
      const auto& f = env.run_files();
      CHAINRL_RETURN_IF_ERROR(ValidateText(f.config_toml(), "run_files.config_toml", lim));
      CHAINRL_WIRE_REQUIRE(f.model_files_size() <= 64, "run_files.model_files",
                           std::to_string(f.model_files_size()) + " files exceed limit 64");
      const Path files("run_files");
      for (int i = 0; i < f.model_files_size(); ++i) {
        const std::string& name = f.model_files(i).name();
        const Path item = Idx(files, "model_files", static_cast<size_t>(i));
        const Path at = item + ".name";
        CHAINRL_RETURN_IF_ERROR(ValidateName(name, at, lim, true));
        CHAINRL_WIRE_REQUIRE(
            name.front() != '.' &&
                name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                       "QRSTUVWXYZ0123456789._-") == std::string::npos,
            at, "'" + name + "' is not a plain file name");
      }
      return Status::Ok();
    }
    case Envelope::kError:
      CHAINRL_WIRE_REQUIRE(
          ErrorCode_IsValid(env.error().code()), "error.code",
          std::to_string(static_cast<int>(env.error().code())) + " is not an error code");
      return ValidateText(env.error().message(), "error.message", lim);
    case Envelope::BODY_NOT_SET:
      break;
  }
  return InvalidArgument("body: no message (or one this build does not know)");
}

namespace {
// Protobuf logs an ERROR for every string field with invalid UTF-8 it refuses to parse; a garbage
// peer would flood stderr. Our decoder already counts and reports those frames, so Protobuf's own
// messages go to the debug log.
void ProtobufLogToDebug(google::protobuf::LogLevel level, const char* file, int line,
                        const std::string& message) {
  if (level == google::protobuf::LOGLEVEL_FATAL) {
    CHAINRL_LOG(kError) << "protobuf " << file << ":" << line << ": " << message;
  } else {
    CHAINRL_LOG(kDebug) << "protobuf " << file << ":" << line << ": " << message;
  }
}
}  // namespace

Decoder::Decoder(Limits limits) : limits_(limits) {
  static std::once_flag once;
  std::call_once(once, [] { google::protobuf::SetLogHandler(&ProtobufLogToDebug); });
}

Status Decoder::Reject(std::string_view peer, RejectReason r, const std::string& why,
                       RejectReason* reason) {
  counters_.Add(r);
  if (reason) *reason = r;
  StatusCode code = StatusCode::kCorrupt;
  if (r == RejectReason::kVersionMismatch) code = StatusCode::kInvalidArgument;
  return Status(code,
                "peer " + Str(peer) + ": rejected frame (" + RejectReasonName(r) + "): " + why);
}

Status Decoder::Decode(std::string_view peer, const void* data, size_t size, Envelope* out,
                       RejectReason* reason) {
  const auto* b = static_cast<const uint8_t*>(data);
  if (size < kHeaderBytes)
    return Reject(peer, RejectReason::kTruncated,
                  std::to_string(size) + " bytes is shorter than the " +
                      std::to_string(kHeaderBytes) + "-byte header",
                  reason);
  if (std::memcmp(b, kMagic, 4) != 0)
    return Reject(peer, RejectReason::kBadMagic, "not a chainrl frame (bad magic)", reason);
  if (size > limits_.max_frame_bytes)
    return Reject(peer, RejectReason::kOversized,
                  "frame of " + std::to_string(size) + " bytes exceeds limit " +
                      std::to_string(limits_.max_frame_bytes),
                  reason);
  const uint16_t version = static_cast<uint16_t>(b[4] | (b[5] << 8));
  if (version != kSchemaVersion || b[6] != 0 || b[7] != 0)
    return Reject(peer, RejectReason::kVersionMismatch,
                  "peer speaks schema version " + std::to_string(version) + ", this build " +
                      std::to_string(kSchemaVersion),
                  reason);
  out->Clear();
  if (!out->ParseFromArray(b + kHeaderBytes, static_cast<int>(size - kHeaderBytes)))
    return Reject(
        peer, RejectReason::kMalformed,
        "Protobuf body of " + std::to_string(size - kHeaderBytes) + " bytes does not parse",
        reason);
  if (out->schema_version() != kSchemaVersion)
    return Reject(peer, RejectReason::kVersionMismatch,
                  "envelope schema_version " + std::to_string(out->schema_version()) +
                      " differs from the header's " + std::to_string(version),
                  reason);
  Status st = Validate(*out, limits_);
  if (!st.ok()) return Reject(peer, RejectReason::kInvalid, st.message(), reason);
  return Status::Ok();
}

ErrorCode ErrorCodeFor(RejectReason reason) {
  switch (reason) {
    case RejectReason::kVersionMismatch:
      return ERROR_VERSION_MISMATCH;
    case RejectReason::kOversized:
      return ERROR_OVERSIZED;
    case RejectReason::kInvalid:
      return ERROR_INVALID;
    default:
      return ERROR_MALFORMED;
  }
}

PolicyVersionRuns CompressPolicyVersions(std::span<const int64_t> per_token) {
  PolicyVersionRuns runs;
  for (size_t i = 0; i < per_token.size();) {
    size_t j = i + 1;
    while (j < per_token.size() && per_token[j] == per_token[i] && j - i < UINT32_MAX) ++j;
    runs.add_versions(per_token[i]);
    runs.add_lengths(static_cast<uint32_t>(j - i));
    i = j;
  }
  return runs;
}

std::vector<int64_t> ExpandPolicyVersions(const PolicyVersionRuns& runs) {
  std::vector<int64_t> out;
  for (int i = 0; i < runs.versions_size() && i < runs.lengths_size(); ++i)
    out.insert(out.end(), runs.lengths(i), runs.versions(i));
  return out;
}

void AppendPolicyVersionRuns(PolicyVersionRuns* runs, const PolicyVersionRuns& tail) {
  for (int k = 0; k < tail.versions_size(); ++k) {
    const int last = runs->versions_size() - 1;
    if (last >= 0 && runs->versions(last) == tail.versions(k)) {
      runs->set_lengths(last, runs->lengths(last) + tail.lengths(k));
    } else {
      runs->add_versions(tail.versions(k));
      runs->add_lengths(tail.lengths(k));
    }
  }
}

int64_t OldestPolicyVersion(const PolicyVersionRuns& runs) {
  int64_t v = std::numeric_limits<int64_t>::max();
  for (int64_t x : runs.versions()) v = x < v ? x : v;
  return v;
}

}  // namespace chainrl::wire
