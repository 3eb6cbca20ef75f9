// CUDA BatchNorm, GroupNorm and InstanceNorm, forward and backward (contracts: normkit/chan_norm.h,
// normkit/cuda.h), on a contiguous (N, C, S) tensor in either layout.
//
// Design. Every op is three passes (eval BatchNorm forward: one):
//   1. statistics: one read of x (and dy) producing fixed per-unit partials in double:
//        forward:  (count, mean, M2) of the unit, from sums of d = x - K and d^2 with K the unit's
//                  first value (per channel of the unit for channels-last);
//        backward: (sum dy, sum dy * (x - mean)).
//      Each thread accumulates its share in the accumulation type (float for f32/f16/bf16, double
//      for f64), the block's or warp's partials are then added in double in a fixed order.
//      NCHW (ncs): a key's values are rows of S (BatchNorm: rows (n, c) of channel c over n;
//        GroupNorm forward: the contiguous Cg*S values of (n, g) as one row; GroupNorm backward:
//        row (n, c)). A unit is either one of the balanced chunks (of at most kUnitBytes) of a row
//        or, for short rows, as many whole rows of the key as fit in kUnitBytes; one warp per
//        unit, lane l takes the 16-byte groups l, l + 32, ... in order (8 in flight, backward 4
//        per array), then a fixed shuffle butterfly. Warps take the units in memory order.
//      channels-last (nsc): a unit is (segment, chunk of R rows, channel); segments are the
//        whole (n, s) row range (BatchNorm) or one sample (GroupNorm); the chunk count per segment
//        aims at about kNscBlocks blocks in all, chunks balanced. Block = tx channel groups (a
//        16-byte pack of channels each) x ty row lanes; row lane ty takes rows ty, ty + TY, ... of
//        the chunk in order (kNscU rows in flight), then a fixed tree over ty in
//        shared memory.
//   2. finalize: per key the partials are merged in a fixed order (forward: each (count, mean, M2)
//      taken to sums about one shift, the mean of the key's item 0, so the merge is plain double
//      additions; backward: plain sums): tpk threads per key (a power of two from the item count),
//      thread j takes items j, j + tpk, ... in order, then an xor butterfly in the warp and, past
//      32 threads, the warp sums in warp order. Writes the statistics outputs and the coefficients of the elementwise pass.
//      GroupNorm backward: one block per group (per-(n, c) sums, per-(n, g) coefficients, then
//      dweight/dbias per channel as a fixed strided + tree sum over n).
//   3. elementwise: y = (x - m) * a + b or dx = k1 * dy + k2 * (x - m) + k3 (explicit fma),
//      each block a contiguous range of the flattened tensor, taken from the end back (the tail
//      the statistics pass read last is still in L2), 16-byte accesses when the rows
//      (ncs: S, nsc: C) are a multiple of the vector and the pointers are aligned, else a scalar
//      path over the same elements; the key of a vector comes from fast 32-bit divisions.
//      BatchNorm eval computes the per-channel coefficients inside this kernel (shared memory).
// Unit shapes depend only on (N, C, S, G, layout, dtype); alignment only picks between vector and
// scalar loads that feed identical arithmetic in identical order: results are bitwise
// reproducible and independent of the device. No atomics. ncs with S = 1 is run as nsc, and nsc
// with C = 1 as ncs (same memory order).
#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kUnitBytes = 16384;  // ncs statistics: bytes per warp unit (at most)
template <bool kBwd> constexpr int kIpt = kBwd ? 2 : 4;  // elementwise: 16-byte vectors per thread and array
constexpr int64_t kEvalStage = 1024;  // eval: coefficients computed in the apply kernel up to this C
constexpr int64_t kGridCap = int64_t{1} << 30;

int grid_of(int64_t blocks) { return static_cast<int>(max64(1, min64(blocks, kGridCap))); }
__host__ __device__ __forceinline__ int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int pow2_at_least(int64_t v) {
  int p = 1;
  while (p < v && p < kThreads) p *= 2;
  return p;
}

// ---- fast division -----------------------------------------------------------------------------

// n / d for d >= 1: a multiply-shift (Granlund-Montgomery) when d <= 2^30, valid for n < 2^32
// (callers keep n below d + 2^30); a 64-bit division otherwise.
struct Div {
  uint64_t d;
  uint32_t m;
  uint32_t sh;
  bool big;
};
Div make_div(int64_t d) {
  Div r{static_cast<uint64_t>(max64(d, 1)), 0, 0, d > (int64_t{1} << 30)};
  if (!r.big) {
    uint32_t sh = 0;
    while ((uint64_t{1} << sh) < r.d) ++sh;
    r.sh = sh;
    r.m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << sh) - r.d)) / r.d + 1);
  }
  return r;
}
__device__ __forceinline__ uint64_t divq(const Div& D, uint64_t n) {
  if (D.big) return n / D.d;
  const uint32_t n32 = static_cast<uint32_t>(n);
  return static_cast<uint32_t>((static_cast<uint64_t>(__umulhi(n32, D.m)) + n32) >> D.sh);
}

