// CUDA BatchNorm, GroupNorm and InstanceNorm, forward and backward (contracts: normkit/chan_norm.h,
// normkit/cuda.h), on a contiguous (N, C, S) tensor in either layout.
//
// Every op is: per-(n, c) sums in double over fixed units (nc_sums), sums per key in a fixed
// order (key_sums: per channel over n for BatchNorm, per (n, group) over its channels for
// GroupNorm / InstanceNorm), a small coefficient kernel, and one elementwise pass
//   forward:  y  = (x - m) * a + b
//   backward: dx = k1 * dy + k2 * (x - m) + k3
// with coefficients per channel (coef_nstride 0) or per (n, c) (coef_nstride C). Statistics are
// two-pass: the sums of x, then the sums of (x - mean)^2 with the key's mean subtracted. Units:
// NCHW rows (n, c) of S values are cut into units of kUnit values; channels-last samples are cut
// into chunks of kRows rows of C channels. Nothing depends on the device: bitwise reproducible.
#include "cuda_util.cuh"
#include "normkit/cuda.h"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kUnit = 4096;  // NCHW: values of a row (n, c) per unit
constexpr int64_t kRows = 64;    // channels-last: rows of C channels per chunk

int grid_for(int64_t n) { return static_cast<int>(min64((n + kThreads - 1) / kThreads, int64_t{1} << 20)); }

enum class Mode : int { sum = 0, sq_dev = 1, grad = 2 };

// The quantities summed for element (n, c, s): sum: x; sq_dev: (x - m)^2; grad: dy and
// dy * (x - m) * r, where m and r are per (n, c): m[n * mstride + c].
struct SumArgs {
  Layout layout;
  int64_t N, C, S;
  const void* x;
  const void* dy;
  const double* m;
  const double* r;
  int64_t mstride;
  Mode mode;
};

template <class T>
__device__ __forceinline__ void quantities(const SumArgs& a, int64_t i, int64_t n, int64_t c, double& q1, double& q2) {
  const double v = static_cast<double>(to_acc(static_cast<const T*>(a.x)[i]));
  if (a.mode == Mode::sum) {
    q1 += v;
  } else if (a.mode == Mode::sq_dev) {
    const double d = v - a.m[n * a.mstride + c];
    q1 += d * d;
  } else {
    const double g = static_cast<double>(to_acc(static_cast<const T*>(a.dy)[i]));
    q1 += g;
    q2 += g * (v - a.m[n * a.mstride + c]) * a.r[n * a.mstride + c];
  }
}

// NCHW: block b = unit b % units of row b / units; a fixed tree in shared memory.
template <class T> __global__ void ncs_unit_sums(const SumArgs a, int64_t units, double* p1, double* p2) {
  __shared__ double s1[kThreads], s2[kThreads];
  for (int64_t blk = blockIdx.x; blk < a.N * a.C * units; blk += gridDim.x) {
    const int64_t row = blk / units, u = blk % units, n = row / a.C, c = row % a.C;
    const int64_t j0 = u * kUnit, j1 = min64(a.S, j0 + kUnit);
    double q1 = 0, q2 = 0;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += kThreads) quantities<T>(a, row * a.S + j, n, c, q1, q2);
    s1[threadIdx.x] = q1;
    s2[threadIdx.x] = q2;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (threadIdx.x < w) {
        s1[threadIdx.x] += s1[threadIdx.x + w];
        s2[threadIdx.x] += s2[threadIdx.x + w];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      p1[blk] = s1[0];
      p2[blk] = s2[0];
    }
    __syncthreads();
  }
}

// Channels-last: thread (chunk k of sample n, channel c) sums its chunk's rows of channel c.
template <class T> __global__ void nsc_chunk_sums(const SumArgs a, int64_t chunks, double* p1, double* p2) {
  const int64_t total = a.N * chunks * a.C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const int64_t c = t % a.C, nk = t / a.C, n = nk / chunks, k = nk % chunks;
    const int64_t s0 = k * kRows, s1 = min64(a.S, s0 + kRows);
    double q1 = 0, q2 = 0;
    for (int64_t s = s0; s < s1; ++s) quantities<T>(a, (n * a.S + s) * a.C + c, n, c, q1, q2);
    p1[t] = q1;
    p2[t] = q2;
  }
}

