// Signal handlers that turn SIGINT/SIGTERM into a stop flag (see stop_signal.h).
#include "apps/stop_signal.h"

#include <signal.h>

namespace chainrl::app {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

void OnSignal(int) {
  g_stop.store(true);
  g_signals.fetch_add(1);
}

}  // namespace

std::atomic<bool>& InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return g_stop;
}

int StopSignals() { return g_signals.load(); }

}  // namespace chainrl::app
