// Bindings for the row normalizations: layer_norm, rms_norm and their add_* variants, on host
// or GPU arrays (array.h: the rules once, then the kernels of the arrays' device).
#include <limits>

#include "array.h"
#include "normkit/norm.h"

namespace nk::bind {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct RowShape {
  int64_t ax, M, N;
  std::vector<int64_t> feat, lead;
};

RowShape row_shape(const Arr& x, int64_t axis) {
  RowShape r;
  r.ax = normalize_axis(axis, x.ndim(), "axis");
  r.feat.assign(x.shape.begin() + r.ax, x.shape.end());
  r.lead.assign(x.shape.begin(), x.shape.begin() + r.ax);
  r.M = prod(r.lead, 0, r.lead.size());
  r.N = prod(r.feat, 0, r.feat.size());
  return r;
}

// Whether the kernels read weight/bias in x's dtype (the device's kernels can, for 16-bit data
// whose given parameters all have x's dtype) rather than in the accumulation dtype.
bool params_in_dtype(const Call& c, DType dt, std::initializer_list<const char*> names) {
  if (!c.backend().params_in_dtype || dt == DType::f32 || dt == DType::f64) return false;
  for (const char* n : names)
    if (c.has(n) && c.get(n).dt() != dt) return false;
  return true;
}

// Forward of LayerNorm (rms=false) or RMSNorm (rms=true), optionally on h = x + residual.
// Returns y, or (y[, h], [mean,] rstd) when want_stats / residual.
py::object row_norm_forward(bool rms, py::handle x_, py::handle res_, py::handle w_, py::handle b_, int64_t axis,
                            double eps, py::handle out_, bool want_stats) {
  Call c(rms ? "rms_norm" : "layer_norm",
         {{"x", x_}, {"residual", res_}, {"weight", w_}, {"bias", rms ? py::handle(Py_None) : b_}, {"out", out_}});
  const DType dt = c.floats("x");
  const RowShape r = row_shape(c["x"], axis);
  check_eps(eps);
  const std::vector<int64_t> shape = c["x"].shape;
  const bool add = c.has("residual");
  c.same_as("residual", "x");
  c.param("weight", dt, r.feat);
  c.param("bias", dt, r.feat);
  c.out("out", shape, dt);

  const bool in_dt = params_in_dtype(c, dt, {"weight", "bias"});
  const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;
  RowNormFwdArgs a{};
  a.dtype = dt;
  a.M = r.M;
  a.N = r.N;
  a.param_in_dtype = in_dt;
  a.weight = c.in_dtype("weight", in_dt ? dt : acc);
  a.bias = c.in_dtype("bias", in_dt ? dt : acc);
  Arr& y = c.output("out", "y", shape, dt);
  c.protect("x", "y");
  c.protect("residual", "y");
  a.x = c.rows("x", r.ax, &a.ldx);
  a.res = add ? c.rows("residual", r.ax, &a.ldr) : nullptr;
  a.y = y.data();
  Arr h = add ? c.empty(shape, dt) : Arr{};
  a.h = add ? h.data() : nullptr;
  const bool stats = want_stats || add;
  Arr mean = stats && !rms ? c.empty(r.lead, acc) : Arr{};
  Arr rstd = stats ? c.empty(r.lead, acc) : Arr{};
  a.mean = mean.given() ? mean.data() : nullptr;
  a.rstd = rstd.given() ? rstd.data() : nullptr;
  a.eps = eps;
  if (r.M > 0 && r.N > 0) {
    c.run(rms ? "rms_norm forward" : "layer_norm forward", [&](const Backend& be, int dev, void* s) {
      return rms ? be.rms_norm_fwd(a, dev, s) : be.layer_norm_fwd(a, dev, s);
    });
  } else if (r.M > 0 && stats) {  // rows of zero length: statistics are undefined
    if (!rms) c.fill(mean, kNaN);
    c.fill(rstd, kNaN);
  }
  if (!stats) return c.result(y);
  if (add && !want_stats) return py::make_tuple(c.result(y), c.result(h));
  py::list outs;
  outs.append(c.result(y));
  if (add) outs.append(c.result(h));
  if (!rms) outs.append(c.result(mean));
  outs.append(c.result(rstd));
  return py::tuple(outs);
}

// Backward of LayerNorm / RMSNorm: (dx, dweight[, dbias]).
py::tuple row_norm_backward(bool rms, py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_,
                            py::handle w_, int64_t axis, py::handle out_) {
  Call c(rms ? "rms_norm_backward" : "layer_norm_backward",
         {{"dy", dy_}, {"x", x_}, {"mean", rms ? py::handle(Py_None) : mean_}, {"rstd", rstd_}, {"weight", w_},
          {"out", out_}});
  const DType dt = c.floats("x");
  if (!c.has("dy")) throw py::type_error("dy must be a numpy.ndarray, got NoneType");
  c.same_as("dy", "x");
  const std::vector<int64_t> shape = c["x"].shape;
  const RowShape r = row_shape(c["x"], axis);
  if (!rms) c.stat("mean", dt, r.lead, " (the input's shape before axis)");
  c.stat("rstd", dt, r.lead, " (the input's shape before axis)");
  c.param("weight", dt, r.feat);
  c.out("out", shape, dt);

  const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;
  const DType wdt = c.has("weight") ? c["weight"].dt() : dt;  // the parameter gradients' dtype
  const bool in_dt = params_in_dtype(c, dt, {"weight"}) && wdt == dt;
  const DType gdt = in_dt ? dt : acc;  // the gradients' dtype out of the kernels
  RowNormBwdArgs a{};
  a.dtype = dt;
  a.M = r.M;
  a.N = r.N;
  a.param_in_dtype = in_dt;
  a.mean = rms ? nullptr : c.in_dtype("mean", acc);
  a.rstd = c.in_dtype("rstd", acc);
  a.weight = c.in_dtype("weight", gdt);
  Arr& dx = c.output("out", "dx", shape, dt);
  c.protect("x", "dx");
  c.protect("dy", "dx");
  a.x = c.rows("x", r.ax, &a.ldx);
  a.dy = c.rows("dy", r.ax, &a.lddy);
  a.dx = dx.data();
  Arr dw = c.empty(r.feat, gdt);
  Arr db = rms ? Arr{} : c.empty(r.feat, gdt);
  a.dweight = dw.data();
  a.dbias = rms ? nullptr : db.data();
  if (r.M > 0 && r.N > 0) {
    c.run(rms ? "rms_norm backward" : "layer_norm backward", [&](const Backend& be, int dev, void* s) {
      return rms ? be.rms_norm_bwd(a, dev, s) : be.layer_norm_bwd(a, dev, s);
    });
  } else {
    c.fill(dw, 0.0);
    if (!rms) c.fill(db, 0.0);
  }
  if (rms) return py::make_tuple(c.result(dx), c.result(c.cast(dw, wdt)));
  return py::make_tuple(c.result(dx), c.result(c.cast(dw, wdt)), c.result(c.cast(db, wdt)));
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