// out[n * C + c] = sum over the parts of (n, c), in order. NCHW parts: p[(n * C + c) * parts + u];
// channels-last: p[((n * parts) + k) * C + c].
__global__ void nc_totals(Layout layout, int64_t N, int64_t C, int64_t parts, const double* p, double* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < N * C; t += stride) {
    const int64_t n = t / C, c = t % C;
    double s = 0;
    for (int64_t u = 0; u < parts; ++u) s += layout == Layout::ncs ? p[t * parts + u] : p[(n * parts + u) * C + c];
    out[t] = s;
  }
}

// Keys: per channel (G = 0: out[c] = sum over n of in[n * C + c]) or per (n, g) with C / G
// channels per group (out[n * G + g] = sum over its channels of in[n * C + c]); in order.
__global__ void key_sums(int64_t N, int64_t C, int64_t G, const double* in, double* out) {
  const int64_t keys = G ? N * G : C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < keys; k += stride) {
    double s = 0;
    if (G == 0) {
      for (int64_t n = 0; n < N; ++n) s += in[n * C + k];
    } else {
      const int64_t n = k / G, g = k % G, cg = C / G;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) s += in[n * C + c];
    }
    out[k] = s;
  }
}

// Per-(n, c) sums of a mode, then per-key sums into key_out (and the per-(n, c) sums into nc1 /
// nc2 when given). G = 0: keys are channels; otherwise (n, g).
template <class T>
const char* sums(const SumArgs& a, int64_t G, double* key1, double* key2, double* nc1, double* nc2, cudaStream_t s) {
  const int64_t parts = a.layout == Layout::ncs ? (a.S + kUnit - 1) / kUnit : (a.S + kRows - 1) / kRows;
  const int64_t np = a.N * a.C * parts;
  Scratch scratch((2 * np + 2 * a.N * a.C) * static_cast<int64_t>(sizeof(double)), s);
  if (scratch.error()) return scratch.error();
  double* p1 = scratch.as<double>();
  double* p2 = p1 + np;
  double* t1 = nc1 ? nc1 : p2 + np;
  double* t2 = nc2 ? nc2 : p2 + np + a.N * a.C;
  // Empty shapes launch nothing that has no work: totals of no parts are 0, keys of no (n, c) are 0.
  if (np > 0) {
    if (a.layout == Layout::ncs)
      ncs_unit_sums<T><<<static_cast<int>(min64(np, int64_t{1} << 20)), kThreads, 0, s>>>(a, parts, p1, p2);
    else
      nsc_chunk_sums<T><<<grid_for(np), kThreads, 0, s>>>(a, parts, p1, p2);
  }
  if (a.N * a.C > 0) {
    nc_totals<<<grid_for(a.N * a.C), kThreads, 0, s>>>(a.layout, a.N, a.C, parts, p1, t1);
    if (a.mode == Mode::grad) nc_totals<<<grid_for(a.N * a.C), kThreads, 0, s>>>(a.layout, a.N, a.C, parts, p2, t2);
  }
  const int64_t keys = G ? a.N * G : a.C;
  if (keys == 0) return launch_error();
  if (key1) key_sums<<<grid_for(keys), kThreads, 0, s>>>(a.N, a.C, G, t1, key1);
  if (key2 && a.mode == Mode::grad) key_sums<<<grid_for(keys), kThreads, 0, s>>>(a.N, a.C, G, t2, key2);
  return launch_error();
}

