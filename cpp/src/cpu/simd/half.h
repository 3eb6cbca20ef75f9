// Portable float16/bfloat16 <-> float32 conversions (round to nearest even, NaN kept quiet).
// `static inline`: every per-ISA translation unit keeps its own copy, so code compiled with
// AVX-512 flags can never be picked by the linker for the scalar path.
#pragma once
#include <cstdint>
#include <cstring>

namespace nk::cpu::half {

static inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

static inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  if (em >= 0x7c00u) return bits_f32(sign | 0x7f800000u | ((em & 0x3ffu) << 13));  // inf / nan
  if (em >= 0x0400u) return bits_f32(sign | ((em << 13) + 0x38000000u));          // normal
  const float f = static_cast<float>(em) * 5.9604644775390625e-8f;                 // 2^-24 * m
  return bits_f32(sign | f32_bits(f));                                             // subnormal / 0
}

static inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));  // nan
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 (and inf) -> inf
  if (x < 0x38800000u) {  // result is subnormal or zero: let the FPU round at the 2^-24 grid
    const float a = bits_f32(x) + 0.5f;
    return static_cast<uint16_t>(sign | (f32_bits(a) - 0x3f000000u));
  }
  x += 0xc8000fffu + ((x >> 13) & 1u);  // rebias exponent, round to nearest even
  return static_cast<uint16_t>(sign | (x >> 13));
}

static inline float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

static inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // nan
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace nk::cpu::half
