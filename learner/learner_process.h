// The learner process: owns the dataset, the curriculum and the ledger of leased work; serves work
// to actors, receives their trajectories, trains (SFT warm-up, then the configured RL objective),
// publishes weights after every update, evaluates, checkpoints, and writes the run's summary.
#pragma once

#include <atomic>
#include <string>

#include "core/config.h"
#include "core/status.h"

namespace chainrl::learner {

struct LearnerProcessOptions {
  std::string run_dir;  // REQUIRED: endpoints.json, progress.json, summary.json, checkpoints
  std::string resume;   // "" (checkpoint.resume), "latest" or a checkpoint directory
};

// Runs the whole learner side of a run until run.total_steps updates are done or `stop` is set;
// either way it checkpoints, evaluates, exports (checkpoint.export_hf) and writes
// RUN_DIR/summary.json before returning. Errors name the file, key or peer at fault.
Status RunLearner(const Config& config, const LearnerProcessOptions& options,
                  const std::atomic<bool>& stop);

}  // namespace chainrl::learner
