// Augmentation kernels (contract: normkit/augment.h). Compiled once per ISA, and without
// floating-point contraction (CMakeLists.txt: -ffp-contract=off for this file), so the
// Box-Muller math of rng/normal.h gives the same bits on every ISA.
//
// Crop and flip move bits (memcpy / reversed copies by element size), one output row at a time;
// noise streams like dropout (a chunk of Philox words, then their normals, then y = x + std * z);
// lighting computes each image's per-channel shift once, then adds it row by row. Every random
// decision is a function of (seed, image or element index) only, so any thread split gives the
// same bits.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "../rng/normal.h"
#include "kernel_util.h"
#include "normkit/augment.h"
#include "philox_vec.h"

namespace nk::cpu::NK_ISA {
namespace {

namespace isa = ::nk::cpu::NK_ISA;

// This ISA's float32/uint32 vectors as lanes for rng::box_muller.
struct VecLanes {
  using U = VU;
  using F = VF;
  static F f(float c) { return set1(c); }
  static U u(uint32_t c) { return set1_u32(c); }
  static U srl(U a, int s) { return isa::srl(a, s); }
  static U sll(U a, int s) { return isa::sll(a, s); }
  static F cvt(U a) { return cvt_i32(a); }
  static F as_f(U a) { return as_f32(a); }
  static U as_u(F a) { return as_u32(a); }
  static F sqrt(F a) { return vsqrt(a); }
};
static_assert(VU::W == VF::W, "box_muller needs as many uint32 as float lanes");

int64_t elem_bytes(DType dt) { return dt == DType::f64 ? 8 : dt == DType::f32 ? 4 : 2; }

// Uniform integer in [0, range) from a word (range < 2^32): floor(u * range / 2^32).
int64_t uniform_below(uint32_t u, int64_t range) {
  return static_cast<int64_t>((static_cast<uint64_t>(u) * static_cast<uint64_t>(range)) >> 32);
}

// ---- random_crop: per output row, zeros left and right of one memcpy (or a zero row).
void crop(const CropArgs& a) {
  const ImageGeom& g = a.x_geom;
  const int64_t es = elem_bytes(a.dtype), pix = g.Q * es, row_bytes = a.w * pix;
  const int64_t rows = g.N * g.P * a.h, Hp = g.H + 2 * a.pad_h, Wp = g.W + 2 * a.pad_w;
  const uint64_t s = rng::derive_seed(a.seed, static_cast<uint32_t>(AugTag::crop));
  const char* x = static_cast<const char*>(a.x);
  char* y = static_cast<char*>(a.y);
  par::parallel_ranges(kernel_threads(), rows, rows * a.w * g.Q, [&](int64_t r0, int64_t r1) {
    int64_t n_at = -1, oy = 0, ox = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / (g.P * a.h), p = r / a.h % g.P, i = r % a.h;
      if (n != n_at) {
        oy = uniform_below(rng::philox_u32(s, 2 * static_cast<uint64_t>(n)), Hp - a.h + 1);
        ox = uniform_below(rng::philox_u32(s, 2 * static_cast<uint64_t>(n) + 1), Wp - a.w + 1);
        n_at = n;
      }
      char* out = y + r * row_bytes;
      const int64_t iy = oy + i - a.pad_h;
      if (iy < 0 || iy >= g.H) {
        std::memset(out, 0, static_cast<size_t>(row_bytes));
        continue;
      }
      // Output pixels [j0, j1) come from input pixels [ox + j0 - pad_w, ox + j1 - pad_w).
      const int64_t j0 = std::clamp<int64_t>(a.pad_w - ox, 0, a.w);
      const int64_t j1 = std::clamp<int64_t>(g.W + a.pad_w - ox, j0, a.w);
      std::memset(out, 0, static_cast<size_t>(j0 * pix));
      if (j1 > j0) {
        const char* in = x + (((n * g.P + p) * g.H + iy) * g.W + ox + j0 - a.pad_w) * pix;
        std::memcpy(out + j0 * pix, in, static_cast<size_t>((j1 - j0) * pix));
      }
      std::memset(out + j1 * pix, 0, static_cast<size_t>((a.w - j1) * pix));
    }
  });
}

// ---- random_flip: per row, a copy or a reversed copy of the W pixels.
// out pixel j = in pixel W - 1 - j, pixels of kQ values (kQ = 0: Q values, known at run time).
template <class E, int kQ>
void reverse_pixels(const E* __restrict in, E* __restrict out, int64_t W, int64_t Q) {
  const int64_t q_n = kQ ? kQ : Q;
  for (int64_t j = 0; j < W; ++j)
    for (int64_t q = 0; q < q_n; ++q) out[j * q_n + q] = in[(W - 1 - j) * q_n + q];
}

template <class E>  // an unsigned integer of the element's size
void flip(const FlipArgs& a) {
  const ImageGeom& g = a.geom;
  const int64_t rows = g.N * g.P * g.H, len = g.W * g.Q, W = g.W, Q = g.Q;
  const uint64_t s = rng::derive_seed(a.seed, static_cast<uint32_t>(AugTag::flip));
  const E* x = static_cast<const E*>(a.x);
  E* y = static_cast<E*>(a.y);
  par::parallel_ranges(kernel_threads(), rows, rows * len, [&](int64_t r0, int64_t r1) {
    int64_t n_at = -1;
    bool flipped = false;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / (g.P * g.H);
      if (n != n_at) {
        flipped = rng::philox_u32(s, static_cast<uint64_t>(n)) < a.flip_threshold;
        n_at = n;
      }
      const E* in = x + r * len;
      E* out = y + r * len;
      if (!flipped) {
        std::memcpy(out, in, static_cast<size_t>(len) * sizeof(E));
      } else if (Q == 1) {
        reverse_pixels<E, 1>(in, out, W, 1);
      } else if (Q == 3) {  // RGB: a compile-time pixel size lets the copies unroll
        reverse_pixels<E, 3>(in, out, W, 3);
      } else if (Q == 4) {
        reverse_pixels<E, 4>(in, out, W, 4);
      } else {
        reverse_pixels<E, 0>(in, out, W, Q);
      }
    }
  });
}

