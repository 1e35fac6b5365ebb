// Helpers of the tests that run the chainrl executable as a real child process and read what it
// wrote: a command and its output, `chainrl train` started and waited for with a deadline, text and
// JSON files, the per-step events. The including test target defines CHAINRL_BIN (the executable).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/stopwatch.h"

namespace chainrl::testing {

// What a finished `chainrl ARGS` left.
struct CmdResult {
  int code;         // its exit code; -1 if it did not exit normally
  std::string out;  // stdout and stderr together
};

// Runs `chainrl ARGS` (ARGS is a shell command line) and waits for it to finish.
inline CmdResult Chainrl(const std::string& args) {
  std::string cmd = std::string(CHAINRL_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr) << cmd;
  if (p == nullptr) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// An empty directory TMP/chainrl_PREFIX_PID_NAME (what an earlier run left there is removed).
inline std::string FreshDir(const std::string& prefix, const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() /
                 ("chainrl_" + prefix + "_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The file's JSON, or a discarded value when it is missing or does not parse.
inline nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(ReadText(path), nullptr, false);
}

// `chainrl train CONFIG --run-dir RUN_DIR [extra...]` as a child process; its output (stdout and
// stderr) goes to RUN_DIR.out.
inline pid_t StartTrain(const std::string& config, const std::string& run_dir,
                        const std::vector<std::string>& extra = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::string out = run_dir + ".out";
    if (std::freopen(out.c_str(), "w", stdout) == nullptr) _exit(127);
    dup2(1, 2);
    std::vector<std::string> args = {CHAINRL_BIN, "train", config, "--run-dir", run_dir};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` up to `seconds`: its exit code, -1 when it was killed after the timeout, -2 when
// it died of a signal.
inline int WaitFor(pid_t pid, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (SecondsSince(t0) > seconds) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

// The `step` events of RUN/events.jsonl, in order.
inline std::vector<nlohmann::json> StepEvents(const std::string& run) {
  std::vector<nlohmann::json> steps;
  std::ifstream events(run + "/events.jsonl");
  for (std::string line; std::getline(events, line);) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_object() && e.value("event", "") == "step") steps.push_back(e);
  }
  return steps;
}

}  // namespace chainrl::testing
