// CUDA LayerNorm / RMSNorm backward (layout and plan: norm_common.cuh).
//
// dx: per row, the two sums of g = dy * w and g * x-hat (one barrier for both), then
// dx = rstd * (g - mean(g) - x-hat * mean(g * x-hat)).
// Cached rows (norm_common.cuh's plan with its own budget, kBwdElems / kBwdMaxTpr): a row group
// walks the rows of its slot one by one; the weights of its columns sit in shared memory, and for
// 2-byte types the slot's next row is loaded before the current one's barrier (kBwdPrefetch).
// dweight / dbias: the rows are cut into slots of `spr` rows (the split depends only on (M, N,
// dtype)); each row slot keeps per-column sums of dy * x-hat and dy in registers (cached) or in its
// own partial row in global memory (looped) and writes them as one partial row; col_reduce adds
// the partial rows in a fixed order and writes the parameter gradients in their storage type.
// 2-byte types run bwd_staged instead of bwd_cached (rows staged through shared memory by
// cp.async when aligned; see there). Bitwise reproducible, no atomics. About 512-1024 partial rows whatever M, so the partials stay a
// few percent of the traffic while every SM gets several row slots.
#include "norm_common.cuh"

namespace nk::cuda {
namespace {
using namespace rownorm;

// Sums of u and v over the tpr threads of a row group, every thread getting them (one barrier).
// tpr <= 32: shuffle butterflies; tpr > 32: warp butterflies, the warp sums through buf (2 x 32
// slots, one per warp of the block, used by this call only), one barrier, then a butterfly over
// the group's tpr / 32 warp sums in every warp (a fixed order: the same bits on every run and in
// every lane). Must be reached by every thread of the block.
template <class A> __device__ __forceinline__ void row_total2(A& u, A& v, int tpr, A* buf) {
  u = group_sum(u, tpr < 32 ? tpr : 32);
  v = group_sum(v, tpr < 32 ? tpr : 32);
  if (tpr <= 32) return;
  const int warps = tpr / 32, lane = threadIdx.x % 32, first = static_cast<int>(threadIdx.y) * warps;
  if (lane == 0) {
    buf[first + threadIdx.x / 32] = u;
    buf[32 + first + threadIdx.x / 32] = v;
  }
  __syncthreads();
  // Every group of `warps` lanes holds the row group's warp sums and adds them the same way.
  u = buf[first + (lane & (warps - 1))];
  v = buf[32 + first + (lane & (warps - 1))];
  u = group_sum(u, warps);
  v = group_sum(v, warps);
}

// Whether the cached backward loads the next row of its slot while it works on the current one
// (2-byte types: their packs are half the registers, and one row in flight per thread is too
// little to keep the memory busy).
template <class T> constexpr bool kBwdPrefetch = sizeof(T) == 2;

// Rows of slot y of chunk c: c * rpc + st * rpb + y for st < spr (rpc = rpb * spr). The slot's
// column sums go to partial row c * rpb + y of pw / pb ([P, N], A; pb unused for RMS).
// The weights of the thread's columns are staged once in shared memory (dynamic, ITEMS * tpr * V
// values of A; ones without a weight) and read back for every row instead of being held in
// registers: 16-byte chunk h of pack `it` of thread t lives at chunk (it * H + h) * tpr + t, so a
// warp's 16-byte reads are conflict-free. MAXT: the launch bound (the register budget).
template <class T, class W, bool RMS, bool AL, int ITEMS, int MAXT>
__global__ void __launch_bounds__(MAXT)
    bwd_cached(const RowNormBwdArgs a, const int64_t spr, Acc<T>* pw, Acc<T>* pb) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  constexpr int H = V * static_cast<int>(sizeof(A)) / 16;  // 16-byte chunks of a pack's weights
  constexpr bool PF = kBwdPrefetch<T>;
  using Chunk = Pack<A, 16 / sizeof(A)>;
  constexpr int CV = 16 / static_cast<int>(sizeof(A));
  __shared__ A buf[2][64];
  extern __shared__ __align__(16) unsigned char bwd_smem[];
  Chunk* ws = reinterpret_cast<Chunk*>(bwd_smem);
  const int tpr = blockDim.x, tid = threadIdx.x, rpb = blockDim.y;
  const int64_t N = a.N, c = blockIdx.x, rpc = static_cast<int64_t>(rpb) * spr;
  if (threadIdx.y == 0) {
    const W* wp = static_cast<const W*>(a.weight);
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      A w[V];
      if (wp && j < N) {
        load_params<W, V, AL>(wp, j, N, w);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) w[k] = 1;
      }
#pragma unroll
      for (int h = 0; h < H; ++h) {
        Chunk ch;
#pragma unroll
        for (int k = 0; k < CV; ++k) ch.v[k] = w[h * CV + k];
        ws[(it * H + h) * tpr + tid] = ch;
      }
    }
  }
  __syncthreads();
  // The weights of pack `it` of this thread, from shared memory.
  const auto weights = [&](int it, A (&w)[V]) {
#pragma unroll
    for (int h = 0; h < H; ++h) {
      const Chunk ch = ws[(it * H + h) * tpr + tid];
#pragma unroll
      for (int k = 0; k < CV; ++k) w[h * CV + k] = ch.v[k];
    }
  };
  // Row of step st of the slot: r0 + st * rpb; the steps st < nst are rows of the matrix.
  const int64_t r0 = c * rpc + threadIdx.y;
  const int nst = static_cast<int>(r0 < a.M ? min64(spr, (a.M - r0 + rpb - 1) / rpb) : 0);
  const int nsteps = static_cast<int>(spr);  // < 2^31 (bwd checks)
  // x, dy, mean and rstd of row r, or zeros (not `valid`). Addresses from the kernel's parameters
  // (constant bank) and r: no row pointers held in registers.
  const auto load_row = [&](int64_t r, bool valid, PackOf<T> (&px)[ITEMS], PackOf<T> (&pd)[ITEMS], A& mean,
                            A& rstd) {
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      if (valid && j < N) {
        px[it] = load_pack<T, AL>(static_cast<const T*>(a.x) + r * a.ldx, j, N);
        pd[it] = load_pack<T, AL>(static_cast<const T*>(a.dy) + r * a.lddy, j, N);
      } else {
        px[it] = pd[it] = PackOf<T>{};
      }
    }
    mean = valid && !RMS ? static_cast<const A*>(a.mean)[r] : A(0);
    rstd = valid ? static_cast<const A*>(a.rstd)[r] : A(0);
  };
  A dw[ITEMS][V], db[RMS ? 1 : ITEMS][V];