// y = (x - m) * a + b  or  dx = k1 * dy + k2 * (x - m) + k3, with the coefficients of key k.
template <class T>
__device__ __forceinline__ T apply_one(const T* x, const T* dy, int64_t i, Acc<T> m, Acc<T> k1, Acc<T> k2, Acc<T> k3) {
  const Acc<T> d = to_acc(x[i]) - m;
  return from_acc<T>(dy ? k1 * to_acc(dy[i]) + k2 * d + k3 : d * k1 + k2);
}

constexpr int64_t kApplyChunk = 4096;  // NCHW: values of a row per block of the elementwise pass

// NCHW: block b takes chunk b % chunks of row b / chunks (row = n * C + c): the row's
// coefficients are read once per block and no index is divided per element.
template <class T>
__global__ void apply_ncs(int64_t N, int64_t C, int64_t S, const T* x, const T* dy, T* out, const Acc<T>* m,
                          const Acc<T>* k1, const Acc<T>* k2, const Acc<T>* k3, int64_t ns, int64_t chunks) {
  for (int64_t b = blockIdx.x; b < N * C * chunks; b += gridDim.x) {
    const int64_t row = b / chunks, s0 = (b % chunks) * kApplyChunk, s1 = min64(S, s0 + kApplyChunk);
    const int64_t k = (row / C) * ns + row % C;
    const Acc<T> mk = m[k], a1 = k1[k], a2 = k2[k], a3 = k3 ? k3[k] : Acc<T>(0);
    for (int64_t s = s0 + threadIdx.x; s < s1; s += blockDim.x)
      out[row * S + s] = apply_one(x, dy, row * S + s, mk, a1, a2, a3);
  }
}

// Channels-last: rows (n, s) of C channels; thread (tx, ty) takes channels tx, tx + blockDim.x, ...
// of every blockDim.y-th row of the block's share. One division per row, for per-sample
// coefficients only.
template <class T>
__global__ void apply_nsc(int64_t N, int64_t C, int64_t S, const T* x, const T* dy, T* out, const Acc<T>* m,
                          const Acc<T>* k1, const Acc<T>* k2, const Acc<T>* k3, int64_t ns) {
  const int64_t rows = N * S, step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < rows; r += step) {
    const int64_t base = ns ? (r / S) * ns : 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const int64_t k = base + c;
      out[r * C + c] = apply_one(x, dy, r * C + c, m[k], k1[k], k2[k], k3 ? k3[k] : Acc<T>(0));
    }
  }
}

// ---- coefficient kernels (one thread per channel or per (n, c)) --------------------------------

template <class A> __device__ __forceinline__ A wt(const void* w, int64_t c, A dflt) {
  return w ? static_cast<const A*>(w)[c] : dflt;
}

// BatchNorm forward: statistics per channel, saved outputs, coefficients m, a, b (A[C]).
template <class A>
__global__ void bn_fwd_coefs(BatchNormFwdArgs p, const double* sum, const double* m2, A* cm, A* ca, A* cb) {
  const int64_t count = p.N * p.S;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < p.C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double mean, var;
    if (p.training) {
      mean = sum[c] / static_cast<double>(count);
      var = m2[c] / static_cast<double>(count);
      if (p.batch_mean) p.batch_mean[c] = mean;
      if (p.batch_var) p.batch_var[c] = m2[c] / static_cast<double>(count - 1);
    } else {
      mean = static_cast<double>(static_cast<const A*>(p.run_mean)[c]);
      var = static_cast<double>(static_cast<const A*>(p.run_var)[c]);
    }
    const double rstd = 1.0 / sqrt(var + p.eps);
    static_cast<A*>(p.save_mean)[c] = static_cast<A>(mean);
    static_cast<A*>(p.save_rstd)[c] = static_cast<A>(rstd);
    cm[c] = static_cast<A>(mean);
    ca[c] = static_cast<A>(rstd * static_cast<double>(wt<A>(p.weight, c, A(1))));
    cb[c] = wt<A>(p.bias, c, A(0));
  }
}

