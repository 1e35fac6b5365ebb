// CURVE keys and their files, the allow-list, and authenticated channels and weights transfer:
// an authorized actor speaks under its key's name; an unknown key, a keyless peer, a peer with
// the wrong server key and a peer sending garbage are refused, counted, and get nothing.
#include "core/curve.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "core/channel.h"
#include "core/security.h"
#include "core/weights_transfer.h"
#include "tests/core/wire_samples.h"

namespace chainrl::transport {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/chainrl_curve_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool Contains(const Status& st, const std::string& part) {
  return st.message().find(part) != std::string::npos;
}

CurveKeyPair Pair() {
  auto k = MakeCurveKeyPair();
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return *k;
}

// Waits until `pred` holds or `limit` passes.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < limit;
       std::this_thread::sleep_for(10ms))
    if (pred()) return true;
  return pred();
}

TEST(CurveKeysTest, FilesRoundTripAndSecretsMustBePrivate) {
  TempDir dir;
  const CurveKeyPair k = Pair();
  EXPECT_EQ(k.public_key.size(), kCurveKeyChars);
  EXPECT_EQ(*CurvePublicKey(k.secret_key), k.public_key);
  EXPECT_NE(Pair().secret_key, k.secret_key);
  auto paths = WriteKeyFiles(dir.path(), "actor-a", k);
  ASSERT_TRUE(paths.ok()) << paths.status().ToString();
  struct stat st {};
  ASSERT_EQ(stat(paths->first.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto back = ReadKeyPairFile(paths->first);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->secret_key, k.secret_key);
  EXPECT_EQ(back->public_key, k.public_key);
  // The .pub file is one allow-list line; public keys read from it, from the pair, or inline.
  auto listed = ReadAuthorizedKeys(paths->second);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "actor-a");
  EXPECT_EQ((*listed)[0].public_key, k.public_key);
  EXPECT_EQ(*ReadPublicKey(paths->second), k.public_key);
  EXPECT_EQ(*ReadPublicKey(paths->first), k.public_key);
  EXPECT_EQ(*ReadPublicKey(k.public_key), k.public_key);
  // Never overwritten; a bad name is refused before anything is written.
  auto again = WriteKeyFiles(dir.path(), "actor-a", Pair());
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(Contains(again.status(), "never overwritten")) << again.status().message();
  EXPECT_EQ(ReadKeyPairFile(paths->first)->secret_key, k.secret_key);
  EXPECT_FALSE(WriteKeyFiles(dir.path(), "a b", k).ok());
  // A secret others may read is refused, naming the file and its mode.
  chmod(paths->first.c_str(), 0644);
  auto open = ReadKeyPairFile(paths->first);
  ASSERT_FALSE(open.ok());
  EXPECT_TRUE(Contains(open.status(), "mode 0644")) << open.status().message();
  EXPECT_TRUE(Contains(open.status(), paths->first));
}

TEST(CurveKeysTest, KeyPairFileErrorsNameTheLine) {
  const CurveKeyPair a = Pair(), b = Pair();
  struct Case {
    std::string text, why;
  };
  for (const Case& c : std::vector<Case>{
           {"public-key = \"" + b.public_key + "\"\nsecret-key = \"" + a.secret_key + "\"\n",
            "does not belong"},
           {"secret-key = \"" + a.secret_key.substr(1) + "\"\n", "k.key:1: secret-key"},
           {"# comment\nsecret-key = " + a.secret_key + "\n", "k.key:2: the value"},
           {"secret-key = \"" + std::string(40, '~') + "\"\n", "not Z85"},
           {"public-key = \"" + a.public_key + "\"\n", "no secret-key"},
           {"colour = \"blue\"\n", "unknown field 'colour'"},
           {"just words\n", "k.key:1: expected"},
           {"secret-key = \"" + a.secret_key + "\"\nsecret-key = \"" + a.secret_key + "\"\n",
            "given twice"},
       }) {
    auto r = ParseKeyPairFile(c.text, "k.key");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_TRUE(Contains(r.status(), c.why)) << r.status().message();
  }
  // The public half may be left out: it is derived.
  auto only_secret = ParseKeyPairFile("secret-key = \"" + a.secret_key + "\"", "k.key");
  ASSERT_TRUE(only_secret.ok()) << only_secret.status().ToString();
  EXPECT_EQ(only_secret->public_key, a.public_key);
}

