// cgroup v2 containment (see cgroup.h).
#include "core/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace chainrl {
namespace {

// mountinfo escapes spaces, tabs, newlines and backslashes in paths as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

Status WriteSmall(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return IoError(path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return IoError(path + ": " + std::strerror(err));
  return Status::Ok();
}

std::vector<pid_t> Members(const std::string& dir) {
  std::vector<pid_t> out;
  std::ifstream f(dir + "/cgroup.procs");
  for (long pid; f >> pid;) out.push_back(static_cast<pid_t>(pid));
  return out;
}

bool Populated(const std::string& dir) {
  std::ifstream f(dir + "/cgroup.events");
  std::string key;
  int value = 0;
  while (f >> key >> value)
    if (key == "populated") return value != 0;
  return !Members(dir).empty();
}

std::vector<std::string> SubDirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat sb;
    if (::stat((dir + "/" + name).c_str(), &sb) == 0 && S_ISDIR(sb.st_mode)) out.push_back(name);
  }
  ::closedir(d);
  return out;
}

// Kills and removes `dir` and the cgroups below it, deepest first.
void RemoveTree(const std::string& dir) {
  for (const std::string& sub : SubDirs(dir)) RemoveTree(dir + "/" + sub);
  (void)KillCgroup(dir);
  ::rmdir(dir.c_str());
}

}  // namespace

Result<std::string> OwnCgroupV2Dir() {
  std::string own;
  {
    std::ifstream f("/proc/self/cgroup");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("0::", 0) == 0) own = line.substr(3);
  }
  if (own.empty())
    return NotFound("this process is in no cgroup v2 (/proc/self/cgroup has no 0::)");
  std::ifstream f("/proc/self/mountinfo");
  for (std::string line; std::getline(f, line);) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, devno, root, mount_point;
    head >> id >> parent >> devno >> root >> mount_point;
    root = Unescape(root);
    mount_point = Unescape(mount_point);
    // The mount shows the hierarchy from `root` down; our path must lie below it.
    std::string rel = own;
    if (root != "/") {
      if (rel.rfind(root, 0) != 0) continue;
      rel = rel.substr(root.size());
    }
    if (rel == "/") rel.clear();
    return mount_point + rel;
  }
  return NotFound("no cgroup v2 file system is mounted (/proc/self/mountinfo has no cgroup2)");
}

Result<int> KillCgroup(const std::string& dir, int wait_ms) {
  const std::vector<pid_t> members = Members(dir);
  if (members.empty() && !Populated(dir)) return 0;
  Status st = WriteSmall(dir + "/cgroup.kill", "1");
  if (!st.ok()) {
    if (::access((dir + "/cgroup.kill").c_str(), F_OK) == 0) return st;
    // Before Linux 5.14: signal each member until none is left (a fork in between is caught by
    // the next pass).
    for (int pass = 0; pass < 100; ++pass) {
      std::vector<pid_t> left = Members(dir);
      if (left.empty()) break;
      for (pid_t pid : left) ::kill(pid, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (Populated(dir) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (Populated(dir))
    return Internal(dir + ": processes are still there " + std::to_string(wait_ms) +
                    " ms after they were killed");
  return static_cast<int>(members.size());
}

Result<std::unique_ptr<CgroupNest>> CgroupNest::Open(const std::string& tag) {
  Result<std::string> own = OwnCgroupV2Dir();
  if (!own.ok()) return own.status();
  // Nests of processes that died without removing theirs.
  const std::string prefix = tag + "-";
  for (const std::string& name : SubDirs(*own)) {
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::atol(name.c_str() + prefix.size());
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      RemoveTree(*own + "/" + name);
  }
  static std::atomic<int> counter{0};
  std::string dir =
      *own + "/" + prefix + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  if (::mkdir(dir.c_str(), 0755) != 0)
    return IoError("cannot create the cgroup " + dir + ": " + std::strerror(errno));
  // Moving a process needs write access to cgroup.procs here and in the common ancestor.
  for (const std::string& procs : {dir + "/cgroup.procs", *own + "/cgroup.procs"}) {
    if (::access(procs.c_str(), W_OK) != 0) {
      const int err = errno;
      ::rmdir(dir.c_str());
      return IoError("cannot move processes into cgroups: " + procs + ": " + std::strerror(err));
    }
  }
  return std::unique_ptr<CgroupNest>(new CgroupNest(std::move(dir)));
}

CgroupNest::~CgroupNest() { RemoveTree(dir_); }

Result<std::string> CgroupNest::Child(const std::string& name) {
  std::string dir = dir_ + "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return IoError("cannot create the cgroup " + dir + ": " + std::strerror(errno));
  return dir;
}

Status CgroupNest::Enter(const std::string& dir, pid_t pid) {
  return WriteSmall(dir + "/cgroup.procs", std::to_string(pid));
}

}  // namespace chainrl
