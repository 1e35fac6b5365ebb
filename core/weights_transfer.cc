// Chunked, checksummed weights publication; see weights_transfer.h.
#include "core/weights_transfer.h"

#include <cerrno>

#include <sys/mman.h>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <zmq.hpp>

#include "core/crc32c.h"
#include "core/log.h"

namespace chainrl::transport {

struct WeightsServer::Snapshot {
  WeightsBuffer weights;
  ChunkedWeights chunked;
};

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string Hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

uint64_t ChunkSize(const wire::WeightAnnounce& a, uint32_t index) {
  const uint64_t off = uint64_t{index} * a.chunk_bytes();
  return std::min<uint64_t>(a.chunk_bytes(), a.total_bytes() - off);
}

void ReleaseSnapshotRef(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const WeightsServer::Snapshot>*>(hint);
}

zmq::message_t EncodeMessage(const wire::Envelope& env) {
  const size_t n = wire::FrameSize(env);
  zmq::message_t m(n);
  (void)wire::EncodeFrameTo(env, static_cast<uint8_t*>(m.data()), n);  // env is ours: valid
  return m;
}

}  // namespace

WeightsBuffer WeightsBuffer::FromVector(std::vector<uint8_t> v) {
  auto owner = std::make_shared<const std::vector<uint8_t>>(std::move(v));
  return WeightsBuffer{owner, std::span<const uint8_t>(owner->data(), owner->size())};
}

WeightsBuffer WeightsBuffer::Allocate(size_t size, uint8_t** data) {
  if (size >= (size_t{8} << 20)) {
    // Large snapshots: populate the pages in one call. Faulting them in one by one while chunks
    // are copied in was measured to cost more than the transfer itself. (Huge pages were slower
    // still here: their synchronous compaction stalls.)
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) {
      std::shared_ptr<const void> owner(
          p, [size](const void* q) { munmap(const_cast<void*>(q), size); });
      *data = static_cast<uint8_t*>(p);
      return WeightsBuffer{std::move(owner), std::span<const uint8_t>(*data, size)};
    }
  }
  std::shared_ptr<uint8_t[]> mem(new uint8_t[size > 0 ? size : 1]);
  *data = mem.get();
  return WeightsBuffer{std::shared_ptr<const void>(mem, mem.get()),
                       std::span<const uint8_t>(mem.get(), size)};
}

ChunkedWeights ChunkWeights(int64_t version, std::span<const uint8_t> bytes, uint32_t chunk_bytes,
                            std::string format) {
  ChunkedWeights c;
  const uint64_t n = (bytes.size() + chunk_bytes - 1) / chunk_bytes;
  c.chunk_crcs.reserve(n);
  uint32_t whole = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t off = i * chunk_bytes;
    const uint64_t len = std::min<uint64_t>(chunk_bytes, bytes.size() - off);
    const uint32_t crc = crc32c::Value(bytes.data() + off, len);
    c.chunk_crcs.push_back(crc);
    whole = i == 0 ? crc : crc32c::Combine(whole, crc, len);
  }
  c.announce.set_version(version);
  c.announce.set_total_bytes(bytes.size());
  c.announce.set_chunk_bytes(chunk_bytes);
  c.announce.set_num_chunks(static_cast<uint32_t>(n));
  c.announce.set_crc32c(whole);
  c.announce.set_format(std::move(format));
  return c;
}

// ---- server -------------------------------------------------------------------------------------

Result<std::unique_ptr<WeightsServer>> WeightsServer::Start(Context& ctx, std::string_view endpoint,
                                                            WeightsServerOptions options) {
  if (options.chunk_bytes == 0 ||
      options.chunk_bytes > options.channel.limits.max_weight_chunk_bytes)
    return InvalidArgument("weights server: chunk_bytes " + std::to_string(options.chunk_bytes) +
                           " is outside [1, " +
                           std::to_string(options.channel.limits.max_weight_chunk_bytes) + "]");
  if (options.keep_versions < 1) return InvalidArgument("weights server: keep_versions < 1");
  std::unique_ptr<WeightsServer> s(new WeightsServer());
  // Chunks are sent without copying (each queued message only references the snapshot), and
  // only on request, so the per-subscriber queue is bounded by its request window: never let
  // ZeroMQ's high-water mark drop a requested chunk.
  options.channel.send_hwm = std::max(options.channel.send_hwm, kMaxWindowChunks * 4);
  s->options_ = std::move(options);
  try {
    s->socket_ = std::make_unique<zmq::socket_t>(ctx.zmq(), ZMQ_ROUTER);
    s->socket_->set(zmq::sockopt::router_mandatory, 1);
  } catch (const zmq::error_t& e) {
    return IoError(std::string("weights server: creating socket: ") + e.what());
  }
  CHAINRL_RETURN_IF_ERROR(ConfigureSocket(*s->socket_, s->options_.channel));
  CHAINRL_RETURN_IF_ERROR(
      GuardServerSocket(ctx, *s->socket_, s->options_.channel, "weights server"));
  auto ep =
      BindOrConnect(*s->socket_, endpoint, /*bind=*/true, s->options_.channel.allow_remote_bind);
  if (!ep.ok()) return ep.status().WithPrefix("weights server");
  s->endpoint_ = std::move(ep).value();
  s->decoder_ = std::make_unique<wire::Decoder>(s->options_.channel.limits);
  s->thread_ = std::thread([p = s.get()] { p->Serve(); });
  return s;
}