__device__ __forceinline__ float fma_a(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_a(double a, double b, double c) { return __fma_rn(a, b, c); }

// to_acc for the statistics loops; bfloat16 widened by a shift (exact, the same bits as to_acc, and
// lighter on registers than the intrinsic's inline assembly).
template <class T> __device__ __forceinline__ Acc<T> ld_acc(T v) { return to_acc(v); }
template <> __device__ __forceinline__ float ld_acc<nk::bf16>(nk::bf16 v) {
  return __uint_as_float(static_cast<uint32_t>(v.bits) << 16);
}

template <class T> __device__ __forceinline__ double to_d(T v) { return static_cast<double>(to_acc(v)); }

template <class T> bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Statistics of one partial, accumulated from d = x - K: (count, mean, M2).
__device__ __forceinline__ void shifted_to_stats(double cnt, double K, double s1, double s2, double& mean,
                                                 double& m2) {
  const double q = s1 / cnt;
  mean = K + q;
  m2 = fmax(0.0, s2 - s1 * q);
}

// ---- pass 1: statistics, ncs ----------------------------------------------------------------------

// Key k: rows i < rk of RL values starting at k * KB + i * rs. Units: UR > 0: UR balanced chunks of
// Lu values per row (unit u = row u / UR, chunk u % UR; Lu a multiple of the 16-byte vector);
// UR = 0: RU whole rows per unit. U units per key; the partial of (k, u) is at k * U + u. Warps take
// the units in memory order: (row, key, chunk) when a key has several rows (imajor: BatchNorm's
// rows (n, c) of channel c), else (key, unit).
struct NcsGeom {
  int64_t keys, KB, rk, rs, RL, UR, RU, U, Lu;
  Div dRL;
  int64_t mdiv;  // backward: the key's mean is m[k / mdiv]
  bool imajor;
};

NcsGeom ncs_geom(int64_t keys, int64_t KB, int64_t rk, int64_t rs, int64_t RL, int64_t mdiv, int64_t tsize) {
  NcsGeom g{};
  const int64_t V = 16 / tsize;
  g.keys = keys;
  g.KB = KB;
  g.rk = rk;
  g.rs = rs;
  g.RL = RL;
  g.Lu = kUnitBytes / tsize;
  g.mdiv = mdiv;
  g.imajor = rk > 1;
  if (RL > g.Lu) {
    const int64_t ur = cdiv(RL, g.Lu);
    g.Lu = cdiv(cdiv(RL, ur), V) * V;
    g.UR = cdiv(RL, g.Lu);
    g.RU = 1;
    g.U = rk * g.UR;
  } else {
    g.UR = 0;
    g.RU = max64(1, g.Lu / max64(RL, 1));
    g.U = cdiv(rk, g.RU);
  }
  g.dRL = make_div(max64(RL, 1));
  return g;
}

// Groups of V values in flight per lane and array.
template <class T, bool kGrad, bool kV> constexpr int kNcsB = (kGrad ? 4 : 8) / (sizeof(T) == 2 ? 2 : 1);

// One warp per unit: lane l takes the unit's groups of V values l, l + 32, ... in order (B in
// flight), accumulating in A from the shift K (forward: the unit's first value; backward: the
// key's mean), then a fixed butterfly in double. kV: 16-byte loads (every group V aligned values
// of one row), else element loads feeding the same arithmetic in the same order.
template <class T, bool kGrad, bool kV>
__global__ void __launch_bounds__(kThreads, 3)
    ncs_stats(NcsGeom g, const T* __restrict__ x, const T* __restrict__ dy, const Acc<T>* __restrict__ m,
              double* __restrict__ p0, double* __restrict__ p1, double* __restrict__ p2) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  constexpr int B = kNcsB<T, kGrad, kV>;
  using P = Pack<T, V>;
  const int lane = threadIdx.x % 32;
  const int64_t units = g.keys * g.U;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; w < units;
       w += static_cast<int64_t>(gridDim.x) * kWarps) {
    int64_t k, u;
    if (!g.imajor) {
      k = w / g.U;
      u = w % g.U;
    } else if (g.UR) {
      const int64_t t = w / g.UR;
      k = t % g.keys;
      u = (t / g.keys) * g.UR + w % g.UR;
    } else {
      k = w % g.keys;
      u = w / g.keys;
    }
    int64_t i0, s0, nrows, len;
    if (g.UR) {
      i0 = u / g.UR;
      s0 = (u % g.UR) * g.Lu;
      len = min64(g.RL - s0, g.Lu);
      nrows = 1;
    } else {
      i0 = u * g.RU;
      s0 = 0;
      len = g.RL;
      nrows = min64(g.RU, g.rk - i0);
    }
    const int64_t base = k * g.KB + i0 * g.rs + s0;
    const uint32_t n = static_cast<uint32_t>(nrows * len);  // <= Lu
    const bool multi = nrows > 1;
    // Element j of the unit (flattened over its rows).
    auto at = [&](uint32_t j) -> int64_t {
      if (!multi) return base + j;
      const uint32_t q = static_cast<uint32_t>(divq(g.dRL, j));
      return base + static_cast<int64_t>(q) * g.rs + (j - q * static_cast<uint32_t>(g.RL));
    };
    A K;  // forward: the shift; backward: the key's mean
    if constexpr (kGrad)
      K = m[k / g.mdiv];
    else
      K = ld_acc(x[base]);
    A s1 = 0, s2 = 0;
    auto add = [&](T xv, T gv) {
      if constexpr (kGrad) {
        const A gd = ld_acc(gv);
        s1 += gd;
        s2 = fma_a(gd, ld_acc(xv) - K, s2);
      } else {
        const A d = ld_acc(xv) - K;
        s1 += d;
        s2 = fma_a(d, d, s2);
      }
    };
    const uint32_t ng = (n + V - 1) / V;
    for (uint32_t g0 = lane; g0 < ng; g0 += 32 * B) {
      P xv[B], gv[B];
#pragma unroll
      for (int b = 0; b < B; ++b) {
        const uint32_t gi = g0 + 32 * b;
        if (gi < ng) {
          if constexpr (kV) {
            const int64_t a = at(gi * V);
            xv[b] = *reinterpret_cast<const P*>(x + a);
            if constexpr (kGrad) gv[b] = *reinterpret_cast<const P*>(dy + a);
          } else {
#pragma unroll
            for (int e = 0; e < V; ++e) {
              const uint32_t j = gi * V + e;
              if (j < n) {
                const int64_t a = at(j);
                xv[b].v[e] = x[a];
                if constexpr (kGrad) gv[b].v[e] = dy[a];
              }
            }
          }
        }
      }
#pragma unroll
      for (int b = 0; b < B; ++b) {
        const uint32_t gi = g0 + 32 * b;
        if (gi < ng)
#pragma unroll
          for (int e = 0; e < V; ++e)
            if (kV || gi * V + e < n) add(xv[b].v[e], kGrad ? gv[b].v[e] : T{});
      }
    }
    double t1 = static_cast<double>(s1), t2 = static_cast<double>(s2);
    for (int o = 16; o > 0; o /= 2) {
      t1 += __shfl_xor_sync(0xffffffffu, t1, o);
      t2 += __shfl_xor_sync(0xffffffffu, t2, o);
    }
    if (lane == 0) {
      const int64_t slot = k * g.U + u;
      if constexpr (kGrad) {
        p0[slot] = t1;
        p1[slot] = t2;
      } else {
        double mean, m2;
        shifted_to_stats(static_cast<double>(n), static_cast<double>(K), t1, t2, mean, m2);
        p0[slot] = static_cast<double>(n);
        p1[slot] = mean;
        p2[slot] = m2;
      }
    }
  }
}

// ---- pass 1: statistics, nsc ----------------------------------------------------------------------

// Segments of SL rows of C channels (segment seg starts at row seg * SL); K chunks of R = ty * RPT
// rows per segment (balanced: the chunk count is chosen first, then the rows per thread); channel
// groups of W channels, tx groups per block, cblocks blocks across C. Block blk covers chunk
// blk / cblocks (segment-major, so blocks run in memory order) and channel block blk % cblocks.
// Partial of (seg, chunk k, channel c) at (seg * K + k) * pk + c * pc: chunk-major (pk = C, pc = 1,
// the default) or channel-major (pk = 1, pc = segs * K: BatchNorm, so that the finalize reads each
// channel's partials contiguously, coalesced). Only where the partials lie, not their values or
// the merge order.
struct NscGeom {
  int64_t C, SL, segs, K, R, cblocks;
  int tx, ty, typ2, RPT;
  int64_t MS, mdiv;  // backward: the mean of (seg, c) is m[seg * MS + c / mdiv]
  int64_t pk, pc;
};

constexpr int64_t kNscBlocks = 1024;  // nsc statistics: blocks aimed at (rows per thread 16..64)

NscGeom nsc_geom(int64_t C, int64_t SL, int64_t segs, int W, int64_t MS, int64_t mdiv) {
  NscGeom g{};
  g.C = C;
  g.SL = SL;
  g.segs = segs;
  g.MS = MS;
  g.mdiv = mdiv;
  g.pk = C;
  g.pc = 1;
  const int64_t groups = C / W;
  g.tx = static_cast<int>(min64(groups, 32));
  g.ty = kThreads / g.tx;
  g.typ2 = 1;
  while (g.typ2 < g.ty) g.typ2 *= 2;
  g.cblocks = cdiv(groups, g.tx);
  const int64_t rows = segs * SL;
  const int64_t rpt0 = max64(16, min64(64, cdiv(rows * g.cblocks, kNscBlocks * g.ty)));
  const int64_t k0 = max64(1, cdiv(SL, g.ty * rpt0));
  g.RPT = static_cast<int>(max64(1, cdiv(cdiv(SL, k0), g.ty)));
  g.R = static_cast<int64_t>(g.ty) * g.RPT;
  g.K = cdiv(SL, g.R);
  return g;
}

