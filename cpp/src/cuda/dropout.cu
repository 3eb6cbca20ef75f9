// CUDA dropout, forward and backward (contract: normkit/dropout.h, normkit/cuda.h).
//
// The element stream (rng/philox.h) comes in groups of 64 elements = 16 Philox blocks x 4 words:
// block b = (i / 64) * 16 + i % 16 gives word w = (i % 64) / 16 of element i. A thread takes one
// "unit": V = 16 / sizeof(T) consecutive blocks b = g * 16 + j0 + k (k < V, j0 a multiple of V) of
// group g, so for every word w it owns the V consecutive elements g * 64 + w * 16 + j0 + k: one
// 16-byte load and store of x / y per word (and one V-byte access of each bool mask). Units are
// numbered u = g * (16 / V) + j0 / V and walked grid-stride, 64-bit throughout.
//
// The vector accesses are used when every pointer involved is aligned (16 bytes for x and y, V
// bytes for the masks) and the V elements lie below n; otherwise (misaligned pointers, the tail
// of the last group) the same unit goes element by element. The alignment only picks the access
// path: element i's word, decision and value are the same either way.
//
// The same (seed, i) -> word mapping as the CPU, and the same rounding (x * scale in the
// accumulation type; a kept NaN keeps its payload, quieted, as the CPU's arithmetic does):
// bitwise the CPU's results.
#include "cuda_util.cuh"
#include "normkit/cuda.h"
#include "rng/philox.h"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;

// V bool bytes as one integer (V = 2, 4 or 8: the mask bytes of one 16-byte access of T).
template <int V> struct MaskWordOf;
template <> struct MaskWordOf<2> { using type = uint16_t; };
template <> struct MaskWordOf<4> { using type = uint32_t; };
template <> struct MaskWordOf<8> { using type = unsigned long long; };

// 16 bytes of T, loaded and stored as one uint4.
template <class T> union Vec16 {
  uint4 u;
  T v[kVec16<T>];
};

// y = kept ? x * scale : +0, rounded to T; a kept NaN keeps its payload, quieted.
template <class T> __device__ __forceinline__ T drop_one(T xi, bool keep, Acc<T> scale) {
  using A = Acc<T>;
  const A v = to_acc(xi);
  return !keep ? from_acc<T>(A(0)) : isnan(v) ? quiet_nan_of(xi) : from_acc<T>(v * scale);
}

// Resident blocks per SM asked of the register allocator: 4 (<= 64 registers) where that fits
// without spills, 3 (<= 80) for the 2-byte types' 8 Philox blocks per thread.
template <class T> constexpr int kMinBlocks = sizeof(T) == 2 ? 3 : 4;

