// AVX-512 (F, BW, DQ, VL) vector API (16 floats / 8 doubles). Same names as vec_scalar.h.
// Also compiled as the avx512_bf16 ISA (-mavx512bf16): float32 -> bfloat16 then takes one
// VCVTNEPS2BF16 (round to nearest even; float32 subnormal inputs give zero).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "normkit/types.h"

namespace nk::cpu::NK_ISA {  // this ISA's namespace: never linked with another ISA's

struct VF { static constexpr int64_t W = 16; __m512 v; };
struct VD { static constexpr int64_t W = 8; __m512d v; };

inline VF operator+(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VF operator-(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VF operator*(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VD operator+(VD a, VD b) { return {_mm512_add_pd(a.v, b.v)}; }
inline VD operator-(VD a, VD b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline VD operator*(VD a, VD b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline VF fma(VF a, VF b, VF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a * b + c
inline VD fma(VD a, VD b, VD c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
inline VF operator/(VF a, VF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VD operator/(VD a, VD b) { return {_mm512_div_pd(a.v, b.v)}; }
inline VF vsqrt(VF a) { return {_mm512_sqrt_ps(a.v)}; }
inline VD vsqrt(VD a) { return {_mm512_sqrt_pd(a.v)}; }
// 1/sqrt(a) (specials as 1/sqrt: +inf -> 0, 0 -> inf, NaN -> NaN): the 14-bit estimate and one
// Newton step (y (1.5 - 0.5 a y^2), about 2 ulp) where a is positive and finite; subnormal a
// is scaled by 2^24 first (the estimate flushes it) and the result by 2^12.
inline VF rsqrt(VF a) {
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 tiny = _mm512_cmp_ps_mask(a.v, zero, _CMP_GT_OQ) &
                         _mm512_cmp_ps_mask(a.v, _mm512_set1_ps(0x1p-126f), _CMP_LT_OQ);
  const __m512 as = _mm512_mask_mul_ps(a.v, tiny, a.v, _mm512_set1_ps(0x1p24f));
  const __m512 y = _mm512_rsqrt14_ps(as);
  const __m512 hy = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), as), y);
  const __m512 nr = _mm512_mul_ps(y, _mm512_fnmadd_ps(hy, y, _mm512_set1_ps(1.5f)));
  const __mmask16 ok = _mm512_cmp_ps_mask(as, zero, _CMP_GT_OQ) &
                       _mm512_cmp_ps_mask(as, _mm512_set1_ps(__builtin_inff()), _CMP_LT_OQ);
  const __m512 r = _mm512_mask_mov_ps(y, ok, nr);
  return {_mm512_mask_mul_ps(r, tiny, r, _mm512_set1_ps(0x1p12f))};
}
inline VD rsqrt(VD a) { return {_mm512_div_pd(_mm512_set1_pd(1.0), _mm512_sqrt_pd(a.v))}; }
// widen: float lanes [0, W/2) -> lo and [W/2, W) -> hi as doubles (exact); narrow: the inverse,
// rounded to float.
inline void widen(VF a, VD& lo, VD& hi) {
  lo = {_mm512_cvtps_pd(_mm512_castps512_ps256(a.v))};
  hi = {_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)))};
}
inline VF narrow(VD lo, VD hi) {
  const __m512d l = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo.v)));
  return {_mm512_castpd_ps(_mm512_insertf64x4(l, _mm256_castps_pd(_mm512_cvtpd_ps(hi.v)), 1))};
}
// ---- uint32 lanes (counter-based RNG)
struct VU { static constexpr int64_t W = 16; __m512i v; };
inline VU set1_u32(uint32_t s) { return {_mm512_set1_epi32(static_cast<int>(s))}; }
inline VU loadu(const uint32_t* p) { return {_mm512_loadu_si512(p)}; }
inline void storeu(uint32_t* p, VU a) { _mm512_storeu_si512(p, a.v); }
inline VU operator^(VU a, VU b) { return {_mm512_xor_si512(a.v, b.v)}; }
inline VU operator+(VU a, VU b) { return {_mm512_add_epi32(a.v, b.v)}; }
inline VU operator-(VU a, VU b) { return {_mm512_sub_epi32(a.v, b.v)}; }
inline VU operator&(VU a, VU b) { return {_mm512_and_si512(a.v, b.v)}; }
inline VU operator|(VU a, VU b) { return {_mm512_or_si512(a.v, b.v)}; }
// Logical shifts by s in [0, 32); cvt_i32: lanes as int32 -> float (rounded); as_f32 / as_u32: bit casts.
inline VU srl(VU a, int s) { return {_mm512_srli_epi32(a.v, static_cast<unsigned>(s))}; }
inline VU sll(VU a, int s) { return {_mm512_slli_epi32(a.v, static_cast<unsigned>(s))}; }
inline VF cvt_i32(VU a) { return {_mm512_cvtepi32_ps(a.v)}; }
inline VF as_f32(VU a) { return {_mm512_castsi512_ps(a.v)}; }
inline VU as_u32(VF a) { return {_mm512_castps_si512(a.v)}; }
// Lanes i of v where r[i] >= t, +0 elsewhere (reads W words of r; exact for inf/NaN v).
inline VF keep_if_ge(VF v, const uint32_t* r, uint32_t t) {
  const __mmask16 k = _mm512_cmpge_epu32_mask(_mm512_loadu_si512(r), _mm512_set1_epi32(static_cast<int>(t)));
  return {_mm512_maskz_mov_ps(k, v.v)};
}
inline VD keep_if_ge(VD v, const uint32_t* r, uint32_t t) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r));
  return {_mm512_maskz_mov_pd(_mm256_cmpge_epu32_mask(w, _mm256_set1_epi32(static_cast<int>(t))), v.v)};
}
// hi:lo = a * m as 64-bit products, per lane.
inline void mul_hi_lo(VU a, uint32_t m, VU& hi, VU& lo) {
  const __m512i vm = _mm512_set1_epi32(static_cast<int>(m));
  const __m512i pe = _mm512_mul_epu32(a.v, vm);                          // even lanes
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a.v, 32), vm);   // odd lanes
  lo = {_mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32))};
  hi = {_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po)};
}

