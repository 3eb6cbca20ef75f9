// Standard normal numbers from Philox words (Box-Muller), shared by CPU and CUDA.
//
// normkit's normal stream for a seed s (documented so that it can be reproduced): element i is
//   j = i mod 64, a = u32(i with bit 4 cleared), b = u32(i with bit 4 set)   (philox.h's stream)
//   normal(i) = bit 4 of i clear ? r cos(theta) : r sin(theta),
//   r = sqrt(-2 ln u1), u1 = ((a >> 8) + 1) / 2^24 in (0, 1];  theta = 2 pi u2, u2 = (b >> 8) / 2^24
// so the 16 lanes of block words (0, 1) and (2, 3) each give a cos/sin pair (as curand_normal4).
// |normal(i)| <= sqrt(48 ln 2) ~= 5.77.
//
// The math is float32, written only with +, -, *, / and sqrt (correctly rounded everywhere) and
// integer bit operations, in a fixed order: a translation unit compiled without floating-point
// contraction (-ffp-contract=off; nvcc -fmad=false) gives the same bits on every ISA and device.
// ln and sin/cos are polynomials: ln on [sqrt(1/2), sqrt(2)) by the atanh series to z^9, sin/cos
// on [-pi/4, pi/4] by Taylor to x^9 / x^10 after an exact quadrant reduction of the 24-bit angle.
// Worst error against the exact formula: a few float32 ulp of r and of cos/sin.
//
// box_muller<L> is written once for any "lanes" type L: ScalarLanes below (one element) or a
// CPU vector (augment.cpp), with the same operation sequence.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "philox.h"

namespace nk::rng {

// One lane: uint32 words and float32 values.
struct ScalarLanes {
  using U = uint32_t;
  using F = float;
  static NK_HD F f(float c) { return c; }
  static NK_HD U u(uint32_t c) { return c; }
  static NK_HD U srl(U a, int s) { return a >> s; }
  static NK_HD U sll(U a, int s) { return a << s; }
  static NK_HD F cvt(U a) { return static_cast<float>(static_cast<int32_t>(a)); }  // signed
  static NK_HD F as_f(U a) {
    F r;
    std::memcpy(&r, &a, sizeof r);
    return r;
  }
  static NK_HD U as_u(F a) {
    U r;
    std::memcpy(&r, &a, sizeof r);
    return r;
  }
  static NK_HD F sqrt(F a) { return std::sqrt(a); }
};

// (zc, zs) = r (cos theta, sin theta) from words (a, b) as documented above.
template <class L>
NK_HD void box_muller(typename L::U a, typename L::U b, typename L::F& zc, typename L::F& zs) {
  using U = typename L::U;
  using F = typename L::F;
  // ln u1 = ln t - 24 ln 2 with t = (a >> 8) + 1 in [1, 2^24]; ln t = k ln 2 + ln m, m in
  // [sqrt(1/2), sqrt(2)): subtracting the bits of sqrt(1/2) splits exponent k and mantissa m.
  const U ix = L::as_u(L::cvt(L::srl(a, 8) + L::u(1))) - L::u(0x3F3504F3u);
  const F e = L::cvt(L::srl(ix, 23)) - L::f(24.0f);
  const F m = L::as_f((ix & L::u(0x7FFFFFu)) + L::u(0x3F3504F3u));
  const F s = m - L::f(1.0f);
  const F z = s / (L::f(2.0f) + s);  // ln m = 2 atanh(z), |z| <= 0.172
  const F w = z * z;
  const F lnm =
      z * (L::f(2.0f) +
           w * (L::f(0.6666667f) + w * (L::f(0.4f) + w * (L::f(0.2857143f) + w * L::f(0.2222222f)))));
  const F lnu = e * L::f(0.693359375f) + (e * L::f(-2.12194440e-4f) + lnm);  // ln 2 = hi + lo, e * hi exact
  const F r = L::sqrt(L::f(-2.0f) * lnu);
  // theta = 2 pi t2 / 2^24, t2 = b >> 8: quadrant kk = round(t2 / 2^22) (mod 4), and
  // x = (t2 - kk 2^22) pi / 2^23 in [-pi/4, pi/4).
  const U t2 = L::srl(b, 8);
  const U kk = L::srl(t2 + L::u(1u << 21), 22);
  const F x = L::cvt(t2 - L::sll(kk, 22)) * L::f(3.74507028e-07f);
  const F x2 = x * x;
  const F sn = x + x * x2 *
                       (L::f(-0.16666667f) +
                        x2 * (L::f(8.3333338e-3f) + x2 * (L::f(-1.98412701e-4f) + x2 * L::f(2.75573188e-6f))));
  const F cs = L::f(1.0f) +
               x2 * (L::f(-0.5f) +
                     x2 * (L::f(4.16666679e-2f) +
                           x2 * (L::f(-1.38888892e-3f) + x2 * (L::f(2.48015876e-5f) + x2 * L::f(-2.75573188e-7f)))));
  // (cos, sin) theta = (cs, sn), (-sn, cs), (-cs, -sn), (sn, -cs) for quadrants q = 0, 1, 2, 3.
  const U q = kk & L::u(3);
  const U swap = L::u(0) - (q & L::u(1)), keep = swap ^ L::u(0xFFFFFFFFu);
  const U ucs = L::as_u(cs), usn = L::as_u(sn);
  const U c = (usn & swap) | (ucs & keep), sgn_c = L::sll((q + L::u(1)) & L::u(2), 30);
  const U sv = (ucs & swap) | (usn & keep), sgn_s = L::sll(q & L::u(2), 30);
  zc = r * L::as_f(c ^ sgn_c);
  zs = r * L::as_f(sv ^ sgn_s);
}

// Element i of the normal stream of `seed` (one Philox block).
NK_HD float normal_f32(uint64_t seed, uint64_t i) {
  const uint64_t blk = (i >> 6) * 16 + (i & 15);
  uint32_t c0 = static_cast<uint32_t>(blk), c1 = static_cast<uint32_t>(blk >> 32), c2 = 0, c3 = 0;
  philox4x32_10(c0, c1, c2, c3, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const bool hi = (i >> 5) & 1;  // words (2, 3) instead of (0, 1)
  float zc, zs;
  box_muller<ScalarLanes>(hi ? c2 : c0, hi ? c3 : c1, zc, zs);
  return (i & 16) ? zs : zc;
}

}  // namespace nk::rng