#pragma unroll
  for (int it = 0; it < ITEMS; ++it)
#pragma unroll
    for (int k = 0; k < V; ++k) {
      dw[it][k] = 0;
      if constexpr (!RMS) db[it][k] = 0;
    }
  const A inv_n = A(1) / static_cast<A>(N);
  PackOf<T> px[ITEMS], pd[ITEMS];
  A mean, rstd;
  if constexpr (PF) load_row(r0, nst > 0, px, pd, mean, rstd);
  for (int st = 0; st < nsteps; ++st) {  // the same count for every slot: barriers stay converged
    const int64_t r = r0 + static_cast<int64_t>(st) * rpb;
    const bool valid = st < nst;
    if constexpr (!PF) load_row(r, valid, px, pd, mean, rstd);
    A sg = 0, sgx = 0;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      A w[V];
      weights(it, w);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = to_acc(pd[it].v[k]);  // 0 past the row's end and for invalid rows
        const A xh = valid && j < N && in_row<AL>(j, k, N) ? (to_acc(px[it].v[k]) - mean) * rstd : A(0);
        const A g = d * w[k];
        sg += g;
        sgx += g * xh;
        dw[it][k] += d * xh;
        if constexpr (!RMS) db[it][k] += d;
      }
    }
    // The slot's next row goes in flight before the barrier (PF).
    PackOf<T> nx[ITEMS], nd[ITEMS];
    A nmean, nrstd;
    if constexpr (PF) load_row(r + rpb, st + 1 < nst, nx, nd, nmean, nrstd);
    row_total2(sg, sgx, tpr, buf[st & 1]);  // alternating buffers: one barrier per row
    const A mg = RMS ? A(0) : sg * inv_n, mgx = sgx * inv_n;
    if (valid) {
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
        if (j < N) {
          A w[V];
          weights(it, w);
          PackOf<T> o;
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const A d = to_acc(pd[it].v[k]), xh = (to_acc(px[it].v[k]) - mean) * rstd, g = d * w[k];
            o.v[k] = from_acc<T>(rstd * (g - mg - xh * mgx));
          }
          store_pack<T, AL>(static_cast<T*>(a.dx) + r * N, j, N, o);
        }
      }
    }
    if constexpr (PF) {
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        px[it] = nx[it];
        pd[it] = nd[it];
      }
      mean = nmean;
      rstd = nrstd;
    }
  }
  const int64_t prow = (c * rpb + threadIdx.y) * N;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
    if (j < N) {
      store_params<A, V, AL>(pw + prow, j, N, dw[it]);
      if constexpr (!RMS) store_params<A, V, AL>(pb + prow, j, N, db[it]);
    }
  }
}

