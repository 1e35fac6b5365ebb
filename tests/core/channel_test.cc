// Tests for core/channel over real sockets (loopback tcp and ipc in a temp dir): round trips of
// every message type, version refusal, size limits, bounded queues, endpoint validation.
#include "core/channel.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <zmq.hpp>

#include "tests/core/wire_samples.h"

namespace chainrl::transport {
namespace {

using namespace std::chrono_literals;
using google::protobuf::util::MessageDifferencer;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/chainrl_channel_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<Channel> Open(Context& ctx, ChannelKind kind, const std::string& ep,
                              ChannelOptions o = {}) {
  auto c = Channel::Open(ctx, kind, ep, o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

std::optional<Received> Recv(Channel& ch, std::chrono::milliseconds t = 5000ms) {
  auto r = ch.Receive(t);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : std::nullopt;
}

TEST(EndpointTest, ParsesAndExplainsErrors) {
  auto e = ParseEndpoint("tcp://127.0.0.1:5555");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 5555);
  EXPECT_TRUE(e->IsLoopback());
  EXPECT_EQ(e->ToZmq(), "tcp://127.0.0.1:5555");
  EXPECT_EQ(ParseEndpoint("tcp://localhost:*")->ToZmq(), "tcp://localhost:*");
  EXPECT_EQ(ParseEndpoint("tcp://127.0.0.1:0")->ToZmq(), "tcp://127.0.0.1:*");
  EXPECT_FALSE(ParseEndpoint("tcp://10.1.2.3:7")->IsLoopback());
  EXPECT_EQ(ParseEndpoint("ipc:///tmp/x.sock")->path, "/tmp/x.sock");
  struct Bad {
    const char* text;
    const char* why;
  };
  for (const Bad& b :
       {Bad{"udp://1.2.3.4:5", "expected tcp://"}, Bad{"tcp://127.0.0.1", "needs a ':PORT'"},
        Bad{"tcp://127.0.0.1:99999", "port in [0, 65535]"},
        Bad{"tcp://127.0.0.1:12ab", "got '12ab'"}, Bad{"tcp://:80", "needs a host"},
        Bad{"tcp://exa mple.com:80", "is not an IPv4 address"}, Bad{"ipc://", "needs a path"},
        Bad{"", "expected tcp://"}}) {
    auto r = ParseEndpoint(b.text);
    ASSERT_FALSE(r.ok()) << b.text;
    EXPECT_NE(r.status().message().find(b.why), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(std::string("'") + b.text + "'"), std::string::npos);
  }
  std::string long_path = "ipc:///tmp/" + std::string(200, 'a');
  EXPECT_FALSE(ParseEndpoint(long_path).ok());
}

TEST(ChannelTest, RefusesRemoteBindAndWildcardConnect) {
  Context ctx;
  auto s = Channel::Open(ctx, ChannelKind::kWorkServer, "tcp://0.0.0.0:0");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("beyond loopback"), std::string::npos);
  auto c = Channel::Open(ctx, ChannelKind::kWorkClient, "tcp://127.0.0.1:*");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("concrete host and port"), std::string::npos);
  ChannelOptions o;
  o.allow_remote_bind = true;
  EXPECT_TRUE(Channel::Open(ctx, ChannelKind::kWorkServer, "tcp://0.0.0.0:0", o).ok());
}

// ReceiveMultipart keeps the first max_parts frames of a message and reads and drops the rest, so
// the next message starts with its own first frame.
TEST(ChannelTest, ReceiveMultipartKeepsAtMostMaxPartsAndDropsTheRest) {
  Context ctx;
  zmq::socket_t rx(ctx.zmq(), ZMQ_PAIR), tx(ctx.zmq(), ZMQ_PAIR);
  rx.set(zmq::sockopt::linger, 0);
  tx.set(zmq::sockopt::linger, 0);
  rx.bind("inproc://multipart");
  tx.connect("inproc://multipart");
  auto send = [&](const std::string& tag, int frames) {
    for (int i = 0; i < frames; ++i)
      tx.send(zmq::buffer(tag + std::to_string(i)),
              i + 1 < frames ? zmq::send_flags::sndmore : zmq::send_flags::none);
  };
  // The frames of the next message, after waiting up to `wait` for it to arrive.
  auto receive = [&](std::chrono::milliseconds wait) {
    zmq::pollitem_t item{static_cast<void*>(rx), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, wait);
    std::vector<zmq::message_t> parts;
    parts.emplace_back(std::string("stale"));  // cleared by ReceiveMultipart
    ReceiveMultipart(rx, 3, &parts);
    std::vector<std::string> out;
    for (const auto& m : parts) out.push_back(m.to_string());
    return out;
  };
  EXPECT_TRUE(receive(0ms).empty());  // nothing sent: cleared, nothing read
  send("a", 2);
  send("b", 5);
  send("c", 1);
  EXPECT_EQ(receive(1000ms), (std::vector<std::string>{"a0", "a1"}));
  EXPECT_EQ(receive(1000ms), (std::vector<std::string>{"b0", "b1", "b2"}));
  EXPECT_EQ(receive(1000ms), (std::vector<std::string>{"c0"}));
  EXPECT_TRUE(receive(0ms).empty());
}

class ChannelRoundTrip : public ::testing::TestWithParam<std::string> {
 protected:
  std::string Endpoint(const std::string& name) {
    return GetParam() == "tcp" ? "tcp://127.0.0.1:0" : "ipc://" + dir_.path() + "/" + name;
  }
  TempDir dir_;
  Context ctx_;
};

TEST_P(ChannelRoundTrip, WorkServerAndClientCarryEveryMessageTypeExactly) {
  auto server = Open(ctx_, ChannelKind::kWorkServer, Endpoint("work"));
  ASSERT_TRUE(server);
  ChannelOptions co;
  co.name = "actor-1";
  auto client = Open(ctx_, ChannelKind::kWorkClient, server->endpoint(), co);
  ASSERT_TRUE(client);
  const auto all = wire::testing::AllMessageTypes();
  std::string peer;
  for (const auto& e : all) {
    ASSERT_TRUE(client->Send(e).ok());
    auto r = Recv(*server);
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(MessageDifferencer::Equals(e, r->envelope)) << r->envelope.DebugString();
    EXPECT_EQ(r->peer_name.substr(0, 8), "learner@");
    peer = r->peer;
  }
  for (const auto& e : all) {
    ASSERT_TRUE(server->SendTo(peer, e).ok());
    auto r = Recv(*client);
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(MessageDifferencer::Equals(e, r->envelope));
  }
  EXPECT_EQ(server->rejects().Total(), 0u);
  EXPECT_EQ(client->rejects().Total(), 0u);
  // Nothing more: Receive times out with nullopt.
  auto none = server->Receive(20ms);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // An unknown peer is NotFound, not a hang.
  Status st = server->SendTo("no-such-peer", all[0]);
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
}

TEST_P(ChannelRoundTrip, TrajectoriesFlowFromManySourcesToOneSink) {
  auto sink = Open(ctx_, ChannelKind::kTrajectorySink, Endpoint("traj"));
  ASSERT_TRUE(sink);
  std::vector<std::unique_ptr<Channel>> sources;
  for (int i = 0; i < 3; ++i)
    sources.push_back(Open(ctx_, ChannelKind::kTrajectorySource, sink->endpoint()));
  std::mt19937_64 rng(1);
  std::map<std::string, wire::Envelope> sent;
  for (int i = 0; i < 30; ++i) {
    wire::Envelope e = wire::MakeEnvelope("actor-" + std::to_string(i % 3));
    e.set_seq(i);
    *e.mutable_trajectory() = wire::testing::MakeTrajectory(rng, 1 + i % 4, 100 * i);
    ASSERT_TRUE(sources[i % 3]->Send(e).ok());
    sent[std::to_string(i)] = e;
  }
  for (int i = 0; i < 30; ++i) {
    auto r = Recv(*sink);
    ASSERT_TRUE(r.has_value());
    const auto& want = sent.at(std::to_string(r->envelope.seq()));
    EXPECT_TRUE(MessageDifferencer::Equals(want, r->envelope));
    sent.erase(std::to_string(r->envelope.seq()));
  }
  EXPECT_TRUE(sent.empty());
}

INSTANTIATE_TEST_SUITE_P(Transports, ChannelRoundTrip, ::testing::Values("tcp", "ipc"));

std::string RawFrame(const wire::Envelope& e, uint16_t version) {
  std::string f = *wire::EncodeFrame(e);
  f[4] = static_cast<char>(version & 0xff);
  f[5] = static_cast<char>(version >> 8);
  return f;
}

TEST(ChannelTest, VersionMismatchGetsErrorReplyAndIsRefused) {
  Context ctx;
  ChannelOptions so;
  so.name = "learner";
  auto server = Open(ctx, ChannelKind::kWorkServer, "tcp://127.0.0.1:0", so);
  ASSERT_TRUE(server);
  zmq::socket_t raw(ctx.zmq(), ZMQ_DEALER);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::rcvtimeo, 5000);
  raw.connect(server->endpoint());
  wire::Envelope hello = wire::MakeEnvelope("future-actor");
  hello.mutable_work_request()->set_credits(1);
  std::string v2 = RawFrame(hello, 2);
  raw.send(zmq::buffer(v2));
  // The server delivers nothing...
  auto r = server->Receive(300ms);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(server->rejects().Get(wire::RejectReason::kVersionMismatch), 1u);
  // ...and the peer gets an ErrorReply saying why, in a frame of our version.
  zmq::message_t reply;
  ASSERT_TRUE(raw.recv(reply));
  wire::Decoder d;
  wire::Envelope err;
  ASSERT_TRUE(d.Decode("server", reply.data(), reply.size(), &err).ok());
  ASSERT_TRUE(err.has_error());
  EXPECT_EQ(err.error().code(), wire::ERROR_VERSION_MISMATCH);
  EXPECT_EQ(err.error().schema_version(), wire::kSchemaVersion);
  EXPECT_NE(err.error().message().find("schema version 2"), std::string::npos);
  Status refusal = IsRefusal(err, "learner");
  EXPECT_FALSE(refusal.ok());
  EXPECT_NE(refusal.message().find("ERROR_VERSION_MISMATCH"), std::string::npos);
  // The same peer speaking our version is served normally afterwards.
  std::string v1 = RawFrame(hello, wire::kSchemaVersion);
  raw.send(zmq::buffer(v1));
  auto ok = Recv(*server);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->envelope.work_request().credits(), 1u);

  // A client receiving a frame of another version rejects and counts it too, then goes on.
  zmq::socket_t raw_router(ctx.zmq(), ZMQ_ROUTER);
  raw_router.set(zmq::sockopt::linger, 0);
  raw_router.set(zmq::sockopt::rcvtimeo, 5000);
  raw_router.bind("tcp://127.0.0.1:*");
  auto client = Open(ctx, ChannelKind::kWorkClient, raw_router.get(zmq::sockopt::last_endpoint));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(hello).ok());
  zmq::message_t id, body;
  ASSERT_TRUE(raw_router.recv(id));
  ASSERT_TRUE(raw_router.recv(body));
  wire::Envelope leave = wire::MakeEnvelope("learner");
  leave.mutable_leave()->set_reason("v3");
  std::string v3 = RawFrame(leave, 3);
  raw_router.send(zmq::buffer(id.to_string()), zmq::send_flags::sndmore);
  raw_router.send(zmq::buffer(v3));
  leave.mutable_leave()->set_reason("v1");
  std::string good = RawFrame(leave, wire::kSchemaVersion);
  raw_router.send(zmq::buffer(id.to_string()), zmq::send_flags::sndmore);
  raw_router.send(zmq::buffer(good));
  auto fine = Recv(*client);
  ASSERT_TRUE(fine.has_value());
  EXPECT_EQ(fine->envelope.leave().reason(), "v1");
  EXPECT_EQ(client->rejects().Get(wire::RejectReason::kVersionMismatch), 1u);
}

