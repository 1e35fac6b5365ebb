// The `chainrl` command: dispatches to subcommands registered by apps/cmd_*.cc and bench/*.cc.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/blas_env.h"
#include "core/cpu_budget.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

namespace chainrl::app {
namespace {

// Every subcommand the product has, in the order --help lists them. A subcommand whose
// implementation has not landed yet answers "not implemented yet" with exit 1.
struct Known {
  const char* name;
  const char* summary;
};
constexpr Known kKnown[] = {
    {"train", "run a whole training job on this machine (learner + actors)"},
    {"learner", "run the learner process of a multi-machine job"},
    {"actor", "run a rollout actor process that connects to a learner"},
    {"generate", "generate text from a model directory"},
    {"eval", "evaluate a model on a dataset with the configured reward"},
    {"report", "write a run's report as one self-contained HTML page"},
    {"tokenize", "encode text to token ids, or decode ids to text"},
    {"init-model", "write a randomly initialised model in Hugging Face layout"},
    {"export", "export a checkpoint as a Hugging Face model directory"},
    {"bench", "run a benchmark (chainrl bench --help lists them)"},
    {"config", "show a resolved run config, or write the config reference"},
    {"keys", "make a CURVE key pair for a learner or an actor"},
    {"version", "print the version and the libraries chainrl was built with"},
};

const CommandInfo* Find(const std::string& name) {
  for (const auto& c : RegisteredCommands())
    if (name == c.name) return &c;
  return nullptr;
}

void PrintHelp(std::FILE* out) {
  std::fprintf(out,
               "chainrl: reinforcement-learning post-training of LLMs on long chains of thought\n\n"
               "usage: chainrl <command> [options]   (chainrl <command> --help for details)\n\n"
               "commands:\n");
  for (const auto& k : kKnown) std::fprintf(out, "  %-12s %s\n", k.name, k.summary);
  std::fprintf(out, "\nexit codes: 0 success, 1 runtime failure, 2 usage or configuration error\n");
}

int RunBench(const std::vector<std::string>& args) {
  auto list = [](std::FILE* out) {
    std::fprintf(out, "usage: chainrl bench <name> [options]\n\nbenchmarks:\n");
    for (const auto& b : RegisteredBenches()) std::fprintf(out, "  %-12s %s\n", b.name, b.summary);
  };
  if (args.empty()) {
    list(stderr);
    return kExitUsage;
  }
  if (args[0] == "--help" || args[0] == "-h") {
    list(stdout);
    return kExitOk;
  }
  for (const auto& b : RegisteredBenches())
    if (args[0] == b.name) return b.run({args.begin() + 1, args.end()});
  std::fprintf(stderr, "chainrl bench: unknown benchmark '%s'\n", args[0].c_str());
  list(stderr);
  return kExitUsage;
}

int RunVersion(const std::vector<std::string>& args) {
  Args a("chainrl version", "", "Print the version of chainrl.");
  return ParseAndRun(a, args, [] {
    const CpuBudget budget = ReadCpuBudget();
    std::printf("chainrl %s\nLibTorch %s, %d threads, %s\n", CHAINRL_VERSION, TORCH_VERSION,
                at::get_num_threads(), BlasDescription().c_str());
    // What learner.threads = actors.threads = 0 choose here: a share of the physical cores among
    // the processes of a run (the quickstart's 1 learner + 2 actors, and a learner alone).
    std::printf(
        "cpu: %s; a run of 1 learner + 2 actors gives each %d compute thread(s), a "
        "learner alone %d\n",
        budget.Describe().c_str(), ThreadShare(budget, 3), ThreadShare(budget, 1));
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("bench", "run a benchmark", RunBench);
CHAINRL_COMMAND("version", "print the version", RunVersion);

}  // namespace chainrl::app

int main(int argc, char** argv) {
  using namespace chainrl::app;
  EnsureFastBlas(argv);
  EnsureThreads();
  if (argc < 2) {
    PrintHelp(stderr);
    return kExitUsage;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    PrintHelp(stdout);
    return kExitOk;
  }
  if (cmd == "--version") cmd = "version";
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (const CommandInfo* c = Find(cmd)) return c->run(rest);
  for (const auto& k : kKnown) {
    if (cmd == k.name) {
      std::fprintf(stderr, "chainrl %s: not implemented yet\n", k.name);
      return kExitFailure;
    }
  }
  std::fprintf(stderr, "chainrl: unknown command '%s'\n\n", cmd.c_str());
  PrintHelp(stderr);
  return kExitUsage;
}
