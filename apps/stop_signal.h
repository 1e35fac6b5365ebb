// SIGINT/SIGTERM as a graceful-stop flag for long-running commands (learner, actor, launcher).
#pragma once

#include <atomic>

namespace chainrl::app {

// Installs handlers for SIGINT and SIGTERM that set the returned flag (and count the signals).
// A second SIGINT while stopping is also just counted; callers decide (the launcher escalates).
std::atomic<bool>& InstallStopHandlers();
// Number of stop signals received so far.
int StopSignals();

}  // namespace chainrl::app
