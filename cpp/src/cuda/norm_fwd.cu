// CUDA LayerNorm / RMSNorm forward (layout and plan: norm_common.cuh).
//
// Cached rows: one row per row group, all of its packs loaded before the first use (ITEMS 16-byte
// loads in flight per thread), the two-pass statistics from registers (mean, then the squared
// deviations), one barrier per statistic when a row spans several warps. Looped rows: three
// passes over the row, the later ones from L2.
#include "norm_common.cuh"

namespace nk::cuda {
namespace {
using namespace rownorm;

// The pack at j of row r of the normalized source: x, or h = x + res rounded to T (stored to h).
template <class T, bool AL>
__device__ __forceinline__ PackOf<T> load_source(const RowNormFwdArgs& a, int64_t r, int64_t j) {
  PackOf<T> p = load_pack<T, AL>(static_cast<const T*>(a.x) + r * a.ldx, j, a.N);
  if (a.res) {
    const PackOf<T> q = load_pack<T, AL>(static_cast<const T*>(a.res) + r * a.ldr, j, a.N);
#pragma unroll
    for (int k = 0; k < kVec16<T>; ++k) p.v[k] = from_acc<T>(to_acc(p.v[k]) + to_acc(q.v[k]));
    store_pack<T, AL>(static_cast<T*>(a.h) + r * a.N, j, a.N, p);
  }
  return p;
}

// Explicit fused multiply-add (one rounding; the library is built with -fmad=false, so only these
// fuse, identically in every variant).
__device__ __forceinline__ float fma_acc(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_acc(double a, double b, double c) { return __fma_rn(a, b, c); }

// A pack of T from V values in A, rounded to nearest even: 2-byte types two at a time.
template <class T> __device__ __forceinline__ PackOf<T> to_pack(const Acc<T> (&y)[kVec16<T>]) {
  constexpr int V = kVec16<T>;
  PackOf<T> o;
  if constexpr (std::is_same_v<T, nk::bf16>) {
#pragma unroll
    for (int k = 0; k < V; k += 2) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(y[k], y[k + 1]);
      o.v[k] = nk::bf16{__bfloat16_as_ushort(h.x)};
      o.v[k + 1] = nk::bf16{__bfloat16_as_ushort(h.y)};
    }
  } else if constexpr (std::is_same_v<T, nk::f16>) {
#pragma unroll
    for (int k = 0; k < V; k += 2) {
      const __half2 h = __floats2half2_rn(y[k], y[k + 1]);
      o.v[k] = nk::f16{__half_as_ushort(h.x)};
      o.v[k + 1] = nk::f16{__half_as_ushort(h.y)};
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) o.v[k] = from_acc<T>(y[k]);
  }
  return o;
}

// y of one pack: with c = v - mean (v itself for RMS), c * (rstd * w) + b as one fma (c * rstd * w
// without bias, fma(c, rstd, b) without weight, c * rstd with neither). HW / HB: weight / bias given.
template <class T, class W, bool AL, bool RMS, bool HW, bool HB>
__device__ __forceinline__ PackOf<T> finish_pack(const RowNormFwdArgs& a, int64_t j, const PackOf<T>& p, Acc<T> mean,
                                                 Acc<T> rstd) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  A y[V];
#pragma unroll
  for (int k = 0; k < V; ++k) y[k] = RMS ? to_acc(p.v[k]) : to_acc(p.v[k]) - mean;
  A w[V], b[V];
  if constexpr (HW) load_params<W, V, AL>(static_cast<const W*>(a.weight), j, a.N, w);
  if constexpr (HB) load_params<W, V, AL>(static_cast<const W*>(a.bias), j, a.N, b);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const A s = HW ? rstd * w[k] : rstd;
    y[k] = HB ? fma_acc(y[k], s, b[k]) : y[k] * s;
  }
  return to_pack<T>(y);
}

// Calls f.template operator()<HW, HB>() for the weight / bias given.
template <class F> __device__ __forceinline__ void by_affine(const RowNormFwdArgs& a, F&& f) {
  if (a.weight) {
    if (a.bias) f.template operator()<true, true>();
    else f.template operator()<true, false>();
  } else {
    if (a.bias) f.template operator()<false, true>();
    else f.template operator()<false, false>();
  }
}

template <class T, class W, bool AL, int ITEMS, bool RMS>
__global__ void __launch_bounds__(kMaxTpr) fwd_cached(const RowNormFwdArgs a) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  __shared__ A buf_mean[32], buf_var[32];
  const int tpr = blockDim.x, tid = threadIdx.x;
  const int N = static_cast<int>(a.N);  // a cached row has at most kMaxTpr * 32 elements
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const bool valid = r < a.M;
  PackOf<T> v[ITEMS];  // the row kept in its storage type: half the registers for 2-byte types
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int j = (it * tpr + tid) * V;
    if (valid && j < N) {
      v[it] = load_source<T, AL>(a, r, j);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) v[it].v[k] = T{};
    }
  }
  A mean = 0;
  if constexpr (!RMS) {
    A s = 0;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it)
