// LayerNorm / RMSNorm on CUDA: what the forward (norm_fwd.cu) and backward (norm_bwd.cu) kernels
// share. Contract: normkit/norm.h, normkit/cuda.h.
//
// A row is handled by a group of `tpr` threads (a power of two; blockDim = (tpr, rpb) with
// rpb = max(1, 128 / tpr) row slots per block). Thread t of the group owns the packs t, t + tpr,
// ... of V = 16 / sizeof(T) elements of the row, read and written as one 16-byte access when every
// pointer and row stride allows (AL), else element by element. The plan depends only on
// (N, dtype), never on alignment, and the library is compiled with -fmad=false, so every layout
// evaluates the same expressions in the same order: the same bits for any alignment. Rows whose
// packs fit the threads' register budget are read once ("cached"); longer rows are read once per
// pass from L2 ("looped"). Weights and biases are read in their own storage type (T or A), 16
// bytes at a time.
#pragma once
#include <algorithm>
#include <type_traits>

#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda::rownorm {

constexpr int kLoopThreads = 512;  // threads per row of the looped kernels
constexpr int kMaxTpr = 512;       // the most threads of a cached row group (and block): <= 128 registers

template <class T> using PackOf = Pack<T, kVec16<T>>;

// A parameter value (weight / bias stored as W) in the accumulation type A.
template <class A, class W> __device__ __forceinline__ A param_val(W w) { return static_cast<A>(to_acc(w)); }

// The V = kVec16<T> elements at j of a row: one 16-byte access when AL, else one by one with the
// elements past N read as zero.
template <class T, bool AL> __device__ __forceinline__ PackOf<T> load_pack(const T* p, int64_t j, int64_t N) {
  if constexpr (AL) {
    return *reinterpret_cast<const PackOf<T>*>(p + j);
  } else {
    PackOf<T> r;
#pragma unroll
    for (int k = 0; k < kVec16<T>; ++k) r.v[k] = j + k < N ? p[j + k] : T{};
    return r;
  }
}

// Whether element k of the pack at j is inside the row (always, when AL: N % V == 0).
template <bool AL> __device__ __forceinline__ bool in_row(int64_t j, int k, int64_t N) { return AL || j + k < N; }

template <class T, bool AL> __device__ __forceinline__ void store_pack(T* p, int64_t j, int64_t N, const PackOf<T>& v) {
  if constexpr (AL) {
    *reinterpret_cast<PackOf<T>*>(p + j) = v;
  } else {
#pragma unroll
    for (int k = 0; k < kVec16<T>; ++k)
      if (j + k < N) p[j + k] = v.v[k];
  }
}

