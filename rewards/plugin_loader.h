// Loads one reward plugin (a shared library exporting chainrl_reward_entry, chainrl/reward.h) into
// the current process, checks its ABI version and runs it. Used inside the worker process, and by
// the benchmark for the direct in-process baseline; the host never loads plugins itself.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "rewards/reward_pool.h"
#include "rewards/reward_wire.h"

struct chainrl_reward_descriptor;

namespace chainrl::rewards {

class LoadedPlugin {
 public:
  // dlopen()s exactly `path` (which must contain a '/': no library search), resolves the entry
  // point, checks the ABI version and descriptor, and runs init(options_toml). InvalidArgument
  // naming the path when the file is not a loadable shared library, lacks the entry point, was
  // built for another ABI version, or init fails.
  static Result<std::unique_ptr<LoadedPlugin>> Open(const std::string& path,
                                                    const std::string& options_toml);
  // Calls destroy and closes the library.
  ~LoadedPlugin();
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;

  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }

  // Scores the samples in one plugin call. If the call fails as a whole (returns an error or
  // throws), each sample is scored again in a call of its own, so that only the failing ones are
  // marked plugin_error. Crashes and hangs are not caught here (that is the worker pool's job).
  // Not thread-safe.
  wire::ScoreReply Score(const std::vector<RewardInput>& samples);

 private:
  LoadedPlugin() = default;
  // One raw plugin call on samples [begin, end); returns false (with *error) on a call failure.
  bool Call(const std::vector<RewardInput>& samples, size_t begin, size_t end,
            std::vector<wire::SampleOutput>* out, std::string* error);

  void* handle_ = nullptr;
  const chainrl_reward_descriptor* desc_ = nullptr;
  void* instance_ = nullptr;
  std::string path_, name_, version_;
};

}  // namespace chainrl::rewards
