// Data parallelism over c10d (see data_parallel.h).
#include "learner/data_parallel.h"

#include <chrono>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <thread>

#include <ATen/ATen.h>

// Debian's LibTorch is built with Gloo; its header is only active with this macro.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "core/crc32c.h"

namespace chainrl::learner {
namespace {

// The integer value of environment variable `name` within [lo, hi], or an error naming it.
Result<int> IntVariable(const char* name, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0')
    return InvalidArgument(std::string("data parallelism: ") + name +
                           " is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and "
                           "MASTER_PORT)");
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    return InvalidArgument(std::string("data parallelism: ") + name + "='" + v +
                           "' is not an integer in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "]");
  return static_cast<int>(x);
}

// The first line of an exception's message (c10d appends stack traces).
std::string FirstLine(const std::exception& e) {
  std::string what = e.what();
  if (const auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
  return what;
}

std::string MessageKey(int to, int64_t seq) {
  return "chainrl/message/" + std::to_string(to) + "/" + std::to_string(seq);
}

bool Loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

Result<RankInfo> RankInfoFromEnvironment() {
  RankInfo who;
  const char* ws = std::getenv("WORLD_SIZE");
  if (ws == nullptr || *ws == '\0') return who;
  CHAINRL_ASSIGN_OR_RETURN(who.world_size, IntVariable("WORLD_SIZE", 1, 1 << 20));
  if (who.world_size == 1) return who;
  CHAINRL_ASSIGN_OR_RETURN(who.rank, IntVariable("RANK", 0, who.world_size - 1));
  CHAINRL_ASSIGN_OR_RETURN(who.master_port, IntVariable("MASTER_PORT", 1, 65535));
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0')
    return InvalidArgument("data parallelism: MASTER_ADDR is not set (the host of rank 0)");
  who.master_addr = addr;
  return who;
}

struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::chrono::milliseconds timeout{0};
};

DataParallel::DataParallel(RankInfo who, std::unique_ptr<Impl> impl)
    : who_(std::move(who)), impl_(std::move(impl)) {}

DataParallel::~DataParallel() = default;

Result<std::string> DataParallelBackend(std::string_view backend, std::string_view device) {
  const std::string named(backend);
  if (named != "auto" && named != "gloo" && named != "nccl")
    return InvalidArgument("distributed.backend = '" + named + "': expected auto, gloo or nccl");
  const bool cuda = device.substr(0, 4) == "cuda";
  const std::string resolved = named == "auto" ? (cuda ? "nccl" : "gloo") : named;
  if (resolved == "nccl") {
    const std::string why = named == "auto"
                                ? "distributed.backend = 'auto' means 'nccl' on run.device = '" +
                                      std::string(device) + "'"
                                : std::string("distributed.backend = 'nccl'");
    return InvalidArgument(why +
                           ", and this build has no NCCL process group (chainrl's data-parallel "
                           "learner runs on Gloo); set distributed.backend = 'gloo'");
  }
  return resolved;
}

Result<DataParallelOptions> DataParallelOptionsFromConfig(const Config& c) {
  DataParallelOptions o;
  o.backend = c.GetString("distributed.backend");
  o.device = c.GetString("run.device");
  o.timeout_seconds = c.GetFloat("distributed.timeout_seconds");
  CHAINRL_RETURN_IF_ERROR(DataParallelBackend(o.backend, o.device).status());
  return o;
}

Result<std::unique_ptr<DataParallel>> DataParallel::Join(const RankInfo& who,
                                                         const DataParallelOptions& options) {
  // The only backend DataParallelBackend lets through is Gloo, the group created below.
  CHAINRL_RETURN_IF_ERROR(DataParallelBackend(options.backend, options.device).status());
  if (who.world_size < 1 || who.rank < 0 || who.rank >= who.world_size)
    return InvalidArgument("data parallelism: rank " + std::to_string(who.rank) +
                           " outside a world of " + std::to_string(who.world_size));
  const std::string where = who.master_addr + ":" + std::to_string(who.master_port);
  auto impl = std::make_unique<Impl>();
  impl->timeout = std::chrono::milliseconds(
      static_cast<int64_t>(std::max(0.001, options.timeout_seconds) * 1000.0));
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(who.master_port);
    so.isServer = who.rank == 0;
    so.numWorkers = static_cast<std::size_t>(who.world_size);
    so.waitWorkers = true;
    so.timeout = impl->timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(who.master_addr, so);
    auto go = c10d::ProcessGroupGloo::Options::create(impl->timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname != nullptr && *ifname != '\0') {
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (Loopback(who.master_addr)) {
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl->group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, who.rank, who.world_size, go);
  } catch (const std::exception& e) {
    const std::string what = FirstLine(e);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    const bool hint = (ifname == nullptr || *ifname == '\0') && !Loopback(who.master_addr);
    return DeadlineExceeded(
        "data parallelism: rank " + std::to_string(who.rank) + " of " +
        std::to_string(who.world_size) + " could not form the group at " + where + " within " +
        std::to_string(options.timeout_seconds) + " s: " + what +
        (hint ? " (each rank offers Gloo the address its host name resolves to: where that is "
                "loopback or unreachable from the other ranks, set GLOO_SOCKET_IFNAME to the "
                "network interface the ranks share, e.g. eth0)"
              : ""));
  }
  return std::unique_ptr<DataParallel>(new DataParallel(who, std::move(impl)));
}

Status DataParallel::AllReduce(const std::vector<at::Tensor>& tensors, bool max) {
  if (world_size() == 1 || tensors.empty()) return Status::Ok();
  return PerDtype(tensors, "all-reduce", [&](std::vector<at::Tensor>& buf) {
    c10d::AllreduceOptions ao;
    ao.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    ao.timeout = impl_->timeout;
    impl_->group->allreduce(buf, ao)->wait();
  });
}

Status DataParallel::PerDtype(const std::vector<at::Tensor>& tensors, const char* what,
                              const std::function<void(std::vector<at::Tensor>&)>& collective) {
  // One flat buffer per dtype, in order of first appearance.
  std::map<int, std::vector<size_t>> by_dtype;
  for (size_t i = 0; i < tensors.size(); ++i)
    by_dtype[static_cast<int>(tensors[i].scalar_type())].push_back(i);
  try {
    for (const auto& [dtype, idx] : by_dtype) {
      std::vector<at::Tensor> parts;
      for (size_t i : idx) parts.push_back(tensors[i].detach().reshape({-1}));
      at::Tensor flat = at::cat(parts);
      // Gloo's collectives lack 16-bit floats on older LibTorch: they travel as float32 (exact
      // for a broadcast; a sum is rounded once, on the way back).
      const bool widen = flat.scalar_type() == at::kBFloat16 || flat.scalar_type() == at::kHalf;
      std::vector<at::Tensor> buf = {widen ? flat.to(at::kFloat) : flat};
      collective(buf);
      int64_t off = 0;
      for (size_t i : idx) {
        const int64_t n = tensors[i].numel();
        at::Tensor t = tensors[i];
        t.detach().copy_(buf[0].narrow(0, off, n).view(tensors[i].sizes()));
        off += n;
      }
    }
  } catch (const std::exception& e) {
    return IoError("data parallelism: " + std::string(what) + " on rank " + std::to_string(rank()) +
                   " of " + std::to_string(world_size()) + " failed: " + FirstLine(e));
  }
  return Status::Ok();
}

Status DataParallel::AllReduce(std::vector<double>* values, bool max) {
  if (world_size() == 1 || values->empty()) return Status::Ok();
  at::Tensor t = at::tensor(*values, at::kDouble);
  CHAINRL_RETURN_IF_ERROR(AllReduce({t}, max));
  const double* p = t.data_ptr<double>();
  values->assign(p, p + t.numel());
  return Status::Ok();
}

Result<bool> DataParallel::SameOnEveryRank(uint64_t value) {
  // Two exact 32-bit halves; equal maxima and minima across the ranks mean one value everywhere.
  const double hi = static_cast<double>(value >> 32);
  const double lo = static_cast<double>(value & 0xffffffffull);
  std::vector<double> v = {hi, lo, -hi, -lo};
  CHAINRL_RETURN_IF_ERROR(AllReduce(&v, /*max=*/true));
  return v[0] == -v[2] && v[1] == -v[3];
}

Status DataParallel::SumGradients(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : params) {
    if (!p.requires_grad()) continue;
    at::Tensor param = p;
    if (!param.grad().defined()) param.mutable_grad() = at::zeros_like(param);
    grads.push_back(param.grad());
  }
  return AllReduce(grads);
}

Status DataParallel::Broadcast(const std::vector<at::Tensor>& tensors) {
  if (world_size() == 1 || tensors.empty()) return Status::Ok();
  return PerDtype(tensors, "broadcast", [&](std::vector<at::Tensor>& buf) {
    c10d::BroadcastOptions bo;
    bo.rootRank = 0;
    bo.timeout = impl_->timeout;
    impl_->group->broadcast(buf, bo)->wait();
  });
}

Status DataParallel::Send(int to, const std::string& bytes) {
  if (rank() != 0 || to < 1 || to >= world_size())
    return InvalidArgument("data parallelism: rank " + std::to_string(rank()) +
                           " cannot send to rank " + std::to_string(to) +
                           " (only rank 0 sends, to ranks 1.." + std::to_string(world_size() - 1) +
                           ")");
  if (sent_.empty()) sent_.assign(static_cast<size_t>(world_size()), 0);
  try {
    impl_->store->set(MessageKey(to, sent_[static_cast<size_t>(to)]),
                      std::vector<uint8_t>(bytes.begin(), bytes.end()));
  } catch (const std::exception& e) {
    return IoError("data parallelism: sending to rank " + std::to_string(to) +
                   " through the store at " + who_.master_addr + ":" +
                   std::to_string(who_.master_port) + " failed: " + FirstLine(e));
  }
  ++sent_[static_cast<size_t>(to)];
  return Status::Ok();
}

Result<std::string> DataParallel::Receive() {
  if (rank() == 0) return InvalidArgument("data parallelism: rank 0 receives no messages");
  const std::string key = MessageKey(rank(), received_);
  try {
    // Polled rather than waited on: a blocking wait would end at the store's timeout, and rank 0
    // may legitimately be silent for longer. A closed store (rank 0 gone) throws.
    auto pause = std::chrono::milliseconds(1);
    while (!impl_->store->check({key})) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
    std::vector<uint8_t> v = impl_->store->get(key);
    impl_->store->deleteKey(key);
    ++received_;
    return std::string(v.begin(), v.end());
  } catch (const std::exception& e) {
    return IoError("data parallelism: rank " + std::to_string(rank()) +
                   " lost rank 0 (its store at " + who_.master_addr + ":" +
                   std::to_string(who_.master_port) + "): " + FirstLine(e));
  }
}

Result<bool> ParametersAgree(DataParallel& dp, const std::vector<at::Tensor>& params) {
  uint32_t crc = 0;  // over the parameters' bytes
  for (const auto& p : params) {
    at::Tensor t = p.detach().to(at::kCPU).contiguous();
    crc = crc32c::Extend(crc, t.data_ptr(), t.nbytes());
  }
  return dp.SameOnEveryRank(crc);
}

Status CheckSameLayout(DataParallel& dp,
                       const std::vector<std::pair<std::string, at::Tensor>>& named_params,
                       const std::string& description) {
  std::string layout;
  for (const auto& [name, p] : named_params) {
    layout += name + ":" + std::to_string(static_cast<int>(p.scalar_type()));
    for (int64_t d : p.sizes()) layout += "," + std::to_string(d);
    layout += ";";
  }
  CHAINRL_ASSIGN_OR_RETURN(bool same,
                           dp.SameOnEveryRank(crc32c::Value(layout.data(), layout.size())));
  if (same) return Status::Ok();
  return InvalidArgument(
      "data parallel: the ranks' models differ (parameter names, shapes or dtypes); every rank "
      "must run the same model config (this rank: " +
      description + ")");
}

}  // namespace chainrl::learner