// Training-mode means (sum / count) for the second pass, in double.
__global__ void means_of(int64_t keys, const double* sum, double count, double* mean) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < keys;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    mean[k] = sum[k] / count;
}

// Per-(n, c) shifts from per-key values (G = 0: per channel; else per (n, g)), A -> double.
template <class A> __global__ void nc_from_keys(int64_t N, int64_t C, int64_t G, const A* key, double* out) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < N * C;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = t / C, c = t % C;
    out[t] = static_cast<double>(G ? key[n * G + c / (C / G)] : key[c]);
  }
}

// BatchNorm backward coefficients per channel; dweight = sum dy * xhat, dbias = sum dy.
template <class A> __global__ void bn_bwd_coefs(BatchNormBwdArgs p, A* cm, A* k1, A* k2, A* k3) {
  const double count = static_cast<double>(p.N * p.S);
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < p.C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double r = static_cast<double>(static_cast<const A*>(p.rstd)[c]);
    const double w = static_cast<double>(wt<A>(p.weight, c, A(1)));
    cm[c] = static_cast<const A*>(p.mean)[c];
    k1[c] = static_cast<A>(w * r);
    k2[c] = static_cast<A>(p.training ? -w * r * r * p.dweight[c] / count : 0.0);
    k3[c] = static_cast<A>(p.training ? -w * r * p.dbias[c] / count : 0.0);
  }
}

// GroupNorm forward: per (n, g) mean, m2, rstd; coefficients per (n, c).
template <class A>
__global__ void gn_fwd_coefs(GroupFwdArgs p, const double* sum, A* cm, A* ca, A* cb) {
  const int64_t cg = p.C / p.G;
  const double count = static_cast<double>(cg * p.S);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < p.N * p.C;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = t / p.C, c = t % p.C, k = n * p.G + c / cg;
    const double mean = sum[k] / count, rstd = 1.0 / sqrt(p.m2[k] / count + p.eps);
    if (c % cg == 0) {
      p.mean[k] = mean;
      p.rstd[k] = rstd;
    }
    cm[t] = static_cast<A>(mean);
    ca[t] = static_cast<A>(rstd * static_cast<double>(wt<A>(p.weight, c, A(1))));
    cb[t] = wt<A>(p.bias, c, A(0));
  }
}

