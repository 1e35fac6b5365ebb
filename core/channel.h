// ZeroMQ channels carrying wire::Envelope frames: work, credits, heartbeats and join/leave
// (ROUTER/DEALER) and trajectories over bounded queues (PUSH/PULL); weights: weights_transfer.h.
// Every socket has linger, high-water marks and timeouts set: nothing blocks forever.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/curve.h"
#include "core/status.h"
#include "core/wire.h"

namespace zmq {
class context_t;
class socket_t;
class message_t;
}  // namespace zmq

namespace chainrl::transport {

// A parsed endpoint: tcp://HOST:PORT (PORT 0 or * = any free port when binding), ipc://PATH,
// inproc://NAME. HOST is an IPv4 address, an IPv6 address in brackets (tcp://[::1]:5555), a DNS
// name (tcp://learner.svc:5555) or "*" (every interface, binding only).
struct Endpoint {
  enum class Kind { kTcp, kIpc, kInproc };
  Kind kind = Kind::kTcp;
  std::string host;  // tcp: the address or name, without brackets
  int port = 0;      // tcp: 0 means "any free port" (bind only)
  std::string path;  // ipc: file path; inproc: name

  bool ipv6() const;   // tcp: host is an IPv6 literal
  bool named() const;  // tcp: host is a DNS name (resolved when bound or connected)
  // The string ZeroMQ understands ("tcp://127.0.0.1:*" for port 0, brackets around IPv6).
  std::string ToZmq() const;
  // True for ipc/inproc, and tcp on 127.0.0.0/8, ::1 or a name that resolves only to those.
  bool IsLoopback() const;
};
// Parses and validates `text`; errors say what is wrong ("tcp://host:port needs a port in
// [0, 65535], got '99999'").
Result<Endpoint> ParseEndpoint(std::string_view text);
// The addresses a DNS name resolves to (numeric, IPv6 without brackets), in resolver order;
// NotFound naming the host when it does not resolve.
Result<std::vector<std::string>> ResolveHost(const std::string& host);

// One ZeroMQ context (its I/O threads) shared by every channel of a process. Thread-safe.
// Must outlive the channels opened on it.
class Context {
 public:
  explicit Context(int io_threads = 1);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  zmq::context_t& zmq();

  // Admits only the peers in `allowed` to this context's CURVE server sockets (channels and
  // weights servers opened with server keys, which refuse to open without it). Once, before them.
  Status AuthorizeCurvePeers(std::vector<AuthorizedKey> allowed);
  // nullptr until AuthorizeCurvePeers.
  const CurveAuthenticator* authenticator() const { return auth_.get(); }
  CurveAuthenticator* authenticator() { return auth_.get(); }

 private:
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<CurveAuthenticator> auth_;
};

// Which end of which pattern a channel is.
enum class ChannelKind {
  kWorkServer,        // learner: ROUTER, binds; many actors; SendTo(peer) replies
  kWorkClient,        // actor: DEALER, connects; Send() to the learner
  kTrajectorySink,    // learner: PULL, binds; receives trajectories from all actors
  kTrajectorySource,  // actor: PUSH, connects; Send() blocks at most send_timeout when full
};
const char* ChannelKindName(ChannelKind kind);

// Options of one channel; defaults are safe for a single machine.
struct ChannelOptions {
  std::string name = "chainrl";  // stamped as sender on error replies; names us in logs
  wire::Limits limits;           // frame size (also enforced by ZeroMQ: ZMQ_MAXMSGSIZE) and fields
  int send_hwm = 64;             // messages queued for sending before Send() waits
  int recv_hwm = 64;             // messages queued on receipt before the sender is held back
  std::chrono::milliseconds send_timeout{1000};  // Send() gives DeadlineExceeded after this
  std::chrono::milliseconds linger{200};         // how long close waits for unsent messages
  int kernel_buffer_bytes = 0;     // SO_SNDBUF / SO_RCVBUF for tcp/ipc; 0 = the OS default
  bool allow_remote_bind = false;  // binding a non-loopback tcp address needs this set
  bool reply_errors = true;        // work server: answer rejected frames with an ErrorReply
  // CURVE encryption and authentication; empty: none. A server's peers are the context's
  // authorized keys, and a message's sender becomes "KEYNAME/SENDER" (KEYNAME: the name of the
  // key that authenticated the peer): a peer can speak only in its own key's name.
  CurveKeys curve;
};

// A message that passed decoding and validation. `peer` is the ZeroMQ routing id for a work
// server (pass it to SendTo), else empty; `peer_name` is a printable "sender@address". Behind a
// CURVE server the envelope's sender is already "KEYNAME/SENDER".
struct Received {
  std::string peer;
  std::string peer_name;
  wire::Envelope envelope;
};

// One ZeroMQ socket speaking wire frames. Owns its socket. NOT thread-safe (ZeroMQ sockets are
// not): use a channel from one thread at a time; only rejects() may be read concurrently.
class Channel {
 public:
  // Binds (server, sink) or connects (client, source) a new socket on `endpoint`. Errors name the
  // endpoint: bad syntax, address in use, remote bind without allow_remote_bind.
  static Result<std::unique_ptr<Channel>> Open(Context& ctx, ChannelKind kind,
                                               std::string_view endpoint,
                                               ChannelOptions options = {});
  ~Channel();