// ---- 2-byte types (f16, bf16): the staged cached backward -------------------------------------
//
// One pack (ITEMS packs) of x and dy per thread and row, as bwd_cached, but:
//  - aligned rows (AL) are staged through shared memory by cp.async, kStages rows deep, so that
//    kStages - 1 rows of every row group are in flight while one is worked on (registers hold
//    none of them); each thread reads back only what it copied itself, so no barrier guards the
//    stages. Unaligned rows (!AL) are loaded into registers one row ahead, as before.
//  - the weights of the thread's columns sit in registers; x-hat and g = dy * w of pass 1 are
//    kept for pass 2 (no recomputation), and the accumulations use explicit fma (deterministic,
//    and the same expressions in both variants, so aligned and unaligned rows give the same bits).
//  - the two row sums share their shuffles (pair_sum); RMSNorm has only one row sum.
// mean / rstd of the next row are loaded one row ahead into registers.
constexpr int kStages = 3;

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int K> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(K) : "memory");
}

// Sums of u and v over aligned groups of w lanes (w a power of two <= 32), every lane of a group
// getting both: the lanes of the group's lower half add u, those of the upper half v (one shuffle
// per step for both), then the halves swap. Fixed order, the same bits in every lane and run.
__device__ __forceinline__ void pair_sum(float& u, float& v, int w) {
  if (w == 1) return;
  const int h = w / 2;
  const bool hi = (threadIdx.x & h) != 0;
  float keep = hi ? v : u;
  keep += __shfl_xor_sync(0xffffffffu, hi ? u : v, h);
  for (int o = h / 2; o > 0; o /= 2) keep += __shfl_xor_sync(0xffffffffu, keep, o);
  const float other = __shfl_xor_sync(0xffffffffu, keep, h);
  u = hi ? other : keep;
  v = hi ? keep : other;
}

// Row sums of the tpr threads of a row group, every thread getting them. TWO: u and v (else v
// only). tpr > 32: warp sums through buf (2 x 32 slots, used by this call only), one barrier,
// then a fixed butterfly over the group's warp sums. Must be reached by every thread of the block.
template <bool TWO> __device__ __forceinline__ void row_sums(float& u, float& v, int tpr, float* buf) {
  const int lane = threadIdx.x % 32;
  if (tpr <= 32) {
    if constexpr (TWO) pair_sum(u, v, tpr);
    else v = group_sum(v, tpr);
    return;
  }
  const int warps = tpr / 32, first = static_cast<int>(threadIdx.y) * warps, wid = threadIdx.x / 32;
  if constexpr (TWO) {
    // Lanes 0-15 end with the warp's u sum, lanes 16-31 with its v sum.
    const bool hi = lane >= 16;
    float keep = hi ? v : u;
    keep += __shfl_xor_sync(0xffffffffu, hi ? u : v, 16);
#pragma unroll
    for (int o = 8; o > 0; o /= 2) keep += __shfl_xor_sync(0xffffffffu, keep, o);
    if ((lane & 15) == 0) buf[(hi ? 32 : 0) + first + wid] = keep;
    __syncthreads();
    if (warps == 32) {
      u = buf[first + lane];
      v = buf[32 + first + lane];
      pair_sum(u, v, 32);
    } else {  // warps <= 16: each half of the warp adds one of the two
      keep = buf[(hi ? 32 : 0) + first + (lane & (warps - 1))];
      for (int o = warps / 2; o > 0; o /= 2) keep += __shfl_xor_sync(0xffffffffu, keep, o);
      const float other = __shfl_xor_sync(0xffffffffu, keep, 16);
      u = hi ? other : keep;
      v = hi ? keep : other;
    }
  } else {
    v = group_sum(v, 32);
    if (lane == 0) buf[first + wid] = v;
    __syncthreads();
    v = group_sum(buf[first + (lane & (warps - 1))], warps);
  }
}

