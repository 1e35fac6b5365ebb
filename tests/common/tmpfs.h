// A small disk for tests, for real: a tmpfs of a given size mounted in a private mount namespace
// of the test process (which children it starts inherit), so nothing is seen outside and nothing
// outlives the test. Root only (CI runs as root); callers skip otherwise.
#pragma once

#include <sched.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace chainrl::testing {

// Mounts a tmpfs of `bytes` at `dir` (which must exist). "" on success, else the reason. The first
// call moves this process into a private mount namespace.
inline std::string MountTmpfs(const std::string& dir, uint64_t bytes) {
  static const std::string entered = [] {
    if (::unshare(CLONE_NEWNS) != 0) return std::string("unshare: ") + std::strerror(errno);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return std::string("making / private: ") + std::strerror(errno);
    return std::string();
  }();
  if (!entered.empty()) return entered;
  const std::string opts = "size=" + std::to_string(bytes);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0)
    return "mount " + dir + ": " + std::strerror(errno);
  return "";
}

// "" when `dir` was unmounted, else the reason.
inline std::string UnmountTmpfs(const std::string& dir) {
  return ::umount(dir.c_str()) == 0 ? "" : "umount " + dir + ": " + std::strerror(errno);
}

}  // namespace chainrl::testing
