#include "checks.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace nk::bind {
namespace {

int g_bf16_num = -1;
py::object g_bf16_dtype;

py::object numpy_fn(const char* name) {
  return py::module_::import("numpy").attr(name);
}

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

}  // namespace

void set_bfloat16_dtype(py::object dtype) {
  g_bf16_dtype = dtype;
  g_bf16_num = dtype.is_none() ? -1 : py::dtype(py::reinterpret_borrow<py::dtype>(dtype)).num();
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",)" : ")");
  return s.str();
}
std::string shape_str(const py::array& a) { return shape_str(shape_of(a)); }

py::array as_ndarray(py::handle obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " + type_name(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

bool float_dtype_of(const py::dtype& dt, DType* out) {
  const int num = dt.num();
  if (dt.byteorder() == '>') return false;
  if (num == py::detail::npy_api::NPY_FLOAT_) *out = DType::f32;
  else if (num == py::detail::npy_api::NPY_DOUBLE_) *out = DType::f64;
  else if (num == 23 /* NPY_HALF */) *out = DType::f16;
  else if (g_bf16_num >= 0 && num == g_bf16_num) *out = DType::bf16;
  else return false;
  return true;
}

DType float_dtype(const py::array& a, const char* name) {
  const py::dtype dt = a.dtype();
  DType out;
  if (float_dtype_of(dt, &out)) return out;
  throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(dt)) +
                       "; expected float32, float64, float16 or bfloat16 (native byte order)");
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

py::dtype numpy_dtype(DType dt) {
  if (dt == DType::bf16) return py::reinterpret_borrow<py::dtype>(g_bf16_dtype);
  return py::dtype(dtype_name(dt));
}

py::dtype acc_dtype(DType dt) { return dt == DType::f64 ? py::dtype("float64") : py::dtype("float32"); }

int64_t normalize_axis(int64_t axis, int64_t ndim, const char* name) {
  if (axis < -ndim || axis >= ndim) {
    std::ostringstream s;
    s << name << "=" << axis << " is out of range for an array of " << ndim << " dimension(s); expected "
      << (ndim ? "-" + std::to_string(ndim) + " <= " + name + " < " + std::to_string(ndim) : "an array with ndim >= 1");
    throw py::value_error(s.str());
  }
  return axis < 0 ? axis + ndim : axis;
}

int64_t prod(const std::vector<int64_t>& shape, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= shape[i];
  return p;
}

bool is_aligned(const py::array& a) {
  return (reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(a.itemsize())) == 0 &&
         std::all_of(a.strides(), a.strides() + a.ndim(), [&](py::ssize_t s) { return s % a.itemsize() == 0; });
}

Rows rows_of(const py::array& a, int64_t axis) {
  const int64_t nd = a.ndim(), item = a.itemsize();
  bool ok = is_aligned(a);
  // Trailing block [axis, nd) must be C-contiguous (dims of extent 1 may have any stride).
  int64_t expect = item;
  for (int64_t d = nd - 1; ok && d >= axis; --d) {
    if (a.shape(d) != 1 && a.strides(d) != expect) ok = false;
    expect *= a.shape(d);
  }
  // Leading dims [0, axis) must collapse to one row stride.
  int64_t ld = expect / item, next_stride = 0;
  bool have = false;
  for (int64_t d = axis - 1; ok && d >= 0; --d) {
    if (a.shape(d) == 1) continue;
    if (!have) {
      ld = a.strides(d) / item;
      have = true;
    } else if (a.strides(d) != next_stride) {
      ok = false;
    }
    next_stride = a.strides(d) * a.shape(d);
  }
  int64_t row = 1;
  for (int64_t d = axis; d < nd; ++d) row *= a.shape(d);
  if (a.size() == 0) return {a, a.data(), row};
  if (ok) return {a, a.data(), ld};
  py::array c = numpy_fn("ascontiguousarray")(a);
  if (!is_aligned(c)) c = c.attr("copy")();
  return {c, c.data(), row};
}

static void byte_range(const py::array& a, intptr_t* lo, intptr_t* hi) {
  intptr_t l = reinterpret_cast<intptr_t>(a.data()), h = l;
  for (int64_t d = 0; d < a.ndim(); ++d) {
    const intptr_t ext = static_cast<intptr_t>(a.shape(d) - 1) * a.strides(d);
    if (ext < 0) l += ext; else h += ext;
  }
  *lo = l;
  *hi = h + a.itemsize();
}

