// `chainrl train RUN.toml`: a whole training run on this machine. The launcher creates the model
// if asked ([model.init]), starts the learner and `actors.count` actors as child processes,
// restarts those that die (with backoff; the learner resumes from its latest checkpoint), turns
// Ctrl-C into a graceful stop, shows a live progress line, completes RUN_DIR/summary.json and
// writes RUN_DIR/report.html.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "apps/run_config.h"
#include "apps/run_dir.h"
#include "apps/stop_signal.h"
#include "core/cpu_budget.h"
#include "core/endpoints.h"
#include "core/file_io.h"
#include "core/json_file.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/security.h"
#include "core/stopwatch.h"
#include "learner/data_parallel.h"
#include "learner/run_html.h"
#include "learner/run_options.h"
#include "learner/run_report.h"
#include "model/hf_config.h"
#include "model/model_init.h"
#include "rewards/reward_config.h"

namespace chainrl::app {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string SelfExe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("chainrl") : p.string();
}

// Starts `args` (argv[0] is the executable) with stdout and stderr appended to `log_path`. The
// child gets SIGTERM if the launcher dies, so no process outlives its run.
// `env` is set in the child on top of the launcher's environment.
Result<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log_path,
                    const std::vector<std::pair<std::string, std::string>>& env = {}) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the launcher, which stops children in order
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  return pid;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// A death that can repeat on the same input: an error exit or a fault signal. Deaths another
// process causes (SIGKILL from a user or the OOM killer, SIGTERM, SIGINT, SIGHUP) are not.
bool MayRepeat(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status) != 0;
  if (!WIFSIGNALED(status)) return false;
  const int sig = WTERMSIG(status);
  return sig != SIGKILL && sig != SIGTERM && sig != SIGINT && sig != SIGHUP;
}

// What a death leaves to compare with the next one: how the process died and where the run was.
struct Death {
  int status = 0;
  std::string progress;  // the run's phase and steps when it died ("" before any progress)
};

std::string ProgressMark(const std::string& run_dir) {
  auto p = learner::ReadProgress(run_dir);
  if (!p.ok()) return "";
  return p->phase + " step " + std::to_string(p->step) + " sft step " +
         std::to_string(p->sft_step) + " version " + std::to_string(p->version);
}

// True when `now` repeats `before` exactly: the same exit code or fault signal with no progress
// of the run between the two deaths. Restarting again would fail the same way.
bool SameDeathTwice(const std::optional<Death>& before, const Death& now) {
  return before && MayRepeat(now.status) && before->status == now.status &&
         before->progress == now.progress;
}

std::string Tail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0; i < all.size();
       ++i)
    out += "    " + all[i] + "\n";
  return out;
}

Status InitModelIfAsked(const Config& c) {
  const std::string dir = c.GetString("model.path");
  if (!c.GetBool("model.init.enabled") || fs::exists(fs::path(dir) / "config.json"))
    return Status::Ok();
  model::InitModelSpec s;
  CHAINRL_ASSIGN_OR_RETURN(s.arch, model::ParseArchitecture(c.GetString("model.init.arch")));
  s.layers = c.GetInt("model.init.layers");
  s.hidden = c.GetInt("model.init.hidden");
  s.heads = c.GetInt("model.init.heads");
  s.kv_heads = c.GetInt("model.init.kv_heads");
  s.intermediate = c.GetInt("model.init.intermediate");
  s.max_position = c.GetInt("model.init.max_position");
  s.rope_theta = c.GetFloat("model.init.rope_theta");
  s.tie_embeddings = c.GetBool("model.init.tie_embeddings");
  s.dtype = c.GetString("model.dtype");
  s.seed = static_cast<uint64_t>(c.GetInt("model.init.seed"));
  s.tokenizer = c.GetString("model.init.tokenizer");
  s.vocab_size = c.GetInt("model.init.vocab_size");
  CHAINRL_ASSIGN_OR_RETURN(auto report, model::InitModelDir(s, dir));
  CHAINRL_LOG(kInfo) << "created a random " << c.GetString("model.init.arch") << " model at "
                     << dir << ": " << report.parameters << " parameters, vocabulary "
                     << report.vocab_size;
  return Status::Ok();
}

