// `chainrl bench transport`: chainrl's channels against raw ZeroMQ of the same bytes, side by
// side in one run: trajectory messages/s and MB/s (encode+validate+send+recv+decode+validate vs
// PUSH/PULL of pre-encoded frames), and publishing weights to N actors (chunked, checksummed,
// verified) vs raw ZeroMQ loopback bandwidth; each chainrl side also with CURVE (encrypted and
// authenticated, as across machines). The last line is one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "core/channel.h"
#include "core/crc32c.h"
#include "core/curve.h"
#include "core/weights_transfer.h"
#include "core/wire.h"

namespace chainrl::app {
namespace {

using namespace std::chrono_literals;
using transport::ChannelKind;
using transport::ChannelOptions;
using transport::Context;
using SteadyClock = std::chrono::steady_clock;

double Seconds(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Config {
  std::string transport = "tcp";
  int64_t messages = 3000;
  int64_t samples = 8;
  int64_t tokens = 2048;
  int64_t weights_mb = 1024;
  int64_t chunk_kb = 4096;
  int64_t actors = 2;
  int64_t repeats = 3;
  int64_t hwm = 64;
  int64_t io_threads = 1;  // the learner side's ZeroMQ I/O threads (CURVE encrypts in them)
};

class Endpoints {
 public:
  explicit Endpoints(const std::string& transport) : tcp_(transport == "tcp") {
    if (!tcp_) {
      char tmpl[] = "/tmp/chainrl_bench_XXXXXX";
      dir_ = mkdtemp(tmpl);
    }
  }
  ~Endpoints() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string Next() {
    return tcp_ ? "tcp://127.0.0.1:0" : "ipc://" + dir_ + "/s" + std::to_string(n_++);
  }

 private:
  bool tcp_;
  std::string dir_;
  int n_ = 0;
};

// CURVE keys for one side of the bench: a learner pair and one authorized actor pair, or none.
struct Curve {
  bool on = false;
  transport::CurveKeyPair server, client;
  static Result<Curve> Make(bool on) {
    Curve k;
    k.on = on;
    if (!on) return k;
    CHAINRL_ASSIGN_OR_RETURN(k.server, transport::MakeCurveKeyPair());
    CHAINRL_ASSIGN_OR_RETURN(k.client, transport::MakeCurveKeyPair());
    return k;
  }
  // Keys for the server's options and its context's allow-list.
  Status Serve(Context& ctx, ChannelOptions* o) const {
    if (!on) return Status::Ok();
    o->curve = transport::CurveServer(server);
    return ctx.AuthorizeCurvePeers({{client.public_key, "bench"}});
  }
  void Connect(ChannelOptions* o) const {
    if (on) o->curve = transport::CurveClient(client, server.public_key);
  }
};

wire::Envelope MakeTrajectory(const Config& c) {
  std::mt19937_64 rng(1);
  wire::Envelope e = wire::MakeEnvelope("actor-0");
  wire::Trajectory* t = e.mutable_trajectory();
  t->set_prompt_group_id(1);
  t->set_lease_id(1);
  t->set_actor_id("actor-0");
  for (int64_t s = 0; s < c.samples; ++s) {
    wire::Sample* smp = t->add_samples();
    smp->set_sample_index(static_cast<uint32_t>(s));
    auto* seg = smp->mutable_completion();
    for (int64_t i = 0; i < c.tokens; ++i) {
      seg->add_token_ids(static_cast<uint32_t>(rng() % 151000));
      seg->add_behaviour_logprobs(-static_cast<float>(rng() % 10000) / 1000.0f);
    }
    std::vector<int64_t> versions(static_cast<size_t>(c.tokens), 40);
    for (size_t i = versions.size() / 2; i < versions.size(); ++i) versions[i] = 41;
    *seg->mutable_policy_versions() = wire::CompressPolicyVersions(versions);
    smp->set_finish_reason(wire::FINISH_STOP);
    smp->set_reward(1.0);
    (*smp->mutable_reward_components())["correct"] = 1.0;
    smp->mutable_timings()->set_generate_seconds(2.0);
  }
  return e;
}

// Messages/s through chainrl channels: the sender encodes every message, the receiver decodes
// and validates it.
Result<double> ChainrlTrajectories(const Config& c, const wire::Envelope& env, const Curve& curve) {
  Context ctx(static_cast<int>(c.io_threads)), source_ctx;  // two sides, as two processes
  Endpoints eps(c.transport);
  ChannelOptions o;
  o.send_hwm = o.recv_hwm = static_cast<int>(c.hwm);
  o.send_timeout = 10s;
  ChannelOptions so = o;
  CHAINRL_RETURN_IF_ERROR(curve.Serve(ctx, &so));
  curve.Connect(&o);
  CHAINRL_ASSIGN_OR_RETURN(
      auto sink, transport::Channel::Open(ctx, ChannelKind::kTrajectorySink, eps.Next(), so));
  CHAINRL_ASSIGN_OR_RETURN(
      auto source,
      transport::Channel::Open(source_ctx, ChannelKind::kTrajectorySource, sink->endpoint(), o));
  // Warm up the connection.
  CHAINRL_RETURN_IF_ERROR(source->Send(env));
  CHAINRL_ASSIGN_OR_RETURN(auto first, sink->Receive(10s));
  if (!first) return DeadlineExceeded("bench: no warm-up message");
  Status send_status;
  const auto t0 = SteadyClock::now();
  std::thread sender([&] {
    wire::Envelope e = env;
    for (int64_t i = 0; i < c.messages; ++i) {
      e.set_seq(static_cast<uint64_t>(i));
      Status st = source->Send(e);
      if (!st.ok()) {
        send_status = st;
        return;
      }
    }
  });
  int64_t got = 0;
  Status recv_status;
  while (got < c.messages) {
    auto r = sink->Receive(10s);
    if (!r.ok() || !r->has_value()) {
      recv_status = r.ok() ? DeadlineExceeded("bench: receive timed out") : r.status();
      break;
    }
    ++got;
  }
  const auto t1 = SteadyClock::now();
  sender.join();
  CHAINRL_RETURN_IF_ERROR(send_status);
  CHAINRL_RETURN_IF_ERROR(recv_status);
  return c.messages / Seconds(t0, t1);
}

// Messages/s of the same frame bytes through raw ZeroMQ PUSH/PULL, copied into a fresh message per
// send like the channel does, and received without decoding.
Result<double> RawTrajectories(const Config& c, const std::string& frame) {
  Context ctx;
  Endpoints eps(c.transport);
  try {
    zmq::socket_t pull(ctx.zmq(), ZMQ_PULL), push(ctx.zmq(), ZMQ_PUSH);
    for (auto* s : {&pull, &push}) {
      s->set(zmq::sockopt::linger, 200);
      s->set(zmq::sockopt::sndhwm, static_cast<int>(c.hwm));
      s->set(zmq::sockopt::rcvhwm, static_cast<int>(c.hwm));
    }
    CHAINRL_ASSIGN_OR_RETURN(std::string ep,
                             transport::BindOrConnect(pull, eps.Next(), true, false));
    push.connect(ep);
    push.send(zmq::buffer(frame));
    zmq::message_t m;
    (void)pull.recv(m);
    const auto t0 = SteadyClock::now();
    std::thread sender([&] {
      for (int64_t i = 0; i < c.messages; ++i) {
        zmq::message_t out(frame.data(), frame.size());
        (void)push.send(out, zmq::send_flags::none);
      }
    });
    for (int64_t i = 0; i < c.messages; ++i) (void)pull.recv(m);
    const auto t1 = SteadyClock::now();
    sender.join();
    return c.messages / Seconds(t0, t1);
  } catch (const zmq::error_t& e) {
    return IoError(std::string("bench raw trajectories: ") + e.what());
  }
}

struct WeightsTiming {
  double cold = 0;    // first publication: destination buffers freshly allocated
  double steady = 0;  // next publication into recycled buffers
};

// Seconds from Publish() until every actor holds a verified copy (each actor has its own context,
// as separate processes would).
Result<WeightsTiming> ChainrlWeights(const Config& c, const transport::WeightsBuffer& snapshot,
                                     int64_t version, const Curve& curve) {
  Context server_ctx(static_cast<int>(c.io_threads));
  Endpoints eps(c.transport);
  transport::WeightsServerOptions so;
  so.chunk_bytes = static_cast<uint32_t>(c.chunk_kb * 1024);
  CHAINRL_RETURN_IF_ERROR(curve.Serve(server_ctx, &so.channel));
  CHAINRL_ASSIGN_OR_RETURN(auto server,
                           transport::WeightsServer::Start(server_ctx, eps.Next(), so));
  const int n = static_cast<int>(c.actors);
  std::vector<std::unique_ptr<Context>> ctxs;
  std::vector<std::unique_ptr<transport::WeightsClient>> clients;
  for (int i = 0; i < n; ++i) {
    ctxs.push_back(std::make_unique<Context>());
    transport::WeightsClientOptions co;
    co.channel.name = "actor-" + std::to_string(i);
    co.chunk_timeout = 30s;
    curve.Connect(&co.channel);
    CHAINRL_ASSIGN_OR_RETURN(
        auto cl, transport::WeightsClient::Connect(*ctxs.back(), server->endpoint(), co));
    clients.push_back(std::move(cl));
  }
  for (int waited = 0; server->subscribers() < n; ++waited) {
    if (waited > 1000) return DeadlineExceeded("bench: subscribers did not join");
    std::this_thread::sleep_for(5ms);
  }
  // Two publications: the first lands in freshly allocated buffers (cold); each actor then
  // swaps it in and recycles its previous buffer, as a training run does every step, and the
  // second publication (steady state) reuses them.
  WeightsTiming timing;
  for (int round = 0; round < 2; ++round) {
    std::vector<Status> status(static_cast<size_t>(n));
    std::vector<std::thread> threads;
    const auto t0 = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        auto a = clients[i]->PollAnnounce(30s);
        if (!a.ok() || !a->has_value()) {
          status[i] = a.ok() ? DeadlineExceeded("no announcement") : a.status();
          return;
        }
        auto w = clients[i]->Fetch(**a);
        if (!w.ok()) {
          status[i] = w.status();
        } else if (w->bytes.size() != snapshot.bytes.size()) {
          status[i] = Internal("bench: wrong size");
        } else {
          clients[i]->Recycle(std::move(w).value());
        }
      });
    }
    Status published = server->Publish(version * 2 + round, snapshot);
    for (auto& t : threads) t.join();
    const auto t1 = SteadyClock::now();
    CHAINRL_RETURN_IF_ERROR(published);
    for (const auto& st : status) CHAINRL_RETURN_IF_ERROR(st);
    (round == 0 ? timing.cold : timing.steady) = Seconds(t0, t1);
  }
  return timing;
}

