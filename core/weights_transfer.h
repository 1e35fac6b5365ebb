// Publication of policy weights from the learner to its actors: versioned, chunked, CRC32C-checked
// per chunk and as a whole. Subscribers pull chunks with a bounded window (credit-based flow
// control), so a late joiner simply fetches the latest snapshot and a slow one holds nobody back.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/channel.h"
#include "core/status.h"
#include "core/wire.h"

namespace chainrl::transport {

// Immutable bytes kept alive by `owner` (a vector, an mmap, a tensor's storage...).
struct WeightsBuffer {
  std::shared_ptr<const void> owner;
  std::span<const uint8_t> bytes;

  static WeightsBuffer FromVector(std::vector<uint8_t> v);
  // Uninitialised storage of `size` bytes that the caller fills before sharing; `*data` gets
  // a writable pointer to it. Large sizes are mmapped with huge pages advised. Throws
  // std::bad_alloc when memory is exhausted (Fetch turns that into a Status).
  static WeightsBuffer Allocate(size_t size, uint8_t** data);
};

// The announcement and per-chunk CRCs of `bytes` cut into chunks of `chunk_bytes`.
// REQUIRES: chunk_bytes >= 1.
struct ChunkedWeights {
  wire::WeightAnnounce announce;
  std::vector<uint32_t> chunk_crcs;
};
ChunkedWeights ChunkWeights(int64_t version, std::span<const uint8_t> bytes, uint32_t chunk_bytes,
                            std::string format = "");

struct WeightsServerOptions {
  ChannelOptions channel;           // name, limits, linger, send_timeout, send_hwm ...
  uint32_t chunk_bytes = 4u << 20;  // 4 MiB chunks
  int keep_versions = 2;  // older snapshots still served so that in-flight fetches can finish
  int max_subscribers = 4096;
};

// The learner's side: a ROUTER socket served by one background thread. Publish() is thread-safe.
// Subscribers say Join; the server answers with the latest announcement and announces every new
// version to them; chunks are sent only on request (WeightChunkRequest), without copying.
class WeightsServer {
 public:
  static Result<std::unique_ptr<WeightsServer>> Start(Context& ctx, std::string_view endpoint,
                                                      WeightsServerOptions options = {});
  ~WeightsServer();  // stops the thread and closes the socket (bounded by linger)

  // Makes `weights` the latest snapshot (checksums are computed on the caller's thread) and
  // announces it. InvalidArgument if version is not newer than the last published one.
  Status Publish(int64_t version, WeightsBuffer weights, std::string format = "");

  const std::string& endpoint() const { return endpoint_; }
  uint64_t chunks_sent() const { return chunks_sent_.load(); }
  uint64_t bytes_sent() const { return bytes_sent_.load(); }
  int subscribers() const { return subscribers_.load(); }
  const wire::RejectCounters& rejects() const;

  struct Snapshot;  // internal, defined in the .cc

 private:
  WeightsServer() = default;
  void Serve();

  std::unique_ptr<zmq::socket_t> socket_;  // used only by the serving thread after Start
  std::string endpoint_;
  WeightsServerOptions options_;
  std::unique_ptr<wire::Decoder> decoder_;
  std::mutex mu_;  // guards snapshots_ and announce_pending_
  std::vector<std::shared_ptr<const Snapshot>> snapshots_;  // newest last
  bool announce_pending_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> chunks_sent_{0}, bytes_sent_{0};
  std::atomic<int> subscribers_{0};
  std::thread thread_;
};

// The largest request window a client may use; the server's queues are sized for it.
inline constexpr int kMaxWindowChunks = 1024;

struct WeightsClientOptions {
  ChannelOptions channel;
  uint32_t window_chunks = 8;  // chunk requests in flight (flow control), <= kMaxWindowChunks
  std::chrono::milliseconds chunk_timeout{10000};  // no chunk for this long: DeadlineExceeded
};

// An actor's side: a DEALER socket. Owns it; NOT thread-safe (use from the actor's loop thread).
class WeightsClient {
 public:
  // Connects and says Join; the server answers with its latest announcement, if any.
  static Result<std::unique_ptr<WeightsClient>> Connect(Context& ctx, std::string_view endpoint,
                                                        WeightsClientOptions options = {});
  ~WeightsClient();

  // Waits up to `timeout` for an announcement newer than any returned before; nullopt if none.
  Result<std::optional<wire::WeightAnnounce>> PollAnnounce(std::chrono::milliseconds timeout);

  // Downloads the snapshot `announce` describes and verifies each chunk's CRC32C (against the
  // server's per-chunk value) and the whole snapshot's (against the announcement) before
  // returning it; the caller swaps it in only then. Corrupt names the failing chunk; Aborted if
  // the server no longer has that version (PollAnnounce then yields the newer one).
  Result<WeightsBuffer> Fetch(const wire::WeightAnnounce& announce);

  // Hands back a buffer from an earlier Fetch that the caller no longer uses (after swapping in a
  // newer version), so the next Fetch of the same size writes into it: no allocation, no page
  // faults. Returns false (and drops it) if it did not come from this client's Fetch or another
  // copy of it is still alive.
  bool Recycle(WeightsBuffer old);

  // Sends Leave (best effort). Also done by the destructor.
  void Leave();
  const wire::RejectCounters& rejects() const { return decoder_.counters(); }

 private:
  WeightsClient(WeightsClientOptions options, std::unique_ptr<zmq::socket_t> socket,
                std::string endpoint);
  Status SendEnvelope(const wire::Envelope& env);
  // Receives one message (1 or 2 frames); nullopt on timeout.
  Result<bool> ReceiveOne(std::chrono::milliseconds timeout, wire::Envelope* env,
                          zmq::message_t* payload);
  void NoteAnnounce(const wire::WeightAnnounce& a);

  WeightsClientOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::string endpoint_;
  wire::Decoder decoder_;
  struct Spare {
    std::shared_ptr<const void> owner;
    uint8_t* data = nullptr;
    size_t size = 0;
  };
  Spare spare_;                     // a recycled (or failed fetch's) buffer to write into next
  std::vector<uint8_t*> returned_;  // the last buffers Fetch returned, for Recycle's check
  std::optional<wire::WeightAnnounce> pending_;  // newest announcement not yet returned
  int64_t last_returned_ = -1;
  bool left_ = false;
};

}  // namespace chainrl::transport
