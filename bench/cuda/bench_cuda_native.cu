// normkit — native Google Benchmark benches of the CUDA entry points (normkit/cuda.h), no Python.
//
// Each case calls one nk::cuda:: entry point on device buffers (cudaMalloc, filled on the device
// with uniform random values), timed with CUDA events recorded around the call on one stream and
// reported as manual time (UseManualTime). Before every iteration's start event, a buffer twice
// the size of the L2 cache is written (cudaMemsetAsync), so no input is served from L2.
//
// bytes_per_second counts the op's minimum traffic: each input read once, each output written
// once (weights, statistics and sums included). Compare it with copy/d2d/1GiB, the device-to-
// device cudaMemcpyAsync of 1 GiB (traffic 2 GiB: read + write), the practical ceiling.
//
// Names: <op>/<dtype>/<shape>[/<variant>]. Without a usable GPU (no driver or no device) the
// program prints a line and exits 0, so CI machines can run it.
//
//   cmake -S . -B build/bench -G Ninja -DNORMKIT_BENCH=ON -DNORMKIT_PYTHON=OFF -DCMAKE_CUDA_ARCHITECTURES=90
//   cmake --build build/bench && build/bench/bench_cuda_native --benchmark_filter='dropout|copy'
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "normkit/cuda.h"

namespace nk::bench_cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Device memory and filling

// Device buffer of `bytes` bytes (cudaMalloc); ok() is false when the allocation failed.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(int64_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&p_, static_cast<size_t>(bytes > 0 ? bytes : 1)) != cudaSuccess) {
      cudaGetLastError();
      p_ = nullptr;
    }
  }
  ~DevBuf() {
    if (p_) cudaFree(p_);
  }
  DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_) {}
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  bool ok() const { return p_ != nullptr; }
  void* get() const { return p_; }
  template <class U> U* as() const { return static_cast<U*>(p_); }
  int64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t i) {  // splitmix64 of (seed, i)
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (i + 1) * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // 24 random bits
}

template <class T> __device__ __forceinline__ T store_as(float v);
template <> __device__ __forceinline__ float store_as<float>(float v) { return v; }
template <> __device__ __forceinline__ nk::bf16 store_as<nk::bf16>(float v) {  // truncation: a valid bf16
  return nk::bf16{static_cast<uint16_t>(__float_as_uint(v) >> 16)};
}
template <> __device__ __forceinline__ uint8_t store_as<uint8_t>(float v) { return v >= 0.5f ? 1 : 0; }

template <class T> __global__ void fill_kernel(T* p, int64_t n, float lo, float hi, uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = store_as<T>(lo + (hi - lo) * uniform01(seed, static_cast<uint64_t>(i)));
}

// n uniform values in [lo, hi) of type T (uint8: 0/1 with probability 1/2), on the device.
template <class T> bool fill(const DevBuf& b, int64_t n, float lo, float hi, uint64_t seed) {
  if (!b.ok()) return false;
  fill_kernel<T><<<1024, 256>>>(b.as<T>(), n, lo, hi, seed);
  return cudaGetLastError() == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess;
}

// Element type traits: DType tag, bench-name tag, size.
template <class T> struct TypeInfo;
template <> struct TypeInfo<float> {
  static constexpr DType dtype = DType::f32;
  static constexpr const char* name = "f32";
};
template <> struct TypeInfo<nk::bf16> {
  static constexpr DType dtype = DType::bf16;
  static constexpr const char* name = "bf16";
};
template <class T> constexpr int64_t kSize = static_cast<int64_t>(sizeof(T));

// ---------------------------------------------------------------------------------------------
// Timing

// Per-process CUDA state: the stream every case runs on, two events, the L2 flush buffer.
struct Ctx {
  int dev = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  DevBuf flush;
  uint8_t flush_value = 0;
  bool init() {
    if (cudaSetDevice(dev) != cudaSuccess || cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess)
      return false;
    int l2 = 0;
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
    flush = DevBuf(2 * static_cast<int64_t>(l2 > 0 ? l2 : 64 << 20));
    return flush.ok();
  }
};
Ctx& ctx() {
  static Ctx c;
  return c;
}

