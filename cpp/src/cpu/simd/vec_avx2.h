// AVX2 + FMA + F16C vector API (8 floats / 4 doubles). Same names as vec_scalar.h.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "normkit/types.h"

namespace nk::cpu::NK_ISA {  // this ISA's namespace: never linked with another ISA's

struct VF { static constexpr int64_t W = 8; __m256 v; };
struct VD { static constexpr int64_t W = 4; __m256d v; };

inline VF operator+(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VF operator-(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VF operator*(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VD operator+(VD a, VD b) { return {_mm256_add_pd(a.v, b.v)}; }
inline VD operator-(VD a, VD b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline VD operator*(VD a, VD b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline VF fma(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }  // a * b + c
inline VD fma(VD a, VD b, VD c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline VF operator/(VF a, VF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VD operator/(VD a, VD b) { return {_mm256_div_pd(a.v, b.v)}; }
inline VF vsqrt(VF a) { return {_mm256_sqrt_ps(a.v)}; }
inline VD vsqrt(VD a) { return {_mm256_sqrt_pd(a.v)}; }
// 1/sqrt(a) (specials as 1/sqrt: +inf -> 0, 0 -> inf, NaN -> NaN): the 12-bit estimate and one
// Newton step (y (1.5 - 0.5 a y^2), about 2 ulp) where a is positive and finite; subnormal a
// is scaled by 2^24 first (the estimate flushes it) and the result by 2^12.
inline VF rsqrt(VF a) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 tiny = _mm256_and_ps(_mm256_cmp_ps(a.v, zero, _CMP_GT_OQ),
                                    _mm256_cmp_ps(a.v, _mm256_set1_ps(0x1p-126f), _CMP_LT_OQ));
  const __m256 as = _mm256_blendv_ps(a.v, _mm256_mul_ps(a.v, _mm256_set1_ps(0x1p24f)), tiny);
  const __m256 y = _mm256_rsqrt_ps(as);
  const __m256 hy = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), as), y);
  const __m256 nr = _mm256_mul_ps(y, _mm256_fnmadd_ps(hy, y, _mm256_set1_ps(1.5f)));
  const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(as, zero, _CMP_GT_OQ),
                                  _mm256_cmp_ps(as, _mm256_set1_ps(__builtin_inff()), _CMP_LT_OQ));
  const __m256 r = _mm256_blendv_ps(y, nr, ok);
  return {_mm256_blendv_ps(r, _mm256_mul_ps(r, _mm256_set1_ps(0x1p12f)), tiny)};
}
inline VD rsqrt(VD a) { return {_mm256_div_pd(_mm256_set1_pd(1.0), _mm256_sqrt_pd(a.v))}; }
// widen: float lanes [0, W/2) -> lo and [W/2, W) -> hi as doubles (exact); narrow: the inverse,
// rounded to float.
inline void widen(VF a, VD& lo, VD& hi) {
  lo = {_mm256_cvtps_pd(_mm256_castps256_ps128(a.v))};
  hi = {_mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1))};
}
inline VF narrow(VD lo, VD hi) {
  return {_mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo.v)), _mm256_cvtpd_ps(hi.v), 1)};
}
// ---- uint32 lanes (counter-based RNG)
struct VU { static constexpr int64_t W = 8; __m256i v; };
inline VU set1_u32(uint32_t s) { return {_mm256_set1_epi32(static_cast<int>(s))}; }
inline VU loadu(const uint32_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
inline void storeu(uint32_t* p, VU a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a.v); }
inline VU operator^(VU a, VU b) { return {_mm256_xor_si256(a.v, b.v)}; }
inline VU operator+(VU a, VU b) { return {_mm256_add_epi32(a.v, b.v)}; }
inline VU operator-(VU a, VU b) { return {_mm256_sub_epi32(a.v, b.v)}; }
inline VU operator&(VU a, VU b) { return {_mm256_and_si256(a.v, b.v)}; }
inline VU operator|(VU a, VU b) { return {_mm256_or_si256(a.v, b.v)}; }
// Logical shifts by s in [0, 32); cvt_i32: lanes as int32 -> float (rounded); as_f32 / as_u32: bit casts.
inline VU srl(VU a, int s) { return {_mm256_srli_epi32(a.v, s)}; }
inline VU sll(VU a, int s) { return {_mm256_slli_epi32(a.v, s)}; }
inline VF cvt_i32(VU a) { return {_mm256_cvtepi32_ps(a.v)}; }
inline VF as_f32(VU a) { return {_mm256_castsi256_ps(a.v)}; }
inline VU as_u32(VF a) { return {_mm256_castps_si256(a.v)}; }
// Lanes i of v where r[i] >= t, +0 elsewhere (reads W words of r; exact for inf/NaN v).
inline VF keep_if_ge(VF v, const uint32_t* r, uint32_t t) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r));
  const __m256i ge = _mm256_cmpeq_epi32(_mm256_max_epu32(w, _mm256_set1_epi32(static_cast<int>(t))), w);
  return {_mm256_and_ps(v.v, _mm256_castsi256_ps(ge))};
}
inline VD keep_if_ge(VD v, const uint32_t* r, uint32_t t) {
  const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r));
  const __m128i ge = _mm_cmpeq_epi32(_mm_max_epu32(w, _mm_set1_epi32(static_cast<int>(t))), w);
  return {_mm256_and_pd(v.v, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(ge)))};
}
// hi:lo = a * m as 64-bit products, per lane.
inline void mul_hi_lo(VU a, uint32_t m, VU& hi, VU& lo) {
  const __m256i vm = _mm256_set1_epi32(static_cast<int>(m));
  const __m256i pe = _mm256_mul_epu32(a.v, vm);                          // even lanes
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a.v, 32), vm);   // odd lanes
  lo = {_mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA)};
  hi = {_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA)};
}

