// Helpers of the kernel tests that run on a GPU when one is present: device detection and a
// device buffer filled from (and read back into) a host vector.
#pragma once

#ifdef CHAINRL_KERNELS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

namespace chainrl::kernels::testing {

inline bool HaveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// A device copy of `host` (or `count` zeroed elements); freed with the object.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : n_(host.size()) {
    if (cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n_, 1) * sizeof(T)) !=
        cudaSuccess)
      p_ = nullptr;
    if (p_ && n_) cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice);
  }
  explicit DeviceBuffer(size_t count) : DeviceBuffer(std::vector<T>(count)) {}
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  std::vector<T> Read() const {
    std::vector<T> out(n_);
    if (p_ && n_) cudaMemcpy(out.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return out;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace chainrl::kernels::testing

#define CHAINRL_SKIP_WITHOUT_GPU()             \
  if (!::chainrl::kernels::testing::HaveGpu()) \
  GTEST_SKIP() << "no CUDA device: the kernel is compiled but not run here"

#endif  // CHAINRL_KERNELS_CUDA
