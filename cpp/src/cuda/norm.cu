// CUDA LayerNorm / RMSNorm forward and backward (contract: normkit/norm.h, normkit/cuda.h).
//
// A row is handled by a group of `tpr` threads (a power of two; blockDim = (tpr, rpb): rpb row
// slots per block when tpr <= 32, one row per block otherwise). Thread t of the group owns the
// slots t, t + tpr, ... of V = 16 / sizeof(T) elements of the row, read and written as one
// 16-byte access when every pointer and row stride allows (AL), else element by element. The
// plan depends only on (N, dtype), never on alignment: the same shape gives the same bits for any
// layout. Rows that fit in the group's registers are read once ("cached"); longer rows are read
// once per pass from L2 ("looped"). The variance is the plain two-pass one over the row's values
// (held in registers, or re-read), with mean = sum / N.
//
// Backward parameter gradients: block c of the grid owns the rows [c * rpc, (c + 1) * rpc); each
// row slot keeps per-column sums of dy * xhat and dy in registers (or in its own partial row in
// global memory, looped) and writes them as one partial row. col_reduce adds the partial rows
// in a fixed order. The split depends only on (M, N, dtype): bitwise reproducible, no atomics.
#include <algorithm>

#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {
namespace {

constexpr int kMaxThreads = 512;  // threads per row group (and per block)
constexpr int kSlotRows = 16;     // backward: rows per row slot of a chunk (partials <= 1/16 of the rows)

// The V = kVec16<T> elements at j of a row: one 16-byte access when AL, else one by one with the
// elements past N read as zero / not written.
template <class T, bool AL> __device__ __forceinline__ Pack<T, kVec16<T>> load_pack(const T* p, int64_t j, int64_t N) {
  using P = Pack<T, kVec16<T>>;
  if constexpr (AL) {
    return *reinterpret_cast<const P*>(p + j);
  } else {
    P r;
#pragma unroll
    for (int k = 0; k < kVec16<T>; ++k) r.v[k] = j + k < N ? p[j + k] : T{};
    return r;
  }
}
// Whether element k of the pack at j is inside the row (always, when AL: N % V == 0).
template <bool AL> __device__ __forceinline__ bool in_row(int64_t j, int k, int64_t N) { return AL || j + k < N; }

template <class T, bool AL>
__device__ __forceinline__ void store_pack(T* p, int64_t j, int64_t N, const Pack<T, kVec16<T>>& v) {
  if constexpr (AL) {
    *reinterpret_cast<Pack<T, kVec16<T>>*>(p + j) = v;
  } else {
#pragma unroll
    for (int k = 0; k < kVec16<T>; ++k)
      if (j + k < N) p[j + k] = v.v[k];
  }
}

// ---- forward ---------------------------------------------------------------------------------

// The pack at j of row r of the normalized source: x, or h = x + res rounded to T (stored to h).
template <class T, bool AL>
__device__ __forceinline__ Pack<T, kVec16<T>> load_source(const RowNormFwdArgs& a, int64_t r, int64_t j) {
  Pack<T, kVec16<T>> p = load_pack<T, AL>(static_cast<const T*>(a.x) + r * a.ldx, j, a.N);
  if (a.res) {
    const Pack<T, kVec16<T>> q = load_pack<T, AL>(static_cast<const T*>(a.res) + r * a.ldr, j, a.N);
#pragma unroll
    for (int k = 0; k < kVec16<T>; ++k) p.v[k] = from_acc<T>(to_acc(p.v[k]) + to_acc(q.v[k]));
    store_pack<T, AL>(static_cast<T*>(a.h) + r * a.N, j, a.N, p);
  }
  return p;
}

// One row: h = x + res (stored, when res), the statistics, y. ITEMS vector slots per thread.
template <class T, bool AL, int ITEMS>
__global__ void __launch_bounds__(kMaxThreads) fwd_cached(const RowNormFwdArgs a, const bool rms) {
  using A = Acc<T>;
  using P = Pack<T, kVec16<T>>;
  constexpr int V = kVec16<T>;
  __shared__ A smem[32];
  const int tpr = blockDim.x, tid = threadIdx.x;
  const int64_t N = a.N, nblk = (a.M + blockDim.y - 1) / blockDim.y;
  const A* w = static_cast<const A*>(a.weight);
  const A* b = static_cast<const A*>(a.bias);
  for (int64_t blk = blockIdx.x; blk < nblk; blk += gridDim.x) {
    const int64_t r = blk * blockDim.y + threadIdx.y;
    const bool valid = r < a.M;
    A v[ITEMS][V];
    A s = 0;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      if (valid && j < N) {
        const P p = load_source<T, AL>(a, r, j);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          v[it][k] = to_acc(p.v[k]);
          s += v[it][k];
        }
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) v[it][k] = 0;
      }
    }
    const A mean = rms ? A(0) : row_sum(s, tpr, smem) / static_cast<A>(N);
    A q = 0;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      if (valid && j < N) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const A d = in_row<AL>(j, k, N) ? v[it][k] - mean : A(0);
          q += d * d;
        }
      }
    }
    const A rstd = A(1) / sqrt(row_sum(q, tpr, smem) / static_cast<A>(N) + static_cast<A>(a.eps));
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      if (valid && j < N) {
        P o;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          A y = (v[it][k] - mean) * rstd;
          if (in_row<AL>(j, k, N)) {
            if (w) y *= w[j + k];
            if (b) y += b[j + k];
          }
          o.v[k] = from_acc<T>(y);
        }
        store_pack<T, AL>(static_cast<T*>(a.y) + r * N, j, N, o);
      }
    }
    if (valid && tid == 0) {
      if (a.mean && !rms) static_cast<A*>(a.mean)[r] = mean;
      if (a.rstd) static_cast<A*>(a.rstd)[r] = rstd;
    }
  }
}

