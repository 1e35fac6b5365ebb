// RewardPool: built-ins in-process, plugins in worker processes (chainrl-reward-worker) reached
// over socketpairs with length-prefixed frames; deadlines by poll(), then SIGKILL and respawn.
#include "rewards/reward_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/cgroup.h"
#include "core/check.h"
#include "core/log.h"
#include "rewards/builtin_rewards.h"
#include "rewards/reward_wire.h"

extern char** environ;

namespace chainrl::rewards {

const char* RewardErrorName(RewardError e) {
  switch (e) {
    case RewardError::kNone:
      return "none";
    case RewardError::kCrash:
      return "crash";
    case RewardError::kTimeout:
      return "timeout";
    case RewardError::kPluginError:
      return "plugin_error";
    case RewardError::kNotFinite:
      return "not_finite";
    case RewardError::kWorker:
      return "worker";
  }
  return "unknown";
}

bool RewardResult::correct() const {
  return !rewards.empty() && rewards[0].error == RewardError::kNone && rewards[0].score >= 1.0;
}

bool RewardResult::any_error() const {
  for (const auto& r : rewards)
    if (r.error != RewardError::kNone) return true;
  return false;
}

namespace {

using Clock = std::chrono::steady_clock;

// A batch of sample indices for one plugin reward, sent in one score request.
struct Job {
  size_t reward = 0;
  std::vector<size_t> samples;
};

struct Worker {
  pid_t pid = -1;
  int fd = -1;
  bool started_once = false;
  bool busy = false;
  Clock::time_point sent_at, deadline;
  Job job;
  wire::FrameBuffer in;
  std::optional<int> exit_status;  // set once reaped while its socket was still open
  std::string cgroup;  // its own cgroup when the pool contains workers in cgroups, else empty
  std::atomic<int>* shown_pid = nullptr;  // `pid` for other threads (RewardPool::workers)
};

void SetPid(Worker* w, pid_t pid) {
  w->pid = pid;
  if (w->shown_pid) w->shown_pid->store(pid);
}

// Whether the worker process has ended, reaping it (its status kept): a process its plugin forked
// may hold the worker's socket open, so end of stream alone does not tell a crash in time.
bool Exited(Worker* w) {
  if (w->pid <= 0 || w->exit_status) return w->exit_status.has_value();
  int st = 0;
  if (::waitpid(w->pid, &st, WNOHANG) != w->pid) return false;
  w->exit_status = st;
  return true;
}

struct Plugin {
  std::string path;  // absolute
  std::string plugin_name, plugin_version;
  std::vector<Worker> workers;
  std::unique_ptr<std::atomic<int>[]> shown_pids;  // one per worker, never reallocated
};

std::string DescribeWait(int st) {
  if (WIFSIGNALED(st)) {
    const char* abbrev = sigabbrev_np(WTERMSIG(st));
    return std::string("killed by signal SIG") + (abbrev ? abbrev : std::to_string(WTERMSIG(st)));
  }
  if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
  return "stopped";
}

// Kills what the worker's plugin started and left behind: its cgroup when it has one (every
// descendant, however detached), else its process group (a child that called setsid escapes).
void KillLeftovers(Worker* w, pid_t pid) {
  if (w->cgroup.empty()) {
    ::kill(-pid, SIGKILL);
    return;
  }
  Result<int> killed = KillCgroup(w->cgroup);
  if (!killed.ok()) {
    CHAINRL_LOG(kWarn) << "reward worker " << pid << ": " << killed.status().message();
  } else if (*killed > 0) {
    CHAINRL_LOG(kInfo) << "reward worker " << pid << ": killed " << *killed
                       << " process(es) its plugin had started (cgroup " << w->cgroup << ")";
  }
}

// Kills (SIGKILL) and reaps the worker, with whatever its plugin started (KillLeftovers); returns
// how it ended. A process that had already died keeps its original status (a zombie ignores the
// signal).
std::string KillAndReap(Worker* w) {
  std::string how = "gone";
  if (w->fd >= 0) ::close(w->fd);
  w->fd = -1;
  if (w->pid > 0) {
    ::kill(-w->pid, SIGKILL);
    int st = 0;
    if (w->exit_status) {
      st = *w->exit_status;
    } else {
      ::kill(w->pid, SIGKILL);
      while (::waitpid(w->pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
    how = DescribeWait(st);
    KillLeftovers(w, w->pid);
  }
  w->exit_status.reset();
  SetPid(w, -1);
  w->busy = false;
  w->in.Clear();
  return how;
}

// Reads what is available without blocking. Returns false on end of stream or error.
bool Drain(Worker* w) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      w->in.Append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

int PollTimeoutMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>((left.count() + 999) / 1000, INT_MAX));
}

// Waits for one whole frame until `deadline`. DeadlineExceeded, or IoError if the worker died.
Result<std::string> ReadFrameBy(Worker* w, Clock::time_point deadline) {
  for (;;) {
    std::string payload;
    bool corrupt = false;
    if (w->in.Next(&payload, &corrupt)) return payload;
    if (corrupt) return Corrupt("worker sent a malformed frame");
    pollfd p{w->fd, POLLIN, 0};
    int rc = ::poll(&p, 1, PollTimeoutMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return DeadlineExceeded("deadline");
    if (!Drain(w)) {
      if (w->in.Next(&payload, &corrupt)) return payload;
      return IoError("worker closed its socket");
    }
  }
}

Status SpawnWorker(const std::string& worker_path, Worker* w) {
  // Without a cgroup the worker leads its own process group, which it kills if its host dies.
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return IoError(std::string("socketpair: ") + std::strerror(errno));
  int child_fd = sv[1];
  if (child_fd == 3) {  // dup2(3, 3) would keep FD_CLOEXEC set on some libcs
    child_fd = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[1]);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child_fd, 3);
  posix_spawn_file_actions_adddup2(&fa, 2, 1);  // a plugin's stdout must not mix with ours
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);  // no stray descriptor reaches a plugin
#endif
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  // Its own process group: whatever a plugin forks stays in it and is killed with the worker.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::string fd_arg = "3";
  std::vector<char*> argv = {const_cast<char*>(worker_path.c_str()), const_cast<char*>("--fd"),
                             fd_arg.data()};
  if (!w->cgroup.empty()) {  // so that the worker can kill its cgroup if its host dies
    argv.push_back(const_cast<char*>("--cgroup"));
    argv.push_back(w->cgroup.data());
  }
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, worker_path.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(child_fd);
  if (rc != 0) {
    ::close(sv[0]);
    return IoError("cannot start reward worker '" + worker_path + "': " + std::strerror(rc));
  }
  SetPid(w, pid);
  w->fd = sv[0];
  w->busy = false;
  w->in.Clear();
  // Into its cgroup before it loads the plugin (it waits for the init frame): nothing the plugin
  // starts can be outside.
  if (!w->cgroup.empty()) {
    Status entered = CgroupNest::Enter(w->cgroup, pid);
    if (!entered.ok()) {
      KillAndReap(w);
      return IoError("cannot put the reward worker into its cgroup: " + entered.message());
    }
  }
  return Status::Ok();
}

// Starts a worker and has it load the plugin and run init. On failure the worker is reaped and the
// message says what went wrong (the plugin's own error for load/ABI/init failures).
Status StartPluginWorker(const std::string& worker_path, const RewardSpec& spec, Plugin* plugin,
                         Worker* w, double init_deadline_seconds) {
  CHAINRL_RETURN_IF_ERROR(SpawnWorker(worker_path, w));
  w->started_once = true;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(init_deadline_seconds));
  Status st = wire::WriteFrame(w->fd, wire::EncodeInit({plugin->path, spec.options_toml}));
  Result<std::string> reply = st.ok() ? ReadFrameBy(w, deadline) : Result<std::string>(st);
  if (!reply.ok()) {
    bool timed_out = reply.status().code() == StatusCode::kDeadlineExceeded;
    std::string how = KillAndReap(w);
    if (timed_out)
      return DeadlineExceeded("loading the plugin and running its init took longer than " +
                              std::to_string(init_deadline_seconds) + " s");
    return Internal("the worker died while loading the plugin or running its init (" + how + ")");
  }
  wire::InitReply init;
  st = wire::DecodeInitReply(*reply, &init);
  if (!st.ok()) {
    KillAndReap(w);
    return st;
  }
  if (!init.ok) {
    KillAndReap(w);
    return InvalidArgument(init.error);
  }
  plugin->plugin_name = init.plugin_name;
  plugin->plugin_version = init.plugin_version;
  return Status::Ok();
}

Result<std::string> ResolveWorkerPath(const PoolOptions& options) {
  std::vector<std::string> tried;
  auto usable = [&](const std::string& p) {
    tried.push_back(p);
    return ::access(p.c_str(), X_OK) == 0;
  };
  if (!options.worker_path.empty()) {
    if (usable(options.worker_path)) return options.worker_path;
    return NotFound("reward worker executable '" + options.worker_path +
                    "' (rewards_common.worker_path) does not exist or is not executable");
  }
  if (const char* env = std::getenv("CHAINRL_REWARD_WORKER"); env && *env) {
    if (usable(env)) return std::string(env);
    return NotFound(std::string("reward worker executable '") + env +
                    "' (CHAINRL_REWARD_WORKER) does not exist or is not executable");
  }
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string self(exe, static_cast<size_t>(n));
    std::string dir = self.substr(0, self.rfind('/'));
    if (usable(dir + "/chainrl-reward-worker")) return dir + "/chainrl-reward-worker";
  }
  std::string list;
  for (const auto& t : tried) list += " " + t;
  return NotFound("reward worker executable chainrl-reward-worker not found (tried:" + list +
                  "); set rewards_common.worker_path or CHAINRL_REWARD_WORKER");
}

