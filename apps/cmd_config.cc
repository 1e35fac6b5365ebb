// `chainrl config`: validate and show a resolved run config, or write the config reference.
#include <cstdio>
#include <fstream>

#include "apps/args.h"
#include "apps/run_config.h"
#include "apps/run_dir.h"

namespace chainrl::app {
namespace {

int RunConfigShow(const std::vector<std::string>& argv) {
  std::string path;
  std::vector<std::string> sets;
  Args a("chainrl config show", "RUN.toml [--set KEY=VALUE]...",
         "Validate RUN.toml and print the fully resolved configuration (defaults included).");
  a.Positional("RUN.toml", &path, "the run configuration");
  a.Repeated("set", &sets, "override a key, e.g. --set learner.lr=1e-6");
  return ParseAndRun(a, argv, [&] {
    auto cfg = LoadConfig(path, sets);
    if (!cfg.ok()) return ReportError(cfg.status());
    std::fputs(cfg->ToToml().c_str(), stdout);
    return kExitOk;
  });
}

int RunConfigCheck(const std::vector<std::string>& argv) {
  std::string path;
  std::vector<std::string> sets;
  Args a("chainrl config check", "RUN.toml [--set KEY=VALUE]...",
         "Validate RUN.toml; print every problem with file:line:column, exit 2 if any.");
  a.Positional("RUN.toml", &path, "the run configuration");
  a.Repeated("set", &sets, "override a key");
  return ParseAndRun(a, argv, [&] {
    auto cfg = LoadConfig(path, sets);
    if (!cfg.ok()) return ReportError(cfg.status());
    std::printf("%s: OK\n", path.c_str());
    return kExitOk;
  });
}

int RunConfigDocs(const std::vector<std::string>& argv) {
  std::string out;
  bool to_stdout = false;
  Args a("chainrl config docs", "[--out FILE | --stdout]",
         "Write the configuration reference generated from the schema (default docs/CONFIG.md).");
  a.Option("out", &out, "output file (default docs/CONFIG.md)");
  a.Flag("stdout", &to_stdout, "print to standard output instead");
  return ParseAndRun(a, argv, [&] {
    std::string text = RenderConfigDocs();
    if (to_stdout) {
      std::fputs(text.c_str(), stdout);
      return kExitOk;
    }
    if (out.empty()) out = "docs/CONFIG.md";
    Status st = WriteFileAtomic(out, text);
    if (!st.ok()) return ReportError(st);
    std::fprintf(stderr, "wrote %s\n", out.c_str());
    return kExitOk;
  });
}

int RunConfig(const std::vector<std::string>& argv) {
  const char* usage =
      "usage: chainrl config <show|check|docs> [options]\n\n"
      "  show RUN.toml   print the fully resolved configuration\n"
      "  check RUN.toml  validate and report every problem\n"
      "  docs            write docs/CONFIG.md from the schema\n";
  if (argv.empty()) {
    std::fputs(usage, stderr);
    return kExitUsage;
  }
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (argv[0] == "show") return RunConfigShow(rest);
  if (argv[0] == "check") return RunConfigCheck(rest);
  if (argv[0] == "docs") return RunConfigDocs(rest);
  if (argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(usage, stdout);
    return kExitOk;
  }
  std::fprintf(stderr, "chainrl config: unknown action '%s'\n%s", argv[0].c_str(), usage);
  return kExitUsage;
}

}  // namespace

CHAINRL_COMMAND("config", "show a resolved config or write the reference", RunConfig);

}  // namespace chainrl::app