// Long rows, one per block: three passes over the row (h is written in the first and read back
// by the same thread in the others).
template <class T, bool AL>
__global__ void __launch_bounds__(kMaxThreads) fwd_looped(const RowNormFwdArgs a, const bool rms) {
  using A = Acc<T>;
  using P = Pack<T, kVec16<T>>;
  constexpr int V = kVec16<T>;
  __shared__ A smem[32];
  const int tpr = blockDim.x, tid = threadIdx.x;
  const int64_t N = a.N, step = static_cast<int64_t>(tpr) * V;
  const A* w = static_cast<const A*>(a.weight);
  const A* b = static_cast<const A*>(a.bias);
  for (int64_t r = blockIdx.x; r < a.M; r += gridDim.x) {
    const T* src = a.res ? static_cast<const T*>(a.h) + r * N : static_cast<const T*>(a.x) + r * a.ldx;
    A s = 0;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const P p = load_source<T, AL>(a, r, j);
#pragma unroll
      for (int k = 0; k < V; ++k) s += to_acc(p.v[k]);
    }
    const A mean = rms ? A(0) : row_sum(s, tpr, smem) / static_cast<A>(N);
    A q = 0;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const P p = load_pack<T, AL>(src, j, N);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = in_row<AL>(j, k, N) ? to_acc(p.v[k]) - mean : A(0);
        q += d * d;
      }
    }
    const A rstd = A(1) / sqrt(row_sum(q, tpr, smem) / static_cast<A>(N) + static_cast<A>(a.eps));
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const P p = load_pack<T, AL>(src, j, N);
      P o;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A y = (to_acc(p.v[k]) - mean) * rstd;
        if (in_row<AL>(j, k, N)) {
          if (w) y *= w[j + k];
          if (b) y += b[j + k];
        }
        o.v[k] = from_acc<T>(y);
      }
      store_pack<T, AL>(static_cast<T*>(a.y) + r * N, j, N, o);
    }
    if (tid == 0) {
      if (a.mean && !rms) static_cast<A*>(a.mean)[r] = mean;
      if (a.rstd) static_cast<A*>(a.rstd)[r] = rstd;
    }
  }
}

// ---- backward --------------------------------------------------------------------------------