TEST(CurveKeysTest, AuthorizedKeysAreParsedStrictly) {
  const CurveKeyPair a = Pair(), b = Pair();
  auto ok = ParseAuthorizedKeys(
      "# actors\n" + a.public_key + " host-a  # first\n\n" + b.public_key + "\thost_b.2\n",
      "allowed");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].name, "host-a");
  EXPECT_EQ((*ok)[1].name, "host_b.2");
  // Z85 keys may hold '#': only a whole line, or text after the name, is a comment.
  CurveKeyPair hashed = Pair();
  for (int i = 0; i < 10000 && hashed.public_key.find('#') == std::string::npos; ++i)
    hashed = Pair();
  ASSERT_NE(hashed.public_key.find('#'), std::string::npos);
  auto with_hash = ParseAuthorizedKeys(hashed.public_key + " h # note\n", "allowed");
  ASSERT_TRUE(with_hash.ok()) << with_hash.status().ToString();
  EXPECT_EQ((*with_hash)[0].public_key, hashed.public_key);
  auto pair_with_hash =
      ParseKeyPairFile("secret-key = \"" + hashed.secret_key + "\"  # mine\n", "k.key");
  ASSERT_TRUE(pair_with_hash.ok()) << pair_with_hash.status().ToString();
  EXPECT_EQ(pair_with_hash->public_key, hashed.public_key);
  struct Case {
    std::string text, why;
  };
  for (const Case& c : std::vector<Case>{
           {a.public_key + " x\n" + a.public_key + " y\n", "allowed:2: the key of 'y'"},
           {a.public_key + " x\n" + b.public_key + " x\n", "allowed:2: the name 'x'"},
           {a.public_key + "\n", "allowed:1: expected '<public key> <name>'"},
           {a.public_key + " two words\n", "allowed:1: expected '<public key> <name>'"},
           {a.public_key + " a/b\n", "may hold only"},
           {a.public_key.substr(2) + " x\n", "40 Z85 characters"},
           {"# nobody\n", "no authorized keys"},
       }) {
    auto r = ParseAuthorizedKeys(c.text, "allowed");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_TRUE(Contains(r.status(), c.why)) << r.status().message();
  }
}

// A learner-like server context admitting `allowed`, and clients with whatever keys a test gives.
class CurveChannels : public ::testing::Test {
 protected:
  CurveChannels() : server_keys_(Pair()), actor_(Pair()), stranger_(Pair()) {
    EXPECT_TRUE(server_ctx_.AuthorizeCurvePeers({{actor_.public_key, "host-a"}}).ok());
    server_opts_.name = "learner";
    server_opts_.curve = CurveServer(server_keys_);
  }
  ChannelOptions Client(const std::string& name, const CurveKeys& keys) {
    ChannelOptions o;
    o.name = name;
    o.curve = keys;
    return o;
  }
  std::unique_ptr<Channel> Open(Context& ctx, ChannelKind kind, const std::string& ep,
                                const ChannelOptions& o) {
    auto c = Channel::Open(ctx, kind, ep, o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  const CurveAuthenticator& auth() { return *server_ctx_.authenticator(); }

  CurveKeyPair server_keys_, actor_, stranger_;
  Context server_ctx_, client_ctx_;
  ChannelOptions server_opts_;
};

TEST_F(CurveChannels, AnAuthorizedActorSpeaksUnderItsKeysName) {
  auto server = Open(server_ctx_, ChannelKind::kWorkServer, "tcp://127.0.0.1:0", server_opts_);
  ASSERT_TRUE(server);
  auto client = Open(client_ctx_, ChannelKind::kWorkClient, server->endpoint(),
                     Client("actor-0", CurveClient(actor_, server_keys_.public_key)));
  ASSERT_TRUE(client);
  wire::Envelope hb = wire::MakeEnvelope("actor-0");
  hb.mutable_heartbeat()->set_policy_version(3);
  ASSERT_TRUE(client->Send(hb).ok());
  auto r = server->Receive(5000ms);
  ASSERT_TRUE(r.ok() && r->has_value()) << r.status().ToString();
  EXPECT_EQ((*r)->envelope.sender(), "host-a/actor-0");
  EXPECT_EQ((*r)->envelope.heartbeat().policy_version(), 3);
  // Whatever name it claims, it speaks as its key: it cannot pose as another key's actor.
  wire::Envelope spoof = wire::MakeEnvelope("host-b/actor-0");
  spoof.mutable_heartbeat();
  ASSERT_TRUE(client->Send(spoof).ok());
  auto s = server->Receive(5000ms);
  ASSERT_TRUE(s.ok() && s->has_value());
  EXPECT_EQ((*s)->envelope.sender(), "host-a/host-b/actor-0");
  // Replies travel back encrypted.
  wire::Envelope reply = wire::MakeEnvelope("learner");
  reply.mutable_heartbeat()->set_policy_version(9);
  ASSERT_TRUE(server->SendTo((*r)->peer, reply).ok());
  auto back = client->Receive(5000ms);
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->envelope.heartbeat().policy_version(), 9);
  EXPECT_EQ(auth().admitted(), 1u);
  EXPECT_EQ(auth().refused_total(), 0u);

  // Trajectories are bound to the key the same way.
  auto sink = Open(server_ctx_, ChannelKind::kTrajectorySink, "tcp://127.0.0.1:0", server_opts_);
  auto source = Open(client_ctx_, ChannelKind::kTrajectorySource, sink->endpoint(),
                     Client("actor-0", CurveClient(actor_, server_keys_.public_key)));
  wire::Envelope t = wire::MakeEnvelope("actor-0");
  std::mt19937_64 rng(3);
  *t.mutable_trajectory() = wire::testing::MakeTrajectory(rng, 2, 0);
  ASSERT_TRUE(source->Send(t).ok());
  auto got = sink->Receive(5000ms);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->envelope.sender(), "host-a/actor-0");
}

