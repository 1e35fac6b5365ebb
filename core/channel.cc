// ZeroMQ channels carrying wire frames; see channel.h for the contracts.
#include "core/channel.h"

#include <cerrno>

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <vector>
#include <zmq.hpp>

#include "core/log.h"

namespace chainrl::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::string Hex(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes.substr(0, 16)) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

std::string PeerAddress(zmq::message_t& msg) {
  const char* a = nullptr;
  try {
    a = msg.gets("Peer-Address");
  } catch (const zmq::error_t&) {
  }
  return a && *a ? a : "?";
}

int Socktype(ChannelKind kind) {
  switch (kind) {
    case ChannelKind::kWorkServer:
      return ZMQ_ROUTER;
    case ChannelKind::kWorkClient:
      return ZMQ_DEALER;
    case ChannelKind::kTrajectorySink:
      return ZMQ_PULL;
    case ChannelKind::kTrajectorySource:
      return ZMQ_PUSH;
  }
  return ZMQ_PAIR;
}

bool Binds(ChannelKind kind) {
  return kind == ChannelKind::kWorkServer || kind == ChannelKind::kTrajectorySink;
}

// Logs the first rejections in full, then one in every 1000, so garbage cannot flood the log.
void LogReject(const Status& st) {
  static std::atomic<uint64_t> n{0};
  uint64_t k = n.fetch_add(1, std::memory_order_relaxed);
  if (k < 20 || k % 1000 == 0) {
    CHAINRL_LOG(kWarn) << st.message() << " (rejection #" << k + 1 << ")";
  }
}

}  // namespace

std::string Endpoint::ToZmq() const {
  switch (kind) {
    case Kind::kTcp:
      return "tcp://" + host + ":" + (port == 0 ? "*" : std::to_string(port));
    case Kind::kIpc:
      return "ipc://" + path;
    case Kind::kInproc:
      return "inproc://" + path;
  }
  return "";
}

bool Endpoint::IsLoopback() const {
  if (kind != Kind::kTcp) return true;
  if (host == "localhost") return true;
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1) return false;
  return (ntohl(a.s_addr) >> 24) == 127;
}

Result<Endpoint> ParseEndpoint(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("endpoint '" + std::string(text) + "': " + why);
  };
  Endpoint e;
  auto starts = [&](std::string_view p) { return text.substr(0, p.size()) == p; };
  if (starts("ipc://") || starts("inproc://")) {
    const bool ipc = starts("ipc://");
    e.kind = ipc ? Endpoint::Kind::kIpc : Endpoint::Kind::kInproc;
    e.path = std::string(text.substr(ipc ? 6 : 9));
    if (e.path.empty()) return bad("needs a path after the scheme");
    if (ipc && e.path.size() >= sizeof(sockaddr_un{}.sun_path))
      return bad("ipc path of " + std::to_string(e.path.size()) + " bytes exceeds the " +
                 std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + "-byte socket path limit");
    if (e.path.find('\0') != std::string::npos) return bad("path contains a NUL byte");
    return e;
  }
  if (!starts("tcp://")) return bad("expected tcp://HOST:PORT, ipc://PATH or inproc://NAME");
  std::string_view rest = text.substr(6);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return bad("tcp://HOST:PORT needs a ':PORT'");
  e.host = std::string(rest.substr(0, colon));
  std::string_view port = rest.substr(colon + 1);
  if (e.host.empty()) return bad("tcp://HOST:PORT needs a host (e.g. 127.0.0.1)");
  in_addr a{};
  if (e.host != "*" && e.host != "localhost" && inet_pton(AF_INET, e.host.c_str(), &a) != 1)
    return bad("host '" + e.host + "' is not an IPv4 address, 'localhost' or '*'");
  if (port == "*") {
    e.port = 0;
  } else {
    int p = -1;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p < 0 || p > 65535)
      return bad("tcp://HOST:PORT needs a port in [0, 65535] or '*', got '" + std::string(port) +
                 "'");
    e.port = p;
  }
  return e;
}

Context::Context(int io_threads) : ctx_(std::make_unique<zmq::context_t>(io_threads)) {}
Context::~Context() = default;
zmq::context_t& Context::zmq() { return *ctx_; }

const char* ChannelKindName(ChannelKind kind) {
  switch (kind) {
    case ChannelKind::kWorkServer:
      return "work server";
    case ChannelKind::kWorkClient:
      return "work client";
    case ChannelKind::kTrajectorySink:
      return "trajectory sink";
    case ChannelKind::kTrajectorySource:
      return "trajectory source";
  }
  return "?";
}