// Rows in flight per thread and array (16-byte packs; 4-byte types 6 forward, 2 x 3 backward, to
// fit 64 registers for 4 blocks per SM; 8-byte types 8 forward, 2 x 4 backward; 2-byte types
// forward half as many rows: their packs carry twice the elements and accumulators). Batching
// only: the order of the additions does not depend on it.
template <class T, bool kGrad> constexpr int kNscU = sizeof(T) == 4 ? (kGrad ? 3 : 6) : kGrad ? 4 : (sizeof(T) == 2 ? 4 : 8);
// Blocks per SM the register budget is set for (no spills at these).
template <class T, bool kGrad, int W>
constexpr int kNscMinBlocks = kGrad && W == 8 ? 2 : (sizeof(T) == 8 && W > 1 ? 3 : 4);

// Thread (tx, ty) owns W channels (one 16-byte pack when W = kVec16) and takes rows ty, ty + TY, ...
// of the chunk in order, U rows in flight, accumulating in the accumulation type A from the shift
// K (forward: the chunk's first value of the channel; backward: the mean); then the block's fixed
// tree over ty in double.
// kV: 16-byte loads (aligned pointers), else element loads feeding the same arithmetic.
template <class T, bool kGrad, int W, bool kV>
__global__ void __launch_bounds__(kThreads, kNscMinBlocks<T, kGrad, W>)
    nsc_stats(NscGeom g, const T* __restrict__ x, const T* __restrict__ dy, const Acc<T>* __restrict__ m,
              double* __restrict__ p0, double* __restrict__ p1, double* __restrict__ p2) {
  using A = Acc<T>;
  using P = Pack<T, W>;
  __shared__ double red[2 * kThreads * W];
  const int tx = threadIdx.x % g.tx, ty = threadIdx.x / g.tx;
  const bool lane_ok = ty < g.ty;  // threads past tx * ty only take part in the barriers
  const int64_t nblk = g.segs * g.K * g.cblocks;
  for (int64_t blk = blockIdx.x; blk < nblk; blk += gridDim.x) {
    const int64_t cb = blk % g.cblocks, sk = blk / g.cblocks, seg = sk / g.K, kc = sk % g.K;
    const int64_t c0 = (cb * g.tx + tx) * W;
    const bool act = lane_ok && c0 < g.C;
    const int64_t r0 = kc * g.R, nr = min64(g.R, g.SL - r0), row0 = seg * g.SL + r0;
    A s1[W], s2[W], K[W];
#pragma unroll
    for (int e = 0; e < W; ++e) s1[e] = s2[e] = K[e] = A(0);
    if (act) {
#pragma unroll
      for (int e = 0; e < W; ++e) {
        if constexpr (kGrad)
          K[e] = m[seg * g.MS + (c0 + e) / g.mdiv];
        else
          K[e] = ld_acc(x[row0 * g.C + c0 + e]);
      }
      // Rows of this thread in the chunk: ty + j * TY for j < nj.
      const int nj = static_cast<int>(nr > ty ? min64(g.RPT, cdiv(nr - ty, g.ty)) : 0);
      const int64_t step = static_cast<int64_t>(g.ty) * g.C;
      const T* xr = x + (row0 + ty) * g.C + c0;
      const T* gr = kGrad ? dy + (row0 + ty) * g.C + c0 : nullptr;
      {
        // Element loads (unaligned) hold one register per element: fewer rows in flight for W = 8.
        // Batching only, the order of the additions is the same.
        constexpr int U = kV || W < 8 ? kNscU<T, kGrad> : kNscU<T, kGrad> / 2;
        auto load = [&](const T* p) -> P {
          if constexpr (kV) {
            return *reinterpret_cast<const P*>(p);
          } else {
            P v;
#pragma unroll
            for (int e = 0; e < W; ++e) v.v[e] = p[e];
            return v;
          }
        };
        for (int j = 0; j < nj; j += U) {
          P xv[U], gv[U];
#pragma unroll
          for (int b = 0; b < U; ++b)
            if (j + b < nj) {
              xv[b] = load(xr + b * step);
              if constexpr (kGrad) gv[b] = load(gr + b * step);
            }
#pragma unroll
          for (int b = 0; b < U; ++b)
            if (j + b < nj)
#pragma unroll
              for (int e = 0; e < W; ++e) {
                if constexpr (kGrad) {
                  const A gd = ld_acc(gv[b].v[e]);
                  s1[e] += gd;
                  s2[e] = fma_a(gd, ld_acc(xv[b].v[e]) - K[e], s2[e]);
                } else {
                  const A d = ld_acc(xv[b].v[e]) - K[e];
                  s1[e] += d;
                  s2[e] = fma_a(d, d, s2[e]);
                }
              }
          xr += U * step;
          if constexpr (kGrad) gr += U * step;
        }
      }
    }
    // Fixed tree over ty, in double, s1 and s2 together.
    __syncthreads();  // red may still be read
    if (lane_ok)
#pragma unroll
      for (int e = 0; e < W; ++e) {
        red[threadIdx.x * W + e] = static_cast<double>(s1[e]);
        red[(kThreads + threadIdx.x) * W + e] = static_cast<double>(s2[e]);
      }
    __syncthreads();
    for (int h = g.typ2 / 2; h > 0; h /= 2) {
      if (lane_ok && ty < h && ty + h < g.ty) {
        const int o = h * g.tx;
#pragma unroll
        for (int e = 0; e < W; ++e) {
          red[threadIdx.x * W + e] += red[(threadIdx.x + o) * W + e];
          red[(kThreads + threadIdx.x) * W + e] += red[(kThreads + threadIdx.x + o) * W + e];
        }
      }
      __syncthreads();
    }
    if (ty == 0 && act) {
      const int64_t o0 = (seg * g.K + kc) * g.pk + c0 * g.pc;
#pragma unroll 1
      for (int e = 0; e < W; ++e) {  // not unrolled: one inlined double division
        const double t1 = red[tx * W + e], t2 = red[(kThreads + tx) * W + e];
        const int64_t o = o0 + e * g.pc;
        if constexpr (kGrad) {
          p0[o] = t1;
          p1[o] = t2;
        } else {
          double mean, m2;
          shifted_to_stats(static_cast<double>(nr), static_cast<double>(ld_acc(x[row0 * g.C + c0 + e])), t1, t2,
                           mean, m2);
          p0[o] = static_cast<double>(nr);
          p1[o] = mean;
          p2[o] = m2;
        }
      }
    }
  }
}

// ---- pass 2: finalize ------------------------------------------------------------------------------

// Item i of key k at (k / KG) * B1 + (k % KG) * B2 + (i / ipr) * stride + i % ipr; I items per key.
struct Items {
  int64_t keys, I, KG, B1, B2, ipr, stride;
  int tpk;  // threads per key, a power of two <= kThreads
};
// Base of key k's items (item 0).
__device__ __forceinline__ int64_t key_base(const Items& it, int64_t k) {
  return it.KG == 1 ? k * it.B1 : (k / it.KG) * it.B1 + (k % it.KG) * it.B2;
}
// Item i of the key with base kb (no 64-bit division in the common cases: i < ipr, ipr = 1).
__device__ __forceinline__ int64_t item_of(const Items& it, int64_t kb, int64_t i) {
  if (i < it.ipr) return kb + i;
  if (it.ipr == 1) return kb + i * it.stride;
  return kb + (i / it.ipr) * it.stride + i % it.ipr;
}
__device__ __forceinline__ int64_t item_at(const Items& it, int64_t k, int64_t i) { return item_of(it, key_base(it, k), i); }
Items items(int64_t keys, int64_t I, int64_t KG, int64_t B1, int64_t B2, int64_t ipr, int64_t stride) {
  return Items{keys, I, max64(KG, 1), B1, B2, max64(ipr, 1), stride, pow2_at_least(cdiv(I, 4))};
}
Items ncs_items(const NcsGeom& g) { return items(g.keys, g.U, 1, g.U, 0, g.U, 0); }