struct Child {
  std::string name;  // "learner", "actor-0", ...
  pid_t pid = -1;
  int restarts = 0;
  int deaths = 0;
  std::optional<Death> last_death;  // its latest death, to tell a repeated one
  Clock::time_point restart_at{};
  bool waiting_restart = false;
  std::string log;
};

class Launcher {
 public:
  Launcher(const Config& c, std::string config_path, std::vector<std::string> sets,
           std::string run_dir)
      : c_(c), config_path_(std::move(config_path)), sets_(std::move(sets)),
        run_dir_(std::move(run_dir)) {}
  int Run(std::atomic<bool>& stop);

 private:
  std::vector<std::string> BaseArgs(const std::string& command) const {
    std::vector<std::string> a = {exe_, command, config_path_};
    for (const auto& s : sets_) a.insert(a.end(), {"--set", s});
    return a;
  }
  Status StartLearner(bool resume);
  // The environment of the run's compute processes: kCpuProcessesEnv, OMP_WAIT_POLICY and
  // GLIBC_TUNABLES (malloc).
  std::vector<std::pair<std::string, std::string>> ComputeEnv() const;
  // Sends `sig` (0: none, only wait) to every child still running, then reaps each, killing
  // (SIGKILL) whichever is still there after `grace` seconds.
  void StopAll(std::vector<Child*> children, int sig, double grace);
  // The learner's other ranks: told to stop (they leave once rank 0 has), or killed at once.
  void StopFollowers(bool kill_now) {
    std::vector<Child*> f;
    for (auto& c : followers_) f.push_back(&c);
    StopAll(f, kill_now ? SIGKILL : SIGTERM, kill_now ? 5.0 : 30.0);
  }
  Status StartActor(Child& a, int index);
  void StopChild(Child& ch, int sig) {
    if (ch.pid > 0) kill(ch.pid, sig);
  }
  bool WaitExit(Child& ch, double seconds, int* status);
  void StartMetrics();
  // Until the learner has finished or failed, or Ctrl-C came twice: starts the actors once the
  // learner is up and restarts whatever dies.
  void Supervise(std::atomic<bool>& stop);
  void StartActorsOnceLearnerIsUp();
  void WatchFollowers();
  // Reaps the learner if it exited and restarts it when it may; true when the run is over.
  bool WatchLearner();
  void WatchActors(std::atomic<bool>& stop);
  // Records `status` as `ch`'s latest death; true (having said so of `who`, with the end of its
  // log) when it repeats the death before with no progress of the run between (SameDeathTwice).
  bool DiedTheSameWayTwice(Child& ch, const std::string& who, int status);
  // Counts the death and schedules a restart with exponential backoff, or gives up on the run.
  void ActorDied(Child& a, int index, int status, std::atomic<bool>& stop);
  // Completes RUN_DIR/summary.json with what only the launcher knows, prints it and writes
  // RUN_DIR/report.html; the exit code.
  int CompleteSummary(Clock::time_point t0);
  void Progress(bool force);
  void WriteProcesses();
  void UpdateScrapeTargets();

  const Config& c_;
  std::string config_path_;
  std::vector<std::string> sets_;
  std::string run_dir_;
  std::string exe_ = SelfExe();
  Child learner_;                 // rank 0 of the learner: the one actors talk to
  std::vector<Child> followers_;  // its other ranks (distributed.learner_ranks > 1)
  std::vector<Child> actors_;
  std::unique_ptr<metrics::MetricsRegistry> metrics_;
  std::string last_line_;
  Clock::time_point last_progress_{};
  bool tty_ = isatty(1);
  std::string targets_written_;  // the targets last written: address role [actor_id];...
  int max_restarts_ = 0;         // actors.max_restarts, for each actor and for the learner
  double backoff_ = 0;           // actors.restart_backoff_seconds
  bool actors_started_ = false;
  bool stopping_ = false;  // a stop was asked for: the learner checkpoints and leaves
  bool failed_ = false;    // the run exits with kExitFailure
  bool learner_log_shown_ = false;  // the end of the learner's log was printed when it failed
  int final_code_ = 0;  // else kExitUsage or kExitNoSpace: how the learner stopped for good
  int learner_restarts_ = 0;
  int learner_status_ = 0;  // the learner's last wait status
};

