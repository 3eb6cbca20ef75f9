// Bindings for the regularizers (penalties, their gradients, proximal L1, weight decay,
// max-norm) and the column statistics / per-column affine map behind feature scaling.
//
// In-place ops accept any strides: a C-contiguous aligned array is updated directly, any other
// one through a contiguous copy that is written back. Reductions run on the C-ordered values,
// so a strided view gives bitwise the same result as its contiguous copy.
#include <cmath>
#include <limits>
#include <sstream>

#include "checks.h"
#include "normkit/chan_norm.h"
#include "normkit/regularize.h"

namespace nk::bind {
namespace {

py::object np_fn(const char* name) { return py::module_::import("numpy").attr(name); }

bool is_dense(const py::array& a) { return (a.flags() & py::array::c_style) && is_aligned(a); }

// a itself when C-contiguous and aligned, else an aligned C-contiguous copy.
py::array dense(const py::array& a) {
  if (is_dense(a)) return a;
  py::array c = np_fn("ascontiguousarray")(a);
  if (!is_aligned(c)) c = c.attr("copy")();
  return c;
}

// A hyperparameter that must be finite and >= 0 (ValueError otherwise).
void check_nonneg(double v, const char* name) {
  if (!(v >= 0.0) || !std::isfinite(v)) {
    std::ostringstream s;
    s << name << " must be a finite number >= 0, got " << v;
    throw py::value_error(s.str());
  }
}

// A float array that is updated in place.
py::array inplace_arg(py::handle obj, const char* name) {
  py::array a = as_ndarray(obj, name);
  (void)float_dtype(a, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only; it is updated in place");
  return a;
}

// A second array with the same shape and dtype as `ref` (named ref_name).
py::array like(py::handle obj, const char* name, const py::array& ref, const char* ref_name) {
  py::array a = as_ndarray(obj, name);
  (void)float_dtype(a, name);
  if (!a.dtype().equal(ref.dtype()))
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + "; expected " +
                         std::string(py::str(ref.dtype())) + " (the dtype of " + ref_name + ")");
  if (shape_of(a) != shape_of(ref))
    throw py::value_error(std::string(name) + " has shape " + shape_str(a) + "; expected " + shape_str(ref) +
                          " (the shape of " + ref_name + ")");
  return a;
}

// Sum of |w| (l1) or w^2 (l2) over all values, in double.
double total(const py::array& w, RegNorm norm) {
  if (w.size() == 0) return 0.0;
  const py::array d = dense(w);
  double out = 0.0;
  const RegRowSumArgs a{float_dtype(d, "w"), norm, 1, static_cast<int64_t>(d.size()), static_cast<int64_t>(d.size()),
                        d.data(), &out};
  py::gil_scoped_release nogil;
  reg_row_sum(a);
  return out;
}

double penalty(py::handle w_, double lam, RegNorm norm) {
  const py::array w = as_ndarray(w_, "w");
  (void)float_dtype(w, "w");
  check_nonneg(lam, "lam");
  return lam * total(w, norm);
}

// Runs an elementwise kernel that updates `target` in place (reading `src`, which may be target).
py::array update(const py::array& target, const py::array& src, RegOp op, double c) {
  if (target.size() == 0) return target;
  py::array t = dense(target);
  py::array s = src.is(target) ? t : dense(src);
  if (!s.is(t) && overlaps(t, s) && !same_layout(t, s)) s = s.attr("copy")();
  const RegApplyArgs a{float_dtype(t, "w"), op, static_cast<int64_t>(t.size()), s.data(), t.mutable_data(), c};
  {
    py::gil_scoped_release nogil;
    reg_apply(a);
  }
  if (!t.is(target)) np_fn("copyto")(target, t);
  return target;
}

py::array add_grad(py::handle g_, py::handle w_, double lam, RegOp op) {
  const py::array g = inplace_arg(g_, "grad");
  const py::array w = like(w_, "w", g, "grad");
  check_nonneg(lam, "lam");
  return update(g, w, op, op == RegOp::add_scaled ? 2.0 * lam : lam);
}

py::array max_norm(py::handle w_, double max_value, int64_t axis) {
  const py::array w = inplace_arg(w_, "w");
  check_nonneg(max_value, "max_value");
  const int64_t nd = w.ndim();
  const int64_t ax = normalize_axis(axis, nd, "axis");
  if (w.size() == 0) return w;
  const std::vector<int64_t> shape = shape_of(w);
  const int64_t A = prod(shape, 0, static_cast<size_t>(ax)), K = shape[static_cast<size_t>(ax)];
  const int64_t B = prod(shape, static_cast<size_t>(ax) + 1, shape.size());
  py::array t = dense(w);
  const DType dt = float_dtype(t, "w");
  std::vector<double> sq(static_cast<size_t>(K), 0.0), scale(static_cast<size_t>(K), 1.0);
  bool any = false;
  {
    py::gil_scoped_release nogil;
    if (A == 1 || B >= 16) {  // slices made of rows of B contiguous values: sums of squares per row
      std::vector<double> rows(static_cast<size_t>(A * K));
      reg_row_sum(RegRowSumArgs{dt, RegNorm::l2, A * K, B, B, t.data(), rows.data()});
      for (int64_t a = 0; a < A; ++a)
        for (int64_t k = 0; k < K; ++k) sq[k] += rows[a * K + k];
    } else {  // short rows: column statistics of (A, K*B); sum x^2 = M2 + A mean^2 per column
      std::vector<double> mean(K * B), m2(K * B), mn(K * B), mx(K * B);
      col_stats(ColStatsArgs{dt, A, K * B, K * B, t.data(), mean.data(), m2.data(), mn.data(), mx.data()});
      for (int64_t k = 0; k < K; ++k)
        for (int64_t b = 0; b < B; ++b) {
          const double m = mean[k * B + b];
          sq[k] += m2[k * B + b] + static_cast<double>(A) * m * m;
        }
    }
    for (int64_t k = 0; k < K; ++k) {
      const double norm = std::sqrt(sq[k]);
      if (norm > max_value) {
        scale[k] = max_value / norm;
        any = true;
      }
    }
    if (any) reg_scale(RegScaleArgs{dt, A, K, B, t.mutable_data(), scale.data()});
  }
  if (!any) return w;
  if (!t.is(w)) np_fn("copyto")(w, t);
  return w;
}

// x viewed as (M, N) rows (x must be 2-D): statistics per column in float64.
py::tuple col_stats_py(py::handle x_) {
  const py::array x = as_ndarray(x_, "x");
  const DType dt = float_dtype(x, "x");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D (n_samples, n_features), got shape " + shape_str(x));
  const int64_t M = x.shape(0), N = x.shape(1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  py::array_t<double> mean(N), m2(N), mn(N), mx(N);
  for (auto* a : {&mean, &m2, &mn, &mx}) std::fill(a->mutable_data(), a->mutable_data() + N, nan);
  if (M > 0 && N > 0) {
    const Rows r = rows_of(x, 1);
    const ColStatsArgs a{dt, M, N, r.ld, r.ptr, mean.mutable_data(), m2.mutable_data(), mn.mutable_data(),
                         mx.mutable_data()};
    py::gil_scoped_release nogil;
    col_stats(a);
    for (int64_t c = 0; c < N; ++c)  // a NaN in the column: every statistic is NaN
      if (std::isnan(a.mean[c])) a.min[c] = a.max[c] = nan;
  }
  return py::make_tuple(mean, m2, mn, mx);
}

// y = (x - m[c]) * a[c] + b[c] for a 2-D x, coefficients any float arrays of shape (N,).
py::array col_affine(py::handle x_, py::handle m_, py::handle a_, py::handle b_) {
  py::array x = as_ndarray(x_, "x");
  const DType dt = float_dtype(x, "x");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D (n_samples, n_features), got shape " + shape_str(x));
  const int64_t M = x.shape(0), N = x.shape(1);
  const py::dtype acc = acc_dtype(dt);
  py::array coef[3];
  const char* names[3] = {"m", "a", "b"};
  py::handle objs[3] = {m_, a_, b_};
  for (int i = 0; i < 3; ++i) {
    coef[i] = np_fn("ascontiguousarray")(as_ndarray(objs[i], names[i]), acc);
    if (shape_of(coef[i]) != std::vector<int64_t>{N})
      throw py::value_error(std::string(names[i]) + " has shape " + shape_str(coef[i]) + "; expected " +
                            shape_str({N}));
  }
  py::array y = empty({M, N}, x.dtype());
  if (M * N == 0) return y;
  x = dense(x);
  const ChanAffineArgs a{dt, Layout::nsc, 1, N, M, x.data(), y.mutable_data(), coef[0].data(), coef[1].data(),
                         coef[2].data(), 0};
  py::gil_scoped_release nogil;
  chan_affine(a);
  return y;
}

}  // namespace

void bind_reg(py::module_& m) {
  m.def("l1_penalty", [](py::handle w, double lam) { return penalty(w, lam, RegNorm::l1); }, py::arg("w"),
        py::arg("lam"));
  m.def("l2_penalty", [](py::handle w, double lam) { return penalty(w, lam, RegNorm::l2); }, py::arg("w"),
        py::arg("lam"));
  m.def("add_l1_grad", [](py::handle g, py::handle w, double lam) { return add_grad(g, w, lam, RegOp::add_sign); },
        py::arg("grad"), py::arg("w"), py::arg("lam"));
  m.def("add_l2_grad", [](py::handle g, py::handle w, double lam) { return add_grad(g, w, lam, RegOp::add_scaled); },
        py::arg("grad"), py::arg("w"), py::arg("lam"));
  m.def("l1_prox", [](py::handle w_, double threshold) {
    const py::array w = inplace_arg(w_, "w");
    check_nonneg(threshold, "threshold");
    return update(w, w, RegOp::soft_threshold, threshold);
  }, py::arg("w"), py::arg("threshold"));
  m.def("weight_decay", [](py::handle w_, double lr, double wd) {
    const py::array w = inplace_arg(w_, "w");
    check_nonneg(lr, "lr");
    check_nonneg(wd, "wd");
    return update(w, w, RegOp::scale, 1.0 - lr * wd);
  }, py::arg("w"), py::arg("lr"), py::arg("wd"));
  m.def("max_norm", &max_norm, py::arg("w"), py::arg("max_value"), py::arg("axis"));
  m.def("col_stats", &col_stats_py, py::arg("x"));
  m.def("col_affine", &col_affine, py::arg("x"), py::arg("m"), py::arg("a"), py::arg("b"));
}

}  // namespace nk::bind