inline VF set1(float s) { return {_mm512_set1_ps(s)}; }
inline VD set1(double s) { return {_mm512_set1_pd(s)}; }
inline float reduce_add(VF a) { return _mm512_reduce_add_ps(a.v); }  // fixed shuffle tree
inline double reduce_add(VD a) { return _mm512_reduce_add_pd(a.v); }

inline __mmask16 mask16(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }  // n < 16
inline __mmask8 mask8(int64_t n) { return static_cast<__mmask8>((1u << n) - 1u); }     // n < 8

// ---- loads: storage type -> float32 (or float64) lanes
inline VF loadu(const float* p) { return {_mm512_loadu_ps(p)}; }
inline VD loadu(const double* p) { return {_mm512_loadu_pd(p)}; }
inline VF f16_lanes(__m256i h) { return {_mm512_cvtph_ps(h)}; }
inline VF bf16_lanes(__m256i h) { return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))}; }
inline VF loadu(const f16* p) { return f16_lanes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline VF loadu(const bf16* p) { return bf16_lanes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
// load_tail / store_tail: the first n (< W) elements; loaded lanes past n are zero.
inline VF load_tail(const float* p, int64_t n) { return {_mm512_maskz_loadu_ps(mask16(n), p)}; }
inline VD load_tail(const double* p, int64_t n) { return {_mm512_maskz_loadu_pd(mask8(n), p)}; }
inline VF load_tail(const f16* p, int64_t n) { return f16_lanes(_mm256_maskz_loadu_epi16(mask16(n), p)); }
inline VF load_tail(const bf16* p, int64_t n) { return bf16_lanes(_mm256_maskz_loadu_epi16(mask16(n), p)); }

// ---- stores: float32 lanes -> storage type (round to nearest even)
inline __m256i to_f16(VF a) { return _mm512_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline __m256i to_bf16(VF a) {
#if defined(__AVX512BF16__)
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(a.v));
#else
  // scalar: nan ? (u >> 16) | 0x40 : (u + 0x7fff + ((u >> 16) & 1)) >> 16
  const __m512i u = _mm512_castps_si512(a.v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q), r, qnan);
  return _mm512_cvtepi32_epi16(r);
#endif
}
inline void storeu(float* p, VF a) { _mm512_storeu_ps(p, a.v); }
inline void storeu(double* p, VD a) { _mm512_storeu_pd(p, a.v); }
inline void storeu(f16* p, VF a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_f16(a)); }
inline void storeu(bf16* p, VF a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(a)); }
inline void store_tail(float* p, VF a, int64_t n) { _mm512_mask_storeu_ps(p, mask16(n), a.v); }
inline void store_tail(double* p, VD a, int64_t n) { _mm512_mask_storeu_pd(p, mask8(n), a.v); }
inline void store_tail(f16* p, VF a, int64_t n) { _mm256_mask_storeu_epi16(p, mask16(n), to_f16(a)); }
inline void store_tail(bf16* p, VF a, int64_t n) { _mm256_mask_storeu_epi16(p, mask16(n), to_bf16(a)); }