// Checks that the plugin file exists and is an ELF shared object before any process loads it.
Result<std::string> CheckPluginFile(const RewardSpec& spec) {
  const std::string where = "reward '" + spec.name + "'";
  if (spec.path.empty()) return InvalidArgument(where + ": kind \"plugin\" needs a path");
  std::string path = spec.path;
  if (path[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd)) == nullptr) return IoError("getcwd failed");
    path = std::string(cwd) + "/" + path;
  }
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0)
    return InvalidArgument(where + ": plugin file '" + path + "' does not exist");
  if (!S_ISREG(sb.st_mode))
    return InvalidArgument(where + ": plugin path '" + path + "' is not a regular file");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return InvalidArgument(where + ": cannot read '" + path + "': " + std::strerror(errno));
  unsigned char head[18] = {0};
  ssize_t got = ::read(fd, head, sizeof(head));
  ::close(fd);
  // e_type (offset 16, little-endian on our targets) 3 = ET_DYN: a shared object.
  if (got < 18 ||
      std::memcmp(head,
                  "\x7f"
                  "ELF",
                  4) != 0 ||
      head[16] != 3 || head[17] != 0)
    return InvalidArgument(where + ": '" + path + "' is not a shared library");
  return path;
}

}  // namespace

struct RewardPool::Impl {
  PoolOptions options;
  std::unique_ptr<CgroupNest> cgroups;  // null: workers contained by process group only
  std::vector<std::unique_ptr<BuiltinReward>> builtins;  // per spec; null for plugins
  std::vector<std::unique_ptr<Plugin>> plugins;          // per spec; null for built-ins
  mutable std::mutex stats_mu;
  std::vector<RewardStats> stats;

