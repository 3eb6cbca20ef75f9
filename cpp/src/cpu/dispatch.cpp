// Runtime ISA dispatch and thread control. Compiled once, with baseline flags.
//
// Each ISA's kernels live in their own namespace (nk::cpu::scalar, ::avx2, ::avx512,
// ::avx512_bf16), compiled from the same sources with that ISA's flags. At load time the best ISA the CPU supports is
// chosen (or the one named by NORMKIT_ISA); nk::<kernel>() forwards through its table.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "normkit/augment.h"
#include "normkit/chan_norm.h"
#include "normkit/dropout.h"
#include "normkit/lrn.h"
#include "normkit/norm.h"
#include "normkit/regularize.h"
#include "normkit/runtime.h"

namespace nk::cpu {

struct KernelTable {
#define NK_KERNEL(name, Args) void (*name)(const Args&);
#include "kernels.inc"
#undef NK_KERNEL
};

}  // namespace nk::cpu

#define NK_TABLE_ISA scalar
#include "isa_table.inc"
#undef NK_TABLE_ISA
#if defined(NK_HAVE_AVX2)
#define NK_TABLE_ISA avx2
#include "isa_table.inc"
#undef NK_TABLE_ISA
#endif
#if defined(NK_HAVE_AVX512)
#define NK_TABLE_ISA avx512
#include "isa_table.inc"
#undef NK_TABLE_ISA
#define NK_TABLE_ISA avx512_bf16
#include "isa_table.inc"
#undef NK_TABLE_ISA
#endif

namespace nk::cpu {
namespace {

struct Isa {
  const char* name;
  const KernelTable* table;
  bool supported;
};

std::vector<Isa> detect() {
  std::vector<Isa> isas{{"scalar", &scalar::table, true}};
#if defined(NK_HAVE_AVX2) || defined(NK_HAVE_AVX512)
  __builtin_cpu_init();
#endif
#if defined(NK_HAVE_AVX2)
  isas.push_back({"avx2", &avx2::table,
                  __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")});
#endif
#if defined(NK_HAVE_AVX512)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  isas.push_back({"avx512", &avx512::table, avx512});
  isas.push_back({"avx512_bf16", &avx512_bf16::table, avx512 && __builtin_cpu_supports("avx512bf16")});
#endif
  std::vector<Isa> usable;
  for (const Isa& isa : isas)
    if (isa.supported) usable.push_back(isa);
  return usable;
}

struct State {
  std::vector<Isa> isas = detect();
  std::atomic<int> current{static_cast<int>(isas.size()) - 1};
  std::string env_error;
  std::atomic<int> threads{0};  // 0: not set, follow OpenMP
  State() {
    if (const char* env = std::getenv("NORMKIT_ISA"); env && *env) {
      bool found = false;
      for (size_t i = 0; i < isas.size(); ++i)
        if (env == std::string(isas[i].name)) { current = static_cast<int>(i); found = true; }
      if (!found) env_error = std::string("NORMKIT_ISA=") + env + " is not available on this machine; using " + isas.back().name;
    }
  }
};

State& state() {
  static State s;
  return s;
}

const KernelTable& active() { return *state().isas[static_cast<size_t>(state().current.load())].table; }

}  // namespace

namespace {
// Size in bytes of this core's data or unified cache of `level` (sysfs cpu0/cache/index*), or 0.
int64_t sysfs_cache_bytes(int level) {
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    char type[32] = {};
    long lvl = 0, kib = 0;
    if (FILE* f = std::fopen((dir + "level").c_str(), "r")) {
      if (std::fscanf(f, "%ld", &lvl) != 1) lvl = 0;
      std::fclose(f);
    }
    if (FILE* f = std::fopen((dir + "type").c_str(), "r")) {
      if (std::fscanf(f, "%31s", type) != 1) type[0] = 0;
      std::fclose(f);
    }
    if (lvl != level || std::strcmp(type, "Instruction") == 0) continue;
    if (FILE* f = std::fopen((dir + "size").c_str(), "r")) {
      if (std::fscanf(f, "%ldK", &kib) != 1 || kib < 0) kib = 0;
      std::fclose(f);
    }
    if (kib > 0) return static_cast<int64_t>(kib) << 10;
  }
  return 0;
}
// sysconf's value for `name`, or 0.
int64_t sysconf_bytes([[maybe_unused]] int name) {
  const long v = name >= 0 ? sysconf(name) : -1;
  return v > 0 ? static_cast<int64_t>(v) : 0;
}
#if defined(_SC_LEVEL3_CACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
constexpr int kScL3 = _SC_LEVEL3_CACHE_SIZE, kScL2 = _SC_LEVEL2_CACHE_SIZE;
#else
constexpr int kScL3 = -1, kScL2 = -1;
#endif
std::atomic<int64_t> llc_override{0}, l2_override{0};  // set_cache_sizes (0: detected)
}  // namespace

// Last-level cache of this CPU: sysfs (the cache this core shares), else sysconf, else 32 MiB.
// (glibc's sysconf may report the whole package's L3, several times what one core can use.)
int64_t last_level_cache_bytes() {
  static const int64_t detected = [] {
    for (const int level : {3, 2})
      if (const int64_t b = sysfs_cache_bytes(level); b > 0) return b;
    const int64_t b = sysconf_bytes(kScL3);
    return b > 0 ? b : int64_t{32} << 20;
  }();
  const int64_t o = llc_override.load(std::memory_order_relaxed);
  return o > 0 ? o : detected;
}

// One core's L2: sysfs, else sysconf, else 512 KiB.
int64_t l2_cache_bytes() {
  static const int64_t detected = [] {
    const int64_t b = sysfs_cache_bytes(2);
    if (b > 0) return b;
    const int64_t s = sysconf_bytes(kScL2);
    return s > 0 ? s : int64_t{512} << 10;
  }();
  const int64_t o = l2_override.load(std::memory_order_relaxed);
  return o > 0 ? o : detected;
}

int kernel_threads() {
  const int omp = omp_get_max_threads();
  const int set = state().threads.load();
  const int n = set > 0 && set < omp ? set : omp;
  return n > 0 ? n : 1;
}

}  // namespace nk::cpu

namespace nk {

void set_cache_sizes(int64_t llc_bytes, int64_t l2_bytes) {
  cpu::llc_override.store(std::max<int64_t>(0, llc_bytes));
  cpu::l2_override.store(std::max<int64_t>(0, l2_bytes));
}

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const auto& isa : cpu::state().isas) names.emplace_back(isa.name);
  return names;
}

std::string get_isa() { return cpu::state().isas[static_cast<size_t>(cpu::state().current.load())].name; }

bool set_isa(const std::string& name) {
  auto& s = cpu::state();
  for (size_t i = 0; i < s.isas.size(); ++i)
    if (name == s.isas[i].name) {
      s.current = static_cast<int>(i);
      return true;
    }
  return false;
}

std::string isa_env_error() { return cpu::state().env_error; }

void set_num_threads(int n) {
  cpu::state().threads = n;
  omp_set_num_threads(n);
}

int get_num_threads() { return cpu::kernel_threads(); }

#define NK_KERNEL(name, Args) \
  void name(const Args& args) { cpu::active().name(args); }
#include "kernels.inc"
#undef NK_KERNEL

}  // namespace nk
