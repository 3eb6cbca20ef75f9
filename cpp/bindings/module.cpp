// normkit._core: the one extension module. Runtime controls here; op families in bind_<family>.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "checks.h"
#include "normkit/runtime.h"

#ifndef NK_VERSION
#define NK_VERSION "0.0.0"
#endif

namespace nk::bind {
void bind_norm(py::module_& m);
void bind_chan(py::module_& m);
void bind_dropout(py::module_& m);
void bind_lrn(py::module_& m);
void bind_reg(py::module_& m);
void bind_augment(py::module_& m);
void bind_array(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "normkit native core (C++ SIMD kernels, OpenMP threads).";
  m.attr("__version__") = NK_VERSION;
  m.def("available_isas", [] {
    py::list l;
    for (const auto& s : nk::available_isas()) l.append(s);
    return py::tuple(l);
  });
  m.def("get_isa", &nk::get_isa);
  m.def("set_isa", [](const std::string& name) {
    if (!nk::set_isa(name)) {
      std::string avail;
      for (const auto& s : nk::available_isas()) avail += (avail.empty() ? "" : ", ") + s;
      throw py::value_error("isa '" + name + "' is not available on this machine; expected one of: " + avail);
    }
  }, py::arg("name"));
  m.def("isa_env_error", &nk::isa_env_error);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("n must be >= 1, got " + std::to_string(n));
    nk::set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &nk::get_num_threads);
  m.def("_set_cache_sizes", &nk::set_cache_sizes, py::arg("llc_bytes"), py::arg("l2_bytes"),
        "Test hook: cache sizes the kernels plan with (0 = detected).");
  m.def("_set_bfloat16_dtype", &nk::bind::set_bfloat16_dtype, py::arg("dtype"));
  nk::bind::bind_array(m);
  nk::bind::bind_norm(m);
  nk::bind::bind_chan(m);
  nk::bind::bind_dropout(m);
  nk::bind::bind_lrn(m);
  nk::bind::bind_reg(m);
  nk::bind::bind_augment(m);
}