// Sums of NV doubles over the key's tpk threads (a power of two, aligned lane groups), the same
// bits in every thread of the key: an xor butterfly inside the warp (a + b == b + a bitwise, so
// both partners of a pair hold the same sum), then for tpk > 32 the key's warp sums added in
// warp order from shared memory (sh: at least NV * kWarps doubles). Reached by all threads of the
// block.
template <int NV> __device__ __forceinline__ void key_sums(int tpk, double (&v)[NV], double* sh) {
  const int lim = tpk < 32 ? tpk : 32;
  for (int o = lim / 2; o > 0; o /= 2)
#pragma unroll
    for (int j = 0; j < NV; ++j) v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
  if (tpk > 32) {  // uniform over the block
    const int w = threadIdx.x / 32, wpk = tpk / 32, w0 = w - w % wpk;
    __syncthreads();  // sh may still be read
    if (threadIdx.x % 32 == 0)
#pragma unroll
      for (int j = 0; j < NV; ++j) sh[j * kWarps + w] = v[j];
    __syncthreads();
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      double a = sh[j * kWarps + w0];
      for (int i = 1; i < wpk; ++i) a += sh[j * kWarps + w0 + i];
      v[j] = a;
    }
  }
}

// Merged (count, mean, M2) of the calling thread's key, in every thread of the key's tpk threads.
// The key's partials (n_i, mean_i, M2_i) are taken to sums about one shift Ks (the mean of item 0):
// d_i = mean_i - Ks, S1 = sum n_i d_i, S2 = sum (M2_i + n_i d_i^2), in double, items i0, i0 + tpk,
// ... per thread in order, then key_sums; mean = Ks + S1 / n, M2 = S2 - S1^2 / n (no divisions
// in the merge chain; |mean - Ks| is of the order of the spread of the partial means, so the
// cancellation costs no more than Chan's merge). Reached by all threads of the block.
__device__ __forceinline__ void merge_key(const Items& it, int64_t k, const double* p0, const double* p1,
                                          const double* p2, double* sh, double& n, double& m, double& q) {
  const int lt = threadIdx.x % it.tpk;
  double v[3] = {0, 0, 0};
  double Ks = 0;
  if (k < it.keys && it.I > 0) {
    const int64_t kb = key_base(it, k);
    if (p0[kb] > 0) Ks = p1[kb];
    for (int64_t i0 = lt; i0 < it.I; i0 += 4 * it.tpk) {  // items i0, i0 + tpk, ... in order, 4 loaded at once
      double a0[4], a1[4], a2[4];
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const int64_t i = i0 + b * it.tpk;
        a0[b] = a1[b] = a2[b] = 0;
        if (i < it.I) {
          const int64_t a = item_of(it, kb, i);
          a0[b] = p0[a];
          a1[b] = p1[a];
          a2[b] = p2[a];
        }
      }
#pragma unroll
      for (int b = 0; b < 4; ++b)
        if (a0[b] > 0) {  // count 0 (padding): nothing
          const double d = a1[b] - Ks, e = a0[b] * d;
          v[0] += a0[b];
          v[1] += e;
          v[2] += __fma_rn(e, d, a2[b]);
        }
    }
  }
  key_sums<3>(it.tpk, v, sh);
  n = v[0];
  const double r = v[1] / v[0];
  m = Ks + r;
  q = fmax(0.0, v[2] - v[1] * r);
}

// Sums (a, b) of the key's items, in every thread of the key's tpk threads.
__device__ __forceinline__ void sum_key(const Items& it, int64_t k, const double* p0, const double* p1, double* sh,
                                        double& a, double& b) {
  const int lt = threadIdx.x % it.tpk;
  double v[2] = {0, 0};
  if (k < it.keys) {
    const int64_t kb = key_base(it, k);
    for (int64_t i0 = lt; i0 < it.I; i0 += 4 * it.tpk) {  // items i0, i0 + tpk, ... in order, 4 loaded at once
      double v0[4], v1[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int64_t i = i0 + u * it.tpk;
        v0[u] = v1[u] = 0;
        if (i < it.I) {
          const int64_t j = item_of(it, kb, i);
          v0[u] = p0[j];
          v1[u] = p1[j];
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        if (i0 + u * it.tpk < it.I) {
          v[0] += v0[u];
          v[1] += v1[u];
        }
      }
    }
  }
  key_sums<2>(it.tpk, v, sh);
  a = v[0];
  b = v[1];
}

template <class A> __device__ __forceinline__ A wt(const void* w, int64_t c, A dflt) {
  return w ? static_cast<const A*>(w)[c] : dflt;
}

// BatchNorm training forward: per channel statistics, outputs and coefficients cm, ca, cb (A[C]).
template <class A>
__global__ void __launch_bounds__(kThreads) bn_fin_fwd(BatchNormFwdArgs p, Items it, const double* p0,
                                                       const double* p1, const double* p2, A* cm, A* ca, A* cb) {
  __shared__ double sh[3 * kThreads];
  const int kpb = kThreads / it.tpk;
  for (int64_t kb = static_cast<int64_t>(blockIdx.x) * kpb; kb < it.keys; kb += static_cast<int64_t>(gridDim.x) * kpb) {
    const int64_t c = kb + threadIdx.x / it.tpk;
    double n, mean, m2;
    merge_key(it, c, p0, p1, p2, sh, n, mean, m2);
    if (c < it.keys && threadIdx.x % it.tpk == 0) {
      if (n == 0) mean = 0.0 / n;  // no values: NaN
      const double var = m2 / n, rstd = 1.0 / sqrt(var + p.eps);
      if (p.batch_mean) p.batch_mean[c] = mean;
      if (p.batch_var) p.batch_var[c] = m2 / (n - 1);
      if (p.save_mean) {
        static_cast<A*>(p.save_mean)[c] = static_cast<A>(mean);
        static_cast<A*>(p.save_rstd)[c] = static_cast<A>(rstd);
      }
      cm[c] = static_cast<A>(mean);
      ca[c] = static_cast<A>(rstd * static_cast<double>(wt<A>(p.weight, c, A(1))));
      cb[c] = wt<A>(p.bias, c, A(0));
    }
  }
}

// BatchNorm eval coefficients (used when the apply kernel does not compute them itself).
template <class A> __global__ void bn_eval_coefs(BatchNormFwdArgs p, A* cm, A* ca, A* cb) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < p.C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A mean = static_cast<const A*>(p.run_mean)[c];
    const double rstd = 1.0 / sqrt(static_cast<double>(static_cast<const A*>(p.run_var)[c]) + p.eps);
    if (p.save_mean) {
      static_cast<A*>(p.save_mean)[c] = mean;
      static_cast<A*>(p.save_rstd)[c] = static_cast<A>(rstd);
    }
    if (cm) {
      cm[c] = mean;
      ca[c] = static_cast<A>(rstd * static_cast<double>(wt<A>(p.weight, c, A(1))));
      cb[c] = wt<A>(p.bias, c, A(0));
    }
  }
}