  // Results being filled by the current Score call.
  const std::vector<RewardInput>* inputs = nullptr;
  std::vector<RewardResult>* results = nullptr;
  const std::vector<RewardSpec>* specs = nullptr;
  std::string worker_path;

  void Record(size_t k, size_t i, RewardOutcome o, int64_t calls);
  // Runs the jobs on the plugins' workers; `meanwhile` runs once after the first jobs are sent, so
  // in-process work overlaps with the workers'.
  void RunPluginJobs(std::deque<Job> pending, const std::function<void()>& meanwhile);
  void Failure(size_t k, Worker* w, bool timed_out, std::deque<Job>* pending);
};

void RewardPool::Impl::Record(size_t k, size_t i, RewardOutcome o, int64_t calls) {
  const RewardSpec& spec = (*specs)[k];
  if (o.error == RewardError::kNone &&
      (!std::isfinite(o.score) || std::abs(o.score) > kMaxAbsRewardScore)) {
    o.error = RewardError::kNotFinite;
    o.message = "score is " + std::to_string(o.score) +
                (std::isfinite(o.score) ? " (outside [-1e6, 1e6])" : "") +
                (o.message.empty() ? "" : "; " + o.message);
  }
  {
    std::lock_guard<std::mutex> lock(stats_mu);
    RewardStats& s = stats[k];
    ++s.samples;
    s.calls += calls;
    if (o.error != RewardError::kNone) ++s.errors;
    if (o.error == RewardError::kPluginError) ++s.plugin_errors;
    if (o.error == RewardError::kNotFinite) ++s.not_finite;
  }
  if (o.error != RewardError::kNone) {
    const std::string& id = (*inputs)[i].example_id;
    // A plugin's message goes to the log cut at 1 KiB: one of a megabyte per sample would fill
    // the disk with logs.
    const std::string message =
        o.message.size() <= 1024
            ? o.message
            : o.message.substr(0, 1024) + "... (" + std::to_string(o.message.size()) + " bytes)";
    CHAINRL_LOG(kWarn) << "reward '" << spec.name << "': " << RewardErrorName(o.error)
                       << " on example '" << id << "', scored " << spec.error_score << ": "
                       << message;
    nlohmann::json ev = {{"reward", spec.name},
                         {"error", RewardErrorName(o.error)},
                         {"example_id", id},
                         {"message", message}};
    log::Event("reward_error", ev.dump());
    o.score = spec.error_score;
  }
  (*results)[i].rewards[k] = std::move(o);
}

