// Run directory creation and atomic file writes.
#include "apps/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "core/file_io.h"
#include "core/log.h"

namespace chainrl::app {

Status LockRunDir(const std::string& dir, const std::string& role) {
  const std::string path = dir + "/" + role + ".lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(path + ": cannot open the lock file: " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (e != EWOULDBLOCK) return IoError(path + ": cannot lock: " + std::strerror(e));
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return InvalidArgument(dir + ": another " + role +
                           (holder.empty() ? "" : " (pid " + holder + ")") +
                           " is running in this run directory; give each run its own --run-dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    CHAINRL_LOG(kWarn) << path << ": cannot write the pid: " << std::strerror(errno);
  }
  // The descriptor stays open for the life of the process: the lock goes when it exits, however.
  return Status::Ok();
}

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
  if (role == "launcher" || role == "learner") CHAINRL_RETURN_IF_ERROR(LockRunDir(dir, role));
  CHAINRL_RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.toml", config.ToToml()));
  log::SetRole(role);
  CHAINRL_RETURN_IF_ERROR(log::OpenEventLog(dir + "/events.jsonl"));
  return dir;
}

}  // namespace chainrl::app
