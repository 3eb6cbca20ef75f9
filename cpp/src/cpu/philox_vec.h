// Vectorized Philox4x32-10: the words of rng/philox.h's element stream for a whole chunk at a
// time, blocks side by side in vector lanes (included inside each ISA's translation unit).
#pragma once
#include <cstdint>

#include "../rng/philox.h"
#include "simd/vec.h"

namespace nk::cpu::NK_ISA {
namespace {

constexpr int64_t kPhiloxChunk = 4 * 64;  // elements per chunk: 64 Philox blocks

// Words u32(i) for the kPhiloxChunk elements from element i0 (a multiple of kPhiloxChunk) on, in element
// order: per group of 64 elements, 16 blocks side by side in vector lanes, one store per word.
void philox_chunk(uint64_t seed, uint64_t i0, uint32_t* r) {
  constexpr int64_t L = VU::W;  // blocks per vector (8 or 16; 16 blocks per group)
  alignas(64) uint32_t lane[L];
  for (int64_t l = 0; l < L; ++l) lane[l] = static_cast<uint32_t>(l);
  const VU iota = loadu(lane);
  for (int64_t g = 0; g < kPhiloxChunk / rng::kPhiloxGroup; ++g)
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

}  // namespace
}  // namespace nk::cpu::NK_ISA