TEST_F(CurveChannels, StrangersAreRefusedCountedAndGetNothing) {
  auto server = Open(server_ctx_, ChannelKind::kWorkServer, "tcp://127.0.0.1:0", server_opts_);
  ASSERT_TRUE(server);
  wire::Envelope join = wire::MakeEnvelope("actor-9");
  join.mutable_join()->set_host("evil");
  // 1. A valid CURVE key that is not on the list.
  auto unknown = Open(client_ctx_, ChannelKind::kWorkClient, server->endpoint(),
                      Client("actor-9", CurveClient(stranger_, server_keys_.public_key)));
  (void)unknown->Send(join);
  EXPECT_TRUE(Eventually([&] { return auth().refused(PeerRefusal::kUnknownKey) >= 1; }));
  // 2. No CURVE at all.
  auto keyless = Open(client_ctx_, ChannelKind::kWorkClient, server->endpoint(), Client("x", {}));
  (void)keyless->Send(join);
  EXPECT_TRUE(Eventually([&] { return auth().refused(PeerRefusal::kHandshake) >= 1; }));
  // 3. An authorized key aimed at the wrong learner key.
  const uint64_t before = auth().refused(PeerRefusal::kHandshake);
  auto wrong = Open(client_ctx_, ChannelKind::kWorkClient, server->endpoint(),
                    Client("actor-0", CurveClient(actor_, stranger_.public_key)));
  (void)wrong->Send(join);
  EXPECT_TRUE(Eventually([&] { return auth().refused(PeerRefusal::kHandshake) > before; }));
  // 4. Bytes that are not ZeroMQ.
  const uint64_t before_raw = auth().refused(PeerRefusal::kHandshake);
  const std::string& ep = server->endpoint();
  const int port = std::stoi(ep.substr(ep.rfind(':') + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string garbage(200, '\xff');
  ASSERT_EQ(write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  EXPECT_TRUE(Eventually([&] { return auth().refused(PeerRefusal::kHandshake) > before_raw; }));
  close(fd);
  // None of it reached the socket, and none of them hears anything back.
  auto none = server->Receive(300ms);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(server->rejects().Total(), 0u);
  EXPECT_EQ(auth().admitted(), 0u);
  for (Channel* c : {unknown.get(), keyless.get(), wrong.get()}) {
    auto r = c->Receive(50ms);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value());
  }
}

TEST_F(CurveChannels, WeightsGoOnlyToAuthorizedKeys) {
  WeightsServerOptions so;
  so.channel = server_opts_;
  auto server = WeightsServer::Start(server_ctx_, "tcp://127.0.0.1:0", so);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::vector<uint8_t> w(3 << 20);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE((*server)->Publish(1, WeightsBuffer::FromVector(w), "raw").ok());
  WeightsClientOptions good;
  good.channel = Client("actor-0", CurveClient(actor_, server_keys_.public_key));
  auto client = WeightsClient::Connect(client_ctx_, (*server)->endpoint(), good);
  ASSERT_TRUE(client.ok());
  auto a = (*client)->PollAnnounce(5000ms);
  ASSERT_TRUE(a.ok() && a->has_value());
  auto got = (*client)->Fetch(**a);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->bytes.size(), w.size());
  EXPECT_EQ(std::memcmp(got->bytes.data(), w.data(), w.size()), 0);
  for (const CurveKeys& keys : {CurveClient(stranger_, server_keys_.public_key), CurveKeys{}}) {
    WeightsClientOptions bad;
    bad.channel = Client("thief", keys);
    auto thief = WeightsClient::Connect(client_ctx_, (*server)->endpoint(), bad);
    ASSERT_TRUE(thief.ok());
    auto none = (*thief)->PollAnnounce(500ms);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  }
  EXPECT_GE(auth().refused(PeerRefusal::kUnknownKey), 1u);
  EXPECT_GE(auth().refused(PeerRefusal::kHandshake), 1u);
}

TEST(CurveServerTest, RefusesToOpenWithoutAnAuthenticator) {
  // A CURVE server with no ZAP handler would admit any client that knows its public key.
  Context ctx;
  ChannelOptions o;
  o.curve = CurveServer(Pair());
  auto s = Channel::Open(ctx, ChannelKind::kWorkServer, "tcp://127.0.0.1:0", o);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.status(), "authenticates no peers")) << s.status().message();
  WeightsServerOptions wo;
  wo.channel = o;
  EXPECT_FALSE(WeightsServer::Start(ctx, "tcp://127.0.0.1:0", wo).ok());
}

