// CUDA runtime queries and normkit-owned device memory (contract: normkit/cuda.h).
#include <cstdio>

#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

const char* device_name(int dev) {
  static thread_local char buf[320];
  cudaDeviceProp p{};
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d)", p.name, p.major, p.minor);
  return buf;
}

const char* malloc_device(int dev, int64_t bytes, void** ptr) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaMalloc(ptr, static_cast<size_t>(bytes > 0 ? bytes : 1)));
}

const char* free_device(int dev, void* ptr) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaFree(ptr));
}

const char* stream_synchronize(int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  return cuda_error(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

}  // namespace nk::cuda
