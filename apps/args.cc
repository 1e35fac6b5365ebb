// Command-line parsing for `chainrl` subcommands.
#include "apps/args.h"

#include <charconv>
#include <cstdio>
#include <sstream>

namespace chainrl::app {
namespace {

std::vector<CommandInfo>& CommandTable() {
  static auto* t = new std::vector<CommandInfo>();
  return *t;
}
std::vector<CommandInfo>& BenchTable() {
  static auto* t = new std::vector<CommandInfo>();
  return *t;
}

}  // namespace

bool RegisterCommand(CommandInfo info) {
  CommandTable().push_back(info);
  return true;
}
const std::vector<CommandInfo>& RegisteredCommands() { return CommandTable(); }
bool RegisterBench(CommandInfo info) {
  BenchTable().push_back(info);
  return true;
}
const std::vector<CommandInfo>& RegisteredBenches() { return BenchTable(); }

Args::Args(std::string command, std::string synopsis, std::string description)
    : command_(std::move(command)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)) {}

Args& Args::Flag(const std::string& name, bool* out, const std::string& help) {
  Spec s;
  s.name = name;
  s.help = help;
  s.is_flag = true;
  s.set = [out](const std::string&) {
    *out = true;
    return Status::Ok();
  };
  options_.push_back(std::move(s));
  return *this;
}

Args& Args::Option(const std::string& name, std::string* out, const std::string& help,
                   bool required) {
  Spec s;
  s.name = name;
  s.help = help;
  s.metavar = "TEXT";
  s.required = required;
  s.set = [out](const std::string& v) {
    *out = v;
    return Status::Ok();
  };
  options_.push_back(std::move(s));
  return *this;
}

Args& Args::Option(const std::string& name, int64_t* out, const std::string& help, bool required) {
  Spec s;
  s.name = name;
  s.help = help;
  s.metavar = "INT";
  s.required = required;
  s.set = [out, name](const std::string& v) {
    int64_t x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || p != v.data() + v.size() || v.empty())
      return InvalidArgument("--" + name + ": expected an integer, got '" + v + "'");
    *out = x;
    return Status::Ok();
  };
  options_.push_back(std::move(s));
  return *this;
}

Args& Args::Option(const std::string& name, double* out, const std::string& help, bool required) {
  Spec s;
  s.name = name;
  s.help = help;
  s.metavar = "NUM";
  s.required = required;
  s.set = [out, name](const std::string& v) {
    double x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || p != v.data() + v.size() || v.empty())
      return InvalidArgument("--" + name + ": expected a number, got '" + v + "'");
    *out = x;
    return Status::Ok();
  };
  options_.push_back(std::move(s));
  return *this;
}

Args& Args::Repeated(const std::string& name, std::vector<std::string>* out,
                     const std::string& help) {
  Spec s;
  s.name = name;
  s.help = help;
  s.metavar = "TEXT";
  s.repeated = true;
  s.set = [out](const std::string& v) {
    out->push_back(v);
    return Status::Ok();
  };
  options_.push_back(std::move(s));
  return *this;
}

Args& Args::Positional(const std::string& name, std::string* out, const std::string& help,
                       bool required) {
  Spec s;
  s.name = name;
  s.help = help;
  s.metavar = name;
  s.required = required;
  s.set = [out](const std::string& v) {
    *out = v;
    return Status::Ok();
  };
  positionals_.push_back(std::move(s));
  return *this;
}

Args::Spec* Args::FindOption(const std::string& name) {
  for (auto& s : options_)
    if (s.name == name) return &s;
  return nullptr;
}

Status Args::Parse(const std::vector<std::string>& argv) {
  size_t next_positional = 0;
  bool only_positionals = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (!only_positionals && (a == "--help" || a == "-h")) {
      help_requested_ = true;
      std::fputs(Help().c_str(), stdout);
      return Status::Ok();
    }
    if (!only_positionals && a == "--") {
      only_positionals = true;
      continue;
    }
    if (!only_positionals && a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      Spec* s = FindOption(name);
      if (!s) return InvalidArgument("unknown option '--" + name + "' (see --help)");
      if (s->seen && !s->repeated)
        return InvalidArgument("option '--" + name + "' given more than once");
      s->seen = true;
      if (s->is_flag) {
        if (has_value) return InvalidArgument("option '--" + name + "' takes no value");
        CHAINRL_RETURN_IF_ERROR(s->set(""));
        continue;
      }
      if (!has_value) {
        if (i + 1 >= argv.size()) return InvalidArgument("option '--" + name + "' needs a value");
        value = argv[++i];
      }
      CHAINRL_RETURN_IF_ERROR(s->set(value));
      continue;
    }
    if (next_positional >= positionals_.size())
      return InvalidArgument("unexpected argument '" + a + "' (see --help)");
    Spec& p = positionals_[next_positional++];
    p.seen = true;
    CHAINRL_RETURN_IF_ERROR(p.set(a));
  }
  for (auto& p : positionals_)
    if (p.required && !p.seen) return InvalidArgument("missing argument " + p.name);
  for (auto& s : options_)
    if (s.required && !s.seen) return InvalidArgument("missing required option --" + s.name);
  return Status::Ok();
}

std::string Args::Help() const {
  std::ostringstream os;
  os << "usage: " << command_ << " " << synopsis_ << "\n\n" << description_ << "\n";
  if (!positionals_.empty()) {
    os << "\narguments:\n";
    for (auto& p : positionals_) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "  %-26s ", p.name.c_str());
      os << buf << p.help << (p.required ? "" : " (optional)") << "\n";
    }
  }
  os << "\noptions:\n";
  for (auto& s : options_) {
    std::string left = "--" + s.name + (s.is_flag ? "" : " " + s.metavar);
    char buf[64];
    std::snprintf(buf, sizeof(buf), "  %-26s ", left.c_str());
    os << buf << s.help << (s.required ? " (required)" : "") << (s.repeated ? " (repeatable)" : "")
       << "\n";
  }
  os << "  --help                     show this help and exit\n";
  return os.str();
}

int ParseAndRun(Args& args, const std::vector<std::string>& argv,
                const std::function<int()>& body) {
  Status st = args.Parse(argv);
  if (!st.ok()) {
    std::fprintf(stderr, "chainrl: %s\n", st.message().c_str());
    return kExitUsage;
  }
  if (args.help_requested()) return kExitOk;
  return body();
}

int ReportError(const Status& status) {
  std::fprintf(stderr, "chainrl: %s\n", status.message().c_str());
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
      return kExitUsage;
    case StatusCode::kNoSpace:
      return kExitNoSpace;
    default:
      return kExitFailure;
  }
}

}  // namespace chainrl::app
