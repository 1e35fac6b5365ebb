// Scored samples -> the reward counters (see reward_metrics.h).
#include "rewards/reward_metrics.h"

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

namespace chainrl::rewards {

void CountRewardOutcomes(metrics::MetricsRegistry& registry, const std::vector<RewardSpec>& specs,
                         const std::vector<RewardResult>& scores) {
  for (size_t j = 0; j < specs.size(); ++j) {
    double calls = 0, timeouts = 0, errors = 0;
    for (const auto& sc : scores) {
      if (j >= sc.rewards.size()) continue;
      const RewardError e = sc.rewards[j].error;
      calls += 1;
      timeouts += e == RewardError::kTimeout ? 1 : 0;
      errors += e != RewardError::kNone && e != RewardError::kTimeout ? 1 : 0;
    }
    const metrics::Labels plugin = {{"plugin", specs[j].name}};
    registry.counter(metrics::CounterId::kRewardCalls, plugin).Increment(calls);
    registry.counter(metrics::CounterId::kRewardTimeouts, plugin).Increment(timeouts);
    registry.counter(metrics::CounterId::kRewardErrors, plugin).Increment(errors);
  }
}

bool ReadProcessFigures(int pid, double* cpu_seconds, double* resident_bytes) {
  if (pid <= 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  // The command name (field 2) may hold spaces and parentheses: fields are counted after the
  // last ')'. From there: 3 state ... 14 utime, 15 stime ... 24 rss (pages).
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  double utime = 0, stime = 0, rss_pages = 0;
  for (int i = 3; i <= 24 && rest >> field; ++i) {
    if (i == 3 && field == "Z") return false;  // exited, not yet reaped
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
    if (i == 24) rss_pages = std::stod(field);
  }
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  *cpu_seconds = (utime + stime) / ticks;
  *resident_bytes = rss_pages * page;
  return true;
}

RewardWorkerMetrics::RewardWorkerMetrics(metrics::MetricsRegistry& registry, const RewardPool& pool)
    : registry_(registry), pool_(pool) {
  Refresh();  // every series exists from the start
  hook_ = registry_.AddScrapeHook([this] { Refresh(); });
}

RewardWorkerMetrics::~RewardWorkerMetrics() { registry_.RemoveScrapeHook(hook_); }

void RewardWorkerMetrics::Refresh() {
  std::set<std::string> plugins;  // rewards with workers: plugins (built-ins have none)
  for (const WorkerProcess& w : pool_.workers()) {
    plugins.insert(w.reward);
    const metrics::Labels labels = {{"plugin", w.reward}, {"worker", std::to_string(w.index)}};
    double cpu = 0, rss = 0;
    const bool up = ReadProcessFigures(w.pid, &cpu, &rss);
    Slot& slot = slots_[w.reward + "/" + std::to_string(w.index)];
    auto& cpu_total = registry_.counter(metrics::CounterId::kRewardWorkerCpu, labels);
    if (up) {
      // A new process starts its count from 0: all of it is new time.
      const double before = slot.pid == w.pid ? slot.cpu_seconds : 0;
      if (cpu > before) cpu_total.Increment(cpu - before);
      slot.pid = w.pid;
      slot.cpu_seconds = cpu;
    }
    registry_.gauge(metrics::GaugeId::kRewardWorkerUp, labels).Set(up ? 1 : 0);
    registry_.gauge(metrics::GaugeId::kRewardWorkerMemory, labels).Set(up ? rss : 0);
  }
  for (const auto& [name, stats] : pool_.stats()) {
    if (plugins.count(name) == 0) continue;
    int64_t& seen = restarts_[name];
    auto& restarts =
        registry_.counter(metrics::CounterId::kRewardWorkerRestarts, {{"plugin", name}});
    if (stats.worker_restarts > seen)
      restarts.Increment(static_cast<double>(stats.worker_restarts - seen));
    seen = stats.worker_restarts;
  }
}

}  // namespace chainrl::rewards