// Seconds for raw ZeroMQ PUSH/PULL to carry the same bytes in the same chunks to every actor
// (zero-copy sends, receivers discard): the loopback bandwidth available to us.
Result<double> RawWeights(const Config& c, const transport::WeightsBuffer& snapshot) {
  Context server_ctx;
  Endpoints eps(c.transport);
  const int n = static_cast<int>(c.actors);
  const size_t chunk = static_cast<size_t>(c.chunk_kb * 1024);
  const size_t total = snapshot.bytes.size();
  const size_t chunks = (total + chunk - 1) / chunk;
  try {
    std::vector<std::unique_ptr<Context>> ctxs;
    std::vector<std::unique_ptr<zmq::socket_t>> pulls, pushes;
    for (int i = 0; i < n; ++i) {
      ctxs.push_back(std::make_unique<Context>());
      pulls.push_back(std::make_unique<zmq::socket_t>(ctxs.back()->zmq(), ZMQ_PULL));
      pulls.back()->set(zmq::sockopt::linger, 0);
      CHAINRL_ASSIGN_OR_RETURN(std::string ep,
                               transport::BindOrConnect(*pulls.back(), eps.Next(), true, false));
      pushes.push_back(std::make_unique<zmq::socket_t>(server_ctx.zmq(), ZMQ_PUSH));
      pushes.back()->set(zmq::sockopt::linger, 0);
      pushes.back()->connect(ep);
    }
    std::vector<std::thread> threads;
    const auto t0 = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        zmq::message_t m;
        for (size_t k = 0; k < chunks; ++k) (void)pulls[i]->recv(m);
      });
    }
    for (size_t k = 0; k < chunks; ++k) {
      const size_t off = k * chunk, len = std::min(chunk, total - off);
      for (int i = 0; i < n; ++i) {
        zmq::message_t m(const_cast<uint8_t*>(snapshot.bytes.data() + off), len, nullptr, nullptr);
        (void)pushes[i]->send(m, zmq::send_flags::none);
      }
    }
    for (auto& t : threads) t.join();
    return Seconds(t0, SteadyClock::now());
  } catch (const zmq::error_t& e) {
    return IoError(std::string("bench raw weights: ") + e.what());
  }
}

