// The CPU budget of a process (see cpu_budget.h).
#include "core/cpu_budget.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "core/cgroup.h"

namespace chainrl {
namespace {

std::string ReadLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The CPU quota of this process's cgroup in CPUs, 0 when none: cgroup v2's cpu.max ("max 100000"
// or "200000 100000") along the path up to the root, else v1's cpu.cfs_quota_us / period.
double CgroupQuota() {
  double quota = 0;
  auto take = [&quota](double q) {
    if (q > 0 && (quota == 0 || q < quota)) quota = q;
  };
  if (auto own = OwnCgroupV2Dir(); own.ok()) {
    std::string dir = *own;
    for (int depth = 0; depth < 64 && !dir.empty(); ++depth) {
      std::istringstream max(ReadLine(dir + "/cpu.max"));
      std::string limit;
      double period = 0;
      if (max >> limit >> period && limit != "max" && period > 0)
        take(std::strtod(limit.c_str(), nullptr) / period);
      const size_t slash = dir.rfind('/');
      if (slash == std::string::npos || slash == 0) break;
      dir = dir.substr(0, slash);
    }
  }
  // cgroup v1: the cpu controller's group of this process.
  std::ifstream groups("/proc/self/cgroup");
  for (std::string line; std::getline(groups, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    if (controllers.find("cpu") == std::string::npos ||
        controllers.find("cpuset") != std::string::npos)
      continue;
    const std::string path = line.substr(b + 1);
    for (const std::string root : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
      const std::string q = ReadLine(root + path + "/cpu.cfs_quota_us");
      const std::string p = ReadLine(root + path + "/cpu.cfs_period_us");
      if (q.empty() || p.empty()) continue;
      const double quota_us = std::strtod(q.c_str(), nullptr);
      const double period_us = std::strtod(p.c_str(), nullptr);
      if (quota_us > 0 && period_us > 0) take(quota_us / period_us);
      break;
    }
  }
  return quota;
}

}  // namespace

int CpuBudget::usable() const {
  int n = std::max(1, allowed);
  if (quota > 0) n = std::min(n, std::max(1, static_cast<int>(std::ceil(quota - 1e-9))));
  return n;
}

int CpuBudget::usable_cores() const {
  return std::max(1, std::min(usable(), physical > 0 ? physical : usable()));
}

std::string CpuBudget::Describe() const {
  std::ostringstream s;
  s << usable_cores() << (usable_cores() == 1 ? " core" : " cores") << " (" << allowed
    << " CPUs allowed of " << online << ", " << physical << " physical, ";
  if (quota > 0) {
    s << "cgroup quota " << quota << " CPUs)";
  } else {
    s << "no cgroup quota)";
  }
  return s.str();
}

CpuBudget ReadCpuBudget() {
  CpuBudget b;
  b.online = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<std::pair<std::string, std::string>> cores;  // (package, core) of each allowed CPU
  int unknown = 0;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    b.allowed = CPU_COUNT(&set);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      const std::string topo = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      const std::string core = ReadLine(topo + "core_id");
      const std::string package = ReadLine(topo + "physical_package_id");
      if (core.empty()) {
        ++unknown;  // no topology: the CPU counts as its own core
      } else {
        cores.insert({package, core});
      }
    }
  } else {
    b.allowed = b.online;
    unknown = b.online;
  }
  b.physical = static_cast<int>(cores.size()) + unknown;
  b.quota = CgroupQuota();
  return b;
}

int ThreadShare(const CpuBudget& budget, int processes) {
  return std::max(1, budget.usable_cores() / std::max(1, processes));
}

int PositiveCount(const char* text) {
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  return *end == '\0' && n > 0 && n <= 1 << 20 ? static_cast<int>(n) : 0;
}

int CpuProcessesFromEnv(int fallback) {
  const int n = PositiveCount(std::getenv(kCpuProcessesEnv));
  return n > 0 ? n : fallback;
}

ThreadChoice ChooseThreads(const std::string& key, long long configured, int processes,
                           bool run_processes) {
  if (const int n = PositiveCount(std::getenv("CHAINRL_THREADS")); n > 0)
    return {n, "CHAINRL_THREADS = " + std::to_string(n)};
  if (configured > 0)
    return {static_cast<int>(std::min<long long>(configured, 1 << 20)),
            key + " = " + std::to_string(configured)};
  const CpuBudget budget = ReadCpuBudget();
  const int sharing = run_processes ? CpuProcessesFromEnv(processes) : std::max(1, processes);
  return {ThreadShare(budget, sharing),
          key + " = 0: " + budget.Describe() + " shared by " + std::to_string(sharing) +
              (sharing == 1 ? " compute process" : " compute processes")};
}

}  // namespace chainrl