void RewardPool::Impl::Failure(size_t k, Worker* w, bool timed_out, std::deque<Job>* pending) {
  const RewardSpec& spec = (*specs)[k];
  Job job = std::move(w->job);
  std::string how = KillAndReap(w);
  std::string what = timed_out ? "missed its deadline of " + std::to_string(spec.deadline_seconds) +
                                     " s (worker killed)"
                               : "crashed the worker (" + how + ")";
  {
    std::lock_guard<std::mutex> lock(stats_mu);
    (timed_out ? stats[k].timeouts : stats[k].crashes)++;
  }
  std::string ids;
  nlohmann::json id_list = nlohmann::json::array();
  for (size_t i : job.samples) {
    ids += (ids.empty() ? "" : ", ") + (*inputs)[i].example_id;
    id_list.push_back((*inputs)[i].example_id);
  }
  bool retry = job.samples.size() > 1;
  CHAINRL_LOG(kWarn) << "reward '" << spec.name << "' (" << plugins[k]->path << "): a call on "
                     << job.samples.size() << " sample(s) [" << ids << "] " << what
                     << (retry ? "; retrying each sample alone" : "");
  nlohmann::json ev = {{"reward", spec.name},
                       {"path", plugins[k]->path},
                       {"failure", timed_out ? "timeout" : "crash"},
                       {"detail", how},
                       {"example_ids", id_list}};
  log::Event("reward_worker_failure", ev.dump());
  if (retry) {
    // Singles go to the front so the batch's samples finish before new work starts.
    for (auto it = job.samples.rbegin(); it != job.samples.rend(); ++it)
      pending->push_front(Job{k, {*it}});
    std::lock_guard<std::mutex> lock(stats_mu);
    stats[k].calls += 1;
    return;
  }
  RewardOutcome o;
  o.error = timed_out ? RewardError::kTimeout : RewardError::kCrash;
  o.message = "plugin " + what;
  Record(k, job.samples[0], std::move(o), 1);
}