// Rows of slot y of chunk c and partial rows: as bwd_cached. Dynamic shared memory (AL only):
// kStages x ITEMS x 2 (x, dy) packs per thread, pack q of thread l of stage s at
// ((s * ITEMS + it) * 2 + q) * nthr + l (16-byte accesses, conflict-free).
template <class T, class W, bool RMS, bool AL, int ITEMS>
__global__ void __launch_bounds__(1024)
    bwd_staged(const RowNormBwdArgs a, const int64_t spr, float* pw, float* pb) {
  static_assert(sizeof(T) == 2);
  using A = float;
  using P = PackOf<T>;
  constexpr int V = kVec16<T>;
  __shared__ A buf[2][64];
  extern __shared__ __align__(16) unsigned char bwd_smem[];
  P* stage = reinterpret_cast<P*>(bwd_smem);
  const int tpr = blockDim.x, tid = threadIdx.x, rpb = blockDim.y;
  const int nthr = tpr * rpb, lin = static_cast<int>(threadIdx.y) * tpr + tid;
  const int64_t N = a.N, c = blockIdx.x;
  const int64_t r0 = c * rpb * spr + threadIdx.y;
  const int nst = static_cast<int>(r0 < a.M ? min64(spr, (a.M - r0 + rpb - 1) / rpb) : 0);
  const int nsteps = static_cast<int>(spr);  // < 2^31 (bwd checks)
  // Column of pack `it` of this thread (< 8192 * ITEMS: int), and whether it is inside the row.
  // lim: the elements of the pack inside the row (N < 2^31 here).
  int jj[ITEMS], lim[ITEMS];
  bool has[ITEMS];
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    jj[it] = (it * tpr + tid) * V;
    lim[it] = static_cast<int>(N) - jj[it];
    has[it] = lim[it] > 0;
  }
  const W* wp = static_cast<const W*>(a.weight);
  const T* xb = static_cast<const T*>(a.x);
  const T* dyb = static_cast<const T*>(a.dy);
  const int64_t xstep = rpb * a.ldx, dystep = rpb * a.lddy;
  // Step s of the slot: row r0 + s * rpb.
  const auto xrow = [&](int s) { return xb + r0 * a.ldx + s * xstep; };
  const auto dyrow = [&](int s) { return dyb + r0 * a.lddy + s * dystep; };
  const auto issue = [&](int s) {  // AL: copies of step s into its stage (nothing past nst)
    if (s < nst) {
      const T* xr = xrow(s);
      const T* dr = dyrow(s);
      P* st = stage + static_cast<int64_t>(s % kStages) * ITEMS * 2 * nthr + lin;
#pragma unroll
      for (int it = 0; it < ITEMS; ++it)
        if (has[it]) {
          cp_async16(st + (it * 2 + 0) * nthr, xr + jj[it]);
          cp_async16(st + (it * 2 + 1) * nthr, dr + jj[it]);
        }
    }
    cp_async_commit();
  };
  const auto load_stats = [&](int s, A& mean, A& rstd) {
    const bool ok = s < nst;
    const int64_t r = r0 + static_cast<int64_t>(s) * rpb;
    mean = ok && !RMS ? static_cast<const A*>(a.mean)[r] : A(0);
    rstd = ok ? static_cast<const A*>(a.rstd)[r] : A(0);
  };
  P nx[AL ? 1 : ITEMS], nd[AL ? 1 : ITEMS];  // !AL: the next row's packs
  const auto load_regs = [&](int s) {
    if constexpr (!AL) {
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        if (s < nst && has[it]) {
          const T* xr = xrow(s) + jj[it];
          const T* dr = dyrow(s) + jj[it];
#pragma unroll
          for (int k = 0; k < V; ++k) {
            nx[it].v[k] = k < lim[it] ? xr[k] : T{};
            nd[it].v[k] = k < lim[it] ? dr[k] : T{};
          }
        } else {
          nx[it] = nd[it] = P{};
        }
      }
    }
  };
  A dw[ITEMS][V], db[RMS ? 1 : ITEMS][V];
#pragma unroll
  for (int it = 0; it < ITEMS; ++it)
