// CURVE keys, their files, and the authenticator; see curve.h.
#include "core/curve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <zmq.hpp>

#include "core/file_io.h"
#include "core/json_file.h"
#include "core/log.h"

namespace chainrl::transport {
namespace {

namespace fs = std::filesystem;

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "chainrl";
constexpr size_t kMaxKeyFileBytes = 4096;
constexpr size_t kMaxAuthorizedKeysBytes = 16u << 20;

bool IsZ85Char(char c) {
  static const std::string_view alphabet =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  return alphabet.find(c) != std::string_view::npos;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Calls `fn(line_number, line)` for each line that is not blank or a comment ('#' first: Z85 keys
// may hold '#', so a comment is a whole line, or whatever follows whitespace and '#' after the
// last field, which the callers strip).
template <typename Fn>
Status ForEachLine(std::string_view text, Fn fn) {
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    CHAINRL_RETURN_IF_ERROR(fn(line_no, line));
  }
  return Status::Ok();
}

std::string MessageText(const zmq::message_t& m) {
  return std::string(static_cast<const char*>(m.data()), m.size());
}

}  // namespace

Result<CurveKeyPair> MakeCurveKeyPair() {
  if (!zmq_has("curve"))
    return Unimplemented("this libzmq was built without CURVE (libsodium): no keys can be made");
  char pub[kCurveKeyChars + 1] = {0}, sec[kCurveKeyChars + 1] = {0};
  if (zmq_curve_keypair(pub, sec) != 0)
    return IoError(std::string("making a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  return CurveKeyPair{pub, sec};
}

Status CheckCurveKey(std::string_view text, std::string_view what) {
  if (text.size() != kCurveKeyChars)
    return InvalidArgument(std::string(what) + ": a CURVE key is " +
                           std::to_string(kCurveKeyChars) + " Z85 characters, got " +
                           std::to_string(text.size()));
  for (size_t i = 0; i < text.size(); ++i)
    if (!IsZ85Char(text[i]))
      return InvalidArgument(std::string(what) + ": character " + std::to_string(i + 1) +
                             " of the key is not Z85");
  return Status::Ok();
}

Result<std::string> CurvePublicKey(std::string_view secret_z85) {
  CHAINRL_RETURN_IF_ERROR(CheckCurveKey(secret_z85, "secret key"));
  char pub[kCurveKeyChars + 1] = {0};
  const std::string sec(secret_z85);
  if (zmq_curve_public(pub, sec.c_str()) != 0)
    return InvalidArgument(std::string("deriving the public key: ") + zmq_strerror(zmq_errno()));
  return std::string(pub);
}

Status CheckPeerName(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > 64)
    return InvalidArgument(std::string(what) + ": a name is 1 to 64 characters, got " +
                           std::to_string(name.size()));
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
      return InvalidArgument(std::string(what) + ": '" + std::string(name) +
                             "' may hold only letters, digits, '.', '_' and '-'");
  return Status::Ok();
}

Result<std::pair<std::string, std::string>> WriteKeyFiles(const std::string& dir,
                                                          const std::string& name,
                                                          const CurveKeyPair& keys) {
  CHAINRL_RETURN_IF_ERROR(CheckPeerName(name, "key name"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("creating " + dir + ": " + ec.message());
  const std::string key_path = (fs::path(dir) / (name + ".key")).string();
  const std::string pub_path = (fs::path(dir) / (name + ".pub")).string();
  const std::string secret =
      "# chainrl CURVE key pair '" + name + "': keep this file secret (mode 0600)\n" +
      "public-key = \"" + keys.public_key + "\"\n" + "secret-key = \"" + keys.secret_key + "\"\n";
  const int fd = ::open(key_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return IoError(key_path + ": " + std::strerror(errno) +
                   (errno == EEXIST ? " (an existing key is never overwritten)" : ""));
  const bool wrote =
      ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) &&
      ::fsync(fd) == 0;
  ::close(fd);
  if (!wrote) {
    ::unlink(key_path.c_str());
    return IoError(key_path + ": writing the key failed");
  }
  CHAINRL_RETURN_IF_ERROR(WriteFileAtomic(pub_path, keys.public_key + " " + name + "\n"));
  return std::make_pair(key_path, pub_path);
}

Result<CurveKeyPair> ParseKeyPairFile(std::string_view text, const std::string& path) {
  CurveKeyPair k;
  Status st = ForEachLine(text, [&](int n, std::string_view line) -> Status {
    const std::string at = path + ":" + std::to_string(n);
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos)
      return InvalidArgument(at + ": expected public-key = \"...\" or secret-key = \"...\"");
    const std::string_view field = Trim(line.substr(0, eq));
    std::string_view value = Trim(line.substr(eq + 1));
    // "<key>" [# comment]
    const size_t close = value.size() > 1 ? value.find('"', 1) : std::string_view::npos;
    if (value.empty() || value.front() != '"' || close == std::string_view::npos)
      return InvalidArgument(at + ": the value of " + std::string(field) + " must be quoted");
    const std::string_view rest = Trim(value.substr(close + 1));
    if (!rest.empty() && rest.front() != '#')
      return InvalidArgument(at + ": unexpected text after the value of " + std::string(field));
    value = value.substr(1, close - 1);
    std::string* slot = field == "public-key"   ? &k.public_key
                        : field == "secret-key" ? &k.secret_key
                                                : nullptr;
    if (!slot) return InvalidArgument(at + ": unknown field '" + std::string(field) + "'");
    if (!slot->empty()) return InvalidArgument(at + ": " + std::string(field) + " given twice");
    CHAINRL_RETURN_IF_ERROR(CheckCurveKey(value, at + ": " + std::string(field)));
    *slot = std::string(value);
    return Status::Ok();
  });
  CHAINRL_RETURN_IF_ERROR(st);
  if (k.secret_key.empty())
    return InvalidArgument(path +
                           ": no secret-key (is this a .pub file? the key pair is NAME.key)");
  CHAINRL_ASSIGN_OR_RETURN(std::string derived, CurvePublicKey(k.secret_key));
  if (k.public_key.empty()) k.public_key = derived;
  if (k.public_key != derived)
    return InvalidArgument(path + ": public-key does not belong to secret-key");
  return k;
}

Result<CurveKeyPair> ReadKeyPairFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return NotFound("key file " + path + ": " + std::strerror(errno));
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return InvalidArgument("key file " + path + " has mode " + mode +
                           ": a secret key must not be readable by others (chmod 600 " + path +
                           ")");
  }
  CHAINRL_ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, kMaxKeyFileBytes));
  return ParseKeyPairFile(text, path);
}