// Rows [c * rpc, min(M, (c + 1) * rpc)) of chunk c; row slot y takes every rpb-th of them. The
// slot's column sums go to partial row c * rpb + y of pw / pb ([P, N], A).
template <class T, bool AL, int ITEMS>
__global__ void __launch_bounds__(kMaxThreads)
    bwd_cached(const RowNormBwdArgs a, const bool rms, const int64_t rpc, Acc<T>* pw, Acc<T>* pb) {
  using A = Acc<T>;
  using P = Pack<T, kVec16<T>>;
  constexpr int V = kVec16<T>;
  __shared__ A smem[32];
  const int tpr = blockDim.x, tid = threadIdx.x, rpb = blockDim.y;
  const int64_t N = a.N, chunks = (a.M + rpc - 1) / rpc;
  const A* w = static_cast<const A*>(a.weight);
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    A dw[ITEMS][V], db[ITEMS][V];
#pragma unroll
    for (int it = 0; it < ITEMS; ++it)
#pragma unroll
      for (int k = 0; k < V; ++k) dw[it][k] = db[it][k] = 0;
    const int64_t end = min64(a.M, (c + 1) * rpc), steps = (rpc + rpb - 1) / rpb;
    for (int64_t st = 0; st < steps; ++st) {  // the same count for every slot: shuffles stay converged
      const int64_t r = c * rpc + st * rpb + threadIdx.y;
      const bool valid = r < end;
      const A mean = valid && !rms ? static_cast<const A*>(a.mean)[r] : A(0);
      const A rstd = valid ? static_cast<const A*>(a.rstd)[r] : A(0);
      A xh[ITEMS][V], g[ITEMS][V];
      A sg = 0, sgx = 0;
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
        if (valid && j < N) {
          const P px = load_pack<T, AL>(static_cast<const T*>(a.x) + r * a.ldx, j, N);
          const P pd = load_pack<T, AL>(static_cast<const T*>(a.dy) + r * a.lddy, j, N);
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const A d = to_acc(pd.v[k]);  // 0 past the row's end
            xh[it][k] = (to_acc(px.v[k]) - mean) * rstd;
            g[it][k] = w && in_row<AL>(j, k, N) ? d * w[j + k] : d;
            sg += g[it][k];
            sgx += g[it][k] * xh[it][k];
            dw[it][k] += d * xh[it][k];
            db[it][k] += d;
          }
        } else {
#pragma unroll
          for (int k = 0; k < V; ++k) xh[it][k] = g[it][k] = 0;
        }
      }
      const A inv_n = A(1) / static_cast<A>(N);
      const A mg = rms ? A(0) : row_sum(sg, tpr, smem) * inv_n;
      const A mgx = row_sum(sgx, tpr, smem) * inv_n;
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
        if (valid && j < N) {
          P o;
#pragma unroll
          for (int k = 0; k < V; ++k) o.v[k] = from_acc<T>(rstd * (g[it][k] - mg - xh[it][k] * mgx));
          store_pack<T, AL>(static_cast<T*>(a.dx) + r * N, j, N, o);
        }
      }
    }
    const int64_t prow = (c * rpb + threadIdx.y) * N;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      if (j < N) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          if (!in_row<AL>(j, k, N)) continue;
          pw[prow + j + k] = dw[it][k];
          pb[prow + j + k] = db[it][k];
        }
      }
    }
  }
}

// Long rows (rpb = 1): two passes per row; the column sums live in the chunk's partial row,
// which only this block touches (each column always by the same thread).
template <class T, bool AL>
__global__ void __launch_bounds__(kMaxThreads)
    bwd_looped(const RowNormBwdArgs a, const bool rms, const int64_t rpc, Acc<T>* pw, Acc<T>* pb) {
  using A = Acc<T>;
  using P = Pack<T, kVec16<T>>;
  constexpr int V = kVec16<T>;
  __shared__ A smem[32];
  const int tpr = blockDim.x, tid = threadIdx.x;
  const int64_t N = a.N, chunks = (a.M + rpc - 1) / rpc, step = static_cast<int64_t>(tpr) * V;
  const A* w = static_cast<const A*>(a.weight);
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    A* cw = pw + c * N;
    A* cb = pb + c * N;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step)
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (in_row<AL>(j, k, N)) cw[j + k] = cb[j + k] = 0;
    const int64_t end = min64(a.M, (c + 1) * rpc);
    for (int64_t r = c * rpc; r < end; ++r) {
      const T* xr = static_cast<const T*>(a.x) + r * a.ldx;
      const T* dyr = static_cast<const T*>(a.dy) + r * a.lddy;
      const A mean = rms ? A(0) : static_cast<const A*>(a.mean)[r];
      const A rstd = static_cast<const A*>(a.rstd)[r];
      A sg = 0, sgx = 0;
      for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
        const P px = load_pack<T, AL>(xr, j, N);
        const P pd = load_pack<T, AL>(dyr, j, N);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const bool in = in_row<AL>(j, k, N);
          const A d = to_acc(pd.v[k]), xh = (to_acc(px.v[k]) - mean) * rstd, g = w && in ? d * w[j + k] : d;
          sg += g;
          sgx += g * xh;
        }
      }
      const A inv_n = A(1) / static_cast<A>(N);
      const A mg = rms ? A(0) : row_sum(sg, tpr, smem) * inv_n;
      const A mgx = row_sum(sgx, tpr, smem) * inv_n;
      for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
        const P px = load_pack<T, AL>(xr, j, N);
        const P pd = load_pack<T, AL>(dyr, j, N);
        P o;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const bool in = in_row<AL>(j, k, N);
          const A d = to_acc(pd.v[k]), xh = (to_acc(px.v[k]) - mean) * rstd, g = w && in ? d * w[j + k] : d;
          o.v[k] = from_acc<T>(rstd * (g - mg - xh * mgx));
          if (in) {
            cw[j + k] += d * xh;
            cb[j + k] += d;
          }
        }
        store_pack<T, AL>(static_cast<T*>(a.dx) + r * N, j, N, o);
      }
    }
  }
}

