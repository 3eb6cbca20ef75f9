// normkit — runtime: ISA selection and thread count.
#pragma once
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

}  // namespace nk
