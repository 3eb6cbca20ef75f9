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
#undef NK_SCALAR_BINOP

template <class V, class S>
inline V splat(S s) { V r; for (int64_t i = 0; i < V::W; ++i) r.v[i] = s; return r; }
inline VF set1(float s) { return splat<VF>(s); }
inline VD set1(double s) { return splat<VD>(s); }

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
