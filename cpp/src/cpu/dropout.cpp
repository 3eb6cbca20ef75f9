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
#include "../rng/philox.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kBlocks = 64;            // Philox blocks per chunk
constexpr int64_t kChunk = 4 * kBlocks;    // elements per chunk

// Words u32(i) for the kChunk elements from element i0 (a multiple of kChunk) on, in element
// order: per group of 64 elements, 16 blocks side by side in vector lanes, one store per word.
void philox_chunk(uint64_t seed, uint64_t i0, uint32_t* r) {
  constexpr int64_t L = VU::W;  // blocks per vector (8 or 16; 16 blocks per group)
  alignas(64) uint32_t lane[L];
  for (int64_t l = 0; l < L; ++l) lane[l] = static_cast<uint32_t>(l);
  const VU iota = loadu(lane);
  for (int64_t g = 0; g < kChunk / rng::kPhiloxGroup; ++g)
    for (int64_t l0 = 0; l0 < 16; l0 += L) {
      const uint64_t b0 = (i0 / rng::kPhiloxGroup + static_cast<uint64_t>(g)) * 16 + static_cast<uint64_t>(l0);
      // Lanes l: block b0 + l (b0 is a multiple of L, so the low word never wraps inside a vector).
      VU c0 = set1_u32(static_cast<uint32_t>(b0)) + iota, c1 = set1_u32(static_cast<uint32_t>(b0 >> 32));
      VU c2 = set1_u32(0), c3 = set1_u32(0);
      uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
      for (int round = 0; round < 10; ++round) {  // scalar: rng::philox_round on each lane
        if (round > 0) {
          k0 += rng::kPhiloxW0;
          k1 += rng::kPhiloxW1;
        }
        VU hi0, lo0, hi1, lo1;
        mul_hi_lo(c0, rng::kPhiloxM0, hi0, lo0);
        mul_hi_lo(c2, rng::kPhiloxM1, hi1, lo1);
        c0 = hi1 ^ c1 ^ set1_u32(k0);
        c1 = lo1;
        c2 = hi0 ^ c3 ^ set1_u32(k1);
        c3 = lo0;
      }
      uint32_t* out = r + g * rng::kPhiloxGroup + l0;
      storeu(out, c0);
      storeu(out + 16, c1);
      storeu(out + 32, c2);
      storeu(out + 48, c3);
    }
}

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
