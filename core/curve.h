// CURVE security for chainrl's ZeroMQ endpoints: key pairs and their files, the allow-list of
// authorized peers, and the authenticator (a ZAP handler plus handshake monitors) that admits
// only those peers and counts everyone it turns away. docs/SECURITY.md gives the trust model.
//
// Files:
//   NAME.key  the key pair, mode 0600:   public-key = "<40 Z85 chars>"
//                                         secret-key = "<40 Z85 chars>"
//   NAME.pub  one allow-list line:        <40 Z85 chars> NAME
//   authorized keys: such lines, one per peer; '#' starts a comment. `cat *.pub` makes one.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/status.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace chainrl::transport {

inline constexpr size_t kCurveKeyChars = 40;  // a 32-byte key in Z85

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// A fresh key pair from libsodium's generator. Unavailable if this libzmq lacks CURVE.
Result<CurveKeyPair> MakeCurveKeyPair();
// InvalidArgument naming `what` unless `text` is a 40-character Z85 key.
Status CheckCurveKey(std::string_view text, std::string_view what);
// The public key of a Z85 secret key.
Result<std::string> CurvePublicKey(std::string_view secret_z85);

// A peer name: 1-64 characters of [A-Za-z0-9._-]. InvalidArgument naming `what` otherwise.
Status CheckPeerName(std::string_view name, std::string_view what);

// Writes DIR/NAME.key (mode 0600, created exclusively: an existing file is never overwritten) and
// DIR/NAME.pub. Returns the two paths.
Result<std::pair<std::string, std::string>> WriteKeyFiles(const std::string& dir,
                                                          const std::string& name,
                                                          const CurveKeyPair& keys);
// Parses a key pair file's text; `path` names it in errors (with the line). The public key must
// match the secret key.
Result<CurveKeyPair> ParseKeyPairFile(std::string_view text, const std::string& path);
// Reads a key pair file. Refused (naming the file and its mode) when group or others may read it,
// as ssh refuses such a private key.
Result<CurveKeyPair> ReadKeyPairFile(const std::string& path);

// A public key given in a config: the 40-character key itself, or the path of a .pub file (or a
// key pair file, whose public half is taken).
Result<std::string> ReadPublicKey(const std::string& text_or_path);

struct AuthorizedKey {
  std::string public_key;  // Z85
  std::string name;        // who holds it; the peer's identity once authenticated
};
// The allow-list's text; errors name `path` and the line (a bad key, a bad name, a key or a name
// listed twice). An empty list is an error: it would refuse every peer.
Result<std::vector<AuthorizedKey>> ParseAuthorizedKeys(std::string_view text,
                                                       const std::string& path);
Result<std::vector<AuthorizedKey>> ReadAuthorizedKeys(const std::string& path);

// The CURVE keys of one socket. A server socket has `secret_key` (its own) and no `server_key`;
// a client has all three. Empty: no CURVE (plain ZMTP).
struct CurveKeys {
  std::string public_key;  // Z85; a server's is derived from secret_key
  std::string secret_key;  // Z85
  std::string server_key;  // Z85 public key of the server (clients only)
  bool enabled() const { return !secret_key.empty(); }
  bool server() const { return enabled() && server_key.empty(); }
};
// Keys of a client: its pair, and the server's public key.
CurveKeys CurveClient(const CurveKeyPair& own, std::string server_public);
// Keys of a server: its pair.
CurveKeys CurveServer(const CurveKeyPair& own);
// Sets ZMQ_CURVE_* (and the ZAP domain for a server) on `socket`. Nothing for disabled keys.
Status ApplyCurveKeys(zmq::socket_t& socket, const CurveKeys& keys);

// Why a peer was turned away.
enum class PeerRefusal {
  kUnknownKey = 0,  // a valid CURVE handshake with a key not on the allow-list
  kHandshake = 1,   // no CURVE (a keyless client), the wrong server key, or garbage bytes
};
inline constexpr int kPeerRefusalKinds = 2;
const char* PeerRefusalName(PeerRefusal why);

// Admits the peers on the allow-list and turns everyone else away before a single message of
// theirs reaches a socket. One per ZeroMQ context: it answers the context's ZAP requests
// (inproc://zeromq.zap.01) with the key's name as the peer's User-Id, and watches the server
// sockets given to Watch() for failed handshakes. Counters are thread-safe.
class CurveAuthenticator {
 public:
  // Binds the context's ZAP endpoint and starts the thread that serves it. Fails if another
  // authenticator already serves this context.
  static Result<std::unique_ptr<CurveAuthenticator>> Start(zmq::context_t& ctx,
                                                           std::vector<AuthorizedKey> allowed);
  ~CurveAuthenticator();  // stops the thread; the context's sockets may still be open
  CurveAuthenticator(const CurveAuthenticator&) = delete;
  CurveAuthenticator& operator=(const CurveAuthenticator&) = delete;

  // Counts failed handshakes on `socket` (a server socket of this context; call from the thread
  // that owns it, before it is used elsewhere). `label` names it in the log.
  Status Watch(zmq::socket_t& socket, const std::string& label);

  uint64_t refused(PeerRefusal why) const { return refused_[static_cast<int>(why)].load(); }
  uint64_t refused_total() const;
  uint64_t admitted() const { return admitted_.load(); }
  size_t allowed_keys() const { return allowed_.size(); }

 private:
  CurveAuthenticator(zmq::context_t& ctx, std::vector<AuthorizedKey> allowed);
  void Run();
  void Refuse(PeerRefusal why, const std::string& detail);

  zmq::context_t& ctx_;
  std::vector<AuthorizedKey> allowed_;
  std::unique_ptr<zmq::socket_t> zap_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> to_watch_;  // monitor endpoint, label
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_[kPeerRefusalKinds]{};
  std::atomic<uint64_t> admitted_{0};
  std::thread thread_;
};

}  // namespace chainrl::transport
