// Start-up BLAS kernel selection (see blas_env.h).
#include "apps/blas_env.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ATen/Parallel.h>

namespace chainrl::app {

void EnsureFastBlas(char** argv) {
  using CoreName = char* (*)();
  auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!corename) {
    if (!std::getenv("CHAINRL_QUIET_BLAS"))
      std::fprintf(stderr,
                   "chainrl: warning: LibTorch is not running on OpenBLAS; install "
                   "libopenblas0-openmp (about 10x faster on CPU)\n");
    return;
  }
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("CHAINRL_BLAS_REEXEC")) return;
  std::string core = corename();
  for (auto& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool generic = core == "prescott" || core == "generic" || core == "core2" ||
                       core == "nehalem" || core == "katmai" || core == "coppermine";
  if (!generic) return;
  __builtin_cpu_init();
  const char* pick = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
    pick = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2")) {
    pick = "Haswell";
  }
  if (!pick) return;
  setenv("OPENBLAS_CORETYPE", pick, 1);
  setenv("CHAINRL_BLAS_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  // exec failed: carry on with the slow kernels.
}

int EnsureThreads() {
  if (const char* t = std::getenv("CHAINRL_THREADS")) {
    int n = std::atoi(t);
    if (n > 0) at::set_num_threads(n);
    return at::get_num_threads();
  }
  return at::get_num_threads();
}

std::string BlasDescription() {
  using CoreName = char* (*)();
  auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!corename) return "reference BLAS (slow: install libopenblas0-openmp)";
  return std::string("OpenBLAS ") + corename();
}

}  // namespace chainrl::app