void RewardPool::Impl::RunPluginJobs(std::deque<Job> pending,
                                     const std::function<void()>& meanwhile) {
  bool meanwhile_done = false;
  for (;;) {
    // Hand pending jobs to idle workers of their plugin, starting workers as needed.
    for (size_t j = 0; j < pending.size();) {
      Job& job = pending[j];
      Plugin& p = *plugins[job.reward];
      const RewardSpec& spec = (*specs)[job.reward];
      Worker* idle = nullptr;
      for (auto& w : p.workers)
        if (w.pid > 0 && !w.busy) {
          idle = &w;
          break;
        }
      if (idle == nullptr) {
        for (auto& w : p.workers)
          if (w.pid <= 0) {
            bool restart = w.started_once;
            Status st = StartPluginWorker(worker_path, spec, &p, &w, options.init_deadline_seconds);
            if (restart) {
              std::lock_guard<std::mutex> lock(stats_mu);
              ++stats[job.reward].worker_restarts;
            }
            if (!st.ok()) {
              // The plugin loaded before; a worker that cannot start now fails this job's samples.
              for (size_t i : job.samples) {
                RewardOutcome o;
                o.error = RewardError::kWorker;
                o.message = "could not start a worker: " + st.message();
                Record(job.reward, i, std::move(o), 0);
              }
              pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(j));
              idle = nullptr;
              goto next_job;
            }
            idle = &w;
            break;
          }
      }
      if (idle == nullptr) {
        ++j;
        continue;
      }
      {
        std::vector<const RewardInput*> batch;
        for (size_t i : job.samples) batch.push_back(&(*inputs)[i]);
        idle->job = std::move(job);
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(j));
        idle->busy = true;
        idle->sent_at = Clock::now();
        idle->deadline = idle->sent_at + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(spec.deadline_seconds));
        // A worker that died while idle shows up as a send error or as end of stream below.
        if (!wire::WriteFrame(idle->fd, wire::EncodeScore(batch)).ok())
          Failure(idle->job.reward, idle, false, &pending);
      }
    next_job:;
    }
    if (!meanwhile_done) {
      meanwhile_done = true;
      meanwhile();
    }

    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, Worker*>> owners;
    Clock::time_point earliest = Clock::time_point::max();
    for (size_t k = 0; k < plugins.size(); ++k) {
      if (!plugins[k]) continue;
      for (auto& w : plugins[k]->workers) {
        if (!w.busy) continue;
        fds.push_back({w.fd, POLLIN, 0});
        owners.emplace_back(k, &w);
        earliest = std::min(earliest, w.deadline);
      }
    }
    if (fds.empty()) {
      if (pending.empty()) return;
      continue;  // jobs whose workers failed to start were consumed; loop re-dispatches
    }
    // Woken at least every 100 ms to see whether a busy worker has died (see Exited).
    int rc = ::poll(fds.data(), fds.size(), std::min(PollTimeoutMs(earliest), 100));
    if (rc < 0 && errno != EINTR) CHAINRL_CHECK(false, "poll: " << std::strerror(errno));
    Clock::time_point now = Clock::now();
    for (size_t f = 0; f < fds.size(); ++f) {
      auto [k, w] = owners[f];
      if (fds[f].revents == 0 && Exited(w)) {  // dead, its socket held open by what it forked
        Failure(k, w, false, &pending);
        continue;
      }
      if (fds[f].revents != 0) {
        bool alive = Drain(w);
        std::string payload;
        bool corrupt = false;
        if (w->in.Next(&payload, &corrupt)) {
          wire::ScoreReply reply;
          Status st = wire::DecodeScoreReply(payload, &reply);
          if (!st.ok() || reply.outputs.size() != w->job.samples.size()) {
            Failure(k, w, false, &pending);  // protocol breach: treat as a crash
            continue;
          }
          Job job = std::move(w->job);
          w->busy = false;
          for (size_t s = 0; s < job.samples.size(); ++s) {
            wire::SampleOutput& out = reply.outputs[s];
            RewardOutcome o;
            o.score = out.score;
            o.message = std::move(out.message);
            o.components = std::move(out.components);
            if (out.plugin_error) o.error = RewardError::kPluginError;
            Record(k, job.samples[s], std::move(o), s == 0 ? reply.calls : 0);
          }
          continue;
        }
        if (!alive || corrupt) {
          Failure(k, w, false, &pending);
          continue;
        }
      }
      if (now >= w->deadline) Failure(k, w, true, &pending);
    }
  }
}