std::vector<std::pair<std::string, std::string>> Launcher::ComputeEnv() const {
  // Every compute process of the run on this host (learner ranks and actors) computes at the same
  // time: each sizes its threads to a share of the cores (learner.threads, actors.threads = 0).
  const int64_t processes = c_.GetInt("distributed.learner_ranks") + c_.GetInt("actors.count");
  std::vector<std::pair<std::string, std::string>> env = {
      {kCpuProcessesEnv, std::to_string(std::max<int64_t>(1, processes))}};
  // Idle OpenMP threads sleep instead of spinning on cores that the other processes need (unless
  // the user chose a policy).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) env.push_back({"OMP_WAIT_POLICY", "PASSIVE"});
  // Tensors of a few MiB come and go every step: glibc's default gives each its own mmap, zeroed
  // by the kernel at every allocation (most of a run's system time). From the heap, and kept there
  // when freed, they are reused instead (bench/threads_run.sh measured system time 8.3 -> 1.4 s).
  if (std::getenv("GLIBC_TUNABLES") == nullptr)
    env.push_back({"GLIBC_TUNABLES",
                   "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"});
  return env;
}

Status Launcher::StartLearner(bool resume) {
  std::error_code ec;
  fs::remove(fs::path(run_dir_) / "endpoints.json", ec);
  auto args = BaseArgs("learner");
  args.insert(args.end(), {"--run-dir", run_dir_});
  if (resume) args.insert(args.end(), {"--resume", "latest"});
  // Several ranks: started as torchrun starts them, on this host with a fresh rendezvous port (a
  // restarted group must not meet its predecessor's store). One rank: WORLD_SIZE=1, so a variable
  // inherited from an outer launcher does not make the learner wait for ranks that never come.
  const int ranks = static_cast<int>(c_.GetInt("distributed.learner_ranks"));
  std::vector<std::pair<std::string, std::string>> env = ComputeEnv();
  env.push_back({"WORLD_SIZE", std::to_string(ranks)});
  if (ranks > 1) {
    CHAINRL_ASSIGN_OR_RETURN(int port, PickFreePort());
    env.insert(env.end(), {{"MASTER_ADDR", "127.0.0.1"},
                           {"MASTER_PORT", std::to_string(port)},
                           {"LOCAL_WORLD_SIZE", std::to_string(ranks)}});
  }
  auto rank_env = [&](int r) {
    auto e = env;
    e.insert(e.end(), {{"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)}});
    return e;
  };
  learner_.name = "learner";
  learner_.log = (fs::path(run_dir_) / "logs" / "learner.log").string();
  CHAINRL_ASSIGN_OR_RETURN(learner_.pid, Spawn(args, learner_.log, rank_env(0)));
  followers_.resize(static_cast<size_t>(ranks - 1));
  for (int r = 1; r < ranks; ++r) {
    Child& f = followers_[static_cast<size_t>(r - 1)];
    f.name = "learner rank " + std::to_string(r);
    f.log = (fs::path(run_dir_) / "logs" / ("learner-rank" + std::to_string(r) + ".log")).string();
    CHAINRL_ASSIGN_OR_RETURN(f.pid, Spawn(args, f.log, rank_env(r)));
  }
  WriteProcesses();
  return Status::Ok();
}

void Launcher::StopAll(std::vector<Child*> children, int sig, double grace) {
  for (Child* c : children) StopChild(*c, sig);
  for (Child* c : children) {
    int status = 0;
    if (!WaitExit(*c, grace, &status)) {
      StopChild(*c, SIGKILL);
      WaitExit(*c, 5.0, &status);
    }
  }
}

Status Launcher::StartActor(Child& a, int index) {
  auto args = BaseArgs("actor");
  args.insert(args.end(), {"--connect", (fs::path(run_dir_) / "endpoints.json").string(), "--index",
                           std::to_string(index), "--run-dir", run_dir_});
  a.name = "actor-" + std::to_string(index);
  a.log = (fs::path(run_dir_) / "logs" / (a.name + ".log")).string();
  CHAINRL_ASSIGN_OR_RETURN(a.pid, Spawn(args, a.log, ComputeEnv()));
  a.waiting_restart = false;
  WriteProcesses();
  return Status::Ok();
}

bool Launcher::WaitExit(Child& ch, double seconds, int* status) {
  auto t0 = Clock::now();
  while (ch.pid > 0) {
    pid_t r = waitpid(ch.pid, status, WNOHANG);
    if (r == ch.pid) {
      ch.pid = -1;
      return true;
    }
    if (SecondsSince(t0) > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void Launcher::WriteProcesses() {
  json j = {{"launcher", getpid()}, {"learner", learner_.pid}, {"actors", json::object()}};
  for (const auto& a : actors_) j["actors"][a.name] = a.pid;
  if (!followers_.empty()) {
    j["learner_ranks"] = json::array({learner_.pid});
    for (const auto& f : followers_) j["learner_ranks"].push_back(f.pid);
  }
  (void)WriteFileAtomic((fs::path(run_dir_) / "processes.json").string(), j.dump(1) + "\n");
}

void Launcher::UpdateScrapeTargets() {
  if (!metrics_) return;
  std::vector<metrics::ScrapeTarget> targets = {{metrics_->address(), "launcher", std::nullopt}};
  auto read_addr = [&](const std::string& file) -> std::string {
    std::ifstream in(fs::path(run_dir_) / file);
    std::string s;
    std::getline(in, s);
    return s;
  };
  if (auto a = read_addr("metrics-learner.addr"); !a.empty())
    targets.push_back({a, "learner", std::nullopt});
  for (size_t i = 0; i < actors_.size(); ++i)
    if (auto a = read_addr("metrics-actor-" + std::to_string(i) + ".addr"); !a.empty())
      targets.push_back({a, "actor", static_cast<int64_t>(i)});
  // Rewritten whenever an address changes too (a restarted process binds a new port).
  std::string written;
  for (const auto& t : targets)
    written +=
        t.address + " " + t.role + (t.actor_id ? " " + std::to_string(*t.actor_id) : "") + ";";
  if (written == targets_written_) return;
  const std::string root = fs::path(run_dir_).parent_path().string();
  Status st = metrics::WriteScrapeTargets(
      metrics::ScrapeTargetsPath(root.empty() ? "." : root, c_.GetString("run.name")),
      c_.GetString("run.name"), targets);
  if (st.ok()) targets_written_ = written;
}

void Launcher::Progress(bool force) {
  const double interval = c_.GetFloat("metrics.progress_interval_seconds");
  if (interval <= 0 && !force) return;
  if (!force && SecondsSince(last_progress_) < std::max(interval, tty_ ? interval : 5.0)) return;
  auto p = learner::ReadProgress(run_dir_);
  if (!p.ok()) return;
  last_progress_ = Clock::now();
  std::string line = p->Line();
  if (line == last_line_ && !force) return;
  last_line_ = line;
  if (tty_) {
    std::printf("\r\033[K%s", line.c_str());
  } else {
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

// The summary's headline figures, as a table on stdout.
void PrintSummary(const learner::RunSummary& rs, int actor_restarts,
                  const std::string& summary_path) {
  const json s = rs.ToJson();
  auto num = [&](const char* k, const char* fmt, double scale = 1.0) {
    char b[64];
    if (!s.contains(k) || !s[k].is_number()) return std::string("-");
    std::snprintf(b, sizeof(b), fmt, s[k].get<double>() * scale);
    return std::string(b);
  };
  std::printf("\n%-28s %12s %12s\n", "", "after SFT", "after RL");
  std::printf("%-28s %12s %12s\n", "held-out accuracy",
              num("accuracy_after_sft", "%.1f%%", 100).c_str(),
              num("accuracy_after_rl", "%.1f%%", 100).c_str());
  std::printf("%-28s %12s %12s\n", "held-out mean length (tok)",
              num("mean_length_after_sft", "%.1f").c_str(),
              num("mean_length_after_rl", "%.1f").c_str());
  std::printf("rollout mean length: peak %s, final %s tokens\n",
              num("mean_length_peak", "%.1f").c_str(), num("mean_length_final", "%.1f").c_str());
  std::printf(
      "steps %s, tokens trained %s, groups trained %s (lost %s, duplicated %s), actor "
      "restarts %d, wall %s s\n",
      num("steps", "%.0f").c_str(), num("tokens_trained", "%.0f").c_str(),
      num("groups_trained", "%.0f").c_str(), num("groups_lost", "%.0f").c_str(),
      num("groups_duplicated", "%.0f").c_str(), actor_restarts,
      num("launcher_wall_seconds", "%.0f").c_str());
  if (!rs.export_dir.empty())
    std::printf("exported model: %s (try: chainrl generate --model %s --chat --prompt ...)\n",
                rs.export_dir.c_str(), rs.export_dir.c_str());
  std::printf("summary: %s\n", summary_path.c_str());
}

int Launcher::Run(std::atomic<bool>& stop) {
  const auto t0 = Clock::now();
  std::error_code ec;
  fs::create_directories(fs::path(run_dir_) / "logs", ec);
  // A summary left by an earlier run in this directory is not this run's: kept aside, so that a
  // learner that fails before writing its own is reported as such.
  const std::string summary = learner::SummaryPath(run_dir_);
  if (fs::exists(summary, ec)) fs::rename(summary, summary + ".previous", ec);
  StartMetrics();
  const int n_actors = static_cast<int>(c_.GetInt("actors.count"));
  max_restarts_ = static_cast<int>(c_.GetInt("actors.max_restarts"));
  backoff_ = c_.GetFloat("actors.restart_backoff_seconds");
  if (Status st = StartLearner(false); !st.ok()) return ReportError(st);
  actors_.resize(n_actors);
  std::printf("run directory: %s (logs in %s/logs)\n", run_dir_.c_str(), run_dir_.c_str());
  {
    // How the run's processes share this host's cores (each process logs its own choice).
    const CpuBudget budget = ReadCpuBudget();
    const int ranks = static_cast<int>(c_.GetInt("distributed.learner_ranks"));
    const int share = ThreadShare(budget, ranks + n_actors);
    auto threads = [&](const char* key) {
      const int64_t v = c_.GetInt(key);
      return v > 0 ? std::to_string(v) + " (" + key + ")" : std::to_string(share);
    };
    std::printf(
        "cpu: %s for %d learner rank(s) and %d actor(s): threads %s per rank, %s per "
        "actor\n",
        budget.Describe().c_str(), ranks, n_actors, threads("learner.threads").c_str(),
        threads("actors.threads").c_str());
  }
  Supervise(stop);
  // The learner has finished (or failed): actors leave; a learner still running gets 30 s.
  std::vector<Child*> actors;
  for (auto& a : actors_) actors.push_back(&a);
  StopAll(actors, SIGTERM, 10.0);
  StopAll({&learner_}, 0, 30.0);
  StopFollowers(false);
  metrics::PushFinalMetrics(metrics_.get(), c_.GetString("metrics.pushgateway"));
  Progress(true);
  if (tty_) std::printf("\n");
  return CompleteSummary(t0);
}

void Launcher::StartMetrics() {
  metrics_ = metrics::StartProcessMetrics(
      c_, metrics::MetricsOptions()
              .set_role("launcher")
              .set_listen(c_.GetString("metrics.address"))
              .set_address_file((fs::path(run_dir_) / "metrics-launcher.addr").string()));
  if (!metrics_) return;
  std::printf("metrics: http://%s/metrics\n", metrics_->address().c_str());
  // Deaths and restarts start at 0 per actor, so dashboards show "none" rather than no data.
  for (int64_t i = 0; i < c_.GetInt("actors.count"); ++i) {
    for (auto id : {metrics::CounterId::kActorDeaths, metrics::CounterId::kActorRestarts})
      metrics_->counter(id, {{"actor_id", std::to_string(i)}}).Increment(0);
  }
}

void Launcher::Supervise(std::atomic<bool>& stop) {
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (stop && !stopping_) {
      stopping_ = true;
      std::printf("\nstopping: the learner checkpoints and writes its summary (Ctrl-C again to "
                  "kill everything now)\n");
      StopChild(learner_, SIGTERM);
    }
    if (stopping_ && StopSignals() >= 2) {
      StopChild(learner_, SIGKILL);
      for (auto& f : followers_) StopChild(f, SIGKILL);
      for (auto& a : actors_) StopChild(a, SIGKILL);
      failed_ = true;
      return;
    }
    StartActorsOnceLearnerIsUp();
    WatchFollowers();
    if (WatchLearner()) return;
    WatchActors(stop);
    UpdateScrapeTargets();
    Progress(false);
  }
}

// Actors start once the learner has published its endpoints (after the SFT warm-up).
void Launcher::StartActorsOnceLearnerIsUp() {
  if (actors_started_ || stopping_ || learner_.pid <= 0) return;
  auto ep = ReadJsonFile((fs::path(run_dir_) / "endpoints.json").string(), kMaxSmallJsonBytes);
  if (!ep.ok() || ep->value("pid", -1) != learner_.pid) return;
  for (int i = 0; i < static_cast<int>(actors_.size()); ++i) {
    if (Status st = StartActor(actors_[i], i); !st.ok()) {
      CHAINRL_LOG(kError) << st.message();
      failed_ = true;
    }
  }
  actors_started_ = true;
}

// The learner's other ranks leave with success only when rank 0 has told them to (it is
// finishing). One that fails while rank 0 runs has broken the group (rank 0 would fail in its
// next collective): rank 0 is stopped now and the group restarted by WatchLearner.
void Launcher::WatchFollowers() {
  for (auto& f : followers_) {
    int status = 0;
    if (f.pid > 0 && learner_.pid > 0 && waitpid(f.pid, &status, WNOHANG) == f.pid) {
      f.pid = -1;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
      std::printf("\n%s exited (%s) while rank 0 ran; stopping the learner\n%s", f.name.c_str(),
                  DescribeExit(status).c_str(), Tail(f.log, 5).c_str());
      StopChild(learner_, SIGKILL);
    }
  }
}

bool Launcher::WatchLearner() {
  if (learner_.pid <= 0) return false;
  int status = 0;
  if (waitpid(learner_.pid, &status, WNOHANG) != learner_.pid) return false;
  learner_.pid = -1;
  learner_status_ = status;
  // Its other ranks leave with it: on success they have been told to; otherwise they go now.
  StopFollowers(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (WIFEXITED(status) &&
      (WEXITSTATUS(status) == kExitUsage || WEXITSTATUS(status) == kExitNoSpace)) {
    // A configuration or input error, or a full disk, does not go away by restarting.
    std::printf(
        "\nthe learner stopped on %s:\n%s",
        WEXITSTATUS(status) == kExitUsage ? "a configuration or input error" : "a full disk",
        Tail(learner_.log, 5).c_str());
    failed_ = true;
    learner_log_shown_ = true;
    final_code_ = WEXITSTATUS(status);
    return true;
  }
  if (stopping_) {
    failed_ = true;
    return true;
  }
  if (DiedTheSameWayTwice(learner_, "the learner", status)) {
    failed_ = true;
    learner_log_shown_ = true;
    return true;
  }
  if (learner_restarts_ < max_restarts_) {
    ++learner_restarts_;
    std::printf(
        "\nthe learner died (%s); restarting it from its latest checkpoint "
        "(restart %d of %d)\n%s",
        DescribeExit(status).c_str(), learner_restarts_, max_restarts_,
        Tail(learner_.log, 5).c_str());
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff_));
    if (Status st = StartLearner(true); !st.ok()) {
      CHAINRL_LOG(kError) << st.message();
      failed_ = true;
      return true;
    }
    return false;
  }
  std::printf("\nthe learner failed (%s) and may not be restarted again:\n%s",
              DescribeExit(status).c_str(), Tail(learner_.log, 15).c_str());
  failed_ = true;
  learner_log_shown_ = true;
  return true;
}

bool Launcher::DiedTheSameWayTwice(Child& ch, const std::string& who, int status) {
  const Death death{status, ProgressMark(run_dir_)};
  const bool same = SameDeathTwice(ch.last_death, death);
  ch.last_death = death;
  if (same) {
    std::printf(
        "\n%s died the same way twice in a row (%s, at %s, no progress of the run between); "
        "restarting it again would fail the same way, so the run stops. Its log ends with:\n%s",
        who.c_str(), DescribeExit(status).c_str(),
        death.progress.empty() ? "start-up" : death.progress.c_str(), Tail(ch.log, 15).c_str());
  }
  return same;
}

// Actors: restart the dead with exponential backoff.
void Launcher::WatchActors(std::atomic<bool>& stop) {
  if (!actors_started_) return;
  for (int i = 0; i < static_cast<int>(actors_.size()); ++i) {
    Child& a = actors_[i];
    if (a.pid > 0) {
      int status = 0;
      if (waitpid(a.pid, &status, WNOHANG) == a.pid) ActorDied(a, i, status, stop);
    } else if (a.waiting_restart && Clock::now() >= a.restart_at && !stopping_) {
      ++a.restarts;
      if (metrics_)
        metrics_->counter(metrics::CounterId::kActorRestarts, {{"actor_id", std::to_string(i)}})
            .Increment();
      if (Status st = StartActor(a, i); !st.ok()) {
        CHAINRL_LOG(kError) << st.message();
      }
    }
  }
}

void Launcher::ActorDied(Child& a, int index, int status, std::atomic<bool>& stop) {
  a.pid = -1;
  ++a.deaths;
  if (metrics_)
    metrics_->counter(metrics::CounterId::kActorDeaths, {{"actor_id", std::to_string(index)}})
        .Increment();
  if (stopping_) return;
  if (DiedTheSameWayTwice(a, a.name, status)) {
    failed_ = true;
    stop = true;
    return;
  }
  if (a.restarts >= max_restarts_) {
    std::printf("\n%s died (%s) after %d restarts; giving up on the run:\n%s", a.name.c_str(),
                DescribeExit(status).c_str(), a.restarts, Tail(a.log, 15).c_str());
    failed_ = true;
    stop = true;
    return;
  }
  const double delay = backoff_ * std::pow(2.0, a.restarts);
  std::printf("\n%s died (%s); restarting it in %.1f s\n", a.name.c_str(),
              DescribeExit(status).c_str(), delay);
  a.waiting_restart = true;
  a.restart_at = Clock::now() +
                 std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(delay));
}

int Launcher::CompleteSummary(Clock::time_point t0) {
  const std::string summary_path = learner::SummaryPath(run_dir_);
  auto summary = learner::ReadSummary(run_dir_);
  if (!summary.ok()) {
    if (learner_log_shown_)  // its log's end was printed when it stopped
      std::printf("the learner wrote no summary (%s)\n", DescribeExit(learner_status_).c_str());
    else
      std::printf("the learner wrote no summary (%s); its log ends with:\n%s",
                  DescribeExit(learner_status_).c_str(), Tail(learner_.log, 15).c_str());
    return final_code_ != 0 ? final_code_ : kExitFailure;
  }
  learner::RunSummary& rs = *summary;
  int restarts = 0, deaths = 0;
  json per_actor = json::object();
  for (const auto& a : actors_) {
    restarts += a.restarts;
    deaths += a.deaths;
    per_actor[a.name] = {{"restarts", a.restarts}, {"deaths", a.deaths}};
  }
  rs.actor_restarts = restarts;
  rs.actor_deaths = deaths;
  rs.actors = per_actor;
  rs.learner_restarts = learner_restarts_;
  rs.launcher_wall_seconds = SecondsSince(t0);
  (void)learner::WriteSummary(run_dir_, rs);
  PrintSummary(rs, restarts, summary_path);
  // The report reads the summary just completed; a failure to write it does not fail the run.
  const std::string report = learner::ReportPath(run_dir_);
  if (Status st = learner::WriteRunReport(run_dir_, report); st.ok()) {
    std::printf("report: %s\n", report.c_str());
  } else {
    std::printf("report not written: %s\n", st.message().c_str());
  }
  if (final_code_ != 0) return final_code_;
  if (failed_) return kExitFailure;
  return kExitOk;
}

int RunTrain(const std::vector<std::string>& argv) {
  std::string path, run_dir_flag;
  std::vector<std::string> sets;
  bool check_only = false;
  Args a("chainrl train", "RUN.toml [--set KEY=VALUE]... [--run-dir DIR]",
         "Run a whole training job on this machine: the learner and `actors.count` actor\n"
         "processes, supervised by this launcher. The config is validated before anything starts.");
  a.Positional("RUN.toml", &path, "the run configuration");
  a.Repeated("set", &sets, "override a key, e.g. --set learner.lr=1e-6");
  a.Option("run-dir", &run_dir_flag,
           "output directory (default: run.run_dir, else runs/NAME-TIME)");
  a.Flag("check", &check_only, "validate the configuration (reward plugins loaded) and exit");
  return ParseAndRun(a, argv, [&] {
    std::atomic<bool>& stop = InstallStopHandlers();
    log::SetRole("launcher");
    auto cfg = LoadConfig(path, sets);
    if (!cfg.ok()) return ReportError(cfg.status());
    // The learner's options are checked here too, so that a bad combination is reported before
    // any process starts.
    auto lo = learner::LearnerOptionsFromConfig(*cfg);
    if (!lo.ok()) return ReportError(lo.status());
    if (Status st = learner::CheckCurriculumStages(*cfg); !st.ok()) return ReportError(st);
    if (cfg->GetInt("distributed.learner_ranks") > 1) {  // a backend this build lacks: exit 2 now
      auto dpo = learner::DataParallelOptionsFromConfig(*cfg);
      if (!dpo.ok()) return ReportError(dpo.status());
    }
    // Keys: a bind beyond loopback without them, a missing or unreadable key file, an actor
    // without its key pair against a learner with one: exit 2 before anything starts.
    auto sec = transport::LearnerSecurityFromConfig(*cfg, cfg->GetString("learner.bind"));
    if (!sec.ok()) return ReportError(sec.status());
    if (sec->open_beyond_loopback) {
      CHAINRL_LOG(kWarn) << transport::OpenNetworkWarning(cfg->GetString("learner.bind"));
    }
    if (cfg->GetInt("actors.count") > 0)
      if (auto curve = transport::ActorSecurityFromConfig(*cfg); !curve.ok())
        return ReportError(curve.status());
    // Offline preference training (the DPO family on prompt/chosen/rejected data): the learner
    // trains alone, so no actors are started and no reward is needed.
    const bool offline = lo->offline_preference;
    if (offline && cfg->GetInt("actors.count") > 0) {
      CHAINRL_LOG(kInfo) << "offline " << lo->algorithm
                         << ": the learner trains on the pairs alone; no actors are started";
      sets.push_back("actors.count=0");
      cfg = LoadConfig(path, sets);
      if (!cfg.ok()) return ReportError(cfg.status());
    }
    // Reward plugins are loaded (in worker processes) and checked before anything starts: a
    // missing file, a non-library, a missing entry point or another ABI version is exit 2.
    if (!offline || !cfg->GetArray("rewards").empty()) {
      auto rewards = rewards::CreateRewardPool(*cfg);
      if (!rewards.ok()) return ReportError(rewards.status());
    }
    if (check_only) {
      std::printf("%s: OK\n", path.c_str());
      return kExitOk;
    }
    auto lvl = log::ParseLevel(cfg->GetString("run.log_level"));
    if (lvl.ok()) log::SetLevel(*lvl);
    auto dir = PrepareRunDir(*cfg, run_dir_flag, "launcher");
    if (!dir.ok()) return ReportError(dir.status());
    if (Status st = InitModelIfAsked(*cfg); !st.ok()) return ReportError(st);
    // Children resolve the same run directory whatever run.run_dir says.
    Launcher l(*cfg, path, sets, *dir);
    return l.Run(stop);
  });
}

}  // namespace

CHAINRL_COMMAND("train", "run a whole training job on this machine", RunTrain);

}  // namespace chainrl::app