#pragma unroll
    for (int k = 0; k < V; ++k) {
      dw[it][k] = 0;
      if constexpr (!RMS) db[it][k] = 0;
    }
  const A inv_n = A(1) / static_cast<A>(N);
  A mean, rstd, nmean, nrstd;
  load_stats(0, nmean, nrstd);
  if constexpr (AL) {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) issue(s);
  } else {
    load_regs(0);
  }
  for (int st = 0; st < nsteps; ++st) {  // the same count for every slot: barriers stay converged
    const bool valid = st < nst;
    mean = nmean;
    rstd = nrstd;
    P px[ITEMS], pd[ITEMS];
    if constexpr (AL) {
      issue(st + kStages - 1);
      load_stats(st + 1, nmean, nrstd);
      cp_async_wait<kStages - 1>();  // step st's copies (this thread's) have landed
      const P* sp = stage + static_cast<int64_t>(st % kStages) * ITEMS * 2 * nthr + lin;
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        px[it] = sp[(it * 2 + 0) * nthr];
        pd[it] = sp[(it * 2 + 1) * nthr];
      }
    } else {
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        px[it] = nx[it];
        pd[it] = nd[it];
      }
      load_regs(st + 1);
      load_stats(st + 1, nmean, nrstd);
    }
    // The weights of the thread's columns, read again for every row (L1 hits; fewer registers
    // across the barrier than holding them).
    A w[ITEMS][V];
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      if (wp && has[it]) {
        load_params<W, V, AL>(wp, jj[it], N, w[it]);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) w[it][k] = 1;
      }
    }
    // Pass 1: x-hat, g, the row sums and the column sums. Elements past N (!AL only): d = 0
    // and x-hat = 0, which add nothing; packs past N are skipped (in both variants alike).
    A sg = 0, sgx = 0;
    A g[ITEMS][V], xh[ITEMS][V];
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = to_acc(pd[it].v[k]), xv = to_acc(px[it].v[k]);
        A h = RMS ? xv * rstd : (xv - mean) * rstd;
        if constexpr (!AL) h = k < lim[it] ? h : A(0);
        xh[it][k] = h;
        g[it][k] = d * w[it][k];
      }
      if (valid && has[it]) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const A d = to_acc(pd[it].v[k]);
          if constexpr (!RMS) sg += g[it][k];
          sgx = __fmaf_rn(g[it][k], xh[it][k], sgx);
          dw[it][k] = __fmaf_rn(d, xh[it][k], dw[it][k]);
          if constexpr (!RMS) db[it][k] += d;
        }
      }
    }
    row_sums<!RMS>(sg, sgx, tpr, buf[st & 1]);  // alternating buffers: one barrier per row
    // dx = rstd * (g - mean(g) - x-hat * mean(g * x-hat)) = fma(cx, x-hat, fma(rstd, g, c0)).
    const A c0 = RMS ? A(0) : -(rstd * (sg * inv_n)), cx = -(rstd * (sgx * inv_n));
    if (valid) {
      T* dxr = static_cast<T*>(a.dx) + (r0 + static_cast<int64_t>(st) * rpb) * N;
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        if (has[it]) {
          P o;
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const A base = RMS ? rstd * g[it][k] : __fmaf_rn(rstd, g[it][k], c0);
            // LayerNorm: x-hat again from x (the same expression as in pass 1; fewer registers
            // across the barrier than keeping it).
            const A h = RMS ? xh[it][k] : (to_acc(px[it].v[k]) - mean) * rstd;
            o.v[k] = from_acc<T>(__fmaf_rn(cx, h, base));
          }
          if constexpr (AL) {
            *reinterpret_cast<P*>(dxr + jj[it]) = o;
          } else {
#pragma unroll
            for (int k = 0; k < V; ++k)
              if (k < lim[it]) dxr[jj[it] + k] = o.v[k];
          }
        }
      }
    }
  }
  if constexpr (AL) cp_async_wait<0>();
  const int64_t prow = (c * rpb + threadIdx.y) * N;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    if (has[it]) {
      store_params<A, V, AL>(pw + prow, jj[it], N, dw[it]);
      if constexpr (!RMS) store_params<A, V, AL>(pb + prow, jj[it], N, db[it]);
    }
  }
}

// Long rows (rpb = 1): two passes per row; the column sums live in the chunk's partial row,
// which only this block touches (each column always by the same thread).
template <class T, class W, bool RMS, bool AL>
__global__ void __launch_bounds__(kLoopThreads)
    bwd_looped(const RowNormBwdArgs a, const int64_t spr, Acc<T>* pw, Acc<T>* pb) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  __shared__ A buf[2][64];
  const int tid = threadIdx.x;
  const int64_t N = a.N, c = blockIdx.x, step = static_cast<int64_t>(blockDim.x) * V;
  const W* wp = static_cast<const W*>(a.weight);
  A* cw = pw + c * N;
  A* cb = RMS ? nullptr : pb + c * N;
  for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step)