Status ConfigureSocket(zmq::socket_t& s, const ChannelOptions& o) {
  try {
    s.set(zmq::sockopt::linger, static_cast<int>(o.linger.count()));
    s.set(zmq::sockopt::sndhwm, o.send_hwm);
    s.set(zmq::sockopt::rcvhwm, o.recv_hwm);
    s.set(zmq::sockopt::sndtimeo, static_cast<int>(o.send_timeout.count()));
    // ZeroMQ drops a connection whose frame header announces more than this, before allocating.
    s.set(zmq::sockopt::maxmsgsize,
          static_cast<int64_t>(
              std::max<uint64_t>(o.limits.max_frame_bytes, o.limits.max_weight_chunk_bytes)));
    if (o.kernel_buffer_bytes > 0) {
      s.set(zmq::sockopt::sndbuf, o.kernel_buffer_bytes);
      s.set(zmq::sockopt::rcvbuf, o.kernel_buffer_bytes);
    }
  } catch (const zmq::error_t& e) {
    return IoError(std::string("setting socket options: ") + e.what());
  }
  return Status::Ok();
}

Result<std::string> BindOrConnect(zmq::socket_t& s, std::string_view text, bool bind,
                                  bool allow_remote_bind) {
  CHAINRL_ASSIGN_OR_RETURN(Endpoint e, ParseEndpoint(text));
  if (bind && !e.IsLoopback() && !allow_remote_bind)
    return InvalidArgument("endpoint '" + std::string(text) +
                           "': binding beyond loopback exposes this port to other machines; "
                           "bind 127.0.0.1 or enable remote binding explicitly");
  if (!bind && e.kind == Endpoint::Kind::kTcp && (e.port == 0 || e.host == "*"))
    return InvalidArgument("endpoint '" + std::string(text) +
                           "': connecting needs a concrete host and port");
  const std::string z = e.ToZmq();
  try {
    if (bind) {
      s.bind(z);
      return s.get(zmq::sockopt::last_endpoint);
    }
    s.connect(z);
    return z;
  } catch (const zmq::error_t& err) {
    return IoError(std::string(bind ? "binding " : "connecting ") + z + ": " + err.what());
  }
}

void ReceiveMultipart(zmq::socket_t& socket, size_t max_parts, std::vector<zmq::message_t>* parts) {
  parts->clear();
  do {
    parts->emplace_back();
    if (!socket.recv(parts->back(), zmq::recv_flags::dontwait)) {
      parts->pop_back();
      break;
    }
  } while (parts->back().more() && parts->size() < max_parts);
  while (!parts->empty() && parts->back().more()) {  // drain an absurdly long multipart
    zmq::message_t junk;
    if (!socket.recv(junk, zmq::recv_flags::dontwait) || !junk.more()) break;
  }
}

Channel::Channel(ChannelKind kind, ChannelOptions options, std::unique_ptr<zmq::socket_t> socket,
                 std::string endpoint)
    : kind_(kind),
      options_(std::move(options)),
      socket_(std::move(socket)),
      endpoint_(std::move(endpoint)),
      decoder_(options_.limits) {}

Channel::~Channel() = default;  // the socket closes with its linger bounded by options.linger

Result<std::unique_ptr<Channel>> Channel::Open(Context& ctx, ChannelKind kind,
                                               std::string_view endpoint, ChannelOptions options) {
  std::unique_ptr<zmq::socket_t> s;
  try {
    s = std::make_unique<zmq::socket_t>(ctx.zmq(), Socktype(kind));
    if (kind == ChannelKind::kWorkServer) s->set(zmq::sockopt::router_mandatory, 1);
  } catch (const zmq::error_t& e) {
    return IoError(std::string("creating a ") + ChannelKindName(kind) + " socket: " + e.what());
  }
  CHAINRL_RETURN_IF_ERROR(ConfigureSocket(*s, options));
  auto resolved = BindOrConnect(*s, endpoint, Binds(kind), options.allow_remote_bind);
  if (!resolved.ok())
    return resolved.status().WithPrefix(std::string(ChannelKindName(kind)) + " " + options.name);
  return std::unique_ptr<Channel>(
      new Channel(kind, std::move(options), std::move(s), std::move(resolved).value()));
}

