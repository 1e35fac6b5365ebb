# The fuzzing build (-DCHAINRL_FUZZ=ON, clang): the LibTorch-free libraries compiled with
# AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's coverage, and one libFuzzer harness
# per decoder of outside bytes (fuzz/). LibTorch is not looked for. Every part of the tree is
# configured (so each library keeps its one source list), but only what the harnesses link is
# built: the folders are added EXCLUDE_FROM_ALL and chainrl_use_torch() does nothing here, since
# no LibTorch target is ever compiled. The Debian libraries (protobuf, ZeroMQ, toml++'s compiled
# parts, pcre2) are linked uninstrumented.

if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "CHAINRL_FUZZ needs clang (libFuzzer): configure with "
                      "-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang")
endif()

include(ChainrlLibraryDeps)

# libFuzzer ships with clang's compiler-rt (Debian: libclang-rt-14-dev); say so here rather than
# at the first link.
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
check_cxx_source_compiles([[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
]] CHAINRL_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT CHAINRL_HAVE_LIBFUZZER)
  message(FATAL_ERROR "clang cannot link -fsanitize=fuzzer: install libclang-rt-14-dev")
endif()

# Every object is instrumented; a sanitizer report aborts (no recovery), so it is a crash that
# libFuzzer saves and reports.
# -O1 -gline-tables-only (after the build type's flags, so they win), as fuzzing builds usually
# are: quicker to compile and link than -O2 -g, with file:line in every report.
set(CHAINRL_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=all)
add_compile_options(${CHAINRL_SANITIZERS} -fsanitize=fuzzer-no-link -fno-omit-frame-pointer -O1
                    -gline-tables-only)
add_link_options(${CHAINRL_SANITIZERS})

function(chainrl_use_torch target)
endfunction()
function(chainrl_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

set(CHAINRL_HAS_NVCC OFF)
set(CHAINRL_TORCH_HAS_CUDA OFF)
foreach(_dir core kernels data model rollout rewards learner actors apps)
  add_subdirectory(${_dir} EXCLUDE_FROM_ALL)
endforeach()
add_subdirectory(fuzz)
