// Loading and calling a reward plugin in-process (see plugin_loader.h).
#include "rewards/plugin_loader.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "chainrl/reward.h"

namespace chainrl::rewards {
namespace {

constexpr size_t kErrorBytes = 1024;

// Host-side storage behind chainrl_reward_output::host_data.
void AddComponent(chainrl_reward_output* out, const char* name, double value) {
  if (out == nullptr || out->host_data == nullptr || name == nullptr) return;
  static_cast<wire::SampleOutput*>(out->host_data)->components.emplace_back(name, value);
}
// A sample's message is kept up to 4 KiB (its length noted): a plugin writing megabytes per
// sample would otherwise fill the worker's replies and the logs.
void SetMessage(chainrl_reward_output* out, const char* message) {
  if (out == nullptr || out->host_data == nullptr) return;
  constexpr size_t kMaxMessage = 4096;
  std::string& m = static_cast<wire::SampleOutput*>(out->host_data)->message;
  if (message == nullptr) {
    m.clear();
    return;
  }
  const size_t n = strnlen(message, kMaxMessage + 1);
  m.assign(message, std::min(n, kMaxMessage));
  if (n > kMaxMessage) m += "... (cut at " + std::to_string(kMaxMessage) + " bytes)";
}
const chainrl_reward_host kHost = {&AddComponent, &SetMessage};

std::string ErrorText(const char* buf) {
  std::string s(buf, strnlen(buf, kErrorBytes));
  return s.empty() ? "(no message)" : s;
}

}  // namespace

Result<std::unique_ptr<LoadedPlugin>> LoadedPlugin::Open(const std::string& path,
                                                         const std::string& options_toml) {
  if (path.find('/') == std::string::npos)
    return InvalidArgument("reward plugin '" + path + "': path must name a file (contain '/')");
  std::unique_ptr<LoadedPlugin> p(new LoadedPlugin());
  p->path_ = path;
  dlerror();
  p->handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (p->handle_ == nullptr) {
    const char* e = dlerror();
    return InvalidArgument("reward plugin '" + path +
                           "': not a loadable shared library: " + (e ? e : "dlopen failed"));
  }
  void* sym = dlsym(p->handle_, CHAINRL_REWARD_ENTRY_SYMBOL);
  if (sym == nullptr) {
    return InvalidArgument("reward plugin '" + path + "': lacks the entry point " +
                           CHAINRL_REWARD_ENTRY_SYMBOL +
                           " (define it with CHAINRL_REWARD_PLUGIN or export it from C)");
  }
  auto entry = reinterpret_cast<chainrl_reward_entry_fn>(sym);
  const chainrl_reward_descriptor* d = entry();
  if (d == nullptr)
    return InvalidArgument("reward plugin '" + path + "': chainrl_reward_entry returned null");
  if (d->abi_version != CHAINRL_REWARD_ABI_VERSION) {
    return InvalidArgument("reward plugin '" + path +
                           "' was built for chainrl reward ABI version " +
                           std::to_string(d->abi_version) + ", but this chainrl uses ABI version " +
                           std::to_string(CHAINRL_REWARD_ABI_VERSION) +
                           "; rebuild the plugin against this chainrl's chainrl/reward.h");
  }
  if (d->struct_size < sizeof(chainrl_reward_descriptor) || d->init == nullptr ||
      d->score == nullptr || d->destroy == nullptr) {
    return InvalidArgument("reward plugin '" + path +
                           "': malformed descriptor (struct_size or a function pointer is wrong)");
  }
  p->desc_ = d;
  p->name_ = d->name ? d->name : "";
  p->version_ = d->version ? d->version : "";
  char err[kErrorBytes] = {0};
  int rc;
  try {
    rc = d->init(options_toml.c_str(), &p->instance_, err, sizeof(err));
  } catch (const std::exception& e) {
    return InvalidArgument("reward plugin '" + path + "': init threw: " + e.what());
  } catch (...) {
    return InvalidArgument("reward plugin '" + path + "': init threw an unknown exception");
  }
  if (rc != CHAINRL_REWARD_OK) {
    p->instance_ = nullptr;
    return InvalidArgument("reward plugin '" + path + "' (" + p->name_ +
                           "): init failed: " + ErrorText(err));
  }
  return p;
}

LoadedPlugin::~LoadedPlugin() {
  if (desc_ != nullptr && instance_ != nullptr) {
    try {
      desc_->destroy(instance_);
    } catch (...) {
    }
  }
  if (handle_ != nullptr) dlclose(handle_);
}

bool LoadedPlugin::Call(const std::vector<RewardInput>& samples, size_t begin, size_t end,
                        std::vector<wire::SampleOutput>* out, std::string* error) {
  size_t n = end - begin;
  std::vector<chainrl_reward_input> in(n);
  std::vector<chainrl_reward_output> res(n);
  std::vector<wire::SampleOutput> outs(n);
  for (size_t i = 0; i < n; ++i) {
    const RewardInput& s = samples[begin + i];
    in[i] = {s.example_id.c_str(),   s.prompt.c_str(),        s.prompt.size(),
             s.response.c_str(),     s.response.size(),       s.token_ids.data(),
             s.token_ids.size(),     s.finish_reason.c_str(), s.answer_json.c_str(),
             s.metadata_json.c_str()};
    res[i].score = 0;
    res[i].status = CHAINRL_REWARD_OK;
    res[i].host_data = &outs[i];
  }
  char err[kErrorBytes] = {0};
  int rc;
  try {
    rc = desc_->score(instance_, &kHost, in.data(), res.data(), n, err, sizeof(err));
  } catch (const std::exception& e) {
    *error = std::string("exception: ") + e.what();
    return false;
  } catch (...) {
    *error = "unknown exception";
    return false;
  }
  if (rc != CHAINRL_REWARD_OK) {
    *error = ErrorText(err);
    return false;
  }
  for (size_t i = 0; i < n; ++i) {
    outs[i].score = res[i].score;
    outs[i].plugin_error = res[i].status != CHAINRL_REWARD_OK;
    (*out)[begin + i] = std::move(outs[i]);
  }
  return true;
}

wire::ScoreReply LoadedPlugin::Score(const std::vector<RewardInput>& samples) {
  wire::ScoreReply reply;
  reply.outputs.resize(samples.size());
  std::string error;
  reply.calls = 1;
  if (samples.empty() || Call(samples, 0, samples.size(), &reply.outputs, &error)) return reply;
  if (samples.size() == 1) {
    reply.outputs[0] = {};
    reply.outputs[0].plugin_error = true;
    reply.outputs[0].message = error;
    return reply;
  }
  for (size_t i = 0; i < samples.size(); ++i) {
    ++reply.calls;
    std::string one_error;
    if (!Call(samples, i, i + 1, &reply.outputs, &one_error)) {
      reply.outputs[i] = {};
      reply.outputs[i].plugin_error = true;
      reply.outputs[i].message = one_error;
    }
  }
  return reply;
}

}  // namespace chainrl::rewards
