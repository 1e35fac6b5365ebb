// Command-line parsing for `chainrl` subcommands: typed options, positionals, repeated options,
// generated --help. Every error names the option and what was expected.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"

namespace chainrl::app {

// Exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // runtime failure
inline constexpr int kExitUsage = 2;    // usage or configuration error
inline constexpr int kExitNoSpace = 3;  // the disk is full: restarting will not help

// Declares the options of one subcommand, then parses argv into the bound variables.
// Not thread-safe; bound pointers must outlive Parse().
class Args {
 public:
  // `command` is e.g. "chainrl tokenize"; `synopsis` the part after it in the usage line.
  Args(std::string command, std::string synopsis, std::string description);

  Args& Flag(const std::string& name, bool* out, const std::string& help);
  Args& Option(const std::string& name, std::string* out, const std::string& help,
               bool required = false);
  Args& Option(const std::string& name, int64_t* out, const std::string& help,
               bool required = false);
  Args& Option(const std::string& name, double* out, const std::string& help,
               bool required = false);
  // An option that may repeat (`--set a=1 --set b=2`), appended in order.
  Args& Repeated(const std::string& name, std::vector<std::string>* out, const std::string& help);
  Args& Positional(const std::string& name, std::string* out, const std::string& help,
                   bool required = true);

  // Parses; on `--help` or `-h` prints Help() to stdout and sets help_requested().
  Status Parse(const std::vector<std::string>& argv);
  bool help_requested() const { return help_requested_; }
  std::string Help() const;

 private:
  struct Spec {
    std::string name;  // without leading "--" for options
    std::string help;
    std::string metavar;
    bool required = false;
    bool is_flag = false;
    bool repeated = false;
    bool seen = false;
    std::function<Status(const std::string&)> set;
  };
  Spec* FindOption(const std::string& name);

  std::string command_, synopsis_, description_;
  std::vector<Spec> options_;
  std::vector<Spec> positionals_;
  bool help_requested_ = false;
};

// Parses with `args`; on --help returns kExitOk, on error prints "chainrl CMD: error" and returns
// kExitUsage; otherwise runs `body` and returns its exit code.
int ParseAndRun(Args& args, const std::vector<std::string>& argv, const std::function<int()>& body);

// Prints "chainrl: <status message>" to stderr and returns the exit code for it: kExitUsage for
// kInvalidArgument/kNotFound (bad input), kExitNoSpace for kNoSpace, kExitFailure otherwise.
int ReportError(const Status& status);

// A subcommand: receives its arguments after the subcommand name and returns an exit code.
using CommandFn = int (*)(const std::vector<std::string>& args);
struct CommandInfo {
  const char* name;
  const char* summary;
  CommandFn run;
};
// Registration happens at static-initialisation time from the file that defines the command
// (CHAINRL_COMMAND below); apps/main.cc dispatches. Same for `chainrl bench NAME`.
bool RegisterCommand(CommandInfo info);
const std::vector<CommandInfo>& RegisteredCommands();
bool RegisterBench(CommandInfo info);
const std::vector<CommandInfo>& RegisteredBenches();

}  // namespace chainrl::app

#define CHAINRL_APP_CONCAT_INNER(a, b) a##b
#define CHAINRL_APP_CONCAT(a, b) CHAINRL_APP_CONCAT_INNER(a, b)
// CHAINRL_COMMAND("tokenize", "Encode or decode text", RunTokenize);
#define CHAINRL_COMMAND(name, summary, fn)                                      \
  static const bool CHAINRL_APP_CONCAT(chainrl_command_registered_, __LINE__) = \
      ::chainrl::app::RegisterCommand({name, summary, fn})
// CHAINRL_BENCH("rewards", "Isolated vs in-process reward overhead", RunRewardsBench);
#define CHAINRL_BENCH(name, summary, fn)                                      \
  static const bool CHAINRL_APP_CONCAT(chainrl_bench_registered_, __LINE__) = \
      ::chainrl::app::RegisterBench({name, summary, fn})