#pragma unroll
      for (int k = 0; k < V; ++k) s += to_acc(v[it].v[k]);
    mean = group_total(s, tpr, buf_mean) / static_cast<A>(N);
  }
  // Squared deviations of the elements in the row (those outside would add +0 to q >= +0: skipped,
  // the same bits either way). Rows past M compute a q that is never used.
  A q = 0;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int j = (it * tpr + tid) * V;
    if (j < N) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if (in_row<AL>(j, k, N)) {
          const A d = RMS ? to_acc(v[it].v[k]) : to_acc(v[it].v[k]) - mean;
          q = fma_acc(d, d, q);
        }
      }
    }
  }
  const A rstd = A(1) / sqrt(group_total(q, tpr, buf_var) / static_cast<A>(N) + static_cast<A>(a.eps));
  if (!valid) return;  // no barrier follows
  T* const yrow = static_cast<T*>(a.y) + r * a.N;
  // The weight / bias dispatch per pack (uniform branches): the parameter loads of later packs are
  // then not hoisted ahead, which would exceed the register budget.
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int j = (it * tpr + tid) * V;
    if (j < N) {
      by_affine(a, [&]<bool HW, bool HB>() {
        store_pack<T, AL>(yrow, j, N, finish_pack<T, W, AL, RMS, HW, HB>(a, j, v[it], mean, rstd));
      });
    }
  }
  if (tid == 0) {
    if (a.mean && !RMS) static_cast<A*>(a.mean)[r] = mean;
    if (a.rstd) static_cast<A*>(a.rstd)[r] = rstd;
  }
}

// Sum over the block (one row per block), every thread getting it; smem reused across calls.
template <class A> __device__ __forceinline__ A block_sum(A v, A* smem) {
  v = group_sum(v, 32);
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // smem may still be read from the previous call
  if (threadIdx.x % 32 == 0) smem[warp] = v;
  __syncthreads();
  A s = smem[0];
  for (int w = 1; w < warps; ++w) s += smem[w];
  return s;
}

// Long rows, one per block: three passes over the row (h is written in the first and read back
// by the same thread in the others).
template <class T, class W, bool AL, bool RMS>
__global__ void __launch_bounds__(kLoopThreads) fwd_looped(const RowNormFwdArgs a) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  __shared__ A smem[32];
  const int tid = threadIdx.x;
  const int64_t N = a.N, step = static_cast<int64_t>(blockDim.x) * V;
  for (int64_t r = blockIdx.x; r < a.M; r += gridDim.x) {
    const T* src = a.res ? static_cast<const T*>(a.h) + r * N : static_cast<const T*>(a.x) + r * a.ldx;
    A s = 0;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const PackOf<T> p = load_source<T, AL>(a, r, j);
      if constexpr (!RMS) {
#pragma unroll
        for (int k = 0; k < V; ++k) s += to_acc(p.v[k]);
      }
    }
    const A mean = RMS ? A(0) : block_sum(s, smem) / static_cast<A>(N);
    A q = 0;
    for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step) {
      const PackOf<T> p = load_pack<T, AL>(src, j, N);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if (in_row<AL>(j, k, N)) {  // outside: +0 added to q >= +0, skipped
          const A d = RMS ? to_acc(p.v[k]) : to_acc(p.v[k]) - mean;
          q = fma_acc(d, d, q);
        }
      }
    }
    const A rstd = A(1) / sqrt(block_sum(q, smem) / static_cast<A>(N) + static_cast<A>(a.eps));
    T* const yrow = static_cast<T*>(a.y) + r * N;
    by_affine(a, [&]<bool HW, bool HB>() {
      for (int64_t j = static_cast<int64_t>(tid) * V; j < N; j += step)
        store_pack<T, AL>(yrow, j, N, finish_pack<T, W, AL, RMS, HW, HB>(a, j, load_pack<T, AL>(src, j, N), mean, rstd));
    });
    if (tid == 0) {
      if (a.mean && !RMS) static_cast<A*>(a.mean)[r] = mean;
      if (a.rstd) static_cast<A*>(a.rstd)[r] = rstd;
    }
  }
}

// Register budget of the cached forward (elements per thread).
template <class T> constexpr int kFwdElems = sizeof(T) == 2 ? 32 : 16;

template <class T> const char* fwd(const RowNormFwdArgs& a, bool rms, cudaStream_t s) {
  if (a.M <= 0 || a.N <= 0) return nullptr;
  const void* ptrs[] = {a.x, a.res, a.y, a.h, a.weight, a.bias};
  const int64_t lds[] = {a.ldx, a.ldr, a.N, a.N, 0, 0};
  const Plan p = plan_rows<T>(a.N, kFwdElems<T>);
  // The cached kernel has one row group per block, no grid-stride loop: never cap its grid.
  if (p.items && (a.M + p.rpb - 1) / p.rpb > int64_t{1} << 30) return "too many rows for one launch";
  const bool al = aligned16<T>(a.N, ptrs, lds, 6);
  return by_param<T>(a.param_in_dtype, [&]<class W>() {
    by_plan<T, kFwdElems<T>>(p, al, [&]<bool AL, int ITEMS>() {
      if constexpr (ITEMS == 0) {
        if (rms) fwd_looped<T, W, AL, true><<<grid_of(a.M), p.tpr, 0, s>>>(a);
        else fwd_looped<T, W, AL, false><<<grid_of(a.M), p.tpr, 0, s>>>(a);
      } else {
        const dim3 block(p.tpr, p.rpb);
        const int grid = grid_of((a.M + p.rpb - 1) / p.rpb);
        if (rms) fwd_cached<T, W, AL, ITEMS, true><<<grid, block, 0, s>>>(a);
        else fwd_cached<T, W, AL, ITEMS, false><<<grid, block, 0, s>>>(a);
      }
    });
    return launch_error();
  });
}

}  // namespace

const char* layer_norm_fwd(const RowNormFwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return fwd<T>(a, false, static_cast<cudaStream_t>(stream)); });
}
const char* rms_norm_fwd(const RowNormFwdArgs& a, int dev, void* stream) {
  return on_device(dev, a.dtype, [&]<class T>() { return fwd<T>(a, true, static_cast<cudaStream_t>(stream)); });
}

}  // namespace nk::cuda
