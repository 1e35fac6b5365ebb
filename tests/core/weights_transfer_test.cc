// Tests for core/weights_transfer: chunking and checksums, publication of 64 MB to two
// subscribers over tcp and ipc, late joiners, superseded versions, corrupted chunks.
#include "core/weights_transfer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "core/crc32c.h"

namespace chainrl::transport {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x = rng();
    std::memcpy(v.data() + i, &x, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<uint8_t>(rng());
  return v;
}

bool SameBytes(const WeightsBuffer& b, const std::vector<uint8_t>& want) {
  return b.bytes.size() == want.size() &&
         std::memcmp(b.bytes.data(), want.data(), want.size()) == 0;
}

TEST(WeightsTransferTest, ChunkingChecksumsEveryChunkAndTheWhole) {
  auto bytes = RandomBytes(10'000'001, 1);
  ChunkedWeights c = ChunkWeights(5, bytes, 1 << 20, "safetensors");
  EXPECT_EQ(c.announce.version(), 5);
  EXPECT_EQ(c.announce.total_bytes(), 10'000'001u);
  EXPECT_EQ(c.announce.num_chunks(), 10u);
  EXPECT_EQ(c.announce.format(), "safetensors");
  EXPECT_EQ(c.announce.crc32c(), crc32c::Value(bytes.data(), bytes.size()));
  ASSERT_EQ(c.chunk_crcs.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    size_t off = i << 20, len = std::min<size_t>(1 << 20, bytes.size() - off);
    EXPECT_EQ(c.chunk_crcs[i], crc32c::Value(bytes.data() + off, len)) << i;
  }
  ChunkedWeights empty = ChunkWeights(1, {}, 4096);
  EXPECT_EQ(empty.announce.num_chunks(), 0u);
  EXPECT_EQ(empty.announce.crc32c(), 0u);
}

class WeightsPublish : public ::testing::TestWithParam<std::string> {
 protected:
  WeightsPublish() {
    char tmpl[] = "/tmp/chainrl_weights_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~WeightsPublish() override { std::filesystem::remove_all(dir_); }
  std::string Endpoint() {
    return GetParam() == "tcp" ? "tcp://127.0.0.1:0" : "ipc://" + dir_ + "/weights";
  }
  std::string dir_;
  Context ctx_;
};

TEST_P(WeightsPublish, SixtyFourMegabytesReachTwoSubscribersVerified) {
  WeightsServerOptions so;
  so.chunk_bytes = 1 << 20;
  auto server = WeightsServer::Start(ctx_, Endpoint(), so);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const auto v1 = RandomBytes(64u << 20, 7);
  ASSERT_TRUE((*server)->Publish(1, WeightsBuffer::FromVector(v1), "raw").ok());
  EXPECT_EQ((*server)->Publish(1, WeightsBuffer::FromVector({1, 2})).code(),
            StatusCode::kInvalidArgument);

  // Both subscribers join after the publication: they are late joiners and get version 1.
  std::vector<std::unique_ptr<WeightsClient>> clients;
  for (int i = 0; i < 2; ++i) {
    WeightsClientOptions co;
    co.channel.name = "actor-" + std::to_string(i);
    auto c = WeightsClient::Connect(ctx_, (*server)->endpoint(), co);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    clients.push_back(std::move(c).value());
  }
  std::vector<Result<WeightsBuffer>> got(2, Status(StatusCode::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto a = clients[i]->PollAnnounce(5000ms);
      if (!a.ok() || !a->has_value()) {
        got[i] = Status(StatusCode::kInternal, "no announcement");
        return;
      }
      got[i] = clients[i]->Fetch(**a);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status().ToString();
    EXPECT_TRUE(SameBytes(*got[i], v1)) << i;
  }
  EXPECT_EQ((*server)->chunks_sent(), 128u);
  EXPECT_EQ((*server)->bytes_sent(), 2 * v1.size());

  // A new version is announced to the subscribers without asking.
  const auto v2 = RandomBytes(3'000'017, 8);
  ASSERT_TRUE((*server)->Publish(2, WeightsBuffer::FromVector(v2)).ok());
  for (auto& c : clients) {
    auto a = c->PollAnnounce(5000ms);
    ASSERT_TRUE(a.ok() && a->has_value());
    EXPECT_EQ((*a)->version(), 2);
    EXPECT_EQ((*a)->num_chunks(), 3u);
    auto w = c->Fetch(**a);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_TRUE(SameBytes(*w, v2));
    // Nothing newer.
    auto none = c->PollAnnounce(50ms);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  }
}

TEST_P(WeightsPublish, LateJoinerGetsOnlyTheLatestAndSupersededFetchAborts) {
  WeightsServerOptions so;
  so.chunk_bytes = 4096;
  so.keep_versions = 1;
  auto server = WeightsServer::Start(ctx_, Endpoint(), so);
  ASSERT_TRUE(server.ok());
  const auto v1 = RandomBytes(50'000, 1);
  ASSERT_TRUE((*server)->Publish(10, WeightsBuffer::FromVector(v1)).ok());
  auto c = WeightsClient::Connect(ctx_, (*server)->endpoint());
  ASSERT_TRUE(c.ok());
  auto a1 = (*c)->PollAnnounce(5000ms);
  ASSERT_TRUE(a1.ok() && a1->has_value());
  EXPECT_EQ((*a1)->version(), 10);
  const auto v2 = RandomBytes(20'000, 2);
  ASSERT_TRUE((*server)->Publish(11, WeightsBuffer::FromVector(v2)).ok());
  // Version 10 is gone (keep_versions = 1, Publish swaps at once): fetching it is Aborted,
  // naming the newer one.
  auto stale = (*c)->Fetch(**a1);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted) << stale.status().ToString();
  EXPECT_NE(stale.status().message().find("latest is 11"), std::string::npos);
  auto a2 = (*c)->PollAnnounce(5000ms);
  ASSERT_TRUE(a2.ok() && a2->has_value());
  EXPECT_EQ((*a2)->version(), 11);
  auto w = (*c)->Fetch(**a2);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE(SameBytes(*w, v2));

  auto late = WeightsClient::Connect(ctx_, (*server)->endpoint());
  ASSERT_TRUE(late.ok());
  auto a = (*late)->PollAnnounce(5000ms);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->version(), 11);
  auto again = (*late)->PollAnnounce(50ms);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
}

// Wide request windows from several subscribers must never overflow the server's queues
// (a dropped chunk would stall a fetch until its deadline).
TEST_P(WeightsPublish, WideWindowsFromManySubscribersLoseNoChunk) {
  WeightsServerOptions so;
  so.chunk_bytes = 4096;
  auto server = WeightsServer::Start(ctx_, Endpoint(), so);
  ASSERT_TRUE(server.ok());
  const auto bytes = RandomBytes(600 * 4096 + 7, 3);
  ASSERT_TRUE((*server)->Publish(1, WeightsBuffer::FromVector(bytes)).ok());
  std::vector<std::thread> threads;
  std::vector<Status> status(3);
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      WeightsClientOptions co;
      co.window_chunks = 512;
      co.chunk_timeout = 5000ms;
      auto c = WeightsClient::Connect(ctx_, (*server)->endpoint(), co);
      if (!c.ok()) return void(status[i] = c.status());
      auto a = (*c)->PollAnnounce(5000ms);
      if (!a.ok() || !a->has_value()) return void(status[i] = Internal("no announcement"));
      auto w = (*c)->Fetch(**a);
      if (!w.ok()) return void(status[i] = w.status());
      if (!SameBytes(*w, bytes)) status[i] = Internal("bytes differ");
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& st : status) EXPECT_TRUE(st.ok()) << st.ToString();
  WeightsClientOptions too_wide;
  too_wide.window_chunks = kMaxWindowChunks + 1;
  EXPECT_EQ(WeightsClient::Connect(ctx_, (*server)->endpoint(), too_wide).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(WeightsPublish, RecycledBufferIsReusedForTheNextVersion) {
  WeightsServerOptions so;
  so.chunk_bytes = 1 << 20;
  auto server = WeightsServer::Start(ctx_, Endpoint(), so);
  ASSERT_TRUE(server.ok());
  const size_t size = 9u << 20;  // large enough for the populated-mmap path
  const auto v1 = RandomBytes(size, 1), v2 = RandomBytes(size, 2);
  ASSERT_TRUE((*server)->Publish(1, WeightsBuffer::FromVector(v1)).ok());
  auto c = WeightsClient::Connect(ctx_, (*server)->endpoint());
  ASSERT_TRUE(c.ok());
  auto a1 = (*c)->PollAnnounce(5000ms);
  ASSERT_TRUE(a1.ok() && a1->has_value());
  auto w1 = (*c)->Fetch(**a1);
  ASSERT_TRUE(w1.ok());
  ASSERT_TRUE(SameBytes(*w1, v1));
  const uint8_t* first = w1->bytes.data();
  EXPECT_FALSE((*c)->Recycle(WeightsBuffer::FromVector(v1)));  // not from this client
  WeightsBuffer still_held = *w1;
  EXPECT_FALSE((*c)->Recycle(*w1));  // another copy is alive
  w1 = Status(StatusCode::kAborted, "swapped out");
  EXPECT_TRUE((*c)->Recycle(std::move(still_held)));
  ASSERT_TRUE((*server)->Publish(2, WeightsBuffer::FromVector(v2)).ok());
  auto a2 = (*c)->PollAnnounce(5000ms);
  ASSERT_TRUE(a2.ok() && a2->has_value());
  auto w2 = (*c)->Fetch(**a2);
  ASSERT_TRUE(w2.ok()) << w2.status().ToString();
  EXPECT_EQ(w2->bytes.data(), first);
  EXPECT_TRUE(SameBytes(*w2, v2));
}

INSTANTIATE_TEST_SUITE_P(Transports, WeightsPublish, ::testing::Values("tcp", "ipc"));

// A hand-made server that serves a snapshot but can tamper with one chunk.
class FakeServer {
 public:
  enum class Tamper { kNone, kPayload, kPayloadAndChunkCrc, kSilent };
  FakeServer(Context& ctx, std::vector<uint8_t> bytes, uint32_t chunk, Tamper tamper)
      : sock_(ctx.zmq(), ZMQ_ROUTER), bytes_(std::move(bytes)), tamper_(tamper) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind("tcp://127.0.0.1:*");
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
    chunked_ = ChunkWeights(3, bytes_, chunk);
    thread_ = std::thread([this] { Run(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void Send(const std::string& id, const wire::Envelope& e, const std::string* payload) {
    std::string f = *wire::EncodeFrame(e);
    sock_.send(zmq::buffer(id), zmq::send_flags::sndmore);
    sock_.send(zmq::buffer(f), payload ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (payload) sock_.send(zmq::buffer(*payload));
  }
  void Run() {
    wire::Decoder d;
    while (!stop_) {
      zmq::pollitem_t item{static_cast<void*>(sock_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t id, body;
      (void)sock_.recv(id);
      (void)sock_.recv(body);
      wire::Envelope in;
      if (!d.Decode("client", body.data(), body.size(), &in).ok()) continue;
      const std::string who = id.to_string();
      if (in.has_join()) {
        wire::Envelope a = wire::MakeEnvelope("fake");
        *a.mutable_weight_announce() = chunked_.announce;
        Send(who, a, nullptr);
      }
      if (in.has_weight_chunk_request() && tamper_ != Tamper::kSilent) {
        const auto& r = in.weight_chunk_request();
        for (uint32_t i = r.first_chunk(); i < r.first_chunk() + r.count(); ++i) {
          const auto& an = chunked_.announce;
          size_t off = size_t{i} * an.chunk_bytes();
          size_t len = std::min<size_t>(an.chunk_bytes(), bytes_.size() - off);
          std::string payload(reinterpret_cast<const char*>(bytes_.data()) + off, len);
          uint32_t crc = chunked_.chunk_crcs[i];
          if (i == 1 && tamper_ != Tamper::kNone) {
            payload[17] ^= 0x40;
            if (tamper_ == Tamper::kPayloadAndChunkCrc) crc = crc32c::Value(payload.data(), len);
          }
          wire::Envelope c = wire::MakeEnvelope("fake");
          auto* wc = c.mutable_weight_chunk();
          wc->set_version(an.version());
          wc->set_index(i);
          wc->set_offset(off);
          wc->set_size(static_cast<uint32_t>(len));
          wc->set_crc32c(crc);
          Send(who, c, &payload);
        }
      }
    }
  }
  zmq::socket_t sock_;
  std::vector<uint8_t> bytes_;
  Tamper tamper_;
  ChunkedWeights chunked_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Status FetchFrom(Context& ctx, const FakeServer& s, std::chrono::milliseconds chunk_timeout,
                 WeightsBuffer* out = nullptr) {
  WeightsClientOptions co;
  co.chunk_timeout = chunk_timeout;
  auto c = WeightsClient::Connect(ctx, s.endpoint(), co);
  if (!c.ok()) return c.status();
  auto a = (*c)->PollAnnounce(5000ms);
  if (!a.ok()) return a.status();
  if (!a->has_value()) return Internal("no announcement");
  auto w = (*c)->Fetch(**a);
  if (!w.ok()) return w.status();
  if (out) *out = *w;
  return Status::Ok();
}

TEST(WeightsTransferTest, CorruptedChunksAreDetected) {
  Context ctx;
  const auto bytes = RandomBytes(3 * 4096 + 100, 9);
  {
    FakeServer honest(ctx, bytes, 4096, FakeServer::Tamper::kNone);
    WeightsBuffer w;
    ASSERT_TRUE(FetchFrom(ctx, honest, 5000ms, &w).ok());
    EXPECT_TRUE(SameBytes(w, bytes));
  }
  {
    FakeServer bad(ctx, bytes, 4096, FakeServer::Tamper::kPayload);
    Status st = FetchFrom(ctx, bad, 5000ms);
    EXPECT_EQ(st.code(), StatusCode::kCorrupt);
    EXPECT_NE(st.message().find("weights version 3"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("chunk 1: crc32c"), std::string::npos) << st.message();
  }
  {
    // Consistent per-chunk checksum, but the whole-snapshot checksum catches it.
    FakeServer bad(ctx, bytes, 4096, FakeServer::Tamper::kPayloadAndChunkCrc);
    Status st = FetchFrom(ctx, bad, 5000ms);
    EXPECT_EQ(st.code(), StatusCode::kCorrupt);
    EXPECT_NE(st.message().find("whole-snapshot crc32c"), std::string::npos) << st.message();
  }
  {
    FakeServer silent(ctx, bytes, 4096, FakeServer::Tamper::kSilent);
    Status st = FetchFrom(ctx, silent, 200ms);
    EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
    EXPECT_NE(st.message().find("0 of 4 received"), std::string::npos) << st.message();
  }
}

}  // namespace
}  // namespace chainrl::transport