Status Channel::SendFrame(const std::string* peer, const wire::Envelope& env) {
  const size_t size = wire::FrameSize(env);
  if (size > options_.limits.max_frame_bytes)
    return InvalidArgument(options_.name + ": refusing to send a frame of " + std::to_string(size) +
                           " bytes (limit " + std::to_string(options_.limits.max_frame_bytes) +
                           ")");
  zmq::message_t msg(size);
  CHAINRL_RETURN_IF_ERROR(wire::EncodeFrameTo(env, static_cast<uint8_t*>(msg.data()), size));
  try {
    if (peer) {
      zmq::message_t id(peer->data(), peer->size());
      if (!socket_->send(id, zmq::send_flags::sndmore))
        return DeadlineExceeded(options_.name + ": peer " + Hex(*peer) + " queue full for " +
                                std::to_string(options_.send_timeout.count()) + " ms");
    }
    if (!socket_->send(msg, zmq::send_flags::none))
      return DeadlineExceeded(options_.name + ": send to " + endpoint_ + " timed out after " +
                              std::to_string(options_.send_timeout.count()) +
                              " ms (queue full: the receiver is slower)");
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH)
      return NotFound(options_.name + ": peer " + (peer ? Hex(*peer) : "?") + " is not connected");
    return IoError(options_.name + ": send on " + endpoint_ + ": " + e.what());
  }
  return Status::Ok();
}

Status Channel::Send(const wire::Envelope& env) {
  if (kind_ == ChannelKind::kWorkServer)
    return Internal("Send() on a work server; use SendTo(peer)");
  if (kind_ == ChannelKind::kTrajectorySink) return Internal("Send() on a trajectory sink");
  return SendFrame(nullptr, env);
}

Status Channel::SendTo(std::string_view peer, const wire::Envelope& env) {
  if (kind_ != ChannelKind::kWorkServer) return Internal("SendTo() on a non-server channel");
  std::string p(peer);
  return SendFrame(&p, env);
}

Result<std::optional<Received>> Channel::Receive(std::chrono::milliseconds timeout) {
  if (kind_ == ChannelKind::kTrajectorySource) return Internal("Receive() on a trajectory source");
  const auto deadline = Clock::now() + timeout;
  std::vector<zmq::message_t> parts;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    try {
      zmq::pollitem_t item{static_cast<void*>(*socket_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      if (!(item.revents & ZMQ_POLLIN)) return std::optional<Received>();
      ReceiveMultipart(*socket_, 64, &parts);
    } catch (const zmq::error_t& e) {
      // A signal (e.g. a graceful-stop request) interrupts the wait: report "nothing yet", the
      // caller checks its stop flag.
      if (e.num() == EINTR) return std::optional<Received>();
      return IoError(options_.name + ": receive on " + endpoint_ + ": " + e.what());
    }
    if (parts.empty()) continue;
    Received r;
    size_t body = 0;
    if (kind_ == ChannelKind::kWorkServer) {
      r.peer.assign(static_cast<const char*>(parts[0].data()), parts[0].size());
      body = 1;
    }
    const std::string address = body < parts.size() ? PeerAddress(parts[body]) : "?";
    const std::string who =
        (r.peer.empty() ? "" : Hex(r.peer) + "@") + address + " on " + endpoint_;
    Status st;
    wire::RejectReason reason = wire::RejectReason::kMalformed;
    if (parts.size() != body + 1) {
      // Count a wrong number of frames as malformed (a lone routing id, or extra frames).
      st = decoder_.Reject(who, reason,
                           "message of " + std::to_string(parts.size()) + " frames, expected " +
                               std::to_string(body + 1));
    } else {
      st = decoder_.Decode(who, parts[body].data(), parts[body].size(), &r.envelope, &reason);
    }
    if (st.ok()) {
      r.peer_name = r.envelope.sender() + "@" + address;
      return std::optional<Received>(std::move(r));
    }
    LogReject(st);
    if (kind_ == ChannelKind::kWorkServer && options_.reply_errors && !r.peer.empty()) {
      wire::Envelope err = wire::MakeError(options_.name, wire::ErrorCodeFor(reason), st.message());
      try {
        const size_t n = wire::FrameSize(err);
        zmq::message_t id(r.peer.data(), r.peer.size()), msg(n);
        (void)wire::EncodeFrameTo(err, static_cast<uint8_t*>(msg.data()), n);
        if (socket_->send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait))
          (void)socket_->send(msg, zmq::send_flags::dontwait);
      } catch (const zmq::error_t&) {
        // The peer went away; nothing to tell it.
      }
    }
  }
}

Status IsRefusal(const wire::Envelope& env, std::string_view peer) {
  if (env.body_case() != wire::Envelope::kError) return Status::Ok();
  return Aborted("peer " + std::string(peer) + " refused: " +
                 wire::ErrorCode_Name(env.error().code()) + ": " + env.error().message());
}

}  // namespace chainrl::transport
