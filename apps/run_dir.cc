// Run directory creation and atomic file writes.
#include "apps/run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "core/file_io.h"
#include "core/log.h"

namespace chainrl::app {

Result<std::string> PrepareRunDir(const Config& config, const std::string& flag_value,
                                  const std::string& role) {
  std::string dir = flag_value;
  if (dir.empty()) dir = config.GetString("run.run_dir");
  if (dir.empty()) {
    std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
    dir = "runs/" + config.GetString("run.name") + "-" + buf;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create the run directory: " + ec.message());
  CHAINRL_RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.toml", config.ToToml()));
  log::SetRole(role);
  CHAINRL_RETURN_IF_ERROR(log::OpenEventLog(dir + "/events.jsonl"));
  return dir;
}

}  // namespace chainrl::app