inline VF set1(float s) { return {_mm256_set1_ps(s)}; }
inline VD set1(double s) { return {_mm256_set1_pd(s)}; }

inline float reduce_add(VF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline double reduce_add(VD a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

// ---- loads: storage type -> float32 (or float64) lanes
inline VF loadu(const float* p) { return {_mm256_loadu_ps(p)}; }
inline VD loadu(const double* p) { return {_mm256_loadu_pd(p)}; }
inline VF loadu(const f16* p) { return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))}; }
inline VF loadu(const bf16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}

inline __m256i lane_mask32(int64_t n) {  // lanes i < n set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i lane_mask64(int64_t n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
// load_tail / store_tail: the first n (< W) elements; loaded lanes past n are zero.
inline VF load_tail(const float* p, int64_t n) { return {_mm256_maskload_ps(p, lane_mask32(n))}; }
inline VD load_tail(const double* p, int64_t n) { return {_mm256_maskload_pd(p, lane_mask64(n))}; }
template <class T> inline VF load_tail(const T* p, int64_t n) {  // 16-bit types: via a stack copy
  T buf[8] = {};
  std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(T));
  return loadu(buf);
}

// ---- stores: float32 lanes -> storage type (round to nearest even)
inline void storeu(float* p, VF a) { _mm256_storeu_ps(p, a.v); }
inline void storeu(double* p, VD a) { _mm256_storeu_pd(p, a.v); }
inline __m128i to_f16(VF a) { return _mm256_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline __m128i to_bf16(VF a) {
  // scalar: nan ? (u >> 16) | 0x40 : (u + 0x7fff + ((u >> 16) & 1)) >> 16
  const __m256i u = _mm256_castps_si256(a.v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  r = _mm256_blendv_epi8(r, qnan, _mm256_castps_si256(_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)));
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
inline void storeu(f16* p, VF a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_f16(a)); }
inline void storeu(bf16* p, VF a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_bf16(a)); }
inline void store_tail(float* p, VF a, int64_t n) { _mm256_maskstore_ps(p, lane_mask32(n), a.v); }
inline void store_tail(double* p, VD a, int64_t n) { _mm256_maskstore_pd(p, lane_mask64(n), a.v); }
template <class T> inline void store_tail(T* p, VF a, int64_t n) {
  T buf[8];
  storeu(buf, a);
  std::memcpy(p, buf, static_cast<size_t>(n) * sizeof(T));
}

