// Bindings for the regularizers (penalties, their gradients, proximal L1, weight decay,
// max-norm) and the column statistics / per-column affine map behind feature scaling.
//
// In-place ops accept any strides: a C-contiguous aligned array is updated directly, any other
// one through a contiguous copy that is written back. Reductions run on the C-ordered values,
// so a strided view gives bitwise the same result as its contiguous copy.
#include <cmath>
#include <limits>
#include <sstream>

#include "array.h"
#include "checks.h"
#include "normkit/chan_norm.h"
#include "normkit/regularize.h"

namespace nk::bind {
namespace {

// A hyperparameter that must be finite and >= 0 (ValueError otherwise).
void check_nonneg(double v, const char* name) {
  if (!(v >= 0.0) || !std::isfinite(v)) {
    std::ostringstream s;
    s << name << " must be a finite number >= 0, got " << num_str(v);
    throw py::value_error(s.str());
  }
}

// Sum of |w| (l1) or w^2 (l2) over all values, in double, times lam.
double penalty(const char* op, py::handle w_, double lam, RegNorm norm) {
  Call c(op, {{"w", w_}});
  const DType dt = c.floats("w");
  check_nonneg(lam, "lam");
  const int64_t n = c["w"].size();
  if (n == 0) return 0.0;
  Arr out = c.scratch({1}, DType::f64);
  const RegRowSumArgs a{dt, norm, 1, n, n, c.dense("w").data<const void>(), out.data<double>()};
  c.run(norm == RegNorm::l2 ? "l2 sum" : "l1 sum", [&](const Backend& be, int dev, void* s) {
    return be.reg_row_sum(a, dev, s);
  });
  return lam * c.read_doubles(out, 1)[0];
}

// Runs an elementwise kernel that updates c's `target` in place, reading `src` (nullptr: target
// itself). A target that is not C-contiguous is updated through a copy written back.
py::object update(Call& c, const char* target, const char* src, RegOp op, double k) {
  const py::object caller = c[target].obj;
  if (c[target].size() == 0) return caller;
  Arr& t = c.dense(target);
  const void* s = t.data<const void>();
  if (src) {
    c.protect(src, target);
    s = c.dense(src).data<const void>();
  }
  const RegApplyArgs a{t.dt(), op, t.size(), s, t.data(), k};
  c.run("regularizer update", [&](const Backend& be, int dev, void* st) { return be.reg_apply(a, dev, st); });
  if (!t.obj.is(caller)) c.write_back(caller, t);
  return caller;
}

py::object add_grad(const char* op, py::handle g_, py::handle w_, double lam, RegOp rop) {
  if (g_.is(w_)) {  // grad += f(grad): the same array read and written in place
    Call c(op, {{"grad", g_}});
    c.in_place("grad");
    check_nonneg(lam, "lam");
    return update(c, "grad", nullptr, rop, rop == RegOp::add_scaled ? 2.0 * lam : lam);
  }
  Call c(op, {{"grad", g_}, {"w", w_}});
  c.in_place("grad");
  (void)c.floats("w");
  c.same_as("w", "grad");
  check_nonneg(lam, "lam");
  return update(c, "grad", "w", rop, rop == RegOp::add_scaled ? 2.0 * lam : lam);
}

py::object max_norm(py::handle w_, double max_value, int64_t axis) {
  Call c("max_norm", {{"w", w_}});
  c.in_place("w");
  check_nonneg(max_value, "max_value");
  const std::vector<int64_t> shape = c["w"].shape;
  const int64_t ax = normalize_axis(axis, static_cast<int64_t>(shape.size()), "axis");
  const py::object caller = c["w"].obj;
  if (c["w"].size() == 0) return caller;
  const int64_t A = prod(shape, 0, static_cast<size_t>(ax)), K = shape[static_cast<size_t>(ax)];
  const int64_t B = prod(shape, static_cast<size_t>(ax) + 1, shape.size());
  Arr& t = c.dense("w");
  c.run("max_norm", [&](const Backend& be, int dev, void* s) {
    return be.max_norm(t.dt(), A, K, B, t.data(), max_value, dev, s);
  });
  if (!t.obj.is(caller)) c.write_back(caller, t);
  return caller;
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
    coef[i] = py::module_::import("numpy").attr("ascontiguousarray")(as_ndarray(objs[i], names[i]), acc);
    if (shape_of(coef[i]) != std::vector<int64_t>{N})
      throw py::value_error(std::string(names[i]) + " has shape " + shape_str(coef[i]) + "; expected " +
                            shape_str({N}));
  }
  py::array y = empty({M, N}, x.dtype());
  if (M * N == 0) return y;
  x = contiguous(x);
  const ChanAffineArgs a{dt, Layout::nsc, 1, N, M, x.data(), y.mutable_data(), coef[0].data(), coef[1].data(),
                         coef[2].data(), 0};
  py::gil_scoped_release nogil;
  chan_affine(a);
  return y;
}

}  // namespace

void bind_reg(py::module_& m) {
  m.def("l1_penalty", [](py::handle w, double lam) { return penalty("l1_penalty", w, lam, RegNorm::l1); },
        py::arg("w"), py::arg("lam"));
  m.def("l2_penalty", [](py::handle w, double lam) { return penalty("l2_penalty", w, lam, RegNorm::l2); },
        py::arg("w"), py::arg("lam"));
  m.def("add_l1_grad", [](py::handle g, py::handle w, double lam) {
    return add_grad("add_l1_grad", g, w, lam, RegOp::add_sign);
  }, py::arg("grad"), py::arg("w"), py::arg("lam"));
  m.def("add_l2_grad", [](py::handle g, py::handle w, double lam) {
    return add_grad("add_l2_grad", g, w, lam, RegOp::add_scaled);
  }, py::arg("grad"), py::arg("w"), py::arg("lam"));
  m.def("l1_prox", [](py::handle w, double threshold) {
    Call c("l1_prox", {{"w", w}});
    c.in_place("w");
    check_nonneg(threshold, "threshold");
    return update(c, "w", nullptr, RegOp::soft_threshold, threshold);
  }, py::arg("w"), py::arg("threshold"));
  m.def("weight_decay", [](py::handle w, double lr, double wd) {
    Call c("weight_decay", {{"w", w}});
    c.in_place("w");
    check_nonneg(lr, "lr");
    check_nonneg(wd, "wd");
    return update(c, "w", nullptr, RegOp::scale, 1.0 - lr * wd);
  }, py::arg("w"), py::arg("lr"), py::arg("wd"));
  m.def("max_norm", &max_norm, py::arg("w"), py::arg("max_value"), py::arg("axis"));
  m.def("col_stats", &col_stats_py, py::arg("x"));
  m.def("col_affine", &col_affine, py::arg("x"), py::arg("m"), py::arg("a"), py::arg("b"));
}

}  // namespace nk::bind