// K parameter values of storage type W at j, in A (zero past N): 16-byte accesses when AL.
template <class W, int K, bool AL, class A>
__device__ __forceinline__ void load_params(const W* p, int64_t j, int64_t N, A (&out)[K]) {
  if constexpr (AL) {
    constexpr int C = 16 / static_cast<int>(sizeof(W)) < K ? 16 / static_cast<int>(sizeof(W)) : K;
#pragma unroll
    for (int q = 0; q < K; q += C) {
      const Pack<W, C> pk = *reinterpret_cast<const Pack<W, C>*>(p + j + q);
#pragma unroll
      for (int k = 0; k < C; ++k) out[q + k] = param_val<A>(pk.v[k]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = j + k < N ? param_val<A>(p[j + k]) : A(0);
  }
}

// K values of A stored as W at j (nothing past N): 16-byte accesses when AL.
template <class W, int K, bool AL, class A>
__device__ __forceinline__ void store_params(W* p, int64_t j, int64_t N, const A (&v)[K]) {
  if constexpr (AL) {
    constexpr int C = 16 / static_cast<int>(sizeof(W)) < K ? 16 / static_cast<int>(sizeof(W)) : K;
#pragma unroll
    for (int q = 0; q < K; q += C) {
      Pack<W, C> pk;
#pragma unroll
      for (int k = 0; k < C; ++k) pk.v[k] = from_acc<W>(static_cast<Acc<W>>(v[q + k]));
      *reinterpret_cast<Pack<W, C>*>(p + j + q) = pk;
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (j + k < N) p[j + k] = from_acc<W>(static_cast<Acc<W>>(v[k]));
  }
}

// Sum over the tpr threads of a row group, every thread of the group getting the same value.
// tpr <= 32: a shuffle butterfly. tpr > 32: warp sums into buf (one slot per warp of the block,
// used by this call only), one barrier, then added in warp order. Must be reached by every
// thread of the block.
template <class A> __device__ __forceinline__ A group_total(A v, int tpr, A* buf) {
  if (tpr <= 32) return group_sum(v, tpr);
  v = group_sum(v, 32);
  const int warps = tpr / 32, first = static_cast<int>(threadIdx.y) * warps;
  if (threadIdx.x % 32 == 0) buf[first + threadIdx.x / 32] = v;
  __syncthreads();
  A s = buf[first];
  for (int w = 1; w < warps; ++w) s += buf[first + w];
  return s;
}

// The same for two values at once (one barrier).
template <class A> __device__ __forceinline__ void group_total2(A& u, A& v, int tpr, A* buf) {
  if (tpr <= 32) {
    u = group_sum(u, tpr);
    v = group_sum(v, tpr);
    return;
  }
  u = group_sum(u, 32);
  v = group_sum(v, 32);
  const int warps = tpr / 32, first = static_cast<int>(threadIdx.y) * warps;
  if (threadIdx.x % 32 == 0) {
    buf[first + threadIdx.x / 32] = u;
    buf[32 + first + threadIdx.x / 32] = v;
  }
  __syncthreads();
  u = buf[first];
  v = buf[32 + first];
  for (int w = 1; w < warps; ++w) {
    u += buf[first + w];
    v += buf[32 + first + w];
  }
}

struct Plan {
  int tpr;    // threads per row
  int rpb;    // row slots per block
  int items;  // packs per thread when cached (1, 2, 4, 8); 0: looped
};

inline int64_t pow2_ceil(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

// From (N, dtype) alone. max_elems: the most elements a thread keeps in registers; max_tpr: the
// most threads of a row group (a power of two, at most 1024).
template <class T> Plan plan_rows(int64_t N, int max_elems, int max_tpr = kMaxTpr) {
  constexpr int V = kVec16<T>;
  const int64_t packs = (N + V - 1) / V, max_items = std::max(1, max_elems / V);
  // Enough threads that each keeps at most max_items packs, and at least two packs per thread
  // for short rows (a warp or less per row), so that several loads are in flight.
  const int64_t tpr = std::max(pow2_ceil((packs + max_items - 1) / max_items),
                               std::min<int64_t>(32, pow2_ceil((packs + 1) / 2)));
  if (tpr > max_tpr) return Plan{kLoopThreads, 1, 0};
  Plan p{};
  p.tpr = static_cast<int>(tpr);
  p.items = static_cast<int>(pow2_ceil((packs + tpr - 1) / tpr));
  p.rpb = std::max(1, 128 / p.tpr);
  return p;
}

// 16-byte accesses: every pointer 16-byte aligned, every row stride and N multiples of V.
template <class T> bool aligned16(int64_t N, const void* const* ptrs, const int64_t* lds, int nptr) {
  if (N % kVec16<T>) return false;
  for (int i = 0; i < nptr; ++i)
    if (ptrs[i] && (reinterpret_cast<uintptr_t>(ptrs[i]) % 16 != 0 || lds[i] % kVec16<T> != 0)) return false;
  return true;
}

inline int grid_of(int64_t blocks) { return static_cast<int>(std::min<int64_t>(blocks, int64_t{1} << 30)); }

// Calls f.template operator()<W>() with the parameters' storage type.
template <class T, class F> const char* by_param(bool in_dtype, F&& f) {
  if constexpr (std::is_same_v<T, Acc<T>>) {
    return f.template operator()<T>();
  } else {
    return in_dtype ? f.template operator()<T>() : f.template operator()<Acc<T>>();
  }
}

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

}  // namespace nk::cuda::rownorm