// keep_first: lanes >= n set to zero.
inline VF keep_first(VF a, int64_t n) { return {_mm512_maskz_mov_ps(mask16(n), a.v)}; }
inline VD keep_first(VD a, int64_t n) { return {_mm512_maskz_mov_pd(mask8(n), a.v)}; }

// load_range: lanes [lo, hi) of p, the others zero (lo < hi <= W); keep_range: the others set to
// zero; lane l of ring_shift(a, b, s) is lane l + s of the 2W lanes of a then b (0 <= s < W).
inline __mmask16 range16(int64_t lo, int64_t hi) {  // lanes lo <= i < hi set
  return static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}
inline VF load_range(const float* p, int64_t lo, int64_t hi) { return {_mm512_maskz_loadu_ps(range16(lo, hi), p)}; }
inline VD load_range(const double* p, int64_t lo, int64_t hi) {
  return {_mm512_maskz_loadu_pd(static_cast<__mmask8>(range16(lo, hi)), p)};
}
inline VF keep_range(VF a, int64_t lo, int64_t hi) { return {_mm512_maskz_mov_ps(range16(lo, hi), a.v)}; }
inline VD keep_range(VD a, int64_t lo, int64_t hi) {
  return {_mm512_maskz_mov_pd(static_cast<__mmask8>(range16(lo, hi)), a.v)};
}
inline VF ring_shift(VF a, VF b, int64_t s) {
  const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                       _mm512_set1_epi32(static_cast<int>(s)));
  return {_mm512_permutex2var_ps(a.v, idx, b.v)};
}
inline VD ring_shift(VD a, VD b, int64_t s) {
  const __m512i idx = _mm512_add_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(s));
  return {_mm512_permutex2var_pd(a.v, idx, b.v)};
}

// Non-temporal store of a full vector; p is aligned to W * sizeof(T) bytes.
inline void stream(float* p, VF a) { _mm512_stream_ps(p, a.v); }
inline void stream(double* p, VD a) { _mm512_stream_pd(p, a.v); }
inline void stream(f16* p, VF a) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_f16(a)); }
inline void stream(bf16* p, VF a) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_bf16(a)); }
inline void stream_fence() { _mm_sfence(); }

// ---- min / max / abs / sign. max(a, b) = a > b ? a : b and min(a, b) = a < b ? a : b per lane
// (b when either is NaN); abs clears the sign bit; sign is -1, 0 or +1 (0 for +-0, NaN for NaN).
inline VF max(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VD max(VD a, VD b) { return {_mm512_max_pd(a.v, b.v)}; }
inline VF min(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline VD min(VD a, VD b) { return {_mm512_min_pd(a.v, b.v)}; }
inline VF abs(VF a) { return {_mm512_abs_ps(a.v)}; }
inline VD abs(VD a) { return {_mm512_abs_pd(a.v)}; }
inline VF sign(VF a) {
  // scalar: nan ? a : (a > 0) - (a < 0)
  const __m512 z = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 s = _mm512_sub_ps(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a.v, z, _CMP_GT_OQ), one),
                                 _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a.v, z, _CMP_LT_OQ), one));
  return {_mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q), a.v)};
}
inline VD sign(VD a) {
  // scalar: nan ? a : (a > 0) - (a < 0)
  const __m512d z = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
  const __m512d s = _mm512_sub_pd(_mm512_maskz_mov_pd(_mm512_cmp_pd_mask(a.v, z, _CMP_GT_OQ), one),
                                  _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(a.v, z, _CMP_LT_OQ), one));
  return {_mm512_mask_mov_pd(s, _mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q), a.v)};
}

}  // namespace nk::cpu::NK_ISA