// GroupNorm forward: per (n, g) mean, m2, rstd; coefficients per (n, c) (A[N*C]).
template <class A>
__global__ void __launch_bounds__(kThreads) gn_fin_fwd(GroupFwdArgs p, Items it, const double* p0, const double* p1,
                                                       const double* p2, A* cm, A* ca, A* cb) {
  __shared__ double sh[3 * kThreads];
  const int kpb = kThreads / it.tpk, lt = threadIdx.x % it.tpk;
  const int64_t cg = p.C / p.G;
  for (int64_t kb = static_cast<int64_t>(blockIdx.x) * kpb; kb < it.keys; kb += static_cast<int64_t>(gridDim.x) * kpb) {
    const int64_t k = kb + threadIdx.x / it.tpk;
    double n, mean, m2;
    merge_key(it, k, p0, p1, p2, sh, n, mean, m2);
    if (k < it.keys) {
      if (n == 0) mean = 0.0 / n;
      const double rstd = 1.0 / sqrt(m2 / n + p.eps);
      if (lt == 0) {
        p.mean[k] = mean;
        p.m2[k] = m2;
        p.rstd[k] = rstd;
      }
      const int64_t nn = k / p.G, g = k % p.G;
      for (int64_t j = lt; j < cg; j += it.tpk) {
        const int64_t c = g * cg + j, o = nn * p.C + c;
        cm[o] = static_cast<A>(mean);
        ca[o] = static_cast<A>(rstd * static_cast<double>(wt<A>(p.weight, c, A(1))));
        cb[o] = wt<A>(p.bias, c, A(0));
      }
    }
  }
}

// BatchNorm backward: dbias = sum dy, dweight = rstd * sum dy (x - mean); coefficients (A[C]).
template <class A>
__global__ void __launch_bounds__(kThreads) bn_fin_bwd(BatchNormBwdArgs p, Items it, const double* p0,
                                                       const double* p1, A* cm, A* k1, A* k2, A* k3) {
  __shared__ double sh[2 * kThreads];
  const int kpb = kThreads / it.tpk;
  const double count = static_cast<double>(p.N * p.S);
  for (int64_t kb = static_cast<int64_t>(blockIdx.x) * kpb; kb < it.keys; kb += static_cast<int64_t>(gridDim.x) * kpb) {
    const int64_t c = kb + threadIdx.x / it.tpk;
    double sdy, sdxm;
    sum_key(it, c, p0, p1, sh, sdy, sdxm);
    if (c < it.keys && threadIdx.x % it.tpk == 0) {
      const double r = static_cast<double>(static_cast<const A*>(p.rstd)[c]);
      const double w = static_cast<double>(wt<A>(p.weight, c, A(1)));
      const double dw = r * sdxm;
      p.dbias[c] = sdy;
      p.dweight[c] = dw;
      cm[c] = static_cast<const A*>(p.mean)[c];
      k1[c] = static_cast<A>(w * r);
      k2[c] = static_cast<A>(p.training ? -w * r * r * dw / count : 0.0);
      k3[c] = static_cast<A>(p.training ? -w * r * sdy / count : 0.0);
    }
  }
}

// GroupNorm backward, one block per group g: per-(n, c) sums (sdy, sdyx), per-(n, c) coefficients,
// then dweight / dbias of the group's channels (sum over n: thread lanes strided over n, fixed tree).
template <class A>
__global__ void __launch_bounds__(kThreads) gn_fin_bwd(GroupBwdArgs p, Items it, int tpc, const double* p0,
                                                       const double* p1, A* cm, A* k1, A* k2, A* k3) {
  __shared__ double sh[2 * kThreads];
  const int64_t N = p.N, C = p.C, G = p.G, cg = C / G;
  const double K = static_cast<double>(cg * p.S);
  const A* mean = static_cast<const A*>(p.mean);
  const A* rstd = static_cast<const A*>(p.rstd);
  for (int64_t g = blockIdx.x; g < G; g += gridDim.x) {
    for (int64_t t = threadIdx.x; t < N * cg; t += kThreads) {
      const int64_t n = t / cg, key = n * C + g * cg + t % cg;
      double a = 0, b = 0;
      for (int64_t i = 0; i < it.I; ++i) {
        const int64_t j = item_at(it, key, i);
        a += p0[j];
        b += p1[j];
      }
      p.sdy[key] = a;
      p.sdyx[key] = static_cast<double>(rstd[n * G + g]) * b;
    }
    __syncthreads();  // sdy / sdyx of the group written
    for (int64_t n = threadIdx.x; n < N; n += kThreads) {
      const int64_t k = n * G + g;
      const double r = static_cast<double>(rstd[k]);
      double swdy = 0, swdyx = 0;
      for (int64_t j = 0; j < cg; ++j) {
        const int64_t c = g * cg + j;
        const double wj = static_cast<double>(wt<A>(p.weight, c, A(1)));
        swdy += wj * p.sdy[n * C + c];
        swdyx += wj * p.sdyx[n * C + c];
      }
      for (int64_t j = 0; j < cg; ++j) {
        const int64_t c = g * cg + j, o = n * C + c;
        cm[o] = mean[k];
        k1[o] = static_cast<A>(r * static_cast<double>(wt<A>(p.weight, c, A(1))));
        k2[o] = static_cast<A>(p.affine_only ? 0.0 : -r * r * swdyx / K);
        k3[o] = static_cast<A>(p.affine_only ? 0.0 : -r * swdy / K);
      }
    }
    const int cpr = kThreads / tpc, lt = threadIdx.x % tpc, t = threadIdx.x;
    for (int64_t j0 = 0; j0 < cg; j0 += cpr) {
      const int64_t j = j0 + threadIdx.x / tpc, c = g * cg + j;
      double a = 0, b = 0;
      if (j < cg)
        for (int64_t n = lt; n < N; n += tpc) {
          a += p.sdy[n * C + c];
          b += p.sdyx[n * C + c];
        }
      __syncthreads();  // sh may still be read
      sh[t] = a;
      sh[kThreads + t] = b;
      __syncthreads();
      for (int h = tpc / 2; h > 0; h /= 2) {
        if (lt < h) {
          sh[t] += sh[t + h];
          sh[kThreads + t] += sh[kThreads + t + h];
        }
        __syncthreads();
      }
      if (lt == 0 && j < cg) {
        p.dbias[c] = sh[t];
        p.dweight[c] = sh[kThreads + t];
      }
    }
    __syncthreads();
  }
}

// ---- pass 3: elementwise ---------------------------------------------------------------------------

// Coefficients of key k: m[k], c1[k], c2[k], c3[k] (forward: a, b, unused). Key = channel c
// (ns = 0) or n * C + c (ns = C).
template <class A> struct Coefs {
  const A* m;
  const A* c1;
  const A* c2;
  const A* c3;
};
struct EvalArgs {
  const void* run_mean;
  const void* run_var;
  const void* weight;
  const void* bias;
  double eps;
  void* save_mean;
  void* save_rstd;
};
struct ApplyGeom {
  int64_t E, C, S, ns, nblk;
  Div dS, dC;
  bool vec;
};

