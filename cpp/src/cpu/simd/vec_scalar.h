// Portable baseline "vector" API: fixed-size arrays the compiler may map to SSE2.
// Same names and semantics as vec_avx2.h / vec_avx512.h.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "normkit/types.h"
#include "half.h"

namespace nk::cpu::NK_ISA {  // this ISA's namespace: never linked with another ISA's

struct VF { static constexpr int64_t W = 8;  float v[W]; };
struct VD { static constexpr int64_t W = 4;  double v[W]; };

#define NK_SCALAR_BINOP(V, op)                                            \
  inline V operator op(const V& a, const V& b) {                          \
    V r;                                                                  \
    for (int64_t i = 0; i < V::W; ++i) r.v[i] = a.v[i] op b.v[i];         \
    return r;                                                             \
  }
NK_SCALAR_BINOP(VF, +) NK_SCALAR_BINOP(VF, -) NK_SCALAR_BINOP(VF, *)
NK_SCALAR_BINOP(VD, +) NK_SCALAR_BINOP(VD, -) NK_SCALAR_BINOP(VD, *)
NK_SCALAR_BINOP(VF, /) NK_SCALAR_BINOP(VD, /)
#undef NK_SCALAR_BINOP

template <class V, class S>
inline V splat(S s) { V r; for (int64_t i = 0; i < V::W; ++i) r.v[i] = s; return r; }
inline VF set1(float s) { return splat<VF>(s); }
inline VD set1(double s) { return splat<VD>(s); }

template <class V> inline V vsqrt(const V& a) {
  V r;
  for (int64_t i = 0; i < V::W; ++i) r.v[i] = std::sqrt(a.v[i]);
  return r;
}
// 1/sqrt(a) per lane (IEEE specials: +inf -> 0, 0 -> inf, NaN and negatives -> NaN). Exact here;
// the SIMD ISAs refine a hardware estimate (a few ulp in float, exact in double).
template <class V> inline V rsqrt(const V& a) {
  V r;
  for (int64_t i = 0; i < V::W; ++i) r.v[i] = 1 / std::sqrt(a.v[i]);
  return r;
}
// widen: float lanes [0, W/2) -> lo and [W/2, W) -> hi as doubles (exact); narrow: the inverse,
// rounded to float.
inline void widen(const VF& a, VD& lo, VD& hi) {
  for (int64_t i = 0; i < VD::W; ++i) {
    lo.v[i] = a.v[i];
    hi.v[i] = a.v[i + VD::W];
  }
}
inline VF narrow(const VD& lo, const VD& hi) {
  VF r;
  for (int64_t i = 0; i < VD::W; ++i) {
    r.v[i] = static_cast<float>(lo.v[i]);
    r.v[i + VD::W] = static_cast<float>(hi.v[i]);
  }
  return r;
}

// ---- uint32 lanes (counter-based RNG)
struct VU { static constexpr int64_t W = 8; uint32_t v[W]; };
inline VU set1_u32(uint32_t s) { return splat<VU>(s); }
inline VU loadu(const uint32_t* p) { VU r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline void storeu(uint32_t* p, const VU& a) { std::memcpy(p, a.v, sizeof a.v); }
inline VU operator^(const VU& a, const VU& b) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] ^ b.v[i]; return r; }
inline VU operator+(const VU& a, const VU& b) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] + b.v[i]; return r; }
inline VU operator-(const VU& a, const VU& b) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] - b.v[i]; return r; }
inline VU operator&(const VU& a, const VU& b) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] & b.v[i]; return r; }
inline VU operator|(const VU& a, const VU& b) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] | b.v[i]; return r; }
// Logical shifts by s in [0, 32); cvt_i32: lanes as int32 -> float (rounded); as_f32 / as_u32: bit casts.
inline VU srl(const VU& a, int s) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] >> s; return r; }
inline VU sll(const VU& a, int s) { VU r; for (int64_t i = 0; i < VU::W; ++i) r.v[i] = a.v[i] << s; return r; }
inline VF cvt_i32(const VU& a) {
  VF r;
  for (int64_t i = 0; i < VF::W; ++i) r.v[i] = static_cast<float>(static_cast<int32_t>(a.v[i]));
  return r;
}
inline VF as_f32(const VU& a) { VF r; std::memcpy(r.v, a.v, sizeof r.v); return r; }
inline VU as_u32(const VF& a) { VU r; std::memcpy(r.v, a.v, sizeof r.v); return r; }
// Lanes i of v where r[i] >= t, +0 elsewhere (reads W words of r; exact for inf/NaN v).
template <class V> inline V keep_if_ge(const V& v, const uint32_t* r, uint32_t t) {
  V o;
  for (int64_t i = 0; i < V::W; ++i) o.v[i] = r[i] >= t ? v.v[i] : 0;
  return o;
}
// hi:lo = a * m as 64-bit products, per lane.
inline void mul_hi_lo(const VU& a, uint32_t m, VU& hi, VU& lo) {
  for (int64_t i = 0; i < VU::W; ++i) {
    const uint64_t p = static_cast<uint64_t>(a.v[i]) * m;
    hi.v[i] = static_cast<uint32_t>(p >> 32);
    lo.v[i] = static_cast<uint32_t>(p);
  }
}