// out[j] = sum over p < P of part[p * N + j], in a fixed order: blockDim = (32 columns, 8
// segments); segment s adds its contiguous share of the rows, then the 8 segment sums are added
// in segment order. Nothing written when out == nullptr.
template <class A>
__global__ void col_reduce(const A* part, int64_t P, int64_t N, A* out) {
  __shared__ A seg[8][33];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t per = (P + 7) / 8, p0 = threadIdx.y * per, p1 = min64(P, p0 + per);
  A s = 0;
  if (j < N)
    for (int64_t p = p0; p < p1; ++p) s += part[p * N + j];
  seg[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < N) {
    A t = seg[0][threadIdx.x];
#pragma unroll
    for (int y = 1; y < 8; ++y) t += seg[y][threadIdx.x];
    out[j] = t;
  }
}

// ---- launch planning -------------------------------------------------------------------------

struct Plan {
  int tpr;    // threads per row
  int rpb;    // rows per block
  int items;  // vector slots per thread when cached (1, 2, 4, 8); 0: looped
};

int64_t pow2_ceil(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

// From (N, dtype) alone. max_elems: the most elements a thread keeps in registers (the budget of
// the cached kernels).
template <class T> Plan plan_rows(int64_t N, int max_elems) {
  constexpr int V = kVec16<T>;
  Plan p{};
  const int64_t slots = (N + V - 1) / V;
  // Two vector slots per thread where possible, so that a row's loads are in flight together.
  p.tpr = static_cast<int>(std::min<int64_t>(kMaxThreads, pow2_ceil((slots + 1) / 2)));
  const int64_t items = pow2_ceil((slots + p.tpr - 1) / p.tpr);
  p.items = items * V <= max_elems && items <= 8 ? static_cast<int>(items) : 0;
  if (p.items == 0) p.tpr = kMaxThreads;
  p.rpb = p.items && p.tpr <= 32 ? 128 / p.tpr : 1;
  return p;
}

// 16-byte accesses: every pointer 16-byte aligned, every row stride and N multiples of V.
template <class T> bool aligned16(int64_t N, const void* const* ptrs, const int64_t* lds, int nptr) {
  if (N % kVec16<T>) return false;
  for (int i = 0; i < nptr; ++i)
    if (ptrs[i] && (reinterpret_cast<uintptr_t>(ptrs[i]) % 16 != 0 || lds[i] % kVec16<T> != 0)) return false;
  return true;
}

int grid_of(int64_t blocks) { return static_cast<int>(std::min<int64_t>(blocks, int64_t{1} << 30)); }

// Calls f.template operator()<AL, ITEMS>() for the plan (ITEMS 0: looped). Only the ITEMS within
// the register budget MaxE are compiled (plan_rows never picks others).
template <class T, int MaxE, class F> void by_plan(const Plan& p, bool al, F&& f) {
  const auto items = [&](auto altag) {
    constexpr bool AL = decltype(altag)::value;
    const auto call = [&](auto itag) {
      constexpr int I = decltype(itag)::value;
      if constexpr (I * kVec16<T> <= MaxE) f.template operator()<AL, I>();
      else f.template operator()<AL, 0>();
    };
    switch (p.items) {
      case 1: return call(std::integral_constant<int, 1>{});
      case 2: return call(std::integral_constant<int, 2>{});
      case 4: return call(std::integral_constant<int, 4>{});
      case 8: return call(std::integral_constant<int, 8>{});
      default: return call(std::integral_constant<int, 0>{});
    }
  };
  if (al) items(std::true_type{});
  else items(std::false_type{});
}

// Register budgets of the cached kernels (elements per thread): the forward keeps the row, the
// backward keeps x-hat, g and two column sums.
template <class T> constexpr int kFwdElems = sizeof(T) == 8 ? 16 : 32;
template <class T> constexpr int kBwdElems = sizeof(T) == 8 ? 8 : 16;

template <class T> const char* fwd(const RowNormFwdArgs& a, bool rms, cudaStream_t s) {
  if (a.M <= 0 || a.N <= 0) return nullptr;
  const void* ptrs[] = {a.x, a.res, a.y, a.h};
  const int64_t lds[] = {a.ldx, a.ldr, a.N, a.N};
  const Plan p = plan_rows<T>(a.N, kFwdElems<T>);
  const dim3 block(p.tpr, p.rpb);
  by_plan<T, kFwdElems<T>>(p, aligned16<T>(a.N, ptrs, lds, 4), [&]<bool AL, int ITEMS>() {
    if constexpr (ITEMS == 0) fwd_looped<T, AL><<<grid_of(a.M), block, 0, s>>>(a, rms);
    else fwd_cached<T, AL, ITEMS><<<grid_of((a.M + p.rpb - 1) / p.rpb), block, 0, s>>>(a, rms);
  });
  return launch_error();
}

template <class T> const char* bwd(const RowNormBwdArgs& a, bool rms, cudaStream_t s) {
  using A = Acc<T>;
  if (a.N <= 0) return nullptr;
  if (a.M <= 0) {  // no rows: zero parameter gradients
    for (void* g : {a.dweight, a.dbias})
      if (g)
        if (const char* e = cuda_error(cudaMemsetAsync(g, 0, a.N * sizeof(A), s))) return e;
    return nullptr;
  }
  const void* ptrs[] = {a.x, a.dy, a.dx};
  const int64_t lds[] = {a.ldx, a.lddy, a.N};
  const Plan p = plan_rows<T>(a.N, kBwdElems<T>);
  const int64_t rpc = static_cast<int64_t>(p.rpb) * kSlotRows;  // rows per chunk
  const int64_t chunks = (a.M + rpc - 1) / rpc, P = chunks * p.rpb;
  Scratch part(2 * P * a.N * static_cast<int64_t>(sizeof(A)), s);
  if (part.error()) return part.error();
  A* pw = part.as<A>();
  A* pb = pw + P * a.N;
  const dim3 block(p.tpr, p.rpb);
  by_plan<T, kBwdElems<T>>(p, aligned16<T>(a.N, ptrs, lds, 3), [&]<bool AL, int ITEMS>() {
    if constexpr (ITEMS == 0) bwd_looped<T, AL><<<grid_of(chunks), block, 0, s>>>(a, rms, rpc, pw, pb);
    else bwd_cached<T, AL, ITEMS><<<grid_of(chunks), block, 0, s>>>(a, rms, rpc, pw, pb);
  });
  if (const char* e = launch_error()) return e;
  const dim3 rblock(32, 8);
  const int rgrid = grid_of((a.N + 31) / 32);
  if (a.dweight) col_reduce<A><<<rgrid, rblock, 0, s>>>(pw, P, a.N, static_cast<A*>(a.dweight));
  if (a.dbias && !rms) col_reduce<A><<<rgrid, rblock, 0, s>>>(pb, P, a.N, static_cast<A*>(a.dbias));
  return launch_error();
}

}  // namespace

const char* layer_norm_fwd(const RowNormFwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return fwd<T>(a, false, static_cast<cudaStream_t>(stream)); });
}
const char* rms_norm_fwd(const RowNormFwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return fwd<T>(a, true, static_cast<cudaStream_t>(stream)); });
}
const char* layer_norm_bwd(const RowNormBwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return bwd<T>(a, false, static_cast<cudaStream_t>(stream)); });
}
const char* rms_norm_bwd(const RowNormBwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return bwd<T>(a, true, static_cast<cudaStream_t>(stream)); });
}

}  // namespace nk::cuda
