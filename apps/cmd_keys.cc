// `chainrl keys NAME [--dir DIR]`: a CURVE key pair for a learner or an actor (core/curve.h).
#include <cstdio>

#include "apps/args.h"
#include "core/curve.h"

namespace chainrl::app {
namespace {

int RunKeysCommand(const std::vector<std::string>& argv) {
  std::string name, dir = ".";
  Args a("chainrl keys", "NAME [--dir DIR]",
         "Make a CURVE key pair: DIR/NAME.key (public and secret key, mode 0600: give it only to\n"
         "the process it names, as security.learner_secret_key_file or\n"
         "security.actor_secret_key_file) and DIR/NAME.pub (the public key and the name, one\n"
         "line). An actor's .pub lines, concatenated, are the learner's\n"
         "security.authorized_keys_file; the learner's .pub is the actors'\n"
         "security.learner_public_key. An existing NAME.key is never overwritten.\n"
         "See docs/SECURITY.md.");
  a.Positional("NAME", &name, "who holds the key (letters, digits, '.', '_', '-'; at most 64)");
  a.Option("dir", &dir, "where to write the two files (default: the current directory)");
  return ParseAndRun(a, argv, [&] {
    auto keys = transport::MakeCurveKeyPair();
    if (!keys.ok()) return ReportError(keys.status());
    auto paths = transport::WriteKeyFiles(dir, name, *keys);
    if (!paths.ok()) return ReportError(paths.status());
    std::printf("secret key pair: %s (keep it secret)\npublic key:      %s\n%s %s\n",
                paths->first.c_str(), paths->second.c_str(), keys->public_key.c_str(),
                name.c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("keys", "make a CURVE key pair for a learner or an actor", RunKeysCommand);

}  // namespace chainrl::app