TEST(ChannelTest, OversizedFramesAreRejectedBeforeParsingAndCounted) {
  Context ctx;
  ChannelOptions so;
  so.limits.max_frame_bytes = 4096;
  so.limits.max_weight_chunk_bytes = 64 * 1024;  // ZeroMQ's own limit: max of the two
  auto server = Open(ctx, ChannelKind::kWorkServer, "tcp://127.0.0.1:0", so);
  ASSERT_TRUE(server);
  zmq::socket_t raw(ctx.zmq(), ZMQ_DEALER);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::rcvtimeo, 5000);
  raw.connect(server->endpoint());
  wire::Envelope e = wire::MakeEnvelope("actor");
  e.mutable_leave()->set_reason(std::string(10000, 'r'));
  std::string big = *wire::EncodeFrame(e);
  ASSERT_GT(big.size(), 4096u);
  raw.send(zmq::buffer(big));
  auto r = server->Receive(300ms);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(server->rejects().Get(wire::RejectReason::kOversized), 1u);
  EXPECT_EQ(server->rejects().Get(wire::RejectReason::kMalformed), 0u);
  zmq::message_t reply;
  ASSERT_TRUE(raw.recv(reply));
  wire::Envelope err;
  wire::Decoder d;
  ASSERT_TRUE(d.Decode("s", reply.data(), reply.size(), &err).ok());
  EXPECT_EQ(err.error().code(), wire::ERROR_OVERSIZED);

  // A frame beyond ZeroMQ's limit never reaches us: ZeroMQ drops that connection on reading the
  // frame's length, before allocating. The server keeps serving other peers.
  zmq::socket_t huge(ctx.zmq(), ZMQ_DEALER);
  huge.set(zmq::sockopt::linger, 0);
  huge.connect(server->endpoint());
  std::string monster(1 << 20, 'm');
  monster.replace(0, 8, big.substr(0, 8));
  huge.send(zmq::buffer(monster));
  r = server->Receive(300ms);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  auto client = Open(ctx, ChannelKind::kWorkClient, server->endpoint());
  wire::Envelope ok = wire::MakeEnvelope("actor-2");
  ok.mutable_work_request()->set_credits(3);
  ASSERT_TRUE(client->Send(ok).ok());
  auto got = Recv(*server);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->envelope.work_request().credits(), 3u);
  // Our own sender refuses to emit a frame over the limit.
  auto small = Open(ctx, ChannelKind::kWorkClient, server->endpoint(), so);
  EXPECT_EQ(small->Send(e).code(), StatusCode::kInvalidArgument);
}