// Runs `call` (returns nullptr or an error text) once per iteration between two events, after
// the L2 flush; the event time is the iteration time. Counts `bytes` of traffic per iteration.
template <class Call> void timed(benchmark::State& state, int64_t bytes, Call&& call) {
  Ctx& c = ctx();
  if (const char* e = call()) {  // warm-up (module load, first-touch of scratch pools)
    state.SkipWithError(e);
    return;
  }
  for (auto _ : state) {
    cudaMemsetAsync(c.flush.get(), c.flush_value++, static_cast<size_t>(c.flush.bytes()), c.stream);
    cudaEventRecord(c.start, c.stream);
    const char* e = call();
    cudaEventRecord(c.stop, c.stream);
    const cudaError_t se = cudaEventSynchronize(c.stop);
    if (e || se != cudaSuccess) {
      state.SkipWithError(e ? e : cudaGetErrorString(se));
      break;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, c.start, c.stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
}

// One slot for all cases: the device data of the most recent key (a new key frees the old data
// first, so only one case's buffers are resident). Google Benchmark calls a case's function
// several times; they reuse the data.
struct Slot {
  std::string key;
  std::shared_ptr<void> data;
};
template <class Data, class... Args> Data* cached(const std::string& key, Args&&... args) {
  static Slot s;
  if (s.key != key || !s.data) {
    s.data.reset();
    s.key.clear();
    auto d = std::make_shared<Data>(std::forward<Args>(args)...);
    if (!d->ok) return nullptr;
    s.key = key;
    s.data = d;
  }
  return static_cast<Data*>(s.data.get());
}

benchmark::internal::Benchmark* add(const std::string& name, std::function<void(benchmark::State&)> fn) {
  return benchmark::RegisterBenchmark(name.c_str(), std::move(fn))->UseManualTime()->Unit(benchmark::kMicrosecond);
}

#define NKB_SKIP_IF_NULL(d)                                               \
  if (!(d)) {                                                             \
    state.SkipWithError("device allocation or setup failed");             \
    return;                                                               \
  }

// ---------------------------------------------------------------------------------------------
// Row norms: LayerNorm / RMSNorm forward and backward, weights (and bias) float32.

template <class T> struct RowData {
  bool ok = false;
  int64_t M, N;
  DevBuf x, dy, y, weight, bias, mean, rstd, dweight, dbias;
  RowData(int64_t m, int64_t n, bool layer)
      : M(m), N(n), x(m * n * kSize<T>), dy(m * n * kSize<T>), y(m * n * kSize<T>), weight(n * 4), bias(n * 4),
        mean(m * 4), rstd(m * 4), dweight(n * 4), dbias(n * 4) {
    ok = fill<T>(x, m * n, -2.0f, 2.0f, 1) && fill<T>(dy, m * n, -1.0f, 1.0f, 2) &&
         fill<float>(weight, n, 0.5f, 1.5f, 3) && fill<float>(bias, n, -0.5f, 0.5f, 4) && y.ok() && mean.ok() &&
         rstd.ok() && dweight.ok() && dbias.ok();
    if (!ok) return;
    // mean / rstd as the forward leaves them, for the backward.
    const RowNormFwdArgs a = fwd_args(layer);
    const char* e = layer ? cuda::layer_norm_fwd(a, ctx().dev, ctx().stream) : cuda::rms_norm_fwd(a, ctx().dev, ctx().stream);
    ok = !e && cudaStreamSynchronize(ctx().stream) == cudaSuccess;
  }
  RowNormFwdArgs fwd_args(bool layer) const {
    RowNormFwdArgs a{};
    a.dtype = TypeInfo<T>::dtype;
    a.M = M;
    a.N = N;
    a.x = x.get();
    a.ldx = N;
    a.res = nullptr;
    a.ldr = 0;
    a.weight = weight.get();
    a.bias = layer ? bias.get() : nullptr;
    a.y = y.get();
    a.h = nullptr;
    a.mean = layer ? mean.get() : nullptr;
    a.rstd = rstd.get();
    a.eps = 1e-5;
    return a;
  }
  RowNormBwdArgs bwd_args(bool layer) const {
    RowNormBwdArgs a{};
    a.dtype = TypeInfo<T>::dtype;
    a.M = M;
    a.N = N;
    a.dy = dy.get();
    a.lddy = N;
    a.x = x.get();
    a.ldx = N;
    a.mean = layer ? mean.get() : nullptr;
    a.rstd = rstd.get();
    a.weight = weight.get();
    a.dx = y.get();
    a.dweight = dweight.get();
    a.dbias = layer ? dbias.get() : nullptr;
    return a;
  }
};

template <class T> void register_row_norms() {
  const int64_t M = 16384;
  for (int64_t N : {int64_t{1024}, int64_t{4096}, int64_t{8192}}) {
    for (bool layer : {true, false}) {
      const std::string op = layer ? "layer_norm" : "rms_norm";
      const std::string tag = std::string("/") + TypeInfo<T>::name + "/" + std::to_string(M) + "x" + std::to_string(N);
      const std::string key = "row/" + op + tag;
      const int64_t data = M * N * kSize<T>;
      const int64_t vecs = layer ? 2 : 1;  // weight (+ bias) in, mean (+) rstd out; dweight (+ dbias) out
      add(op + "_fwd" + tag, [=](benchmark::State& state) {
        RowData<T>* d = cached<RowData<T>>(key, M, N, layer);
        NKB_SKIP_IF_NULL(d);
        const RowNormFwdArgs a = d->fwd_args(layer);
        // read x, weight (+ bias); write y, (mean +) rstd
        timed(state, 2 * data + vecs * N * 4 + vecs * M * 4, [&] {
          return layer ? cuda::layer_norm_fwd(a, ctx().dev, ctx().stream) : cuda::rms_norm_fwd(a, ctx().dev, ctx().stream);
        });
      });
      add(op + "_bwd" + tag, [=](benchmark::State& state) {
        RowData<T>* d = cached<RowData<T>>(key, M, N, layer);
        NKB_SKIP_IF_NULL(d);
        const RowNormBwdArgs a = d->bwd_args(layer);
        // read dy, x, (mean +) rstd, weight; write dx, dweight (+ dbias)
        timed(state, 3 * data + vecs * M * 4 + N * 4 + vecs * N * 4, [&] {
          return layer ? cuda::layer_norm_bwd(a, ctx().dev, ctx().stream) : cuda::rms_norm_bwd(a, ctx().dev, ctx().stream);
        });
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Channel norms: BatchNorm forward (training / eval) and backward, GroupNorm forward; f32.

struct ChanShape {
  int64_t N, C, S;
  Layout layout;
  int64_t elems() const { return N * C * S; }
  std::string name() const {
    return std::to_string(N) + "x" + std::to_string(C) + "x" + std::to_string(S) + (layout == Layout::ncs ? "/ncs" : "/nsc");
  }
};

struct ChanData {
  bool ok = false;
  ChanShape s;
  int64_t G;
  DevBuf x, dy, y, weight, bias, run_mean, run_var, save_mean, save_rstd, batch_mean, batch_var, dweight, dbias,
      g_mean, g_m2, g_rstd;
  ChanData(ChanShape sh, int64_t groups)
      : s(sh), G(groups), x(sh.elems() * 4), dy(sh.elems() * 4), y(sh.elems() * 4), weight(sh.C * 4), bias(sh.C * 4),
        run_mean(sh.C * 4), run_var(sh.C * 4), save_mean(sh.C * 4), save_rstd(sh.C * 4), batch_mean(sh.C * 8),
        batch_var(sh.C * 8), dweight(sh.C * 8), dbias(sh.C * 8), g_mean(sh.N * groups * 8), g_m2(sh.N * groups * 8),
        g_rstd(sh.N * groups * 8) {
    ok = fill<float>(x, s.elems(), -2.0f, 2.0f, 1) && fill<float>(dy, s.elems(), -1.0f, 1.0f, 2) &&
         fill<float>(weight, s.C, 0.5f, 1.5f, 3) && fill<float>(bias, s.C, -0.5f, 0.5f, 4) &&
         fill<float>(run_mean, s.C, -0.1f, 0.1f, 5) && fill<float>(run_var, s.C, 0.5f, 1.5f, 6) && y.ok() &&
         save_mean.ok() && save_rstd.ok() && batch_mean.ok() && batch_var.ok() && dweight.ok() && dbias.ok() &&
         g_mean.ok() && g_m2.ok() && g_rstd.ok();
    if (!ok) return;
    // save_mean / save_rstd as the training forward leaves them, for the backward.
    ok = !cuda::batch_norm_fwd(bn_fwd_args(true), ctx().dev, ctx().stream) &&
         cudaStreamSynchronize(ctx().stream) == cudaSuccess;
  }
  BatchNormFwdArgs bn_fwd_args(bool training) const {
    BatchNormFwdArgs a{};
    a.dtype = DType::f32;
    a.layout = s.layout;
    a.N = s.N;
    a.C = s.C;
    a.S = s.S;
    a.x = x.get();
    a.y = y.get();
    a.weight = weight.get();
    a.bias = bias.get();
    a.run_mean = run_mean.get();
    a.run_var = run_var.get();
    a.training = training;
    a.eps = 1e-5;
    a.save_mean = save_mean.get();
    a.save_rstd = save_rstd.get();
    a.batch_mean = training ? batch_mean.as<double>() : nullptr;
    a.batch_var = training ? batch_var.as<double>() : nullptr;
    return a;
  }
  BatchNormBwdArgs bn_bwd_args() const {
    BatchNormBwdArgs a{};
    a.dtype = DType::f32;
    a.layout = s.layout;
    a.N = s.N;
    a.C = s.C;
    a.S = s.S;
    a.x = x.get();
    a.dy = dy.get();
    a.dx = y.get();
    a.mean = save_mean.get();
    a.rstd = save_rstd.get();
    a.weight = weight.get();
    a.training = true;
    a.dweight = dweight.as<double>();
    a.dbias = dbias.as<double>();
    return a;
  }
  GroupFwdArgs gn_fwd_args() const {
    GroupFwdArgs a{};
    a.dtype = DType::f32;
    a.N = s.N;
    a.C = s.C;
    a.S = s.S;
    a.G = G;
    a.x = x.get();
    a.y = y.get();
    a.weight = weight.get();
    a.bias = bias.get();
    a.eps = 1e-5;
    a.mean = g_mean.as<double>();
    a.m2 = g_m2.as<double>();
    a.rstd = g_rstd.as<double>();
    return a;
  }
};

void register_chan_norms() {
  const int64_t G = 32;
  for (Layout layout : {Layout::ncs, Layout::nsc}) {
    const ChanShape s{256, 64, 56 * 56, layout};
    const std::string tag = "/f32/" + s.name();
    const std::string key = "chan" + tag;
    const int64_t data = s.elems() * 4, C = s.C;
    for (bool training : {true, false}) {
      add(std::string("batch_norm_fwd") + tag + (training ? "/train" : "/eval"), [=](benchmark::State& state) {
        ChanData* d = cached<ChanData>(key, s, G);
        NKB_SKIP_IF_NULL(d);
        const BatchNormFwdArgs a = d->bn_fwd_args(training);
        // read x, weight, bias (+ running stats in eval); write y, save_mean, save_rstd (+ batch stats)
        const int64_t bytes = 2 * data + 2 * C * 4 + (training ? 2 * C * 4 + 2 * C * 8 : 2 * C * 4 + 2 * C * 4);
        timed(state, bytes, [&] { return cuda::batch_norm_fwd(a, ctx().dev, ctx().stream); });
      });
    }
    add("batch_norm_bwd" + tag + "/train", [=](benchmark::State& state) {
      ChanData* d = cached<ChanData>(key, s, G);
      NKB_SKIP_IF_NULL(d);
      const BatchNormBwdArgs a = d->bn_bwd_args();
      // read x, dy, mean, rstd, weight; write dx, dweight, dbias
      timed(state, 3 * data + 3 * C * 4 + 2 * C * 8, [&] { return cuda::batch_norm_bwd(a, ctx().dev, ctx().stream); });
    });
    add("group_norm_fwd" + tag + "/G:" + std::to_string(G), [=](benchmark::State& state) {
      ChanData* d = cached<ChanData>(key, s, G);
      NKB_SKIP_IF_NULL(d);
      const GroupFwdArgs a = d->gn_fwd_args();
      // read x, weight, bias; write y, mean, m2, rstd
      timed(state, 2 * data + 2 * C * 4 + 3 * s.N * G * 8,
            [&] { return cuda::group_norm_fwd(a, layout, ctx().dev, ctx().stream); });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout f32 (p = 0.5): forward from the seed (no mask), forward writing the mask, backward
// from the mask.

struct DropData {
  bool ok = false;
  int64_t n;
  DevBuf x, y, mask;
  explicit DropData(int64_t count) : n(count), x(count * 4), y(count * 4), mask(count) {
    ok = fill<float>(x, n, -2.0f, 2.0f, 1) && fill<uint8_t>(mask, n, 0.0f, 1.0f, 2) && y.ok();
  }
  DropoutArgs args(bool mask_in, bool mask_out) const {
    DropoutArgs a{};
    a.dtype = DType::f32;
    a.n = n;
    a.x = x.get();
    a.y = y.get();
    a.mask_in = mask_in ? mask.as<const uint8_t>() : nullptr;
    a.mask_out = mask_out ? mask.as<uint8_t>() : nullptr;
    a.seed = 1234;
    a.threshold = 1u << 31;
    a.scale = 2.0;
    return a;
  }
};

void register_dropout() {
  const int64_t M = 32768, N = 4096, n = M * N;
  const std::string tag = "/f32/" + std::to_string(M) + "x" + std::to_string(N);
  struct Variant {
    const char* name;
    bool mask_in, mask_out;
  };
  for (Variant v : {Variant{"dropout_fwd", false, false}, Variant{"dropout_fwd_mask", false, true},
                    Variant{"dropout_bwd_mask", true, false}}) {
    add(v.name + tag, [=](benchmark::State& state) {
      DropData* d = cached<DropData>("drop" + tag, n);
      NKB_SKIP_IF_NULL(d);
      const DropoutArgs a = d->args(v.mask_in, v.mask_out);
      // read x (+ mask); write y (+ mask)
      timed(state, 2 * n * 4 + ((v.mask_in || v.mask_out) ? n : 0),
            [&] { return cuda::dropout(a, ctx().dev, ctx().stream); });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Ceiling: device-to-device copy of 1 GiB.

struct CopyData {
  bool ok = false;
  DevBuf src, dst;
  explicit CopyData(int64_t bytes) : src(bytes), dst(bytes) {
    ok = fill<uint8_t>(src, bytes, 0.0f, 1.0f, 1) && dst.ok();
  }
};

void register_copy() {
  const int64_t bytes = int64_t{1} << 30;
  add("copy/d2d/1GiB", [=](benchmark::State& state) {
    CopyData* d = cached<CopyData>("copy", bytes);
    NKB_SKIP_IF_NULL(d);
    timed(state, 2 * bytes, [&]() -> const char* {
      const cudaError_t e = cudaMemcpyAsync(d->dst.get(), d->src.get(), static_cast<size_t>(bytes),
                                            cudaMemcpyDeviceToDevice, ctx().stream);
      return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
    });
  });
}

}  // namespace
}  // namespace nk::bench_cuda

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (nk::cuda::device_count() == 0) {
    std::printf("bench_cuda_native: no CUDA device (or no driver): nothing to run\n");
    return 0;
  }
  using namespace nk::bench_cuda;
  if (!ctx().init()) {
    std::fprintf(stderr, "bench_cuda_native: CUDA setup failed: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  benchmark::AddCustomContext("cuda_device", nk::cuda::device_name(0));
  register_copy();
  register_row_norms<nk::bf16>();
  register_row_norms<float>();
  register_chan_norms();
  register_dropout();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