// keep_first: lanes >= n set to zero.
inline VF keep_first(VF a, int64_t n) { return {_mm256_and_ps(a.v, _mm256_castsi256_ps(lane_mask32(n)))}; }
inline VD keep_first(VD a, int64_t n) { return {_mm256_and_pd(a.v, _mm256_castsi256_pd(lane_mask64(n)))}; }

// load_range: lanes [lo, hi) of p, the others zero (lo < hi <= W); keep_range: the others set to
// zero; lane l of ring_shift(a, b, s) is lane l + s of the 2W lanes of a then b (0 <= s < W).
inline __m256i range_mask32(int64_t lo, int64_t hi) { return _mm256_andnot_si256(lane_mask32(lo), lane_mask32(hi)); }
inline __m256i range_mask64(int64_t lo, int64_t hi) { return _mm256_andnot_si256(lane_mask64(lo), lane_mask64(hi)); }
inline VF load_range(const float* p, int64_t lo, int64_t hi) { return {_mm256_maskload_ps(p, range_mask32(lo, hi))}; }
inline VD load_range(const double* p, int64_t lo, int64_t hi) { return {_mm256_maskload_pd(p, range_mask64(lo, hi))}; }
inline VF keep_range(VF a, int64_t lo, int64_t hi) {
  return {_mm256_and_ps(a.v, _mm256_castsi256_ps(range_mask32(lo, hi)))};
}
inline VD keep_range(VD a, int64_t lo, int64_t hi) {
  return {_mm256_and_pd(a.v, _mm256_castsi256_pd(range_mask64(lo, hi)))};
}
inline __m256 ring_shift32(__m256 a, __m256 b, int64_t s) {  // 8 32-bit lanes shifted by s (< 8)
  const __m256i j = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(s)));
  const __m256i idx = _mm256_and_si256(j, _mm256_set1_epi32(7));
  const __m256 from_b = _mm256_castsi256_ps(_mm256_cmpgt_epi32(j, _mm256_set1_epi32(7)));
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, idx), _mm256_permutevar8x32_ps(b, idx), from_b);
}
inline VF ring_shift(VF a, VF b, int64_t s) { return {ring_shift32(a.v, b.v, s)}; }
inline VD ring_shift(VD a, VD b, int64_t s) {  // a double is two 32-bit lanes
  return {_mm256_castps_pd(ring_shift32(_mm256_castpd_ps(a.v), _mm256_castpd_ps(b.v), 2 * s))};
}

// Non-temporal store of a full vector; p is aligned to W * sizeof(T) bytes.
inline void stream(float* p, VF a) { _mm256_stream_ps(p, a.v); }
inline void stream(double* p, VD a) { _mm256_stream_pd(p, a.v); }
inline void stream(f16* p, VF a) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_f16(a)); }
inline void stream(bf16* p, VF a) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_bf16(a)); }
inline void stream_fence() { _mm_sfence(); }

// ---- min / max / abs / sign. max(a, b) = a > b ? a : b and min(a, b) = a < b ? a : b per lane
// (b when either is NaN); abs clears the sign bit; sign is -1, 0 or +1 (0 for +-0, NaN for NaN).
inline VF max(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VD max(VD a, VD b) { return {_mm256_max_pd(a.v, b.v)}; }
inline VF min(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VD min(VD a, VD b) { return {_mm256_min_pd(a.v, b.v)}; }
inline VF abs(VF a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline VD abs(VD a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
inline VF sign(VF a) {
  // scalar: nan ? a : (a > 0) - (a < 0)
  const __m256 z = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 s = _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(a.v, z, _CMP_GT_OQ), one),
                                 _mm256_and_ps(_mm256_cmp_ps(a.v, z, _CMP_LT_OQ), one));
  return {_mm256_blendv_ps(s, a.v, _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q))};
}
inline VD sign(VD a) {
  // scalar: nan ? a : (a > 0) - (a < 0)
  const __m256d z = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
  const __m256d s = _mm256_sub_pd(_mm256_and_pd(_mm256_cmp_pd(a.v, z, _CMP_GT_OQ), one),
                                  _mm256_and_pd(_mm256_cmp_pd(a.v, z, _CMP_LT_OQ), one));
  return {_mm256_blendv_pd(s, a.v, _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q))};
}

}  // namespace nk::cpu::NK_ISA
