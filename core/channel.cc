// ZeroMQ channels carrying wire frames; see channel.h for the contracts.
#include "core/channel.h"

#include <cerrno>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
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

bool IsIpv4(const std::string& host) {
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1;
}

bool IsIpv6(const std::string& host) {
  in6_addr a{};
  return inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

bool IsLoopbackAddress(const std::string& host) {
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
  in6_addr b{};
  if (inet_pton(AF_INET6, host.c_str(), &b) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&b)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&b)) return b.s6_addr[12] == 127;
  }
  return false;
}

// A DNS name (RFC 1123): labels of letters, digits and '-', not starting or ending with '-',
// joined by dots; at most 253 characters. Underscores are accepted (service records use them).
bool IsDnsName(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : h) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      if (label == 0 && c == '-') return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

}  // namespace

bool Endpoint::ipv6() const { return kind == Kind::kTcp && IsIpv6(host); }

bool Endpoint::named() const {
  return kind == Kind::kTcp && host != "*" && !IsIpv4(host) && !IsIpv6(host);
}

std::string Endpoint::ToZmq() const {
  switch (kind) {
    case Kind::kTcp:
      return "tcp://" + (ipv6() ? "[" + host + "]" : host) + ":" +
             (port == 0 ? "*" : std::to_string(port));
    case Kind::kIpc:
      return "ipc://" + path;
    case Kind::kInproc:
      return "inproc://" + path;
  }
  return "";
}

bool Endpoint::IsLoopback() const {
  if (kind != Kind::kTcp) return true;
  if (host == "*") return false;
  if (!named()) return IsLoopbackAddress(host);
  auto addresses = ResolveHost(host);
  if (!addresses.ok()) return false;
  for (const std::string& a : *addresses)
    if (!IsLoopbackAddress(a)) return false;
  return true;
}

Result<std::vector<std::string>> ResolveHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) return NotFound("host '" + host + "' does not resolve: " + gai_strerror(rc));
  std::vector<std::string> out;
  for (addrinfo* p = res; p; p = p->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {0};
    const void* src =
        p->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(p->ai_addr)->sin_addr)
            : static_cast<const void*>(
                  &reinterpret_cast<const sockaddr_in6*>(p->ai_addr)->sin6_addr);
    if ((p->ai_family == AF_INET || p->ai_family == AF_INET6) &&
        inet_ntop(p->ai_family, src, buf, sizeof(buf)) &&
        std::find(out.begin(), out.end(), buf) == out.end())
      out.emplace_back(buf);
  }
  freeaddrinfo(res);
  if (out.empty()) return NotFound("host '" + host + "' has no IPv4 or IPv6 address");
  return out;
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
  std::string_view host = rest.substr(0, colon);
  std::string_view port = rest.substr(colon + 1);
  if (host.empty()) return bad("tcp://HOST:PORT needs a host (e.g. 127.0.0.1)");
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad("an IPv6 host is written [ADDRESS]");
    e.host = std::string(host.substr(1, host.size() - 2));
    if (!IsIpv6(e.host)) return bad("'" + e.host + "' is not an IPv6 address");
  } else {
    e.host = std::string(host);
    if (IsIpv6(e.host))
      return bad("an IPv6 host is written in brackets: tcp://[" + e.host + "]:PORT");
    if (e.host != "*" && !IsIpv4(e.host) && !IsDnsName(e.host))
      return bad("host '" + e.host +
                 "' is not an IPv4 address, an [IPv6] address, a DNS name or '*'");
  }
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

Status Context::AuthorizeCurvePeers(std::vector<AuthorizedKey> allowed) {
  if (auth_) return Internal("this context already authenticates its CURVE peers");
  CHAINRL_ASSIGN_OR_RETURN(auth_, CurveAuthenticator::Start(*ctx_, std::move(allowed)));
  return Status::Ok();
}

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
    s.set(zmq::sockopt::ipv6, 1);  // dual-stack: IPv4 addresses work as before
  } catch (const zmq::error_t& e) {
    return IoError(std::string("setting socket options: ") + e.what());
  }
  return ApplyCurveKeys(s, o.curve);
}

Status GuardServerSocket(Context& ctx, zmq::socket_t& s, const ChannelOptions& o,
                         const std::string& label) {
  if (!o.curve.server()) return Status::Ok();
  if (!ctx.authenticator())
    return Internal(label + ": a CURVE server socket on a context that authenticates no peers");
  // Where libzmq has it (a draft option), a missing ZAP handler refuses instead of admitting.
  constexpr int kZapEnforceDomain = 93;
  const int one = 1;
  (void)zmq_setsockopt(static_cast<void*>(s), kZapEnforceDomain, &one, sizeof(one));
  return ctx.authenticator()->Watch(s, label);
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
  if (bind && e.named()) {  // ZeroMQ binds interfaces and addresses, not names
    auto addresses = ResolveHost(e.host);
    if (!addresses.ok())
      return addresses.status().WithPrefix("endpoint '" + std::string(text) + "'");
    e.host = addresses->front();
  }
  const std::string z = e.ToZmq();
  try {
    if (bind) {
      s.bind(z);
      // A dual-stack socket reports an IPv4 address as ::ffff:a.b.c.d: name it as it was given.
      std::string bound = s.get(zmq::sockopt::last_endpoint);
      const std::string mapped = "tcp://[::ffff:";
      if (bound.rfind(mapped, 0) == 0 && IsIpv4(e.host) && bound.find(']') != std::string::npos)
        bound = "tcp://" + bound.substr(mapped.size(), bound.find(']') - mapped.size()) +
                bound.substr(bound.find(']') + 1);
      return bound;
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
  CHAINRL_RETURN_IF_ERROR(GuardServerSocket(ctx, *s, options, ChannelKindName(kind)));
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
    if (st.ok() && options_.curve.server()) {
      // The identity is the key's: "KEYNAME/SENDER", whatever the sender calls itself.
      const char* user = nullptr;
      try {
        user = parts[body].gets("User-Id");
      } catch (const zmq::error_t&) {
      }
      if (!user || !*user) {
        st = decoder_.Reject(who, wire::RejectReason::kMalformed,
                             "a message without an authenticated key on a CURVE socket");
      } else {
        r.envelope.set_sender(std::string(user) + "/" + r.envelope.sender());
      }
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
