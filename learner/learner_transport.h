// The learner's three endpoints: work (actors ask for leases and heartbeat on it), trajectories
// (results; a short receive queue, so a paused learner holds its actors back) and weights (one
// flat buffer per policy version), plus the endpoints file by which actors and the launcher find
// them. Knows nothing of the process that uses it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/channel.h"
#include "core/endpoints.h"
#include "core/security.h"
#include "core/status.h"
#include "core/weights_transfer.h"
#include "core/wire.h"

namespace chainrl::model {
class DecoderModel;
}

namespace chainrl::learner {

class LearnerTransport {
 public:
  // Binds learner.bind's endpoints (`bind`; "ipc://" alone means sockets named learner.* in
  // `run_dir`) and writes RUN_DIR/endpoints.json with the endpoints bound and this process's pid.
  // With `security`'s keys every endpoint speaks CURVE and admits only its authorized keys; a
  // bind beyond loopback needs keys or security.trusted_network (LearnerSecurityFromConfig).
  // Messages from peers carrying a token id outside the policy's vocabulary (`vocab_size`, 0: the
  // wire's own bound) are refused and counted as invalid before they reach the learner, naming
  // the peer. The transport's errors.
  static Result<std::unique_ptr<LearnerTransport>> Open(const std::string& bind,
                                                        const std::string& run_dir,
                                                        const transport::LearnerSecurity& security,
                                                        uint32_t vocab_size = 0);
  // Binds the same endpoints and closes them again, writing nothing: a bind that cannot succeed
  // (an address in use or not this host's, a socket path too long) is reported at start-up,
  // before the SFT warm-up, not after it. The error names learner.bind.
  static Status Probe(const std::string& bind, const std::string& run_dir,
                      const transport::LearnerSecurity& security);

  transport::Channel& work() { return *work_; }
  transport::Channel& trajectories() { return *traj_; }
  const LearnerEndpoints& endpoints() const { return bound_; }

  // `model`'s parameters in its compute dtype (bfloat16 actors get half the bytes of float32
  // master weights), published as `version`; the seconds packing and publishing took.
  Result<double> PublishWeights(model::DecoderModel& model, int64_t version);
  uint64_t weights_bytes_sent() const { return weights_->bytes_sent(); }

  // Messages refused on the three endpoints together: for one reason, and for all.
  uint64_t Rejected(wire::RejectReason reason) const;
  uint64_t RejectedTotal() const;
  // Peers turned away before any message (CURVE: no key, an unknown key); 0 without keys.
  uint64_t PeersRefused(transport::PeerRefusal why) const;

 private:
  // CURVE encrypts and decrypts in ZeroMQ's I/O threads, one connection per thread: with keys the
  // learner has two, so that two actors' weight fetches are encrypted side by side.
  explicit LearnerTransport(int io_threads) : ctx_(io_threads) {}
  static Result<std::unique_ptr<LearnerTransport>> Bind(const std::string& bind,
                                                        const std::string& run_dir,
                                                        const transport::LearnerSecurity& security,
                                                        uint32_t vocab_size);
  transport::Context ctx_;
  std::unique_ptr<transport::Channel> work_, traj_;
  std::unique_ptr<transport::WeightsServer> weights_;
  LearnerEndpoints bound_;
};

}  // namespace chainrl::learner