// GroupNorm backward: dx coefficients per (n, c) from the per-(n, c) sums (K = C / G * S).
template <class A> __global__ void gn_bwd_coefs(GroupBwdArgs p, A* cm, A* k1, A* k2, A* k3) {
  const int64_t cg = p.C / p.G;
  const double K = static_cast<double>(cg * p.S);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < p.N * p.C;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = t / p.C, c = t % p.C, g = c / cg, k = n * p.G + g;
    const double r = static_cast<double>(static_cast<const A*>(p.rstd)[k]);
    const double w = static_cast<double>(wt<A>(p.weight, c, A(1)));
    double swdy = 0, swdyx = 0;  // over the group's channels, in order
    for (int64_t j = g * cg; j < (g + 1) * cg; ++j) {
      const double wj = static_cast<double>(wt<A>(p.weight, j, A(1)));
      swdy += wj * p.sdy[n * p.C + j];
      swdyx += wj * p.sdyx[n * p.C + j];
    }
    cm[t] = static_cast<const A*>(p.mean)[k];
    k1[t] = static_cast<A>(r * w);
    k2[t] = static_cast<A>(p.affine_only ? 0.0 : -r * r * swdyx / K);
    k3[t] = static_cast<A>(p.affine_only ? 0.0 : -r * swdy / K);
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
// mean and unbiased variance.
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

template <class T> const char* apply(Layout layout, int64_t N, int64_t C, int64_t S, const void* x, const void* dy,
                                     void* out, const Acc<T>* m, const Acc<T>* k1, const Acc<T>* k2,
                                     const Acc<T>* k3, int64_t ns, cudaStream_t s) {
  if (N * C * S == 0) return nullptr;
  const T* xt = static_cast<const T*>(x);
  const T* dyt = static_cast<const T*>(dy);
  T* o = static_cast<T*>(out);
  if (layout == Layout::ncs) {
    const int64_t chunks = (S + kApplyChunk - 1) / kApplyChunk;
    apply_ncs<T><<<static_cast<int>(min64(N * C * chunks, int64_t{1} << 20)), kThreads, 0, s>>>(N, C, S, xt, dyt, o, m,
                                                                                              k1, k2, k3, ns, chunks);
  } else {
    const int tx = static_cast<int>(min64((C + 31) / 32 * 32, kThreads)), ty = kThreads / tx;
    apply_nsc<T><<<static_cast<int>(min64((N * S + ty - 1) / ty, int64_t{1} << 20)), dim3(tx, ty), 0, s>>>(
        N, C, S, xt, dyt, o, m, k1, k2, k3, ns);
  }
  return launch_error();
}

template <class T> const char* bn_fwd(const BatchNormFwdArgs& p, cudaStream_t s) {
  using A = Acc<T>;
  const int64_t C = p.C;
  Scratch scratch(3 * C * static_cast<int64_t>(sizeof(A)) + 3 * C * static_cast<int64_t>(sizeof(double)), s);
  if (scratch.error()) return scratch.error();
  double* sum = scratch.as<double>();
  double* m2 = sum + C;
  double* mean = m2 + C;
  A* cm = reinterpret_cast<A*>(mean + C);
  if (p.training) {
    const char* e = sums<T>(SumArgs{p.layout, p.N, C, p.S, p.x, nullptr, nullptr, nullptr, 0, Mode::sum}, 0, sum,
                            nullptr, nullptr, nullptr, s);
    if (e) return e;
    means_of<<<grid_for(C), kThreads, 0, s>>>(C, sum, static_cast<double>(p.N * p.S), mean);
    e = sums<T>(SumArgs{p.layout, p.N, C, p.S, p.x, nullptr, mean, nullptr, 0, Mode::sq_dev}, 0, m2, nullptr,
                nullptr, nullptr, s);
    if (e) return e;
  }
  bn_fwd_coefs<A><<<grid_for(C), kThreads, 0, s>>>(p, sum, m2, cm, cm + C, cm + 2 * C);
  if (const char* e = launch_error()) return e;
  return apply<T>(p.layout, p.N, C, p.S, p.x, nullptr, p.y, cm, cm + C, cm + 2 * C, nullptr, 0, s);
}

template <class T> const char* bn_bwd(const BatchNormBwdArgs& p, cudaStream_t s) {
  using A = Acc<T>;
  const int64_t C = p.C;
  Scratch scratch(2 * C * static_cast<int64_t>(sizeof(double)) + 4 * C * static_cast<int64_t>(sizeof(A)), s);
  if (scratch.error()) return scratch.error();
  double* m = scratch.as<double>();
  double* r = m + C;
  A* cm = reinterpret_cast<A*>(r + C);
  nc_from_keys<A><<<grid_for(C), kThreads, 0, s>>>(1, C, 0, static_cast<const A*>(p.mean), m);
  nc_from_keys<A><<<grid_for(C), kThreads, 0, s>>>(1, C, 0, static_cast<const A*>(p.rstd), r);
  const char* e = sums<T>(SumArgs{p.layout, p.N, C, p.S, p.x, p.dy, m, r, 0, Mode::grad}, 0, p.dbias, p.dweight,
                          nullptr, nullptr, s);
  if (e) return e;
  bn_bwd_coefs<A><<<grid_for(C), kThreads, 0, s>>>(p, cm, cm + C, cm + 2 * C, cm + 3 * C);
  if ((e = launch_error())) return e;
  return apply<T>(p.layout, p.N, C, p.S, p.x, p.dy, p.dx, cm, cm + C, cm + 2 * C, cm + 3 * C, 0, s);
}

template <class T> const char* gn_fwd(const GroupFwdArgs& p, Layout layout, cudaStream_t s) {
  using A = Acc<T>;
  const int64_t NC = p.N * p.C, K = p.N * p.G;
  Scratch scratch(2 * K * static_cast<int64_t>(sizeof(double)) + NC * static_cast<int64_t>(sizeof(double)) +
                      3 * NC * static_cast<int64_t>(sizeof(A)), s);
  if (scratch.error()) return scratch.error();
  double* sum = scratch.as<double>();
  double* kmean = sum + K;
  double* shift = kmean + K;
  A* cm = reinterpret_cast<A*>(shift + NC);
  const char* e = sums<T>(SumArgs{layout, p.N, p.C, p.S, p.x, nullptr, nullptr, nullptr, 0, Mode::sum}, p.G, sum,
                          nullptr, nullptr, nullptr, s);
  if (e) return e;
  means_of<<<grid_for(K), kThreads, 0, s>>>(K, sum, static_cast<double>(p.C / p.G * p.S), kmean);
  nc_from_keys<double><<<grid_for(NC), kThreads, 0, s>>>(p.N, p.C, p.G, kmean, shift);
  e = sums<T>(SumArgs{layout, p.N, p.C, p.S, p.x, nullptr, shift, nullptr, p.C, Mode::sq_dev}, p.G, p.m2, nullptr,
              nullptr, nullptr, s);
  if (e) return e;
  gn_fwd_coefs<A><<<grid_for(NC), kThreads, 0, s>>>(p, sum, cm, cm + NC, cm + 2 * NC);
  if ((e = launch_error())) return e;
  return apply<T>(layout, p.N, p.C, p.S, p.x, nullptr, p.y, cm, cm + NC, cm + 2 * NC, nullptr, p.C, s);
}

template <class T> const char* gn_bwd(const GroupBwdArgs& p, Layout layout, cudaStream_t s) {
  using A = Acc<T>;
  const int64_t NC = p.N * p.C;
  Scratch scratch(2 * NC * static_cast<int64_t>(sizeof(double)) + 4 * NC * static_cast<int64_t>(sizeof(A)), s);
  if (scratch.error()) return scratch.error();
  double* m = scratch.as<double>();
  double* r = m + NC;
  A* cm = reinterpret_cast<A*>(r + NC);
  nc_from_keys<A><<<grid_for(NC), kThreads, 0, s>>>(p.N, p.C, p.G, static_cast<const A*>(p.mean), m);
  nc_from_keys<A><<<grid_for(NC), kThreads, 0, s>>>(p.N, p.C, p.G, static_cast<const A*>(p.rstd), r);
  // dbias[c] = sum over n of sdy, dweight[c] = sum over n of sdyx (keys: channels).
  const char* e = sums<T>(SumArgs{layout, p.N, p.C, p.S, p.x, p.dy, m, r, p.C, Mode::grad}, 0, p.dbias, p.dweight,
                          p.sdy, p.sdyx, s);
  if (e) return e;
  gn_bwd_coefs<A><<<grid_for(NC), kThreads, 0, s>>>(p, cm, cm + NC, cm + 2 * NC, cm + 3 * NC);
  if ((e = launch_error())) return e;
  return apply<T>(layout, p.N, p.C, p.S, p.x, p.dy, p.dx, cm, cm + NC, cm + 2 * NC, cm + 3 * NC, p.C, s);
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
    lerp_kernel<R><<<grid_for(C), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(C, static_cast<R*>(run), batch,
                                                                                    momentum);
    return launch_error();
  });
}

const char* instance_batch_stats(int64_t N, int64_t C, int64_t S, const double* mean, const double* m2, double* bm,
                                 double* bv, int dev, void* stream) {
  DeviceScope d(dev);
  if (d.error()) return d.error();
  if (C <= 0) return nullptr;
  instance_batch_kernel<<<grid_for(C), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(N, C, S, mean, m2, bm, bv);
  return launch_error();
}

}  // namespace nk::cuda