Result<std::string> ReadPublicKey(const std::string& text_or_path) {
  if (text_or_path.size() == kCurveKeyChars && !fs::exists(text_or_path)) {
    CHAINRL_RETURN_IF_ERROR(CheckCurveKey(text_or_path, "public key"));
    return text_or_path;
  }
  CHAINRL_ASSIGN_OR_RETURN(std::string text, ReadFileBounded(text_or_path, kMaxKeyFileBytes));
  if (text.find("secret-key") != std::string::npos) {
    // A key pair file: its public half.
    CHAINRL_ASSIGN_OR_RETURN(CurveKeyPair k, ReadKeyPairFile(text_or_path));
    return k.public_key;
  }
  CHAINRL_ASSIGN_OR_RETURN(auto keys, ParseAuthorizedKeys(text, text_or_path));
  if (keys.size() != 1)
    return InvalidArgument("public key file " + text_or_path + ": holds " +
                           std::to_string(keys.size()) + " keys, expected one");
  return keys[0].public_key;
}

Result<std::vector<AuthorizedKey>> ParseAuthorizedKeys(std::string_view text,
                                                       const std::string& path) {
  std::vector<AuthorizedKey> keys;
  std::set<std::string> seen_keys, seen_names;
  Status st = ForEachLine(text, [&](int n, std::string_view line) -> Status {
    const std::string at = path + ":" + std::to_string(n);
    // <key> <name> [# comment]
    std::vector<std::string_view> fields;
    while (!line.empty()) {
      const size_t sp = line.find_first_of(" \t");
      fields.push_back(line.substr(0, sp));
      line = sp == std::string_view::npos ? std::string_view() : Trim(line.substr(sp));
      if (fields.size() == 2) break;
    }
    if (fields.size() != 2 || (!line.empty() && line.front() != '#'))
      return InvalidArgument(at + ": expected '<public key> <name>' (a name has no spaces)");
    AuthorizedKey k{std::string(fields[0]), std::string(fields[1])};
    CHAINRL_RETURN_IF_ERROR(CheckCurveKey(k.public_key, at));
    CHAINRL_RETURN_IF_ERROR(CheckPeerName(k.name, at));
    if (!seen_keys.insert(k.public_key).second)
      return InvalidArgument(at + ": the key of '" + k.name + "' is listed twice");
    if (!seen_names.insert(k.name).second)
      return InvalidArgument(at + ": the name '" + k.name + "' is listed twice");
    keys.push_back(std::move(k));
    return Status::Ok();
  });
  CHAINRL_RETURN_IF_ERROR(st);
  if (keys.empty())
    return InvalidArgument(path + ": no authorized keys (add the .pub lines of the actors' keys)");
  return keys;
}

