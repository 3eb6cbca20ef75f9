// CUDA LayerNorm / RMSNorm backward (layout and plan: norm_common.cuh).
//
// dx: per row, the two sums of g = dy * w and g * x-hat (one barrier for both), then
// dx = rstd * (g - mean(g) - x-hat * mean(g * x-hat)).
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

// Rows of slot y of chunk c: c * rpc + st * rpb + y for st < spr (rpc = rpb * spr). The slot's
// column sums go to partial row c * rpb + y of pw / pb ([P, N], A; pb unused for RMS).
template <class T, class W, bool RMS, bool AL, int ITEMS>
__global__ void __launch_bounds__(kMaxTpr)
    bwd_cached(const RowNormBwdArgs a, const int64_t spr, Acc<T>* pw, Acc<T>* pb) {
  using A = Acc<T>;
  constexpr int V = kVec16<T>;
  __shared__ A buf[2][64];
  const int tpr = blockDim.x, tid = threadIdx.x, rpb = blockDim.y;
  const int64_t N = a.N, c = blockIdx.x, rpc = static_cast<int64_t>(rpb) * spr;
  const W* wp = static_cast<const W*>(a.weight);
  A w[ITEMS][V];  // the thread's weights, read once
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
    if (wp && j < N) {
      load_params<W, V, AL>(wp, j, N, w[it]);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) w[it][k] = 1;
    }
  }
  A dw[ITEMS][V], db[RMS ? 1 : ITEMS][V];
#pragma unroll
  for (int it = 0; it < ITEMS; ++it)
#pragma unroll
    for (int k = 0; k < V; ++k) {
      dw[it][k] = 0;
      if constexpr (!RMS) db[it][k] = 0;
    }
  const A inv_n = A(1) / static_cast<A>(N);
  for (int64_t st = 0; st < spr; ++st) {  // the same count for every slot: barriers stay converged
    const int64_t r = c * rpc + st * rpb + threadIdx.y;
    const bool valid = r < a.M;
    PackOf<T> px[ITEMS], pd[ITEMS];
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
      if (valid && j < N) {
        px[it] = load_pack<T, AL>(static_cast<const T*>(a.x) + r * a.ldx, j, N);
        pd[it] = load_pack<T, AL>(static_cast<const T*>(a.dy) + r * a.lddy, j, N);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) px[it].v[k] = pd[it].v[k] = T{};
      }
    }
    const A mean = valid && !RMS ? static_cast<const A*>(a.mean)[r] : A(0);
    const A rstd = valid ? static_cast<const A*>(a.rstd)[r] : A(0);
    A sg = 0, sgx = 0;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = to_acc(pd[it].v[k]);  // 0 past the row's end and for invalid rows
        const A xh = valid && j < N && in_row<AL>(j, k, N) ? (to_acc(px[it].v[k]) - mean) * rstd : A(0);
        const A g = d * w[it][k];
        sg += g;
        sgx += g * xh;
        dw[it][k] += d * xh;
        if constexpr (!RMS) db[it][k] += d;
      }
    }
    group_total2(sg, sgx, tpr, buf[st & 1]);  // alternating buffers: one barrier per row
    const A mg = RMS ? A(0) : sg * inv_n, mgx = sgx * inv_n;
    if (valid) {
#pragma unroll
      for (int it = 0; it < ITEMS; ++it) {
        const int64_t j = (static_cast<int64_t>(it) * tpr + tid) * V;
        if (j < N) {
          PackOf<T> o;
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const A d = to_acc(pd[it].v[k]), xh = (to_acc(px[it].v[k]) - mean) * rstd, g = d * w[it][k];
            o.v[k] = from_acc<T>(rstd * (g - mg - xh * mgx));
          }
          store_pack<T, AL>(static_cast<T*>(a.dx) + r * N, j, N, o);
        }
      }
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

// Register budget of the cached backward (elements per thread: x, dy, w, dw, db of each).
template <class T> constexpr int kBwdElems = sizeof(T) == 8 ? 8 : 16;

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
  const Plan p = plan_rows<T>(a.N, kBwdElems<T>);
  const int64_t slots = a.N >= 4096 ? 512 : 1024;       // partial rows, about
  const int64_t spr = std::max<int64_t>(1, (a.M + slots - 1) / slots);  // rows per slot
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
        const dim3 block(p.tpr, p.rpb);
        bwd_cached<T, W, RMS, AL, ITEMS><<<grid_of(chunks), block, 0, s>>>(a, spr, pw, pb);
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