bool overlaps(const py::array& a, const py::array& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  intptr_t al, ah, bl, bh;
  byte_range(a, &al, &ah);
  byte_range(b, &bl, &bh);
  return al < bh && bl < ah;
}

bool same_layout(const py::array& a, const py::array& b) {
  if (a.data() != b.data() || a.ndim() != b.ndim() || a.itemsize() != b.itemsize()) return false;
  for (int64_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d) || (a.shape(d) > 1 && a.strides(d) != b.strides(d))) return false;
  return true;
}

py::array contiguous(const py::array& a) {
  if ((a.flags() & py::array::c_style) && is_aligned(a)) return a;
  py::array c = numpy_fn("ascontiguousarray")(a);
  if (!is_aligned(c)) c = c.attr("copy")();
  return c;
}

uint64_t as_seed(py::handle seed) {
  if (!py::isinstance<py::int_>(seed) || py::isinstance<py::bool_>(seed))
    throw py::type_error("seed must be an int in [0, 2**64), got " + type_name(seed));
  const py::int_ s = py::reinterpret_borrow<py::int_>(seed);
  if (s < py::int_(0) || s >= py::int_(py::module_::import("builtins").attr("pow")(2, 64)))
    throw py::value_error("seed must be an int in [0, 2**64), got " + std::string(py::str(seed)));
  return s.cast<uint64_t>();
}

py::array empty(const std::vector<int64_t>& shape, const py::dtype& dtype) {
  return py::array(dtype, std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

py::array check_out(py::handle out, const char* name, const std::vector<int64_t>& shape, const py::dtype& dtype) {
  py::array o = as_ndarray(out, name);
  if (!o.dtype().is(dtype) && !o.dtype().equal(dtype))
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(o.dtype())) + "; expected " +
                         std::string(py::str(dtype)));
  if (shape_of(o) != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(o) + "; expected " + shape_str(shape));
  if (!(o.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!o.writeable()) throw py::value_error(std::string(name) + " is read-only");
  if (!is_aligned(o)) throw py::value_error(std::string(name) + " is not aligned to its itemsize");
  return o;
}

py::object param_acc(py::handle p, const char* name, DType dt, const std::vector<int64_t>& shape,
                     py::dtype* orig_dtype) {
  if (p.is_none()) return py::none();
  py::array a = as_ndarray(p, name);
  bool is_float = true;
  DType pdt = DType::f32;
  try {
    pdt = float_dtype(a, name);
  } catch (py::type_error&) {
    is_float = false;
  }
  if (!is_float || (pdt != dt && pdt != DType::f32))
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + "; expected " +
                         dtype_name(dt) + " (the input's dtype) or float32");
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a) + "; expected " + shape_str(shape));
  if (orig_dtype) *orig_dtype = a.dtype();
  const py::dtype acc = acc_dtype(dt);
  if (a.dtype().equal(acc) && (a.flags() & py::array::c_style) && is_aligned(a)) return a;
  return numpy_fn("ascontiguousarray")(a, acc);
}

py::array stat_acc(py::handle p, const char* name, DType dt, const std::vector<int64_t>& shape) {
  py::array a = as_ndarray(p, name);
  const int num = a.dtype().num();
  if (num != py::detail::npy_api::NPY_FLOAT_ && num != py::detail::npy_api::NPY_DOUBLE_ && num != 23)
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + "; expected " +
                         std::string(py::str(acc_dtype(dt))));
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a) + "; expected " + shape_str(shape) +
                          " (the input's shape before axis)");
  const py::dtype acc = acc_dtype(dt);
  if (a.dtype().equal(acc) && (a.flags() & py::array::c_style) && is_aligned(a)) return a;
  return numpy_fn("ascontiguousarray")(a, acc);
}

std::string num_str(double v) { return py::repr(py::float_(v)); }

void check_eps(double eps, const char* name) {
  if (!(eps > 0.0) || !std::isfinite(eps)) {
    std::ostringstream s;
    s << name << " must be a finite number > 0, got " << num_str(eps);
    throw py::value_error(s.str());
  }
}

}  // namespace nk::bind