Result<std::unique_ptr<RewardPool>> RewardPool::Create(std::vector<RewardSpec> specs,
                                                       PoolOptions options) {
  std::unique_ptr<RewardPool> pool(new RewardPool());
  pool->impl_ = std::make_unique<Impl>();
  Impl& impl = *pool->impl_;
  impl.options = options;
  if (specs.empty()) return InvalidArgument("no rewards configured");
  if (options.contain != "auto" && options.contain != "cgroup" &&
      options.contain != "process_group")
    return InvalidArgument(
        "rewards_common.contain must be \"auto\", \"cgroup\" or "
        "\"process_group\", not \"" +
        options.contain + "\"");
  if (options.workers_per_plugin < 1)
    return InvalidArgument("reward_pool.workers_per_plugin must be >= 1");
  if (!(options.init_deadline_seconds > 0))
    return InvalidArgument("reward_pool.init_deadline_seconds must be > 0");
  std::set<std::string> names;
  bool any_plugin = false;
  for (const RewardSpec& s : specs) {
    std::string where = "reward '" + s.name + "'";
    if (s.name.empty()) return InvalidArgument("a reward has an empty name");
    if (!names.insert(s.name).second) return InvalidArgument(where + ": name used twice");
    if (!std::isfinite(s.weight)) return InvalidArgument(where + ": weight must be finite");
    if (!std::isfinite(s.error_score))
      return InvalidArgument(where + ": error_score must be finite");
    if (!(s.deadline_seconds > 0) || !std::isfinite(s.deadline_seconds))
      return InvalidArgument(where + ": deadline_seconds must be > 0");
    if (s.batch_size < 1) return InvalidArgument(where + ": batch_size must be >= 1");
    if (s.kind == "plugin") {
      any_plugin = true;
    } else if (!IsBuiltinRewardKind(s.kind)) {
      return InvalidArgument(where + ": unknown kind '" + s.kind +
                             "' (built-ins: math, exact_match, regex, format, length, task; or "
                             "\"plugin\")");
    } else if (!s.path.empty()) {
      return InvalidArgument(where + ": path is only for kind \"plugin\"");
    }
  }
  if (any_plugin) {
    CHAINRL_ASSIGN_OR_RETURN(pool->worker_path_, ResolveWorkerPath(options));
    impl.worker_path = pool->worker_path_;
  }
  if (any_plugin && options.contain != "process_group") {
    auto nest = CgroupNest::Open("chainrl-rewards");
    if (nest.ok()) {
      impl.cgroups = std::move(nest).value();
      CHAINRL_LOG(kInfo) << "reward workers: each in its own cgroup under " << impl.cgroups->dir()
                         << " (whatever a plugin starts is killed with its worker)";
    } else if (options.contain == "cgroup") {
      return InvalidArgument(
          "rewards_common.contain = \"cgroup\", but cgroups cannot be used here: " +
          nest.status().message() + " (run as root or in a delegated cgroup v2 subtree)");
    } else {
      CHAINRL_LOG(kInfo) << "reward workers: contained by process group only ("
                         << nest.status().message()
                         << "); a process a plugin starts in a new session can outlive its worker";
    }
  }
  impl.stats.resize(specs.size());
  for (const RewardSpec& s : specs) {
    if (s.kind != "plugin") {
      CHAINRL_ASSIGN_OR_RETURN(auto b, MakeBuiltinReward(s.name, s.kind, s.options_toml));
      impl.builtins.push_back(std::move(b));
      impl.plugins.push_back(nullptr);
      continue;
    }
    auto p = std::make_unique<Plugin>();
    CHAINRL_ASSIGN_OR_RETURN(p->path, CheckPluginFile(s));
    p->workers.resize(static_cast<size_t>(options.workers_per_plugin));
    p->shown_pids = std::make_unique<std::atomic<int>[]>(p->workers.size());
    for (size_t i = 0; i < p->workers.size(); ++i) {
      p->shown_pids[i].store(-1);
      p->workers[i].shown_pid = &p->shown_pids[i];
    }
    if (impl.cgroups) {
      const size_t k = impl.plugins.size();
      for (size_t i = 0; i < p->workers.size(); ++i) {
        CHAINRL_ASSIGN_OR_RETURN(
            p->workers[i].cgroup,
            impl.cgroups->Child("r" + std::to_string(k) + "-w" + std::to_string(i)));
      }
    }
    Status st = StartPluginWorker(impl.worker_path, s, p.get(), &p->workers[0],
                                  options.init_deadline_seconds);
    impl.builtins.push_back(nullptr);
    impl.plugins.push_back(std::move(p));  // pushed first so the destructor reaps on error
    if (!st.ok()) {
      if (st.code() == StatusCode::kInvalidArgument)
        return InvalidArgument("reward '" + s.name + "': " + st.message());
      return InvalidArgument("reward '" + s.name + "' (" + impl.plugins.back()->path +
                             "): " + st.message());
    }
    CHAINRL_LOG(kInfo) << "reward '" << s.name << "': loaded plugin '"
                       << impl.plugins.back()->plugin_name << "' "
                       << impl.plugins.back()->plugin_version << " from "
                       << impl.plugins.back()->path;
  }
  pool->specs_ = std::move(specs);
  impl.specs = &pool->specs_;
  return pool;
}

