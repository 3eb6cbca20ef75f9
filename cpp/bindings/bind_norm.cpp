// Bindings for the row normalizations: layer_norm, rms_norm and their add_* variants.
#include <limits>

#include "checks.h"
#include "normkit/norm.h"

namespace nk::bind {
namespace {

// Re-reads `rows` from a private copy when it overlaps `out` in any way other than in place.
void protect_from(Rows& rows, const py::array& out, int64_t axis) {
  if (overlaps(rows.arr, out) && !same_layout(rows.arr, out)) rows = rows_of(py::array(rows.arr.attr("copy")()), axis);
}

// Forward of LayerNorm (rms=false) or RMSNorm (rms=true), optionally on h = x + residual.
// Returns y, or (y[, h], [mean,] rstd) when want_stats / residual.
py::object row_norm_forward(bool rms, py::handle x_, py::handle res_, py::handle w_, py::handle b_, int64_t axis,
                            double eps, py::handle out_, bool want_stats) {
  const py::array x = as_ndarray(x_, "x");
  const DType dt = float_dtype(x, "x");
  const int64_t nd = x.ndim();
  const int64_t ax = normalize_axis(axis, nd, "axis");
  check_eps(eps);
  const std::vector<int64_t> shape = shape_of(x);
  const std::vector<int64_t> feat(shape.begin() + ax, shape.end()), lead(shape.begin(), shape.begin() + ax);
  const int64_t M = prod(shape, 0, ax), N = prod(shape, ax, shape.size());

  const bool add = !res_.is_none();
  py::array res;
  if (add) {
    res = as_ndarray(res_, "residual");
    if (!res.dtype().equal(x.dtype()))
      throw py::type_error("residual has dtype " + std::string(py::str(res.dtype())) + "; expected " +
                           std::string(py::str(x.dtype())) + " (the dtype of x)");
    if (shape_of(res) != shape)
      throw py::value_error("residual has shape " + shape_str(res) + "; expected " + shape_str(shape) + " (the shape of x)");
  }
  const py::object w = param_acc(w_, "weight", dt, feat);
  const py::object b = rms ? py::object(py::none()) : param_acc(b_, "bias", dt, feat);
  py::array y = out_.is_none() ? empty(shape, x.dtype()) : check_out(out_, "out", shape, x.dtype());

  Rows xr = rows_of(x, ax);
  Rows rr = add ? rows_of(res, ax) : Rows{py::array(), nullptr, 0};
  py::array h;
  if (!out_.is_none()) {
    protect_from(xr, y, ax);
    if (add) protect_from(rr, y, ax);
  }
  if (add) h = empty(shape, x.dtype());
  const py::dtype acc = acc_dtype(dt);
  const bool stats = want_stats || add;
  py::array mean, rstd;
  if (stats) {
    if (!rms) mean = empty(lead, acc);
    rstd = empty(lead, acc);
  }

  RowNormFwdArgs a{};
  a.dtype = dt;
  a.M = M;
  a.N = N;
  a.x = xr.ptr;
  a.ldx = xr.ld;
  a.res = add ? rr.ptr : nullptr;
  a.ldr = rr.ld;
  a.weight = ptr_or_null(w);
  a.bias = ptr_or_null(b);
  a.y = y.mutable_data();
  a.h = add ? h.mutable_data() : nullptr;
  a.mean = stats && !rms ? mean.mutable_data() : nullptr;
  a.rstd = stats ? rstd.mutable_data() : nullptr;
  a.eps = eps;
  if (M > 0 && N > 0) {
    py::gil_scoped_release nogil;
    if (rms) rms_norm_fwd(a); else layer_norm_fwd(a);
  } else if (M > 0 && stats) {  // rows of zero length: statistics are undefined
    if (!rms) mean.attr("fill")(std::numeric_limits<double>::quiet_NaN());
    rstd.attr("fill")(std::numeric_limits<double>::quiet_NaN());
  }
  if (!stats) return y;
  if (add && !want_stats) return py::make_tuple(y, h);
  py::list outs;
  outs.append(y);
  if (add) outs.append(h);
  if (!rms) outs.append(mean);
  outs.append(rstd);
  return py::tuple(outs);
}

// Backward of LayerNorm / RMSNorm: (dx, dweight[, dbias]).
py::tuple row_norm_backward(bool rms, py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_,
                            py::handle w_, int64_t axis, py::handle out_) {
  const py::array x = as_ndarray(x_, "x");
  const DType dt = float_dtype(x, "x");
  const py::array dy = as_ndarray(dy_, "dy");
  if (!dy.dtype().equal(x.dtype()))
    throw py::type_error("dy has dtype " + std::string(py::str(dy.dtype())) + "; expected " +
                         std::string(py::str(x.dtype())) + " (the dtype of x)");
  const std::vector<int64_t> shape = shape_of(x);
  if (shape_of(dy) != shape)
    throw py::value_error("dy has shape " + shape_str(dy) + "; expected " + shape_str(shape) + " (the shape of x)");
  const int64_t ax = normalize_axis(axis, x.ndim(), "axis");
  const std::vector<int64_t> feat(shape.begin() + ax, shape.end()), lead(shape.begin(), shape.begin() + ax);
  const int64_t M = prod(shape, 0, ax), N = prod(shape, ax, shape.size());
  const py::array mean = rms ? py::array() : stat_acc(mean_, "mean", dt, lead);
  const py::array rstd = stat_acc(rstd_, "rstd", dt, lead);
  py::dtype wdt = x.dtype();
  const py::object w = param_acc(w_, "weight", dt, feat, &wdt);
  py::array dx = out_.is_none() ? empty(shape, x.dtype()) : check_out(out_, "out", shape, x.dtype());

  Rows xr = rows_of(x, ax), dyr = rows_of(dy, ax);
  if (!out_.is_none()) {
    protect_from(xr, dx, ax);
    protect_from(dyr, dx, ax);
  }
  const py::dtype acc = acc_dtype(dt);
  py::array dw = empty(feat, acc), db = rms ? py::array() : empty(feat, acc);

  RowNormBwdArgs a{};
  a.dtype = dt;
  a.M = M;
  a.N = N;
  a.dy = dyr.ptr;
  a.lddy = dyr.ld;
  a.x = xr.ptr;
  a.ldx = xr.ld;
  a.mean = rms ? nullptr : mean.data();
  a.rstd = rstd.data();
  a.weight = ptr_or_null(w);
  a.dx = dx.mutable_data();
  a.dweight = dw.mutable_data();
  a.dbias = rms ? nullptr : db.mutable_data();
  if (M > 0 && N > 0) {
    py::gil_scoped_release nogil;
    if (rms) rms_norm_bwd(a); else layer_norm_bwd(a);
  } else {
    dw.attr("fill")(0.0);
    if (!rms) db.attr("fill")(0.0);
  }
  const auto to_param = [&](const py::array& g) -> py::object {
    return g.dtype().equal(wdt) ? py::object(g) : g.attr("astype")(wdt);
  };
  if (rms) return py::make_tuple(dx, to_param(dw));
  return py::make_tuple(dx, to_param(dw), to_param(db));
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("row_norm_forward", &row_norm_forward, py::arg("rms"), py::arg("x"), py::arg("residual"), py::arg("weight"),
        py::arg("bias"), py::arg("axis"), py::arg("eps"), py::arg("out"), py::arg("want_stats"),
        "LayerNorm (rms=False) / RMSNorm (rms=True) forward over x.shape[axis:]; see normkit.layer_norm.");
  m.def("row_norm_backward", &row_norm_backward, py::arg("rms"), py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("rstd"), py::arg("weight"), py::arg("axis"), py::arg("out"),
        "LayerNorm / RMSNorm backward: (dx, dweight[, dbias]); see normkit.layer_norm_backward.");
}

}  // namespace nk::bind
