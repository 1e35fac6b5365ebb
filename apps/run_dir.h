// The run directory shared by every process of a run: created once, holds the JSONL event log,
// the resolved config, metrics addresses, checkpoints and summary.json.
#pragma once

#include <string>

#include "core/config.h"
#include "core/file_io.h"
#include "core/status.h"

namespace chainrl::app {

// Resolves the run directory: `flag_value` (--run-dir) if given, else config `run.run_dir`, else
// runs/<run.name>-<UTC timestamp>. Creates it (and parents), writes `config.toml` (the resolved
// config) and opens `events.jsonl` as the event log for this process, tagged with `role`.
// Error (naming the path) if the directory cannot be created or written. The launcher and the
// learner lock the directory first (LockRunDir).
Result<std::string> PrepareRunDir(const Config& config, const std::string& flag_value,
                                  const std::string& role);

// Takes RUN_DIR/ROLE.lock (flock, held until this process exits, not inherited by children) and
// writes this pid into it: two launchers, or two learners, in one run directory would overwrite
// each other's checkpoints and summary. InvalidArgument naming the directory and the holder's pid
// when another process holds it.
Status LockRunDir(const std::string& dir, const std::string& role);

}  // namespace chainrl::app