WeightsServer::~WeightsServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

const wire::RejectCounters& WeightsServer::rejects() const { return decoder_->counters(); }

Status WeightsServer::Publish(int64_t version, WeightsBuffer weights, std::string format) {
  auto snap = std::make_shared<Snapshot>();
  snap->chunked = ChunkWeights(version, weights.bytes, options_.chunk_bytes, std::move(format));
  snap->weights = std::move(weights);
  std::lock_guard<std::mutex> lock(mu_);
  if (!snapshots_.empty() && snapshots_.back()->chunked.announce.version() >= version)
    return InvalidArgument("weights server: version " + std::to_string(version) +
                           " is not newer than the published " +
                           std::to_string(snapshots_.back()->chunked.announce.version()));
  snapshots_.push_back(std::move(snap));
  while (static_cast<int>(snapshots_.size()) > options_.keep_versions)
    snapshots_.erase(snapshots_.begin());
  announce_pending_ = true;
  return Status::Ok();
}

void WeightsServer::Serve() {
  std::map<std::string, bool> subscribers;  // routing ids that said Join
  const std::string& name = options_.channel.name;
  auto send_to = [&](const std::string& id, const wire::Envelope& env) {
    try {
      zmq::message_t idm(id.data(), id.size());
      zmq::message_t m = EncodeMessage(env);
      if (!socket_->send(idm, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      return socket_->send(m, zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t&) {
      return false;  // EHOSTUNREACH: it left
    }
  };
  auto announce_of = [](const std::shared_ptr<const Snapshot>& s) {
    wire::Envelope env;
    *env.mutable_weight_announce() = s->chunked.announce;
    return env;
  };
  std::vector<zmq::message_t> parts;
  wire::Envelope in;
  while (!stop_.load()) {
    std::shared_ptr<const Snapshot> latest;
    bool announce = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!snapshots_.empty()) latest = snapshots_.back();
      announce = announce_pending_;
      announce_pending_ = false;
    }
    if (announce && latest) {
      wire::Envelope env = announce_of(latest);
      env.set_schema_version(wire::kSchemaVersion);
      env.set_sender(name);
      for (auto it = subscribers.begin(); it != subscribers.end();) {
        if (!send_to(it->first, env)) {
          it = subscribers.erase(it);  // gone; it re-joins if it comes back
        } else {
          ++it;
        }
      }
      subscribers_ = static_cast<int>(subscribers.size());
    }
    try {
      zmq::pollitem_t item{static_cast<void*>(*socket_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      ReceiveMultipart(*socket_, 8, &parts);
    } catch (const zmq::error_t& e) {
      CHAINRL_LOG(kError) << "weights server " << endpoint_ << ": " << e.what();
      continue;
    }
    if (parts.empty()) continue;
    const std::string id(static_cast<const char*>(parts[0].data()), parts[0].size());
    const std::string who = "weights subscriber on " + endpoint_;
    wire::RejectReason reason = wire::RejectReason::kMalformed;
    Status st = parts.size() != 2
                    ? decoder_->Reject(who, reason, std::to_string(parts.size()) + " frames")
                    : decoder_->Decode(who, parts[1].data(), parts[1].size(), &in, &reason);
    if (!st.ok()) {
      CHAINRL_LOG(kWarn) << st.message();
      send_to(id, wire::MakeError(name, wire::ErrorCodeFor(reason), st.message()));
      continue;
    }
    switch (in.body_case()) {
      case wire::Envelope::kJoin:
      case wire::Envelope::kHeartbeat:
        if (!subscribers.count(id) &&
            static_cast<int>(subscribers.size()) >= options_.max_subscribers) {
          send_to(id, wire::MakeError(name, wire::ERROR_NOT_AVAILABLE, "too many subscribers"));
          break;
        }
        subscribers[id] = true;
        subscribers_ = static_cast<int>(subscribers.size());
        if (in.has_join() && latest) {
          wire::Envelope env = announce_of(latest);
          env.set_schema_version(wire::kSchemaVersion);
          env.set_sender(name);
          send_to(id, env);
        }
        break;
      case wire::Envelope::kLeave:
        subscribers.erase(id);
        subscribers_ = static_cast<int>(subscribers.size());
        break;
      case wire::Envelope::kWeightChunkRequest: {
        const auto& req = in.weight_chunk_request();
        std::shared_ptr<const Snapshot> snap;
        {
          std::lock_guard<std::mutex> lock(mu_);
          for (const auto& s : snapshots_)
            if (s->chunked.announce.version() == req.version()) snap = s;
          if (!snapshots_.empty()) latest = snapshots_.back();
        }
        if (!snap) {
          send_to(id, wire::MakeError(
                          name, wire::ERROR_NOT_AVAILABLE,
                          "weights version " + std::to_string(req.version()) + " is not available" +
                              (latest ? "; latest is " +
                                            std::to_string(latest->chunked.announce.version())
                                      : "")));
          break;
        }
        const auto& a = snap->chunked.announce;
        if (uint64_t{req.first_chunk()} + req.count() > a.num_chunks()) {
          send_to(id, wire::MakeError(name, wire::ERROR_INVALID,
                                      "chunks [" + std::to_string(req.first_chunk()) + ", +" +
                                          std::to_string(req.count()) + ") beyond " +
                                          std::to_string(a.num_chunks())));
          break;
        }
        wire::Envelope env = wire::MakeEnvelope(name);
        wire::WeightChunk* c = env.mutable_weight_chunk();
        c->set_version(a.version());
        for (uint32_t i = req.first_chunk(); i < req.first_chunk() + req.count(); ++i) {
          const uint64_t off = uint64_t{i} * a.chunk_bytes();
          const uint64_t len = ChunkSize(a, i);
          c->set_index(i);
          c->set_offset(off);
          c->set_size(static_cast<uint32_t>(len));
          c->set_crc32c(snap->chunked.chunk_crcs[i]);
          try {
            zmq::message_t idm(id.data(), id.size());
            zmq::message_t head = EncodeMessage(env);
            auto* ref = new std::shared_ptr<const Snapshot>(snap);
            zmq::message_t body(const_cast<uint8_t*>(snap->weights.bytes.data() + off), len,
                                &ReleaseSnapshotRef, ref);
            if (!socket_->send(idm, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) break;
            socket_->send(head, zmq::send_flags::sndmore);
            socket_->send(body, zmq::send_flags::none);
            chunks_sent_.fetch_add(1);
            bytes_sent_.fetch_add(len);
          } catch (const zmq::error_t&) {
            break;  // the subscriber left; it re-requests if it comes back
          }
        }
        break;
      }
      default:
        send_to(id, wire::MakeError(name, wire::ERROR_INVALID,
                                    "weights server does not handle this message"));
    }
  }
}

// ---- client -------------------------------------------------------------------------------------

WeightsClient::WeightsClient(WeightsClientOptions options, std::unique_ptr<zmq::socket_t> socket,
                             std::string endpoint)
    : options_(std::move(options)),
      socket_(std::move(socket)),
      endpoint_(std::move(endpoint)),
      decoder_(options_.channel.limits) {}

WeightsClient::~WeightsClient() { Leave(); }

Result<std::unique_ptr<WeightsClient>> WeightsClient::Connect(Context& ctx,
                                                              std::string_view endpoint,
                                                              WeightsClientOptions options) {
  if (options.window_chunks == 0 || options.window_chunks > kMaxWindowChunks)
    return InvalidArgument("weights client: window_chunks " +
                           std::to_string(options.window_chunks) + " is outside [1, " +
                           std::to_string(kMaxWindowChunks) + "]");
  std::unique_ptr<zmq::socket_t> s;
  try {
    s = std::make_unique<zmq::socket_t>(ctx.zmq(), ZMQ_DEALER);
  } catch (const zmq::error_t& e) {
    return IoError(std::string("weights client: creating socket: ") + e.what());
  }
  // Chunks in flight must fit the receive queue, or ZeroMQ would hold the server back.
  options.channel.recv_hwm =
      std::max<int>(options.channel.recv_hwm, static_cast<int>(2 * options.window_chunks + 16));
  CHAINRL_RETURN_IF_ERROR(ConfigureSocket(*s, options.channel));
  auto ep = BindOrConnect(*s, endpoint, /*bind=*/false, false);
  if (!ep.ok()) return ep.status().WithPrefix("weights client " + options.channel.name);
  std::unique_ptr<WeightsClient> c(
      new WeightsClient(std::move(options), std::move(s), std::move(ep).value()));
  wire::Envelope join = wire::MakeEnvelope(c->options_.channel.name);
  join.mutable_join();
  CHAINRL_RETURN_IF_ERROR(c->SendEnvelope(join));
  return c;
}

Status WeightsClient::SendEnvelope(const wire::Envelope& env) {
  try {
    zmq::message_t m = EncodeMessage(env);
    if (!socket_->send(m, zmq::send_flags::none))
      return DeadlineExceeded("weights client: send to " + endpoint_ + " timed out");
  } catch (const zmq::error_t& e) {
    return IoError("weights client: send to " + endpoint_ + ": " + e.what());
  }
  return Status::Ok();
}

void WeightsClient::Leave() {
  if (left_) return;
  left_ = true;
  wire::Envelope env = wire::MakeEnvelope(options_.channel.name);
  env.mutable_leave()->set_reason("shutdown");
  try {
    zmq::message_t m = EncodeMessage(env);
    (void)socket_->send(m, zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
  }
}

Result<bool> WeightsClient::ReceiveOne(std::chrono::milliseconds timeout, wire::Envelope* env,
                                       zmq::message_t* payload) {
  const auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    zmq::message_t head;
    try {
      zmq::pollitem_t item{static_cast<void*>(*socket_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      if (!(item.revents & ZMQ_POLLIN)) return false;
      if (!socket_->recv(head, zmq::recv_flags::dontwait)) continue;
      payload->rebuild();
      int extra = 0;
      bool more = head.more();
      while (more) {
        zmq::message_t part;
        if (!socket_->recv(part, zmq::recv_flags::dontwait)) break;
        more = part.more();
        if (++extra == 1) *payload = std::move(part);
      }
      const std::string who = "weights server " + endpoint_;
      wire::RejectReason reason;
      Status st = decoder_.Decode(who, head.data(), head.size(), env, &reason);
      if (st.ok() && (extra != (env->has_weight_chunk() ? 1 : 0)))
        st = decoder_.Reject(who, wire::RejectReason::kMalformed,
                             std::to_string(extra + 1) + " frames for a " +
                                 (env->has_weight_chunk() ? "chunk" : "message"));
      if (!st.ok()) {
        CHAINRL_LOG(kWarn) << st.message();
        continue;
      }
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return false;  // interrupted by a signal: as a timeout
      return IoError("weights client: receive from " + endpoint_ + ": " + e.what());
    }
  }
}

void WeightsClient::NoteAnnounce(const wire::WeightAnnounce& a) {
  if (a.version() > last_returned_ && (!pending_ || a.version() > pending_->version()))
    pending_ = a;
}

Result<std::optional<wire::WeightAnnounce>> WeightsClient::PollAnnounce(
    std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  wire::Envelope env;
  zmq::message_t payload;
  for (;;) {
    if (pending_) {
      auto a = std::move(*pending_);
      pending_.reset();
      last_returned_ = a.version();
      return std::optional<wire::WeightAnnounce>(std::move(a));
    }
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0 && timeout.count() > 0) return std::optional<wire::WeightAnnounce>();
    CHAINRL_ASSIGN_OR_RETURN(
        bool got, ReceiveOne(std::max(left, std::chrono::milliseconds(0)), &env, &payload));
    if (!got) return std::optional<wire::WeightAnnounce>();
    if (env.has_weight_announce()) NoteAnnounce(env.weight_announce());
    if (env.has_error()) return IsRefusal(env, "weights server " + endpoint_);
    // Chunks left over from an abandoned fetch are dropped here.
  }
}

Result<WeightsBuffer> WeightsClient::Fetch(const wire::WeightAnnounce& a) {
  CHAINRL_RETURN_IF_ERROR(Validate(
      [&] {
        wire::Envelope e = wire::MakeEnvelope("self");
        *e.mutable_weight_announce() = a;
        return e;
      }(),
      options_.channel.limits));
  const std::string what = "weights version " + std::to_string(a.version()) + " from " + endpoint_;
  uint8_t* dst = nullptr;
  WeightsBuffer out;
  if (spare_.data != nullptr && spare_.size == a.total_bytes()) {
    dst = spare_.data;  // a buffer handed back by Recycle(): no allocation, no page faults
    out = WeightsBuffer{std::move(spare_.owner), std::span<const uint8_t>(dst, spare_.size)};
    spare_ = {};
  } else {
    try {
      out = WeightsBuffer::Allocate(a.total_bytes(), &dst);
    } catch (const std::bad_alloc&) {
      return IoError(what + ": cannot allocate " + std::to_string(a.total_bytes()) + " bytes");
    }
  }
  // On failure below, keep the buffer for the next attempt.
  struct KeepOnFailure {
    WeightsClient* c;
    WeightsBuffer* b;
    uint8_t* d;
    bool ok = false;
    ~KeepOnFailure() {
      if (!ok) c->spare_ = {std::move(b->owner), d, b->bytes.size()};
    }
  } keep{this, &out, dst};
  const uint32_t n = a.num_chunks();
  std::vector<uint32_t> crcs(n, 0);
  std::vector<uint8_t> state(n, 0);  // 0 not requested, 1 requested, 2 received
  uint32_t next = 0, in_flight = 0, done = 0;
  wire::Envelope env;
  zmq::message_t payload;
  while (done < n) {
    if (next < n && in_flight < options_.window_chunks) {
      const uint32_t count = std::min(n - next, options_.window_chunks - in_flight);
      wire::Envelope req = wire::MakeEnvelope(options_.channel.name);
      auto* r = req.mutable_weight_chunk_request();
      r->set_version(a.version());
      r->set_first_chunk(next);
      r->set_count(count);
      CHAINRL_RETURN_IF_ERROR(SendEnvelope(req));
      for (uint32_t i = next; i < next + count; ++i) state[i] = 1;
      next += count;
      in_flight += count;
    }
    CHAINRL_ASSIGN_OR_RETURN(bool got, ReceiveOne(options_.chunk_timeout, &env, &payload));
    if (!got)
      return DeadlineExceeded(what + ": no chunk for " +
                              std::to_string(options_.chunk_timeout.count()) + " ms (" +
                              std::to_string(done) + " of " + std::to_string(n) + " received)");
    if (env.has_weight_announce()) {
      NoteAnnounce(env.weight_announce());
      continue;
    }
    if (env.has_error()) {
      if (env.error().code() == wire::ERROR_NOT_AVAILABLE)
        return Aborted(what + ": superseded: " + env.error().message());
      return IsRefusal(env, "weights server " + endpoint_);
    }
    if (!env.has_weight_chunk()) continue;
    const wire::WeightChunk& c = env.weight_chunk();
    if (c.version() != a.version() || c.index() >= n || state[c.index()] != 1) continue;
    const uint64_t off = uint64_t{c.index()} * a.chunk_bytes();
    const uint64_t len = ChunkSize(a, c.index());
    const std::string chunk = what + ": chunk " + std::to_string(c.index());
    if (c.offset() != off || c.size() != len || payload.size() != len)
      return Corrupt(chunk + ": offset/size " + std::to_string(c.offset()) + "/" +
                     std::to_string(c.size()) + " with " + std::to_string(payload.size()) +
                     " payload bytes; expected " + std::to_string(off) + "/" + std::to_string(len));
    const uint32_t crc = crc32c::Value(payload.data(), len);
    if (crc != c.crc32c())
      return Corrupt(chunk + ": crc32c " + Hex32(crc) + " of the received bytes, the server's is " +
                     Hex32(c.crc32c()));
    std::memcpy(dst + off, payload.data(), len);
    crcs[c.index()] = crc;
    state[c.index()] = 2;
    --in_flight;
    ++done;
  }
  uint32_t whole = 0;
  for (uint32_t i = 0; i < n; ++i)
    whole = i == 0 ? crcs[0] : crc32c::Combine(whole, crcs[i], ChunkSize(a, i));
  if (whole != a.crc32c())
    return Corrupt(what + ": whole-snapshot crc32c " + Hex32(whole) + ", announced " +
                   Hex32(a.crc32c()));
  keep.ok = true;
  returned_.push_back(dst);
  if (returned_.size() > 4) returned_.erase(returned_.begin());
  return out;
}

bool WeightsClient::Recycle(WeightsBuffer old) {
  uint8_t* data = const_cast<uint8_t*>(old.bytes.data());
  bool ours = false;
  for (uint8_t* p : returned_) ours |= (p == data);
  // Only a buffer this client returned from Fetch (so writable) and that nobody else still holds.
  if (!ours || data == nullptr || old.owner.use_count() != 1) return false;
  spare_ = {std::move(old.owner), data, old.bytes.size()};
  return true;
}

}  // namespace chainrl::transport