RewardPool::~RewardPool() {
  if (!impl_) return;
  // Closing the socket asks each worker to exit (running the plugin's destroy); give them a
  // moment, then kill whatever is left.
  std::vector<Worker*> live;
  for (auto& p : impl_->plugins) {
    if (!p) continue;
    for (auto& w : p->workers) {
      if (w.pid <= 0) continue;
      ::close(w.fd);
      w.fd = -1;
      live.push_back(&w);
    }
  }
  auto give_up = Clock::now() + std::chrono::milliseconds(500);
  while (!live.empty() && Clock::now() < give_up) {
    for (auto it = live.begin(); it != live.end();) {
      int st;
      if (::waitpid((*it)->pid, &st, WNOHANG) == (*it)->pid) {
        KillLeftovers(*it, (*it)->pid);  // what its plugin started and left behind
        SetPid(*it, -1);
        it = live.erase(it);
      } else {
        ++it;
      }
    }
    if (!live.empty()) ::usleep(2000);
  }
  for (Worker* w : live) KillAndReap(w);
}

Result<std::vector<RewardResult>> RewardPool::Score(const std::vector<RewardInput>& inputs) {
  std::lock_guard<std::mutex> lock(score_mu_);
  Impl& impl = *impl_;
  std::vector<RewardResult> results(inputs.size());
  for (auto& r : results) r.rewards.resize(specs_.size());
  impl.inputs = &inputs;
  impl.results = &results;
  std::deque<Job> pending;
  for (size_t k = 0; k < specs_.size(); ++k) {
    if (impl.builtins[k]) continue;
    size_t bs = static_cast<size_t>(specs_[k].batch_size);
    for (size_t b = 0; b < inputs.size(); b += bs) {
      Job job{k, {}};
      for (size_t i = b; i < std::min(inputs.size(), b + bs); ++i) job.samples.push_back(i);
      pending.push_back(std::move(job));
    }
  }
  // Built-ins score in this thread while the first plugin calls run in the workers.
  auto score_builtins = [&] {
    for (size_t k = 0; k < specs_.size(); ++k) {
      if (!impl.builtins[k]) continue;
      for (size_t i = 0; i < inputs.size(); ++i) {
        RewardOutcome o;
        try {
          o = impl.builtins[k]->Score(inputs[i]);
        } catch (const std::exception& e) {
          o = RewardOutcome();
          o.error = RewardError::kPluginError;
          o.message = std::string("exception: ") + e.what();
        }
        impl.Record(k, i, std::move(o), 1);
      }
    }
  };
  impl.RunPluginJobs(std::move(pending), score_builtins);
  for (auto& r : results) {
    r.total = 0;
    for (size_t k = 0; k < specs_.size(); ++k) r.total += specs_[k].weight * r.rewards[k].score;
  }
  impl.inputs = nullptr;
  impl.results = nullptr;
  return results;
}

std::vector<WorkerProcess> RewardPool::workers() const {
  std::vector<WorkerProcess> out;
  for (size_t k = 0; k < impl_->plugins.size() && k < specs_.size(); ++k) {
    const Plugin* p = impl_->plugins[k].get();
    if (p == nullptr) continue;
    for (size_t i = 0; i < p->workers.size(); ++i)
      out.push_back({specs_[k].name, static_cast<int>(i), p->shown_pids[i].load()});
  }
  return out;
}

std::map<std::string, RewardStats> RewardPool::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  std::map<std::string, RewardStats> out;
  for (size_t k = 0; k < specs_.size() && k < impl_->stats.size(); ++k)
    out[specs_[k].name] = impl_->stats[k];
  return out;
}

}  // namespace chainrl::rewards
