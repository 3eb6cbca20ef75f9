// Dropout kernel (contract: normkit/dropout.h). Compiled once per ISA.
//
// One pass: for each chunk of kChunk elements, the Philox words (or the given mask) decide which
// elements are kept, y is written (non-temporal once the call does not fit in the last-level
// cache), and the mask too if asked for. Chunks are
// independent and every element's decision depends only on (seed, i), so any thread split gives
// the same bits.
#include <cstring>

#include "kernel_util.h"
#include "normkit/dropout.h"
#include "philox_vec.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kChunk = kPhiloxChunk;  // elements per chunk

template <class T> struct Kern {
  using A = Acc<T>;
  using V = VecOf<T>;

  static void run(const DropoutArgs& a) {
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const int64_t n = a.n, chunks = (n + kChunk - 1) / kChunk;
    const bool streaming = use_streaming(a.mask_out ? 3 : 2, n, sizeof(T));
    const V vs = set1(static_cast<A>(a.scale));
    // A given mask becomes words 0 / 2^32-1 against threshold 1.
    const uint32_t t = a.mask_in ? 1u : a.threshold;
    par::parallel_ranges(kernel_threads(), chunks, n, [&](int64_t k0, int64_t k1) {
      alignas(64) uint32_t r[kChunk + 16];  // + 16: whole-vector reads at any offset < kChunk
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t i0 = k * kChunk, len = std::min(kChunk, n - i0);
        if (a.mask_in) {
          for (int64_t j = 0; j < len; ++j) r[j] = a.mask_in[i0 + j] ? ~0u : 0u;
        } else {
          philox_chunk(a.seed, static_cast<uint64_t>(i0), r);
        }
        if (a.mask_out)
          for (int64_t j = 0; j < len; ++j) a.mask_out[i0 + j] = r[j] >= t;  // scalar: mask = kept
        const T* xc = x + i0;
        write_row(y + i0, len, streaming, [&](int64_t j, int64_t m) {  // scalar: y = kept ? x * scale : +0
          return keep_if_ge(load_n(xc, j, m) * vs, r + j, t);
        });
      }
      if (streaming) stream_fence();
    });
  }
};

}  // namespace

void dropout(const DropoutArgs& a) {
  switch (a.dtype) {
    case DType::f32: return Kern<float>::run(a);
    case DType::f64: return Kern<double>::run(a);
    case DType::f16: return Kern<f16>::run(a);
    case DType::bf16: return Kern<bf16>::run(a);
  }
}

}  // namespace nk::cpu::NK_ISA