// fma(a, b, c) = a * b + c (two roundings here; one on the FMA ISAs)
template <class V> inline V fma(const V& a, const V& b, const V& c) { return a * b + c; }

// Fixed pairwise order, so the result is deterministic.
template <class V> inline auto reduce_add(const V& a) {
  auto t = a;
  for (int64_t w = V::W / 2; w >= 1; w /= 2)
    for (int64_t i = 0; i < w; ++i) t.v[i] = t.v[i] + t.v[i + w];
  return t.v[0];
}

inline float to_f(float x) { return x; }
inline float to_f(f16 x) { return half::f16_to_f32(x.bits); }
inline float to_f(bf16 x) { return half::bf16_to_f32(x.bits); }
inline void from_f(float* p, float v) { *p = v; }
inline void from_f(f16* p, float v) { p->bits = half::f32_to_f16(v); }
inline void from_f(bf16* p, float v) { p->bits = half::f32_to_bf16(v); }

template <class T> inline VF loadu(const T* p) { VF r; for (int64_t i = 0; i < VF::W; ++i) r.v[i] = to_f(p[i]); return r; }
inline VD loadu(const double* p) { VD r; std::memcpy(r.v, p, sizeof r.v); return r; }
// load_tail: the first n (< W) elements, zeros after.
template <class T> inline VF load_tail(const T* p, int64_t n) {
  VF r = set1(0.0f);
  for (int64_t i = 0; i < n; ++i) r.v[i] = to_f(p[i]);
  return r;
}
inline VD load_tail(const double* p, int64_t n) { VD r = set1(0.0); for (int64_t i = 0; i < n; ++i) r.v[i] = p[i]; return r; }

template <class T> inline void storeu(T* p, const VF& a) { for (int64_t i = 0; i < VF::W; ++i) from_f(p + i, a.v[i]); }
inline void storeu(double* p, const VD& a) { std::memcpy(p, a.v, sizeof a.v); }
template <class T> inline void store_tail(T* p, const VF& a, int64_t n) { for (int64_t i = 0; i < n; ++i) from_f(p + i, a.v[i]); }
inline void store_tail(double* p, const VD& a, int64_t n) { for (int64_t i = 0; i < n; ++i) p[i] = a.v[i]; }
// keep_first: lanes >= n set to zero.
template <class V> inline V keep_first(V a, int64_t n) { for (int64_t i = n; i < V::W; ++i) a.v[i] = 0; return a; }
// load_range: lanes [lo, hi) of p, the others zero (lo < hi <= W); keep_range: the others set to
// zero; lane l of ring_shift(a, b, s) is lane l + s of the 2W lanes of a then b (0 <= s < W).
template <class V, class T> inline V load_range_of(const T* p, int64_t lo, int64_t hi) {
  V r = set1(T(0));
  for (int64_t i = lo; i < hi; ++i) r.v[i] = p[i];
  return r;
}
inline VF load_range(const float* p, int64_t lo, int64_t hi) { return load_range_of<VF>(p, lo, hi); }
inline VD load_range(const double* p, int64_t lo, int64_t hi) { return load_range_of<VD>(p, lo, hi); }
template <class V> inline V keep_range(V a, int64_t lo, int64_t hi) {
  for (int64_t i = 0; i < V::W; ++i)
    if (i < lo || i >= hi) a.v[i] = 0;
  return a;
}
template <class V> inline V ring_shift(const V& a, const V& b, int64_t s) {
  V r;
  for (int64_t i = 0; i < V::W; ++i) r.v[i] = i + s < V::W ? a.v[i + s] : b.v[i + s - V::W];
  return r;
}

// Non-temporal store of a full vector to an address aligned to W * sizeof(T): plain store here.
template <class T, class V> inline void stream(T* p, const V& a) { storeu(p, a); }
inline void stream_fence() {}

// ---- min / max / abs / sign. max(a, b) = a > b ? a : b and min(a, b) = a < b ? a : b per lane
// (x86 semantics: b when either is NaN); abs clears the sign bit; sign is -1, 0 or +1 (0 for
// +-0, NaN for NaN).
template <class V> inline V max(const V& a, const V& b) { V r; for (int64_t i = 0; i < V::W; ++i) r.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return r; }
template <class V> inline V min(const V& a, const V& b) { V r; for (int64_t i = 0; i < V::W; ++i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return r; }
template <class V> inline V abs(const V& a) { V r; for (int64_t i = 0; i < V::W; ++i) r.v[i] = std::fabs(a.v[i]); return r; }
template <class V> inline V sign(const V& a) {
  V r;
  for (int64_t i = 0; i < V::W; ++i) r.v[i] = a.v[i] != a.v[i] ? a.v[i] : (a.v[i] > 0) - (a.v[i] < 0);
  return r;
}

}  // namespace nk::cpu::NK_ISA