  // Encodes and sends `env` (client, source). Waits at most send_timeout while the queue is full,
  // then returns DeadlineExceeded (the message was not sent; retry after heartbeating).
  Status Send(const wire::Envelope& env);
  // Work server only: sends `env` to the peer whose routing id is `peer`. NotFound if that peer
  // is not connected; DeadlineExceeded if its queue stays full for send_timeout.
  Status SendTo(std::string_view peer, const wire::Envelope& env);

  // Waits up to `timeout` for one valid message; nullopt on timeout. Rejected frames are counted
  // in rejects(), logged, answered with an ErrorReply (work server, reply_errors), and waiting
  // goes on. An ErrorReply from the peer is returned like any message (see IsRefusal()).
  Result<std::optional<Received>> Receive(std::chrono::milliseconds timeout);

  // The endpoint actually bound or connected ("tcp://127.0.0.1:41234" after binding port 0).
  const std::string& endpoint() const { return endpoint_; }
  ChannelKind kind() const { return kind_; }
  const wire::RejectCounters& rejects() const { return decoder_.counters(); }

 private:
  Channel(ChannelKind kind, ChannelOptions options, std::unique_ptr<zmq::socket_t> socket,
          std::string endpoint);
  Status SendFrame(const std::string* peer, const wire::Envelope& env);

  ChannelKind kind_;
  ChannelOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::string endpoint_;
  wire::Decoder decoder_;
};

// If `env` is an ErrorReply, the error it carries as a Status naming `peer`; else OK.
Status IsRefusal(const wire::Envelope& env, std::string_view peer);

// Applies chainrl's socket options (linger, HWMs, timeouts, max message size, buffers, IPv6,
// CURVE keys) to a socket; shared by channels and weights transfer.
Status ConfigureSocket(zmq::socket_t& socket, const ChannelOptions& options);
// For a socket with CURVE server keys: Internal unless `ctx` authenticates its peers (a CURVE
// server without a ZAP handler would admit any client that knows its public key), and watches it
// for failed handshakes. Nothing for other sockets.
Status GuardServerSocket(Context& ctx, zmq::socket_t& socket, const ChannelOptions& options,
                         const std::string& label);
// Binds or connects `socket` to `endpoint` after validating it; returns the resolved endpoint.
// A DNS name is resolved (binding: to its first address; connecting: by ZeroMQ, again at each
// reconnection).
Result<std::string> BindOrConnect(zmq::socket_t& socket, std::string_view endpoint, bool bind,
                                  bool allow_remote_bind);
// Reads one multipart message from `socket` without waiting into `parts` (cleared first; empty if
// nothing was ready). Keeps at most `max_parts` (>= 1) frames and reads and drops the rest of a
// longer message, so a peer cannot make us hold an unbounded number. Throws zmq::error_t as
// zmq::socket_t::recv does (EINTR included).
void ReceiveMultipart(zmq::socket_t& socket, size_t max_parts, std::vector<zmq::message_t>* parts);

}  // namespace chainrl::transport
