// normkit — helpers shared by the native Google Benchmark benches (bench/bench_<family>.cpp).
//
// Conventions of every normkit bench:
//   - names read "<kernel>/<dtype>/<shape>/isa:<isa>/threads:<n>";
//   - real time (the kernels are multi-threaded), reported in microseconds;
//   - SetBytesProcessed counts the op's minimum traffic (each input read once, each output
//     written once), so bytes_per_second compares directly with the "copy" bench of the same shape;
//   - axes: ISA in {scalar, best available}, threads in {1, all}.
#pragma once
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "normkit/runtime.h"
#include "normkit/types.h"

namespace nk::bench {

// Uninitialized storage for n elements of T that starts `offset` bytes (a multiple of sizeof(T),
// below 64) past a 64-byte boundary.
template <class T>
class Buffer {
 public:
  explicit Buffer(int64_t n, int64_t offset = 0) : n_(n), off_(static_cast<size_t>(offset) / sizeof(T)) {
    const size_t bytes = (static_cast<size_t>(n > 0 ? n : 1) * sizeof(T) + 127) / 64 * 64;
    p_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (!p_) throw std::bad_alloc();
  }
  T* data() { return p_.get() + off_; }
  const T* data() const { return p_.get() + off_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(T)); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  int64_t n_;
  size_t off_;
  std::unique_ptr<T, Free> p_;
};

// Element type traits: the kernels' DType tag and a short name for bench names.
template <class T> struct TypeInfo;
template <> struct TypeInfo<float> {
  static constexpr DType dtype = DType::f32;
  static constexpr const char* name = "f32";
};
template <> struct TypeInfo<bf16> {
  static constexpr DType dtype = DType::bf16;
  static constexpr const char* name = "bf16";
};

// A float32 value in storage type T; bf16 keeps the top 16 bits (truncation: always a valid bf16).
template <class T> inline T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline bf16 from_float<bf16>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// Uniform values in [lo, hi) from a splitmix64 stream: fast enough for 10^8 elements, reproducible.
template <class T>
void fill_uniform(Buffer<T>& buf, float lo, float hi, uint64_t seed) {
  uint64_t s = seed;
  T* p = buf.data();
  for (int64_t i = 0; i < buf.size(); ++i) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // 24 random bits
    p[i] = from_float<T>(lo + (hi - lo) * u);
  }
}

// Faults in every page (outputs), so the first timed iteration does not pay for it.
template <class T>
void touch(Buffer<T>& buf) {
  std::memset(static_cast<void*>(buf.data()), 0, static_cast<size_t>(buf.bytes()));
}

// A (rows x columns) problem size.
struct Shape {
  int64_t M, N;
  std::string name() const { return std::to_string(M) + "x" + std::to_string(N); }
};

// ISA axis: scalar and the best ISA of this build and CPU (once when they are the same).
inline std::vector<std::string> isa_axis() {
  const std::vector<std::string> all = nk::available_isas();
  std::vector<std::string> axis{"scalar"};
  if (all.back() != "scalar") axis.push_back(all.back());
  return axis;
}

// Threads axis: 1 and all (omp_get_max_threads(), so OMP_NUM_THREADS applies).
inline std::vector<int> thread_axis() {
  const int all = omp_get_max_threads();
  return all > 1 ? std::vector<int>{1, all} : std::vector<int>{1};
}

inline std::string axes_suffix(const std::string& isa, int threads) {
  return "/isa:" + isa + "/threads:" + std::to_string(threads);
}

// Selects the ISA and the thread count at the start of a benchmark run.
inline bool configure(benchmark::State& state, const std::string& isa, int threads) {
  if (!nk::set_isa(isa)) {
    state.SkipWithError(("ISA not available: " + isa).c_str());
    return false;
  }
  nk::set_num_threads(threads);
  return true;
}

// Registers fn (void(benchmark::State&)) with the conventions above.
template <class Fn>
benchmark::internal::Benchmark* add(const std::string& name, Fn&& fn) {
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn))
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

// Records the op's minimum traffic per iteration (bytes read + bytes written).
inline void set_traffic(benchmark::State& state, int64_t bytes_per_iteration) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes_per_iteration);
}

// One slot shared by all benches: the data of the most recent key. Google Benchmark calls a
// bench function several times (growing iteration counts); they all reuse the data, and a new
// key frees the old data first, so only one shape's buffers are resident at a time.
struct Slot {
  std::string key;
  std::shared_ptr<void> data;
};
inline Slot& slot() {
  static Slot s;
  return s;
}
template <class Data, class... Args>
Data& cached(const std::string& key, Args&&... args) {
  Slot& s = slot();
  if (s.key != key || !s.data) {
    s.data.reset();
    s.key = key;
    s.data = std::make_shared<Data>(std::forward<Args>(args)...);
  }
  return *static_cast<Data*>(s.data.get());
}

// Bandwidth reference: memcpy of `bytes` bytes, split in contiguous chunks over the threads.
// Traffic is 2 * bytes (read + write), the same accounting as the kernels' minimum traffic.
struct CopyData {
  Buffer<unsigned char> src, dst;
  explicit CopyData(int64_t bytes) : src(bytes), dst(bytes) {
    touch(src);
    touch(dst);
  }
};

inline void register_copy(const std::string& tag, int64_t bytes) {
  for (int threads : thread_axis()) {
    add("copy/" + tag + "/threads:" + std::to_string(threads), [=](benchmark::State& state) {
      CopyData& d = cached<CopyData>("copy/" + std::to_string(bytes), bytes);
      unsigned char* dst = d.dst.data();
      const unsigned char* src = d.src.data();
      for (auto _ : state) {
#pragma omp parallel num_threads(threads)
        {
          const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
          const int64_t lo = bytes * t / nt, hi = bytes * (t + 1) / nt;
          std::memcpy(dst + lo, src + lo, static_cast<size_t>(hi - lo));
        }
        benchmark::ClobberMemory();
      }
      set_traffic(state, 2 * bytes);
    });
  }
}

// Build facts next to the results: ISAs and the default thread count.
inline void add_context() {
  std::string isas;
  for (const std::string& isa : nk::available_isas()) isas += (isas.empty() ? "" : ",") + isa;
  benchmark::AddCustomContext("normkit_isas", isas);
  benchmark::AddCustomContext("normkit_max_threads", std::to_string(omp_get_max_threads()));
}

}  // namespace nk::bench