// ---- gaussian_noise
constexpr int64_t kChunk = kPhiloxChunk;

// Normals of the kChunk elements whose words are r (rng/normal.h's pairing: words 0/1 and 2/3 of
// each block, i.e. element offsets +0/+16 and +32/+48 within a group of 64).
void normal_chunk(const uint32_t* r, float* z) {
  constexpr int64_t L = VU::W;
  for (int64_t g = 0; g < kChunk; g += rng::kPhiloxGroup)
    for (int64_t l = 0; l < 16; l += L)
      for (int64_t h = 0; h < 64; h += 32) {  // scalar: box_muller(r[i], r[i + 16]) -> z[i], z[i + 16]
        const int64_t i = g + h + l;
        VF zc, zs;
        rng::box_muller<VecLanes>(loadu(r + i), loadu(r + i + 16), zc, zs);
        storeu(z + i, zc);
        storeu(z + i + 16, zs);
      }
}

template <class T> struct Noise {
  using A = Acc<T>;
  using V = VecOf<T>;

  static void run(const NoiseArgs& a) {
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const int64_t n = a.n, chunks = (n + kChunk - 1) / kChunk;
    const uint64_t s = rng::derive_seed(a.seed, static_cast<uint32_t>(AugTag::noise));
    const bool streaming = use_streaming(2, n, sizeof(T));
    const V vs = set1(static_cast<A>(a.std));
    par::parallel_ranges(kernel_threads(), chunks, 8 * n, [&](int64_t k0, int64_t k1) {
      alignas(64) uint32_t r[kChunk];
      alignas(64) A z[kChunk + 16] = {};  // + 16: whole-vector reads at any offset < kChunk
      alignas(64) float zf[std::is_same_v<A, float> ? 1 : kChunk];
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t i0 = k * kChunk, len = std::min(kChunk, n - i0);
        philox_chunk(s, static_cast<uint64_t>(i0), r);
        if constexpr (std::is_same_v<A, float>) {
          normal_chunk(r, z);
        } else {
          normal_chunk(r, zf);
          for (int64_t j = 0; j < kChunk; ++j) z[j] = zf[j];  // exact
        }
        const T* xc = x + i0;
        write_row(y + i0, len, streaming, [&](int64_t j, int64_t m) {  // scalar: y = x + std * z
          return load_n(xc, j, m) + vs * loadu(z + j);
        });
      }
      if (streaming) stream_fence();
    });
  }
};

// ---- pca_lighting
template <class T> struct Lighting {
  using A = Acc<T>;
  using V = VecOf<T>;

  static void run(const LightingArgs& a) {
    const ImageGeom& g = a.geom;
    const int64_t C = g.P * g.Q, Q = g.Q, len = g.W * g.Q, rows = g.N * g.P * g.H;
    const int64_t plen = Q + V::W;  // a plane's shift pattern: shift[p * Q + k mod Q], k < plen
    const uint64_t s = rng::derive_seed(a.seed, static_cast<uint32_t>(AugTag::lighting));
    A* pat = par::scratch<A>(0, g.N * g.P * plen);
    double* alpha = par::scratch<double>(1, g.N * C);
    par::parallel_ranges(kernel_threads(), g.N, 64 * g.N * C * C, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        double* al = alpha + n * C;
        for (int64_t e = 0; e < C; ++e)
          al[e] = a.std * static_cast<double>(rng::normal_f32(s, static_cast<uint64_t>(n * C + e)));
        for (int64_t p = 0; p < g.P; ++p) {
          A* pp = pat + (n * g.P + p) * plen;
          for (int64_t q = 0; q < Q; ++q) {
            const double* v = a.eigvecs + (p * Q + q) * C;
            double shift = 0.0;
            for (int64_t e = 0; e < C; ++e) shift += v[e] * (al[e] * a.eigvals[e]);
            pp[q] = static_cast<A>(shift);
          }
          for (int64_t k = Q; k < plen; ++k) pp[k] = pp[k - Q];
        }
      }
    });
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const bool streaming = use_streaming(2, rows * len, sizeof(T));
    par::parallel_ranges(kernel_threads(), rows, rows * len, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const A* pr = pat + r / g.H * plen;
        const T* xr = x + r * len;
        write_row(y + r * len, len, streaming, [&](int64_t j, int64_t m) {  // scalar: y = x + shift[c(j)]
          return load_n(xr, j, m) + loadu(pr + (Q == 1 ? 0 : j % Q));
        });
      }
      if (streaming) stream_fence();
    });
  }
};

}  // namespace

void random_crop(const CropArgs& a) { crop(a); }

void random_flip(const FlipArgs& a) {
  switch (elem_bytes(a.dtype)) {
    case 8: return flip<uint64_t>(a);
    case 4: return flip<uint32_t>(a);
    default: return flip<uint16_t>(a);
  }
}

void gaussian_noise(const NoiseArgs& a) {
  by_dtype<Noise>(a, [&](auto k) { decltype(k)::run(a); });
}

void pca_lighting(const LightingArgs& a) {
  by_dtype<Lighting>(a, [&](auto k) { decltype(k)::run(a); });
}

}  // namespace nk::cpu::NK_ISA