#pragma unroll
    for (int k = 0; k < V; ++k)
      if (in_row<AL>(j, k, N)) {
        cw[j + k] = 0;
        if constexpr (!RMS) cb[j + k] = 0;
      }
  const A inv_n = A(1) / static_cast<A>(N);
  const int64_t end = min64(a.M, (c + 1) * spr);
  for (int64_t r = c * spr, st = 0; r < end; ++r, ++st) {
    const T* xr = static_cast<const T*>(a.x) + r * a.ldx;
    const T* dyr = static_cast<const T*>(a.dy) + r * a.lddy;
    const A mean = RMS ? A(0) : static_cast<const A*>(a.mean)[r];
    const A rstd = static_cast<const A*>(a.rstd)[r];
    A sg = 0, sgx = 0;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const PackOf<T> px = load_pack<T, AL>(xr, j, N);
      const PackOf<T> pd = load_pack<T, AL>(dyr, j, N);
      A w[V];
      if (wp) load_params<W, V, AL>(wp, j, N, w);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = to_acc(pd.v[k]);
        const A xh = in_row<AL>(j, k, N) ? (to_acc(px.v[k]) - mean) * rstd : A(0);
        const A g = wp ? d * w[k] : d;
        sg += g;
        sgx += g * xh;
      }
    }
    group_total2(sg, sgx, static_cast<int>(blockDim.x), buf[st & 1]);
    const A mg = RMS ? A(0) : sg * inv_n, mgx = sgx * inv_n;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const PackOf<T> px = load_pack<T, AL>(xr, j, N);
      const PackOf<T> pd = load_pack<T, AL>(dyr, j, N);
      A w[V];
      if (wp) load_params<W, V, AL>(wp, j, N, w);
      PackOf<T> o;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = to_acc(pd.v[k]), xh = (to_acc(px.v[k]) - mean) * rstd, g = wp ? d * w[k] : d;
        o.v[k] = from_acc<T>(rstd * (g - mg - xh * mgx));
        if (in_row<AL>(j, k, N)) {
          cw[j + k] += d * xh;
          if constexpr (!RMS) cb[j + k] += d;
        }
      }
      store_pack<T, AL>(static_cast<T*>(a.dx) + r * N, j, N, o);
    }
  }
}

// out_g[j] = sum over p < P of part_g[p * N + j] in a fixed order, for g = blockIdx.y (0: dweight
// from pw, 1: dbias from pb): blockDim = (32 columns, 16 segments); segment s adds its contiguous
// share of the partial rows, then the 16 segment sums are added in segment order.
template <class A, class W> __global__ void col_reduce(const A* pw, const A* pb, int64_t P, int64_t N, W* dw, W* db) {
  constexpr int kSeg = 16;
  __shared__ A seg[kSeg][33];
  const A* part = blockIdx.y ? pb : pw;
  W* out = blockIdx.y ? db : dw;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t per = (P + kSeg - 1) / kSeg, p0 = threadIdx.y * per, p1 = min64(P, p0 + per);
  A s = 0;
  if (j < N)
    for (int64_t p = p0; p < p1; ++p) s += part[p * N + j];
  seg[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < N) {
    A t = seg[0][threadIdx.x];
#pragma unroll
    for (int y = 1; y < kSeg; ++y) t += seg[y][threadIdx.x];
    out[j] = from_acc<W>(static_cast<Acc<W>>(t));
  }
}

// Plan of the cached backward (from (N, dtype) alone): the most elements a thread keeps per row
// (x, dy and its dw, db sums in registers; the weights in shared memory) and the most threads per
// row, which is also the kernel's launch bound (1024 threads: at most 64 registers). 2-byte types:
// one pack per thread (plus the prefetched one), up to 1024 threads per row (N <= 8192), so that
// 1024 threads fit on an SM, each with a row in flight; 4- and 8-byte types: as before.
template <class T> constexpr int kBwdElems = sizeof(T) == 8 ? 8 : sizeof(T) == 4 ? 16 : kVec16<T>;
template <class T> constexpr int kBwdMaxTpr = sizeof(T) == 2 ? 1024 : kMaxTpr;

