// Start-up check of the BLAS that LibTorch runs on: OpenBLAS 0.3.21 misdetects some virtual CPUs
// as generic and uses SSE3 kernels (3-6x slower), and it reads OPENBLAS_CORETYPE only when it
// loads, so the fix is to re-execute once with the variable set.
#pragma once

#include <string>

namespace chainrl::app {

// If OpenBLAS is loaded, reports a generic core, the CPU has AVX-512 or AVX2, and the user has not
// set OPENBLAS_CORETYPE: sets it (SkylakeX or Haswell) and re-executes this program with the same
// arguments (never returns then). Otherwise returns. Warns on stderr when the reference BLAS is in
// use. Safe to call first thing in main().
void EnsureFastBlas(char** argv);

// Applies CHAINRL_THREADS (intra-op threads) when set; otherwise keeps LibTorch's default, which
// counts physical cores (on a 2-vCPU machine with one hyper-threaded core, 1 thread is measured
// faster than 2 for this workload). Returns the thread count in force.
int EnsureThreads();

// "OpenBLAS SkylakeX" / "reference BLAS": the BLAS LibTorch runs on, for `chainrl version`.
std::string BlasDescription();

}  // namespace chainrl::app