template <class T, bool kBwd, bool kNsc, bool kEval>
__global__ void __launch_bounds__(kThreads, 3)
    apply_kernel(ApplyGeom g, const T* x, const T* dy, T* out, Coefs<Acc<T>> cf, EvalArgs ev) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  using P = Pack<T, V>;
  constexpr int IPT = kIpt<kBwd>;
  constexpr int64_t BE = static_cast<int64_t>(kThreads) * V * IPT;
  extern __shared__ __align__(16) unsigned char smraw[];
  if constexpr (kEval) {  // per-channel coefficients of the running statistics (ns = 0)
    A* sm = reinterpret_cast<A*>(smraw);
    for (int64_t c = threadIdx.x; c < g.C; c += kThreads) {
      const A mean = static_cast<const A*>(ev.run_mean)[c];
      const double rstd = 1.0 / sqrt(static_cast<double>(static_cast<const A*>(ev.run_var)[c]) + ev.eps);
      sm[c] = mean;
      sm[g.C + c] = static_cast<A>(rstd * static_cast<double>(wt<A>(ev.weight, c, A(1))));
      sm[2 * g.C + c] = wt<A>(ev.bias, c, A(0));
      if (blockIdx.x == 0 && ev.save_mean) {
        static_cast<A*>(ev.save_mean)[c] = mean;
        static_cast<A*>(ev.save_rstd)[c] = static_cast<A>(rstd);
      }
    }
    __syncthreads();
    cf.m = sm;
    cf.c1 = sm + g.C;
    cf.c2 = sm + 2 * g.C;
  }
  auto one = [&](T xv, T gv, int64_t k) -> T {
    const A d = to_acc(xv) - cf.m[k];
    if constexpr (kBwd)
      return from_acc<T>(fma_a(cf.c1[k], to_acc(gv), fma_a(cf.c2[k], d, cf.c3[k])));
    else
      return from_acc<T>(fma_a(d, cf.c1[k], cf.c2[k]));
  };
  // Blocks run from the end of the tensor back: the statistics pass before this one read it
  // front to back, so its last part is still in L2 when this pass starts.
  for (int64_t blk = blockIdx.x; blk < g.nblk; blk += gridDim.x) {
    const int64_t e0 = (g.nblk - 1 - blk) * BE;
    // Block bases: ncs: row rb = e0 / S, position sb, channel cb; nsc: row rb = e0 / C, channel
    // cb, sample nb and position sb of row rb.
    int64_t rb, cb, nb = 0, sb = 0;
    if constexpr (kNsc) {
      rb = e0 / g.C;
      cb = e0 % g.C;
      if (g.ns) {
        nb = rb / g.S;
        sb = rb % g.S;
      }
    } else {
      rb = e0 / g.S;
      sb = e0 % g.S;
      cb = rb % g.C;
    }
    // Key of the element at offset l (< BE) from e0.
    auto key = [&](uint32_t l) -> int64_t {
      if constexpr (kNsc) {
        const uint64_t t = static_cast<uint64_t>(cb) + l, q = divq(g.dC, t);
        const int64_t c = static_cast<int64_t>(t - q * static_cast<uint64_t>(g.C));
        if (!g.ns) return c;
        return (nb + static_cast<int64_t>(divq(g.dS, static_cast<uint64_t>(sb) + q))) * g.C + c;
      } else {
        const uint64_t q = divq(g.dS, static_cast<uint64_t>(sb) + l);
        if (g.ns) return rb + static_cast<int64_t>(q);
        const uint64_t t = static_cast<uint64_t>(cb) + q;
        return static_cast<int64_t>(t - divq(g.dC, t) * static_cast<uint64_t>(g.C));
      }
    };
    if (g.vec) {  // E, rows and e0 are multiples of V: whole aligned vectors in one row
      P xv[IPT], gv[IPT];
#pragma unroll
      for (int b = 0; b < IPT; ++b) {
        const int64_t i = e0 + (static_cast<int64_t>(b) * kThreads + threadIdx.x) * V;
        if (i < g.E) {
          xv[b] = *reinterpret_cast<const P*>(x + i);
          if constexpr (kBwd) gv[b] = *reinterpret_cast<const P*>(dy + i);
        }
      }
#pragma unroll
      for (int b = 0; b < IPT; ++b) {
        const uint32_t l = (static_cast<uint32_t>(b) * kThreads + threadIdx.x) * V;
        if (e0 + l < g.E) {
          const int64_t k = key(l);
          P o;
#pragma unroll
          for (int e = 0; e < V; ++e) o.v[e] = one(xv[b].v[e], kBwd ? gv[b].v[e] : T{}, kNsc ? k + e : k);
          *reinterpret_cast<P*>(out + e0 + l) = o;
        }
      }
    } else {
#pragma unroll
      for (int b = 0; b < IPT; ++b)
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const uint32_t l = (static_cast<uint32_t>(b) * kThreads + threadIdx.x) * V + e;
          const int64_t i = e0 + l;
          if (i < g.E) out[i] = one(x[i], kBwd ? dy[i] : T{}, key(l));
        }
    }
  }
}

// r = (1 - momentum) * r + momentum * batch, in the running array's own dtype.
template <class R> __global__ void lerp_kernel(int64_t C, R* run, const double* batch, double momentum) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = (1.0 - momentum) * static_cast<double>(to_acc(run[c])) + momentum * batch[c];
    run[c] = from_acc<R>(static_cast<Acc<R>>(v));
  }
}

// InstanceNorm's batch statistics for the running update: the means over n of the per-instance
// mean and unbiased variance (one thread per channel, n in order; coalesced over c).
__global__ void instance_batch_kernel(int64_t N, int64_t C, int64_t S, const double* mean, const double* m2,
                                      double* bm, double* bv) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double a = 0, b = 0;
    for (int64_t n = 0; n < N; ++n) {
      a += mean[n * C + c] / static_cast<double>(N);
      b += m2[n * C + c] / static_cast<double>(S - 1) / static_cast<double>(N);
    }
    bm[c] = a;
    bv[c] = b;
  }
}

// ---- host side -------------------------------------------------------------------------------------

// Scratch carving: 256-byte aligned pieces of one allocation.
struct Carve {
  int64_t off = 0;
  int64_t take(int64_t bytes) {
    const int64_t o = off;
    off += (bytes + 255) / 256 * 256;
    return o;
  }
};
template <class U> U* at(const Scratch& s, int64_t off) { return reinterpret_cast<U*>(s.as<unsigned char>() + off); }

// ncs with S = 1 is nsc with S = 1; nsc with C = 1 is ncs (same memory order).
Layout effective(Layout layout, int64_t C, int64_t S) {
  if (layout == Layout::ncs && S == 1) return Layout::nsc;
  if (layout == Layout::nsc && C == 1) return Layout::ncs;
  return layout;
}

int nsc_width(int64_t C, int V) { return C % V == 0 ? V : 1; }

// Launches the nsc statistics kernel for width W.
template <class T, bool kGrad>
const char* launch_nsc_stats(const NscGeom& g, int W, const void* x, const void* dy, const Acc<T>* m, double* p0,
                             double* p1, double* p2, cudaStream_t s) {
  const int64_t nblk = g.segs * g.K * g.cblocks;
  if (nblk == 0) return nullptr;
  const bool vec = W > 1 && aligned16<T>(x) && (!kGrad || aligned16<T>(dy));
  const T* xt = static_cast<const T*>(x);
  const T* dyt = static_cast<const T*>(dy);
  const int grid = grid_of(nblk);
  if (W == 1)
    nsc_stats<T, kGrad, 1, false><<<grid, kThreads, 0, s>>>(g, xt, dyt, m, p0, p1, p2);
  else if (vec)
    nsc_stats<T, kGrad, kVec16<T>, true><<<grid, kThreads, 0, s>>>(g, xt, dyt, m, p0, p1, p2);
  else
    nsc_stats<T, kGrad, kVec16<T>, false><<<grid, kThreads, 0, s>>>(g, xt, dyt, m, p0, p1, p2);
  return launch_error();
}