Result<std::vector<AuthorizedKey>> ReadAuthorizedKeys(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, kMaxAuthorizedKeysBytes));
  return ParseAuthorizedKeys(text, path);
}

CurveKeys CurveClient(const CurveKeyPair& own, std::string server_public) {
  return CurveKeys{own.public_key, own.secret_key, std::move(server_public)};
}

CurveKeys CurveServer(const CurveKeyPair& own) {
  return CurveKeys{own.public_key, own.secret_key, ""};
}

Status ApplyCurveKeys(zmq::socket_t& s, const CurveKeys& keys) {
  if (!keys.enabled()) return Status::Ok();
  try {
    if (keys.server()) {
      s.set(zmq::sockopt::curve_server, 1);
      s.set(zmq::sockopt::curve_secretkey, keys.secret_key);
      s.set(zmq::sockopt::zap_domain, kZapDomain);
    } else {
      s.set(zmq::sockopt::curve_serverkey, keys.server_key);
      s.set(zmq::sockopt::curve_publickey, keys.public_key);
      s.set(zmq::sockopt::curve_secretkey, keys.secret_key);
    }
  } catch (const zmq::error_t& e) {
    return IoError(std::string("setting CURVE keys: ") + e.what());
  }
  return Status::Ok();
}

const char* PeerRefusalName(PeerRefusal why) {
  switch (why) {
    case PeerRefusal::kUnknownKey:
      return "unknown_key";
    case PeerRefusal::kHandshake:
      return "handshake";
  }
  return "?";
}

CurveAuthenticator::CurveAuthenticator(zmq::context_t& ctx, std::vector<AuthorizedKey> allowed)
    : ctx_(ctx), allowed_(std::move(allowed)) {}

Result<std::unique_ptr<CurveAuthenticator>> CurveAuthenticator::Start(
    zmq::context_t& ctx, std::vector<AuthorizedKey> allowed) {
  if (!zmq_has("curve")) return Unimplemented("this libzmq was built without CURVE (libsodium)");
  if (allowed.empty()) return InvalidArgument("an authenticator with no authorized keys");
  std::unique_ptr<CurveAuthenticator> a(new CurveAuthenticator(ctx, std::move(allowed)));
  try {
    a->zap_ = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::rep);
    a->zap_->set(zmq::sockopt::linger, 0);
    a->zap_->bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    return IoError(std::string("starting the CURVE authenticator on ") + kZapEndpoint + ": " +
                   e.what());
  }
  a->thread_ = std::thread([p = a.get()] { p->Run(); });
  return a;
}

CurveAuthenticator::~CurveAuthenticator() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

uint64_t CurveAuthenticator::refused_total() const {
  uint64_t n = 0;
  for (const auto& r : refused_) n += r.load();
  return n;
}