int RunTransportBench(const std::vector<std::string>& argv) {
  Config c;
  Args a("chainrl bench transport", "[options]",
         "Trajectory throughput and weight publication through chainrl's channels, each beside\n"
         "raw ZeroMQ moving the same bytes in the same run. The last line is JSON.");
  a.Option("transport", &c.transport, "tcp (loopback) or ipc (default tcp)")
      .Option("messages", &c.messages, "trajectory messages per run (default 3000)")
      .Option("samples", &c.samples, "samples per trajectory message (default 8)")
      .Option("tokens", &c.tokens, "tokens per sample (default 2048)")
      .Option("weights-mb", &c.weights_mb, "weights snapshot size in MiB (default 1024)")
      .Option("chunk-kb", &c.chunk_kb, "weights chunk size in KiB (default 4096)")
      .Option("actors", &c.actors, "weights subscribers (default 2)")
      .Option("repeats", &c.repeats, "runs of each side, best kept (default 3)")
      .Option("hwm", &c.hwm, "trajectory queue high-water mark (default 64)")
      .Option("io-threads", &c.io_threads,
              "ZeroMQ I/O threads of the learner side (default 1, as the learner)");
  return ParseAndRun(a, argv, [&]() -> int {
    if (c.transport != "tcp" && c.transport != "ipc")
      return ReportError(
          InvalidArgument("--transport must be tcp or ipc, got '" + c.transport + "'"));
    if (c.messages < 1 || c.samples < 1 || c.tokens < 0 || c.weights_mb < 1 || c.chunk_kb < 1 ||
        c.chunk_kb > 256 * 1024 || c.actors < 1 || c.repeats < 1 || c.hwm < 1 || c.io_threads < 1 ||
        c.io_threads > 64)
      return ReportError(InvalidArgument("every size option must be >= 1 (chunk-kb <= 262144)"));
    // ---- trajectories ----
    const wire::Envelope env = MakeTrajectory(c);
    auto frame = wire::EncodeFrame(env);
    if (!frame.ok()) return ReportError(frame.status());
    const double mb = static_cast<double>(frame->size()) / 1e6;
    std::printf(
        "transport bench over %s: trajectory of %lld samples x %lld tokens = %zu bytes/frame\n",
        c.transport.c_str(), static_cast<long long>(c.samples), static_cast<long long>(c.tokens),
        frame->size());
    auto plain = Curve::Make(false), curve = Curve::Make(true);
    if (!curve.ok()) return ReportError(curve.status());
    double best_raw = 0, best_chainrl = 0, best_curve = 0;
    for (int64_t r = 0; r < c.repeats; ++r) {
      auto raw = RawTrajectories(c, *frame);
      if (!raw.ok()) return ReportError(raw.status());
      auto ours = ChainrlTrajectories(c, env, *plain);
      if (!ours.ok()) return ReportError(ours.status());
      auto curved = ChainrlTrajectories(c, env, *curve);
      if (!curved.ok()) return ReportError(curved.status());
      std::printf(
          "  run %lld: raw zmq %.0f msg/s (%.0f MB/s), chainrl %.0f msg/s (%.0f MB/s), chainrl + "
          "CURVE %.0f msg/s (%.0f MB/s)\n",
          static_cast<long long>(r), *raw, *raw * mb, *ours, *ours * mb, *curved, *curved * mb);
      best_raw = std::max(best_raw, *raw);
      best_chainrl = std::max(best_chainrl, *ours);
      best_curve = std::max(best_curve, *curved);
    }
    const double traj_ratio = best_chainrl / best_raw;
    const double curve_traj_ratio = best_curve / best_chainrl;
    std::printf(
        "trajectories: raw %.0f msg/s %.0f MB/s | chainrl %.0f msg/s %.0f MB/s | ratio %.3f\n"
        "trajectories with CURVE: %.0f msg/s %.0f MB/s | CURVE / plain chainrl %.3f\n",
        best_raw, best_raw * mb, best_chainrl, best_chainrl * mb, traj_ratio, best_curve,
        best_curve * mb, curve_traj_ratio);

    // ---- weights ----
    const size_t bytes = static_cast<size_t>(c.weights_mb) << 20;
    uint8_t* data = nullptr;
    transport::WeightsBuffer snapshot;
    try {
      snapshot = transport::WeightsBuffer::Allocate(bytes, &data);
    } catch (const std::bad_alloc&) {
      return ReportError(IoError("cannot allocate " + std::to_string(bytes) + " bytes"));
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(data + i, &x, 8);
    }
    const double delivered = static_cast<double>(bytes) * static_cast<double>(c.actors) / 1e6;
    double best_raw_s = 1e30, best_chainrl_s = 1e30, best_cold_s = 1e30, best_curve_s = 1e30;
    for (int64_t r = 0; r < c.repeats; ++r) {
      auto raw = RawWeights(c, snapshot);
      if (!raw.ok()) return ReportError(raw.status());
      auto ours = ChainrlWeights(c, snapshot, r + 1, *plain);
      if (!ours.ok()) return ReportError(ours.status());
      auto curved = ChainrlWeights(c, snapshot, r + 1, *curve);
      if (!curved.ok()) return ReportError(curved.status());
      std::printf("  run %lld: chainrl + CURVE %.3f s (%.0f MB/s)\n", static_cast<long long>(r),
                  curved->steady, delivered / curved->steady);
      best_curve_s = std::min(best_curve_s, curved->steady);
      std::printf(
          "  run %lld: %lld MiB to %lld actors: raw zmq %.3f s (%.0f MB/s), chainrl %.3f s "
          "(%.0f MB/s; the first publication, into fresh buffers: %.3f s)\n",
          static_cast<long long>(r), static_cast<long long>(c.weights_mb),
          static_cast<long long>(c.actors), *raw, delivered / *raw, ours->steady,
          delivered / ours->steady, ours->cold);
      best_raw_s = std::min(best_raw_s, *raw);
      best_chainrl_s = std::min(best_chainrl_s, ours->steady);
      best_cold_s = std::min(best_cold_s, ours->cold);
    }
    const double weights_ratio = best_raw_s / best_chainrl_s;
    std::printf(
        "weights: raw %.3f s %.0f MB/s | chainrl steady state (chunk+crc32c+verify) %.3f s %.0f "
        "MB/s | "
        "ratio %.3f (crc32c in hardware: %s)\n",
        best_raw_s, delivered / best_raw_s, best_chainrl_s, delivered / best_chainrl_s,
        weights_ratio, crc32c::HardwareAccelerated() ? "yes" : "no");
    const double curve_weights_ratio = best_chainrl_s / best_curve_s;
    std::printf(
        "weights with CURVE: %.3f s %.0f MB/s | CURVE / plain chainrl %.3f (the cost: %.2f ns per "
        "byte delivered, encryption and authentication in the I/O threads)\n",
        best_curve_s, delivered / best_curve_s, curve_weights_ratio,
        (best_curve_s - best_chainrl_s) * 1e9 / (delivered * 1e6));
    nlohmann::json j = {
        {"bench", "transport"},
        {"transport", c.transport},
        {"trajectory_frame_bytes", frame->size()},
        {"trajectory_messages", c.messages},
        {"trajectory_raw_msgs_per_s", best_raw},
        {"trajectory_chainrl_msgs_per_s", best_chainrl},
        {"trajectory_raw_mb_per_s", best_raw * mb},
        {"trajectory_chainrl_mb_per_s", best_chainrl * mb},
        {"trajectory_throughput_ratio", traj_ratio},
        {"weights_bytes", bytes},
        {"weights_actors", c.actors},
        {"weights_chunk_bytes", c.chunk_kb * 1024},
        {"weights_raw_seconds", best_raw_s},
        {"weights_chainrl_seconds", best_chainrl_s},
        {"weights_chainrl_first_publication_seconds", best_cold_s},
        {"weights_first_publication_ratio", best_raw_s / best_cold_s},
        {"weights_raw_mb_per_s", delivered / best_raw_s},
        {"weights_chainrl_mb_per_s", delivered / best_chainrl_s},
        {"weight_publish_bandwidth_ratio", weights_ratio},
        {"trajectory_curve_msgs_per_s", best_curve},
        {"trajectory_curve_ratio", curve_traj_ratio},
        {"weights_curve_seconds", best_curve_s},
        {"weights_curve_mb_per_s", delivered / best_curve_s},
        {"weights_curve_ratio", curve_weights_ratio},
    };
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_BENCH("transport", "chainrl channels vs raw ZeroMQ: trajectories and weights",
              RunTransportBench);

}  // namespace chainrl::app