template <class T, bool RMS> const char* bwd(const RowNormBwdArgs& a, cudaStream_t s) {
  using A = Acc<T>;
  if (a.N <= 0) return nullptr;
  const int64_t wbytes = a.param_in_dtype ? static_cast<int64_t>(sizeof(T)) : static_cast<int64_t>(sizeof(A));
  if (a.M <= 0) {  // no rows: zero parameter gradients
    for (void* g : {a.dweight, RMS ? nullptr : a.dbias})
      if (g)
        if (const char* e = cuda_error(cudaMemsetAsync(g, 0, a.N * wbytes, s))) return e;
    return nullptr;
  }
  const void* ptrs[] = {a.x, a.dy, a.dx, a.weight};
  const int64_t lds[] = {a.ldx, a.lddy, a.N, 0};
  const Plan p = plan_rows<T>(a.N, kBwdElems<T>, kBwdMaxTpr<T>);
  const int64_t slots = a.N >= 4096 ? 512 : 1024;       // partial rows, about
  const int64_t spr = std::max<int64_t>(1, (a.M + slots - 1) / slots);  // rows per slot
  if (spr > INT32_MAX) return "too many rows for one launch";
  const int64_t rpc = static_cast<int64_t>(p.rpb) * spr;                // rows per chunk (block)
  const int64_t chunks = (a.M + rpc - 1) / rpc, P = chunks * p.rpb;
  Scratch part((RMS ? 1 : 2) * P * a.N * static_cast<int64_t>(sizeof(A)), s);
  if (part.error()) return part.error();
  A* pw = part.as<A>();
  A* pb = RMS ? nullptr : pw + P * a.N;
  const bool al = aligned16<T>(a.N, ptrs, lds, 4);
  const char* launch_status = nullptr;
  return by_param<T>(a.param_in_dtype, [&]<class W>() {
    by_plan<T, kBwdElems<T>>(p, al, [&]<bool AL, int ITEMS>() {
      if constexpr (ITEMS == 0) {
        bwd_looped<T, W, RMS, AL><<<grid_of(chunks), p.tpr, 0, s>>>(a, spr, pw, pb);
      } else {
        const dim3 block(p.tpr, p.rpb);
        if constexpr (sizeof(T) == 2) {
          const size_t smem = AL ? static_cast<size_t>(kStages) * ITEMS * 2 * p.tpr * p.rpb * sizeof(PackOf<T>) : 0;
          const auto kern = bwd_staged<T, W, RMS, AL, ITEMS>;
          // Over 48 KB with the static 512 bytes: opt in (at most 96 KB + 512 B at 1024 threads,
          // which every sm_80+ GPU allows).
          if (smem > 40 * 1024)
            if (const char* e = cuda_error(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                               static_cast<int>(smem)))) {
              launch_status = e;
              return;
            }
          kern<<<grid_of(chunks), block, smem, s>>>(a, spr, pw, pb);
        } else {
          constexpr int MAXT = kBwdMaxTpr<T>;
          const size_t smem = static_cast<size_t>(ITEMS) * p.tpr * kVec16<T> * sizeof(A);
          bwd_cached<T, W, RMS, AL, ITEMS, MAXT><<<grid_of(chunks), block, smem, s>>>(a, spr, pw, pb);
        }
      }
    });
    if (launch_status) return launch_status;
    if (const char* e = launch_error()) return e;
    const int outs = (a.dweight ? 1 : 0) + (!RMS && a.dbias ? 1 : 0);
    if (outs == 0) return static_cast<const char*>(nullptr);
    // Only dbias wanted: its partials read as "dweight" (blockIdx.y 0).
    const bool only_b = !a.dweight;
    col_reduce<A, W><<<dim3(grid_of((a.N + 31) / 32), outs), dim3(32, 16), 0, s>>>(
        only_b ? pb : pw, pb, P, a.N, static_cast<W*>(only_b ? a.dbias : a.dweight), static_cast<W*>(a.dbias));
    return launch_error();
  });
}

}  // namespace

const char* layer_norm_bwd(const RowNormBwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return bwd<T, false>(a, static_cast<cudaStream_t>(stream)); });
}
const char* rms_norm_bwd(const RowNormBwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return bwd<T, true>(a, static_cast<cudaStream_t>(stream)); });
}

}  // namespace nk::cuda