template <class T, bool kGrad>
const char* launch_ncs_stats(const NcsGeom& g, const void* x, const void* dy, const Acc<T>* m, double* p0,
                             double* p1, double* p2, cudaStream_t s) {
  const int64_t units = g.keys * g.U;
  if (units == 0 || g.RL == 0) return nullptr;
  const bool vec = g.RL % kVec16<T> == 0 && aligned16<T>(x) && (!kGrad || aligned16<T>(dy));
  const int grid = grid_of(cdiv(units, kWarps));
  const T* xt = static_cast<const T*>(x);
  const T* dyt = static_cast<const T*>(dy);
  if (vec)
    ncs_stats<T, kGrad, true><<<grid, kThreads, 0, s>>>(g, xt, dyt, m, p0, p1, p2);
  else
    ncs_stats<T, kGrad, false><<<grid, kThreads, 0, s>>>(g, xt, dyt, m, p0, p1, p2);
  return launch_error();
}

template <class T, bool kBwd, bool kEval>
const char* launch_apply(Layout layout, int64_t N, int64_t C, int64_t S, int64_t ns, const void* x, const void* dy,
                         void* out, Coefs<Acc<T>> cf, const EvalArgs& ev, cudaStream_t s) {
  constexpr int V = kVec16<T>;
  const int64_t E = N * C * S;
  if (E == 0) return nullptr;
  const int64_t BE = static_cast<int64_t>(kThreads) * V * kIpt<kBwd>;
  ApplyGeom g{E, C, S, ns, cdiv(E, BE), make_div(S), make_div(C), false};
  const int64_t row = layout == Layout::ncs ? S : C;
  g.vec = row % V == 0 && aligned16<T>(x) && aligned16<T>(out) && (!kBwd || aligned16<T>(dy));
  int64_t grid = g.nblk;
  size_t smem = 0;
  if (kEval) {  // each block computes C coefficients: give it at least 16 * C elements
    grid = min64(g.nblk, max64(264, cdiv(E, 16 * C)));
    smem = static_cast<size_t>(3 * C) * sizeof(Acc<T>);
  }
  const T* xt = static_cast<const T*>(x);
  const T* dyt = static_cast<const T*>(dy);
  T* o = static_cast<T*>(out);
  if (layout == Layout::nsc)
    apply_kernel<T, kBwd, true, kEval><<<grid_of(grid), kThreads, smem, s>>>(g, xt, dyt, o, cf, ev);
  else
    apply_kernel<T, kBwd, false, kEval><<<grid_of(grid), kThreads, smem, s>>>(g, xt, dyt, o, cf, ev);
  return launch_error();
}

// BatchNorm's statistics passes (forward and backward): the unit geometry of the layout and the
// per-channel partial count it.I (0 when there are no values: the Python layer never calls
// training with none).
struct BnStatsPlan {
  NcsGeom gc{};
  NscGeom gn{};
  Items it{};
  int W = 1;
};
template <class T> BnStatsPlan bn_stats_plan(Layout layout, int64_t N, int64_t C, int64_t S) {
  BnStatsPlan p;
  if (layout == Layout::ncs) {
    p.gc = ncs_geom(C, S, N, C * S, S, 1, sizeof(T));
    p.it = ncs_items(p.gc);
  } else {
    p.W = nsc_width(C, kVec16<T>);
    p.gn = nsc_geom(C, N * S, 1, p.W, 0, 1);
    // Channel-major partials: channel c's K chunks at c * K + k (contiguous: the finalize's
    // loads of items i, i + 1, ... by adjacent threads coalesce). Same items, same order.
    p.gn.pk = 1;
    p.gn.pc = p.gn.segs * p.gn.K;
    p.it = items(C, p.gn.K, 1, p.gn.K, 0, p.gn.K, 0);
  }
  if (N * S == 0) p.it.I = 0;
  return p;
}

template <class T> const char* bn_fwd(const BatchNormFwdArgs& p, cudaStream_t s) {
  using A = Acc<T>;
  const int64_t N = p.N, C = p.C, S = p.S;
  const Layout layout = effective(p.layout, C, S);
  const EvalArgs ev{p.run_mean, p.run_var, p.weight, p.bias, p.eps, p.save_mean, p.save_rstd};
  if (!p.training) {
    if (C <= kEvalStage && N * S > 0)
      return launch_apply<T, false, true>(layout, N, C, S, 0, p.x, nullptr, p.y, Coefs<A>{}, ev, s);
    Carve cv;
    const int64_t om = cv.take(C * sizeof(A)), oa = cv.take(C * sizeof(A)), ob = cv.take(C * sizeof(A));
    Scratch scratch(N * S > 0 ? cv.off : 0, s);
    if (scratch.error()) return scratch.error();
    A* cm = N * S > 0 ? at<A>(scratch, om) : nullptr;
    bn_eval_coefs<A><<<grid_of(cdiv(C, kThreads)), kThreads, 0, s>>>(p, cm, cm ? at<A>(scratch, oa) : nullptr,
                                                                     cm ? at<A>(scratch, ob) : nullptr);
    if (const char* e = launch_error()) return e;
    if (!cm) return nullptr;
    return launch_apply<T, false, false>(layout, N, C, S, 0, p.x, nullptr, p.y,
                                         Coefs<A>{cm, at<A>(scratch, oa), at<A>(scratch, ob), nullptr}, ev, s);
  }
  // Training: statistics partials, finalize, apply.
  const auto [gc, gn, it, W] = bn_stats_plan<T>(layout, N, C, S);
  const int64_t P = it.I * C;
  Carve cv;
  const int64_t o0 = cv.take(P * 8), o1 = cv.take(P * 8), o2 = cv.take(P * 8);
  const int64_t om = cv.take(C * sizeof(A)), oa = cv.take(C * sizeof(A)), ob = cv.take(C * sizeof(A));
  Scratch scratch(cv.off, s);
  if (scratch.error()) return scratch.error();
  double *p0 = at<double>(scratch, o0), *p1 = at<double>(scratch, o1), *p2 = at<double>(scratch, o2);
  A *cm = at<A>(scratch, om), *ca = at<A>(scratch, oa), *cb = at<A>(scratch, ob);
  const char* e = layout == Layout::ncs ? launch_ncs_stats<T, false>(gc, p.x, nullptr, nullptr, p0, p1, p2, s)
                                        : launch_nsc_stats<T, false>(gn, W, p.x, nullptr, nullptr, p0, p1, p2, s);
  if (e) return e;
  bn_fin_fwd<A><<<grid_of(cdiv(C * it.tpk, kThreads)), kThreads, 0, s>>>(p, it, p0, p1, p2, cm, ca, cb);
  if ((e = launch_error())) return e;
  return launch_apply<T, false, false>(layout, N, C, S, 0, p.x, nullptr, p.y, Coefs<A>{cm, ca, cb, nullptr}, ev, s);
}

template <class T> const char* bn_bwd(const BatchNormBwdArgs& p, cudaStream_t s) {
  using A = Acc<T>;
  const int64_t N = p.N, C = p.C, S = p.S;
  const Layout layout = effective(p.layout, C, S);
  const auto [gc, gn, it, W] = bn_stats_plan<T>(layout, N, C, S);
  const int64_t P = it.I * C;
  Carve cv;
  const int64_t o0 = cv.take(P * 8), o1 = cv.take(P * 8);
  const int64_t om = cv.take(C * sizeof(A)), o1k = cv.take(C * sizeof(A)), o2k = cv.take(C * sizeof(A)),
                o3k = cv.take(C * sizeof(A));
  Scratch scratch(cv.off, s);
  if (scratch.error()) return scratch.error();
  double *p0 = at<double>(scratch, o0), *p1 = at<double>(scratch, o1);
  A *cm = at<A>(scratch, om), *k1 = at<A>(scratch, o1k), *k2 = at<A>(scratch, o2k), *k3 = at<A>(scratch, o3k);
  const A* mean = static_cast<const A*>(p.mean);
  const char* e = nullptr;
  if (N * S > 0)
    e = layout == Layout::ncs ? launch_ncs_stats<T, true>(gc, p.x, p.dy, mean, p0, p1, nullptr, s)
                              : launch_nsc_stats<T, true>(gn, W, p.x, p.dy, mean, p0, p1, nullptr, s);
  if (e) return e;
  bn_fin_bwd<A><<<grid_of(cdiv(C * it.tpk, kThreads)), kThreads, 0, s>>>(p, it, p0, p1, cm, k1, k2, k3);
  if ((e = launch_error())) return e;
  return launch_apply<T, true, false>(layout, N, C, S, 0, p.x, p.dy, p.dx, Coefs<A>{cm, k1, k2, k3}, EvalArgs{}, s);
}