// With the receiver paused, a source accepts a bounded number of messages, then Send() times
// out (so the actor can heartbeat) instead of buffering without limit. Nothing is lost.
class BoundedQueue : public ::testing::TestWithParam<std::string> {};

TEST_P(BoundedQueue, SlowSinkHoldsSourceBackAtHighWaterMark) {
  TempDir dir;
  Context ctx;
  ChannelOptions o;
  o.send_hwm = 4;
  o.recv_hwm = 4;
  o.send_timeout = 100ms;
  o.kernel_buffer_bytes = 64 * 1024;
  const std::string ep =
      GetParam() == "tcp" ? "tcp://127.0.0.1:0" : "ipc://" + dir.path() + "/traj";
  auto sink = Open(ctx, ChannelKind::kTrajectorySink, ep, o);
  auto source = Open(ctx, ChannelKind::kTrajectorySource, sink->endpoint(), o);
  ASSERT_TRUE(sink && source);
  std::mt19937_64 rng(2);
  wire::Envelope e = wire::MakeEnvelope("actor-0");
  *e.mutable_trajectory() = wire::testing::MakeTrajectory(rng, 1, 8000);  // ~64 KB frames
  ASSERT_GT(wire::FrameSize(e), 60000u);
  int accepted = 0;
  Status last;
  for (int i = 0; i < 500; ++i) {
    e.set_seq(i);
    last = source->Send(e);
    if (!last.ok()) break;
    ++accepted;
  }
  EXPECT_EQ(last.code(), StatusCode::kDeadlineExceeded) << last.ToString();
  EXPECT_NE(last.message().find("queue full"), std::string::npos);
  // HWMs (4 + 4) plus what the kernel's socket buffers hold (a few 64 KB frames).
  EXPECT_GE(accepted, 4);
  EXPECT_LE(accepted, 40);
  std::printf("accepted %d messages of %zu bytes before the queue was full\n", accepted,
              wire::FrameSize(e));
  // A retry after "heartbeating" also times out, still bounded.
  EXPECT_EQ(source->Send(e).code(), StatusCode::kDeadlineExceeded);
  // Resume: everything accepted arrives, in order.
  for (int i = 0; i < accepted; ++i) {
    auto r = Recv(*sink);
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->envelope.seq(), static_cast<uint64_t>(i));
  }
  // And the source can send again.
  e.set_seq(1000);
  Status st;
  for (int tries = 0; tries < 50 && !(st = source->Send(e)).ok(); ++tries) {
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
}

INSTANTIATE_TEST_SUITE_P(Transports, BoundedQueue, ::testing::Values("tcp", "ipc"));

}  // namespace
}  // namespace chainrl::transport
