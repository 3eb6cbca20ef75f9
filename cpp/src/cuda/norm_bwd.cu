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
// Bitwise reproducible, no atomics. About 512-1024 partial rows whatever M, so the partials stay a
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
  return by_param<T>(a.param_in_dtype, [&]<class W>() {
    by_plan<T, kBwdElems<T>>(p, al, [&]<bool AL, int ITEMS>() {
      if constexpr (ITEMS == 0) {
        bwd_looped<T, W, RMS, AL><<<grid_of(chunks), p.tpr, 0, s>>>(a, spr, pw, pb);
      } else {
        constexpr int MAXT = kBwdMaxTpr<T>;
        const dim3 block(p.tpr, p.rpb);
        const size_t smem = static_cast<size_t>(ITEMS) * p.tpr * kVec16<T> * sizeof(A);
        bwd_cached<T, W, RMS, AL, ITEMS, MAXT><<<grid_of(chunks), block, smem, s>>>(a, spr, pw, pb);
      }
    });
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