template <class T> const char* gn_fwd(const GroupFwdArgs& p, Layout layout0, cudaStream_t s) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  const int64_t N = p.N, C = p.C, S = p.S, G = p.G, cg = C / G, NC = N * C;
  const Layout layout = effective(layout0, C, S);
  NcsGeom gc{};
  NscGeom gn{};
  Items it{};
  int W = 1;
  if (layout == Layout::ncs) {  // key (n, g): its cg * S values as one row
    gc = ncs_geom(N * G, cg * S, 1, 0, cg * S, 1, sizeof(T));
    it = ncs_items(gc);
  } else {  // segments: samples; items of (n, g): chunk-major over its channels
    W = nsc_width(C, V);
    gn = nsc_geom(C, S, N, W, 0, 1);
    it = items(N * G, gn.K * cg, G, gn.K * C, cg, cg, C);
  }
  if (S == 0) it.I = 0;
  const int64_t P = layout == Layout::ncs ? gc.keys * gc.U : N * gn.K * C;
  Carve cv;
  const int64_t o0 = cv.take(P * 8), o1 = cv.take(P * 8), o2 = cv.take(P * 8);
  const int64_t om = cv.take(NC * sizeof(A)), oa = cv.take(NC * sizeof(A)), ob = cv.take(NC * sizeof(A));
  Scratch scratch(cv.off, s);
  if (scratch.error()) return scratch.error();
  double *p0 = at<double>(scratch, o0), *p1 = at<double>(scratch, o1), *p2 = at<double>(scratch, o2);
  A *cm = at<A>(scratch, om), *ca = at<A>(scratch, oa), *cb = at<A>(scratch, ob);
  const char* e = nullptr;
  if (S > 0)
    e = layout == Layout::ncs ? launch_ncs_stats<T, false>(gc, p.x, nullptr, nullptr, p0, p1, p2, s)
                              : launch_nsc_stats<T, false>(gn, W, p.x, nullptr, nullptr, p0, p1, p2, s);
  if (e) return e;
  gn_fin_fwd<A><<<grid_of(cdiv(N * G * it.tpk, kThreads)), kThreads, 0, s>>>(p, it, p0, p1, p2, cm, ca, cb);
  if ((e = launch_error())) return e;
  return launch_apply<T, false, false>(layout, N, C, S, C, p.x, nullptr, p.y, Coefs<A>{cm, ca, cb, nullptr},
                                       EvalArgs{}, s);
}

template <class T> const char* gn_bwd(const GroupBwdArgs& p, Layout layout0, cudaStream_t s) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  const int64_t N = p.N, C = p.C, S = p.S, G = p.G, cg = C / G, NC = N * C;
  const Layout layout = effective(layout0, C, S);
  NcsGeom gc{};
  NscGeom gn{};
  Items it{};
  int W = 1;
  if (layout == Layout::ncs) {  // key (n, c): row n * C + c
    gc = ncs_geom(NC, S, 1, 0, S, cg, sizeof(T));
    it = ncs_items(gc);
  } else {
    W = nsc_width(C, V);
    gn = nsc_geom(C, S, N, W, G, cg);
    it = items(NC, gn.K, C, gn.K * C, 1, 1, C);
  }
  if (S == 0) it.I = 0;
  const int64_t P = it.I * NC;
  Carve cv;
  const int64_t o0 = cv.take(P * 8), o1 = cv.take(P * 8);
  const int64_t om = cv.take(NC * sizeof(A)), o1k = cv.take(NC * sizeof(A)), o2k = cv.take(NC * sizeof(A)),
                o3k = cv.take(NC * sizeof(A));
  Scratch scratch(cv.off, s);
  if (scratch.error()) return scratch.error();
  double *p0 = at<double>(scratch, o0), *p1 = at<double>(scratch, o1);
  A *cm = at<A>(scratch, om), *k1 = at<A>(scratch, o1k), *k2 = at<A>(scratch, o2k), *k3 = at<A>(scratch, o3k);
  const A* mean = static_cast<const A*>(p.mean);
  const char* e = nullptr;
  if (S > 0)
    e = layout == Layout::ncs ? launch_ncs_stats<T, true>(gc, p.x, p.dy, mean, p0, p1, nullptr, s)
                              : launch_nsc_stats<T, true>(gn, W, p.x, p.dy, mean, p0, p1, nullptr, s);
  if (e) return e;
  int tpc = 1;  // threads per channel for dweight / dbias: a power of two, tpc * min(cg, ...) <= kThreads
  while (tpc * 2 * cg <= kThreads) tpc *= 2;
  gn_fin_bwd<A><<<grid_of(G), kThreads, 0, s>>>(p, it, tpc, p0, p1, cm, k1, k2, k3);
  if ((e = launch_error())) return e;
  return launch_apply<T, true, false>(layout, N, C, S, C, p.x, p.dy, p.dx, Coefs<A>{cm, k1, k2, k3}, EvalArgs{}, s);
}

}  // namespace

const char* batch_norm_fwd(const BatchNormFwdArgs& a, int dev, void* stream) {
  if (a.C <= 0) return nullptr;
  return on_device(dev, a.dtype, [&]<class T>() { return bn_fwd<T>(a, static_cast<cudaStream_t>(stream)); });
}

const char* batch_norm_bwd(const BatchNormBwdArgs& a, int dev, void* stream) {
  if (a.C <= 0) return nullptr;
  return on_device(dev, a.dtype, [&]<class T>() { return bn_bwd<T>(a, static_cast<cudaStream_t>(stream)); });
}

const char* group_norm_fwd(const GroupFwdArgs& a, Layout layout, int dev, void* stream) {
  if (a.N * a.C <= 0) return nullptr;
  return on_device(dev, a.dtype, [&]<class T>() { return gn_fwd<T>(a, layout, static_cast<cudaStream_t>(stream)); });
}

const char* group_norm_bwd(const GroupBwdArgs& a, Layout layout, int dev, void* stream) {
  if (a.N * a.C <= 0) return nullptr;
  return on_device(dev, a.dtype, [&]<class T>() { return gn_bwd<T>(a, layout, static_cast<cudaStream_t>(stream)); });
}

const char* running_update(DType run_dtype, int64_t C, void* run, const double* batch, double momentum, int dev,
                           void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (C <= 0) return nullptr;
  return by_dtype(run_dtype, [&]<class R>() {
    lerp_kernel<R><<<grid_of(cdiv(C, kThreads)), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        C, static_cast<R*>(run), batch, momentum);
    return launch_error();
  });
}

const char* instance_batch_stats(int64_t N, int64_t C, int64_t S, const double* mean, const double* m2, double* bm,
                                 double* bv, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (C <= 0) return nullptr;
  instance_batch_kernel<<<grid_of(cdiv(C, kThreads)), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      N, C, S, mean, m2, bm, bv);
  return launch_error();
}

}  // namespace nk::cuda
