// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), the
// counter-based generator behind every random decision in normkit (dropout masks, augmentation).
//
// A block maps a 128-bit counter and a 64-bit key to four 32-bit words; nothing else is state,
// so any element can be generated independently, in any order, on any thread, ISA or device.
//
// normkit's element stream for a 64-bit seed s (documented so that it can be reproduced):
// elements come in groups of 64 = 16 blocks x 4 words, laid out word-major so that 16 blocks
// computed side by side in vector lanes give 16 consecutive elements per word:
//   key     = (s mod 2^32, s >> 32)
//   block   b = (i / 64) * 16 + (i mod 16),  word w = (i mod 64) / 16
//   counter = (b mod 2^32, b >> 32, 0, 0)
//   u32(i)  = word w of philox4x32_10(counter, key)
// Dropout keeps element i iff u32(i) >= threshold(p) = floor(p * 2^32) (see dropout.h).
//
// Derived streams: an op that must not share its words with another op given the same seed
// (the augmentations, see augment.h) uses the element stream of the derived seed
//   derive_seed(s, tag) = c0 | c1 << 32  of  philox4x32_10((0, 0, tag, kDeriveMark), key(s))
// Those counters have word 2 = tag != 0, so they are never blocks of an element stream.
//
// Plain C++ on 32/64-bit integers: compiles unchanged for the host (where the kernels call it on
// arrays of blocks that the compiler vectorizes) and for CUDA (NK_HD adds __host__ __device__).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define NK_HD __host__ __device__ __forceinline__
#else
#define NK_HD inline
#endif

namespace nk::rng {

constexpr int64_t kPhiloxGroup = 64;  // elements per group of 16 blocks (see above)
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;  // key schedule (Weyl) increments

// One Philox4x32 round on (c0, c1, c2, c3) with key (k0, k1).
NK_HD void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  c0 = hi1 ^ c1 ^ k0;
  c1 = lo1;
  c2 = hi0 ^ c3 ^ k1;
  c3 = lo0;
}

// Philox4x32-10: ten rounds, the key bumped between rounds. In place on the counter words.
NK_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    philox_round(c0, c1, c2, c3, k0, k1);
  }
}

// Element i's word of the stream above.
NK_HD uint32_t philox_u32(uint64_t seed, uint64_t i) {
  const uint64_t b = (i >> 6) * 16 + (i & 15);
  uint32_t c0 = static_cast<uint32_t>(b), c1 = static_cast<uint32_t>(b >> 32), c2 = 0, c3 = 0;
  philox4x32_10(c0, c1, c2, c3, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  switch ((i >> 4) & 3) {
    case 0: return c0;
    case 1: return c1;
    case 2: return c2;
    default: return c3;
  }
}

constexpr uint32_t kDeriveMark = 0x6E6B6B79u;  // "nkky": word 3 of the derivation counter

// The seed of the stream derived from `seed` for a purpose tag (tag != 0; see above).
NK_HD uint64_t derive_seed(uint64_t seed, uint32_t tag) {
  uint32_t c0 = 0, c1 = 0, c2 = tag, c3 = kDeriveMark;
  philox4x32_10(c0, c1, c2, c3, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<uint64_t>(c0) | static_cast<uint64_t>(c1) << 32;
}

}  // namespace nk::rng