template <class T, bool kMaskIn, bool kMaskOut>
__global__ void __launch_bounds__(kThreads, kMinBlocks<T>) dropout_kernel(const DropoutArgs a, const Acc<T> scale, const bool vec) {
  constexpr int V = kVec16<T>;          // elements per 16 bytes = blocks per unit
  constexpr int kUnitsPerGroup = 16 / V;
  using M = typename MaskWordOf<V>::type;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const int64_t n = a.n;
  const int64_t units = (n + rng::kPhiloxGroup - 1) / rng::kPhiloxGroup * kUnitsPerGroup;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const uint32_t k0 = static_cast<uint32_t>(a.seed), k1 = static_cast<uint32_t>(a.seed >> 32);
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units; u += stride) {
    const int64_t g = u / kUnitsPerGroup;
    const int64_t j0 = (u % kUnitsPerGroup) * V;
    const int64_t base = g * rng::kPhiloxGroup + j0;  // element of word 0, block offset 0
    // Whole unit in bounds (every group but possibly the last) and aligned: vector accesses.
    if (vec && base + 3 * 16 + V <= n) {
      Vec16<T> in[4];
      M mi[4];
#pragma unroll
      for (int w = 0; w < 4; ++w) {  // loads first, all of them: y may equal x
        in[w].u = *reinterpret_cast<const uint4*>(x + base + w * 16);
        if constexpr (kMaskIn) mi[w] = *reinterpret_cast<const M*>(a.mask_in + base + w * 16);
      }
      // Decisions as bits: bit w * V + k keeps element base + w * 16 + k (4 * V <= 32 bits).
      uint32_t keep_bits = 0;
      if constexpr (kMaskIn) {
#pragma unroll
        for (int w = 0; w < 4; ++w)
#pragma unroll
          for (int k = 0; k < V; ++k)
            keep_bits |= static_cast<uint32_t>(((mi[w] >> (8 * k)) & 0xFF) != 0) << (w * V + k);
      } else {
        const int64_t b0 = g * 16 + j0;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const uint64_t b = static_cast<uint64_t>(b0 + k);
          uint32_t c0 = static_cast<uint32_t>(b), c1 = static_cast<uint32_t>(b >> 32), c2 = 0, c3 = 0;
          rng::philox4x32_10(c0, c1, c2, c3, k0, k1);
          keep_bits |= static_cast<uint32_t>(c0 >= a.threshold) << (0 * V + k);
          keep_bits |= static_cast<uint32_t>(c1 >= a.threshold) << (1 * V + k);
          keep_bits |= static_cast<uint32_t>(c2 >= a.threshold) << (2 * V + k);
          keep_bits |= static_cast<uint32_t>(c3 >= a.threshold) << (3 * V + k);
        }
      }
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        Vec16<T> out;
        M mo = 0;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const bool keep = (keep_bits >> (w * V + k)) & 1u;
          out.v[k] = drop_one(in[w].v[k], keep, scale);
          if constexpr (kMaskOut) mo |= static_cast<M>(keep) << (8 * k);
        }
        *reinterpret_cast<uint4*>(y + base + w * 16) = out.u;
        if constexpr (kMaskOut) *reinterpret_cast<M*>(a.mask_out + base + w * 16) = mo;
      }
    } else {
      // Element by element: misaligned pointers, or the last group's tail (i < n only).
#pragma unroll 1
      for (int k = 0; k < V; ++k) {
        uint32_t c[4] = {0, 0, 0, 0};
        if constexpr (!kMaskIn) {
          const uint64_t b = static_cast<uint64_t>(g * 16 + j0 + k);
          c[0] = static_cast<uint32_t>(b);
          c[1] = static_cast<uint32_t>(b >> 32);
          rng::philox4x32_10(c[0], c[1], c[2], c[3], k0, k1);
        }
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const int64_t i = base + w * 16 + k;
          if (i < n) {
            bool keep;
            if constexpr (kMaskIn) {
              keep = a.mask_in[i] != 0;
            } else {
              keep = c[w] >= a.threshold;
            }
            y[i] = drop_one(x[i], keep, scale);
            if constexpr (kMaskOut) a.mask_out[i] = keep;
          }
        }
      }
    }
  }
}

template <class T, bool kMaskIn, bool kMaskOut>
void launch(const DropoutArgs& a, Acc<T> scale, bool vec, int grid, cudaStream_t s) {
  dropout_kernel<T, kMaskIn, kMaskOut><<<grid, kThreads, 0, s>>>(a, scale, vec);
}

bool aligned(const void* p, uintptr_t to) { return reinterpret_cast<uintptr_t>(p) % to == 0; }

}  // namespace

const char* dropout(const DropoutArgs& a, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (a.n <= 0) return nullptr;
  int sms = 0;
  if (const cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev); e != cudaSuccess)
    return cuda_error(e);
  return by_dtype(a.dtype, [&]<class T>() {
    constexpr int V = kVec16<T>;
    const int64_t units = (a.n + rng::kPhiloxGroup - 1) / rng::kPhiloxGroup * (16 / V);
    // Enough blocks to fill every SM several times over (a multiple of any resident count up
    // to 32 blocks per SM); the grid-stride loop takes the rest.
    const int grid = static_cast<int>(min64((units + kThreads - 1) / kThreads, int64_t{32} * max64(sms, 1)));
    const bool vec = aligned(a.x, 16) && aligned(a.y, 16) && (!a.mask_in || aligned(a.mask_in, V)) &&
                     (!a.mask_out || aligned(a.mask_out, V));
    const Acc<T> scale = static_cast<Acc<T>>(a.scale);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a.mask_in) {
      if (a.mask_out) launch<T, true, true>(a, scale, vec, grid, s);
      else launch<T, true, false>(a, scale, vec, grid, s);
    } else {
      if (a.mask_out) launch<T, false, true>(a, scale, vec, grid, s);
      else launch<T, false, false>(a, scale, vec, grid, s);
    }
    return launch_error();
  });
}

}  // namespace nk::cuda
