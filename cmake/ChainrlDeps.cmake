# Finds every dependency (all from Debian packages; nothing is downloaded) and defines the helpers
# that targets use: chainrl_use_torch() adds LibTorch with a shared precompiled header.

include(ChainrlLibraryDeps)
find_package(Torch REQUIRED)
if(CHAINRL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# Torch's CMake config adds its flags to TORCH_CXX_FLAGS; keep them per target, not global.
separate_arguments(CHAINRL_TORCH_CXX_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")

# Whether the LibTorch we found was built with CUDA (Debian's is CPU-only).
set(CHAINRL_TORCH_HAS_CUDA OFF)
if(TORCH_LIBRARIES MATCHES "c10_cuda" OR TARGET torch_cuda)
  set(CHAINRL_TORCH_HAS_CUDA ON)
endif()
message(STATUS "chainrl: LibTorch ${Torch_VERSION} (CUDA: ${CHAINRL_TORCH_HAS_CUDA})")

# One object library carries the LibTorch precompiled header; every LibTorch target reuses it.
set(_pch_src ${CMAKE_BINARY_DIR}/chainrl_torch_pch.cc)
if(NOT EXISTS ${_pch_src})
  file(WRITE ${_pch_src} "// Anchor for the shared LibTorch precompiled header.\n")
endif()
add_library(chainrl_torch_pch OBJECT ${_pch_src})
target_link_libraries(chainrl_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(chainrl_torch_pch PUBLIC ${CHAINRL_TORCH_CXX_FLAGS})
target_precompile_headers(chainrl_torch_pch PRIVATE <torch/torch.h>)

# chainrl_use_torch(target): link LibTorch and reuse the shared precompiled header.
function(chainrl_use_torch target)
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_compile_options(${target} PRIVATE ${CHAINRL_TORCH_CXX_FLAGS})
  target_precompile_headers(${target} REUSE_FROM chainrl_torch_pch)
endfunction()

# chainrl_warnings(target): the warning set every target of ours compiles with.
function(chainrl_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()
