#include "learner/learner_transport.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/log.h"
#include "core/stopwatch.h"
#include "model/flat_weights.h"

namespace chainrl::learner {

namespace fs = std::filesystem;

Result<std::unique_ptr<LearnerTransport>> LearnerTransport::Open(
    const std::string& bind, const std::string& run_dir, const transport::LearnerSecurity& security,
    uint32_t vocab_size) {
  CHAINRL_ASSIGN_OR_RETURN(auto t, Bind(bind, run_dir, security, vocab_size));
  CHAINRL_RETURN_IF_ERROR(WriteEndpointsFile((fs::path(run_dir) / "endpoints.json").string(),
                                             t->bound_, static_cast<int>(getpid())));
  CHAINRL_LOG(kInfo) << "serving work on " << t->bound_.work << ", trajectories on "
                     << t->bound_.trajectories << ", weights on " << t->bound_.weights
                     << (security.keys.enabled()
                             ? " (CURVE; " + std::to_string(security.allowed.size()) +
                                   " authorized keys)"
                             : "");
  return t;
}

Status LearnerTransport::Probe(const std::string& bind, const std::string& run_dir,
                               const transport::LearnerSecurity& security) {
  auto t = Bind(bind, run_dir, security, 0);
  // The user's to mend (another address or port): a configuration error, not restarted.
  if (!t.ok()) return InvalidArgument("learner.bind = \"" + bind + "\": " + t.status().message());
  return Status::Ok();
}

Result<std::unique_ptr<LearnerTransport>> LearnerTransport::Bind(
    const std::string& bind, const std::string& run_dir, const transport::LearnerSecurity& security,
    uint32_t vocab_size) {
  LearnerEndpoints ep;
  if (bind == "ipc://") {
    const std::string base = "ipc://" + fs::absolute(run_dir).string() + "/learner";
    ep = {base + ".work", base + ".traj", base + ".weights"};
  } else {
    CHAINRL_ASSIGN_OR_RETURN(ep, ResolveLearnerEndpoints(bind));
  }
  auto t = std::unique_ptr<LearnerTransport>(new LearnerTransport(security.keys.enabled() ? 2 : 1));
  transport::ChannelOptions co;
  co.name = "learner";
  co.recv_hwm = 1000;
  co.send_timeout = std::chrono::milliseconds(100);
  if (vocab_size > 0) co.limits.vocab_size = std::min(co.limits.vocab_size, vocab_size);
  // Beyond loopback only with keys, or on a network the config declares trusted.
  co.allow_remote_bind = security.keys.enabled() || security.open_beyond_loopback;
  co.curve = security.keys;
  if (security.keys.enabled())
    CHAINRL_RETURN_IF_ERROR(t->ctx_.AuthorizeCurvePeers(security.allowed));
  CHAINRL_ASSIGN_OR_RETURN(
      t->work_,
      transport::Channel::Open(t->ctx_, transport::ChannelKind::kWorkServer, ep.work, co));
  transport::ChannelOptions to = co;
  to.recv_hwm = 8;  // trajectories: a short queue, so a paused learner holds actors back
  CHAINRL_ASSIGN_OR_RETURN(
      t->traj_, transport::Channel::Open(t->ctx_, transport::ChannelKind::kTrajectorySink,
                                         ep.trajectories, to));
  transport::WeightsServerOptions wo;
  wo.channel = co;
  CHAINRL_ASSIGN_OR_RETURN(t->weights_, transport::WeightsServer::Start(t->ctx_, ep.weights, wo));
  t->bound_ = {t->work_->endpoint(), t->traj_->endpoint(), t->weights_->endpoint()};
  return t;
}

Result<double> LearnerTransport::PublishWeights(model::DecoderModel& model, int64_t version) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto as = model.options().ComputeDtype();
  const size_t n = model::FlatWeightsBytes(model, as);
  uint8_t* data = nullptr;
  transport::WeightsBuffer buf = transport::WeightsBuffer::Allocate(n, &data);
  model::PackFlatWeights(model, data, as);
  CHAINRL_RETURN_IF_ERROR(
      weights_->Publish(version, std::move(buf), model::FlatWeightsFormat(model, as)));
  return SecondsSince(t0);
}

uint64_t LearnerTransport::Rejected(wire::RejectReason reason) const {
  return work_->rejects().Get(reason) + traj_->rejects().Get(reason) +
         weights_->rejects().Get(reason);
}

uint64_t LearnerTransport::PeersRefused(transport::PeerRefusal why) const {
  return ctx_.authenticator() ? ctx_.authenticator()->refused(why) : 0;
}

uint64_t LearnerTransport::RejectedTotal() const {
  return work_->rejects().Total() + traj_->rejects().Total() + weights_->rejects().Total();
}

}  // namespace chainrl::learner
