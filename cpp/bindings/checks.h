// Array validation shared by all bindings: the only place that inspects Python objects.
// Every failure raises TypeError (wrong type/dtype) or ValueError (shape, axis, range) with a
// message naming the argument and showing what was expected and what was given.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "normkit/types.h"

namespace nk::bind {
namespace py = pybind11;

// Registered at import (ml_dtypes.bfloat16); -1 when ml_dtypes is missing.
void set_bfloat16_dtype(py::object dtype);

std::string shape_str(const py::array& a);
std::string shape_str(const std::vector<int64_t>& shape);
std::vector<int64_t> shape_of(const py::array& a);

// obj must be a numpy.ndarray (TypeError otherwise).
py::array as_ndarray(py::handle obj, const char* name);
// The array's float dtype (TypeError for any other dtype or a non-native byte order).
DType float_dtype(const py::array& a, const char* name);
// Whether dt is one of the four float dtypes in native byte order (and which).
bool float_dtype_of(const py::dtype& dt, DType* out);
const char* dtype_name(DType dt);
py::dtype numpy_dtype(DType dt);
// float32 for f32/f16/bf16 data, float64 for f64 data.
py::dtype acc_dtype(DType dt);
inline bool is_f64(DType dt) { return dt == DType::f64; }

// Axis in [-ndim, ndim) -> [0, ndim) (ValueError otherwise).
int64_t normalize_axis(int64_t axis, int64_t ndim, const char* name);
int64_t prod(const std::vector<int64_t>& shape, size_t begin, size_t end);

// Rows of a tensor viewed as (M, N) with contiguous rows of N elements and a row stride `ld`
// (in elements, may be negative). Makes one contiguous copy when the layout does not fit.
struct Rows {
  py::array arr;  // keeps the data alive (the original or its copy)
  const void* ptr;
  int64_t ld;
};
Rows rows_of(const py::array& a, int64_t axis);
bool is_aligned(const py::array& a);

// Byte range [lo, hi) spanned by an array's elements.
bool overlaps(const py::array& a, const py::array& b);
bool same_layout(const py::array& a, const py::array& b);

// out= argument: exact shape, dtype, C-contiguous, aligned and writeable; returns it.
py::array check_out(py::handle out, const char* name, const std::vector<int64_t>& shape, const py::dtype& dtype);
// Allocates a new C-contiguous array.
py::array empty(const std::vector<int64_t>& shape, const py::dtype& dtype);

// Optional per-feature parameter (weight/bias): shape `shape`, dtype the data dtype or float32
// (float64 data: float64 or float32). Returned as a contiguous array of the accumulation dtype,
// or None. `orig_dtype` receives the parameter's own dtype.
py::object param_acc(py::handle p, const char* name, DType dt, const std::vector<int64_t>& shape,
                     py::dtype* orig_dtype = nullptr);
// Saved statistic (mean/rstd): any float dtype, given shape; converted to the accumulation dtype.
py::array stat_acc(py::handle p, const char* name, DType dt, const std::vector<int64_t>& shape);

// Data pointer of an optional array (param_acc's result), nullptr for None.
inline const void* ptr_or_null(const py::object& a) {
  return a.is_none() ? nullptr : py::reinterpret_borrow<py::array>(a).data();
}

// A C-contiguous, aligned array with a's values (a itself when it already is one).
py::array contiguous(const py::array& a);
// A seed: an int in [0, 2**64) (TypeError for another type, ValueError out of range).
uint64_t as_seed(py::handle seed);

// A number as Python writes it (repr of a float: 1.0, 1e-05, nan, inf), for messages.
std::string num_str(double v);

// eps > 0 and finite (ValueError otherwise).
void check_eps(double eps, const char* name = "eps");

}  // namespace nk::bind