Status CurveAuthenticator::Watch(zmq::socket_t& socket, const std::string& label) {
  static std::atomic<uint64_t> next{0};
  const std::string ep = "inproc://chainrl.curve-monitor." + std::to_string(getpid()) + "." +
                         std::to_string(next.fetch_add(1));
  if (zmq_socket_monitor(
          static_cast<void*>(socket), ep.c_str(),
          ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0)
    return IoError("watching " + label + " for failed handshakes: " + zmq_strerror(zmq_errno()));
  std::lock_guard<std::mutex> lock(mu_);
  to_watch_.emplace_back(ep, label);
  return Status::Ok();
}

void CurveAuthenticator::Refuse(PeerRefusal why, const std::string& detail) {
  const uint64_t n = refused_[static_cast<int>(why)].fetch_add(1) + 1;
  // The first refusals in full, then one in every 1000: a flood cannot flood the log.
  if (n <= 20 || n % 1000 == 0) {
    CHAINRL_LOG(kWarn) << "refused a peer (" << PeerRefusalName(why) << ", #" << n
                       << "): " << detail;
  }
}

void CurveAuthenticator::Run() {
  struct Monitor {
    std::unique_ptr<zmq::socket_t> socket;
    std::string label;
  };
  std::vector<Monitor> monitors;
  std::vector<zmq::message_t> parts;
  while (!stop_) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [ep, label] : to_watch_) {
        try {
          auto s = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pair);
          s->set(zmq::sockopt::linger, 0);
          s->connect(ep);
          monitors.push_back({std::move(s), label});
        } catch (const zmq::error_t& e) {
          CHAINRL_LOG(kWarn) << "cannot watch " << label << " for failed handshakes: " << e.what();
        }
      }
      to_watch_.clear();
    }
    std::vector<zmq::pollitem_t> items{{static_cast<void*>(*zap_), 0, ZMQ_POLLIN, 0}};
    for (auto& m : monitors) items.push_back({static_cast<void*>(*m.socket), 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      continue;  // EINTR
    }
    try {
      if (items[0].revents & ZMQ_POLLIN) {
        // A ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism,
        // credentials...
        parts.clear();
        for (;;) {
          parts.emplace_back();
          if (!zap_->recv(parts.back(), zmq::recv_flags::none)) break;
          if (!parts.back().more() || parts.size() > 16) break;
        }
        while (!parts.empty() && parts.back().more()) {  // drain an absurd request
          zmq::message_t junk;
          if (!zap_->recv(junk, zmq::recv_flags::none) || !junk.more()) break;
        }
        std::string request_id = parts.size() > 1 ? MessageText(parts[1]) : "";
        std::string address = parts.size() > 3 ? MessageText(parts[3]) : "?";
        std::string mechanism = parts.size() > 5 ? MessageText(parts[5]) : "";
        std::string status = "400", text = "not authorized", user;
        if (parts.size() == 7 && mechanism == "CURVE" && parts[6].size() == 32) {
          char z85[kCurveKeyChars + 1] = {0};
          zmq_z85_encode(z85, static_cast<const uint8_t*>(parts[6].data()), 32);
          for (const AuthorizedKey& k : allowed_)
            if (k.public_key == z85) user = k.name;
          if (!user.empty()) {
            status = "200";
            text = "OK";
            admitted_.fetch_add(1);
          } else {
            Refuse(PeerRefusal::kUnknownKey,
                   "key " + std::string(z85) + " from " + address + " is not authorized");
          }
        } else {
          Refuse(PeerRefusal::kHandshake, "mechanism '" + mechanism + "' from " + address);
        }
        zap_->send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
        zap_->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
        zap_->send(zmq::buffer(status), zmq::send_flags::sndmore);
        zap_->send(zmq::buffer(text), zmq::send_flags::sndmore);
        zap_->send(zmq::buffer(user), zmq::send_flags::sndmore);
        zap_->send(zmq::message_t(), zmq::send_flags::none);
      }
      for (size_t i = 1; i < items.size(); ++i) {
        if (!(items[i].revents & ZMQ_POLLIN)) continue;
        // A monitor event: [16-bit event, 32-bit value][the peer's endpoint].
        zmq::message_t event, where;
        if (!monitors[i - 1].socket->recv(event, zmq::recv_flags::dontwait)) continue;
        if (event.more()) (void)monitors[i - 1].socket->recv(where, zmq::recv_flags::dontwait);
        if (event.size() < 6) continue;
        uint16_t id = 0;
        uint32_t value = 0;
        std::memcpy(&id, event.data(), 2);
        std::memcpy(&value, static_cast<const char*>(event.data()) + 2, 4);
        // The event names the listening socket's endpoint; ZeroMQ does not tell the peer's.
        Refuse(PeerRefusal::kHandshake,
               "a failed handshake on the " + monitors[i - 1].label + " at " + MessageText(where) +
                   (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                        ? " (protocol error " + std::to_string(value) +
                              ": no CURVE, the wrong server key, or not ZeroMQ)"
                        : ""));
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
    }
  }
  monitors.clear();
  zap_.reset();
}

}  // namespace chainrl::transport
