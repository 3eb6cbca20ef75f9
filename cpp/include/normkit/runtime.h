// normkit — runtime: ISA selection and thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nk {

// ISAs compiled into this build and supported by this CPU, best last ("scalar" always first).
std::vector<std::string> available_isas();
std::string get_isa();
// Selects an ISA by name; returns false (and changes nothing) if it is not available.
bool set_isa(const std::string& name);
// Non-empty when NORMKIT_ISA named an ISA that is unknown or not available here.
std::string isa_env_error();

// Threads used by kernels: the value set by set_num_threads (>= 1), further capped by the
// calling thread's omp_get_max_threads() so OpenMP-level limits (threadpoolctl) apply.
void set_num_threads(int n);
int get_num_threads();

// Cache sizes the kernels plan with (when outputs bypass the cache, when a channel's data stays
// in L2): detected from the CPU unless set here; 0 restores the detected size. For tests, so that
// small inputs take the paths of tensors larger than the caches.
void set_cache_sizes(int64_t llc_bytes, int64_t l2_bytes);

}  // namespace nk