TEST(EndpointNamesTest, Ipv6AndDnsNamesBindAndConnect) {
  auto v6 = ParseEndpoint("tcp://[::1]:5555");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(v6->ipv6());
  EXPECT_TRUE(v6->IsLoopback());
  EXPECT_EQ(v6->ToZmq(), "tcp://[::1]:5555");
  EXPECT_FALSE(ParseEndpoint("tcp://[2001:db8::1]:1")->IsLoopback());
  auto name = ParseEndpoint("tcp://learner-0.chainrl.svc.cluster.local:5555");
  ASSERT_TRUE(name.ok());
  EXPECT_TRUE(name->named());
  EXPECT_TRUE(ParseEndpoint("tcp://localhost:1")->IsLoopback());
  EXPECT_FALSE(ParseEndpoint("tcp://no-such-host.invalid:1")->IsLoopback());
  for (const char* bad : {"tcp://::1:5555", "tcp://[::1:5555", "tcp://[not-v6]:1",
                          "tcp://bad_host!:1", "tcp://-lead.example:1", "tcp://a..b:1"})
    EXPECT_FALSE(ParseEndpoint(bad).ok()) << bad;

  Context ctx;
  ChannelOptions o;
  o.name = "actor-0";
  // IPv6 loopback, both ways.
  auto server = Channel::Open(ctx, ChannelKind::kWorkServer, "tcp://[::1]:0");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ((*server)->endpoint().rfind("tcp://[::1]:", 0), 0u) << (*server)->endpoint();
  auto client = Channel::Open(ctx, ChannelKind::kWorkClient, (*server)->endpoint(), o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  wire::Envelope hb = wire::MakeEnvelope("actor-0");
  hb.mutable_heartbeat();
  ASSERT_TRUE((*client)->Send(hb).ok());
  auto r = (*server)->Receive(5000ms);
  ASSERT_TRUE(r.ok() && r->has_value());
  // A DNS name: bound on its address, reached by its name.
  auto named = Channel::Open(ctx, ChannelKind::kTrajectorySink, "tcp://localhost:0");
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  const std::string& ep = (*named)->endpoint();
  const std::string by_name = "tcp://localhost:" + ep.substr(ep.rfind(':') + 1);
  auto source = Channel::Open(ctx, ChannelKind::kTrajectorySource, by_name, o);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ASSERT_TRUE((*source)->Send(hb).ok());
  auto r2 = (*named)->Receive(5000ms);
  ASSERT_TRUE(r2.ok() && r2->has_value()) << "bound " << ep << ", connected " << by_name;
  // A name that does not resolve is an error naming it when bound.
  auto nowhere = Channel::Open(ctx, ChannelKind::kWorkServer, "tcp://no-such-host.invalid:0");
  ASSERT_FALSE(nowhere.ok());
  EXPECT_TRUE(Contains(nowhere.status(), "no-such-host.invalid")) << nowhere.status().message();
}

}  // namespace
}  // namespace chainrl::transport
