// Bindings for the channel-wise norms: batch_norm, group_norm, instance_norm.
//
// Each op is: validate, view x as (N, C, S) in its layout, then one fused kernel (statistics or
// backward sums, coefficients and the elementwise pass in one parallel region). InstanceNorm
// with running statistics is one elementwise kernel with its coefficients computed here.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "chan_view.h"
#include "checks.h"
#include "normkit/chan_norm.h"

namespace nk::bind {

View chan_view(py::handle x_, int64_t channel_axis) {
  py::array x = as_ndarray(x_, "x");
  const DType dt = float_dtype(x, "x");
  const int64_t nd = x.ndim();
  if (nd < 2)
    throw py::value_error("x must have at least 2 dimensions (N, C, ...), got shape " + shape_str(x));
  if (channel_axis != 1 && channel_axis != -1)
    throw py::value_error("channel_axis must be 1 (N, C, ...) or -1 (channels-last), got " +
                          std::to_string(channel_axis));
  const int64_t ax = channel_axis == 1 ? 1 : nd - 1;
  const std::vector<int64_t> shape = shape_of(x);
  const int64_t N = shape[0], C = shape[ax];
  int64_t spatial = 1;
  for (int64_t d = 1; d < nd; ++d)
    if (d != ax) spatial *= shape[d];
  // S == 1: both layouts are the same memory; the channels-last kernels handle it best.
  const Layout layout = (ax == 1 && spatial > 1) ? Layout::ncs : Layout::nsc;
  if (!(x.flags() & py::array::c_style) || !is_aligned(x)) {
    x = py::module_::import("numpy").attr("ascontiguousarray")(x);
    if (!is_aligned(x)) x = x.attr("copy")();
  }
  return {x, dt, layout, N, C, spatial, shape, 0};
}

// out= (or a new array) for y / dx, with x re-read from a copy when it partly overlaps out.
py::array output(py::handle out_, View& v) {
  if (out_.is_none()) return empty(v.shape, v.x.dtype());
  py::array o = check_out(out_, "out", v.shape, v.x.dtype());
  if (overlaps(o, v.x) && !same_layout(o, v.x)) v.x = v.x.attr("copy")();
  return o;
}

// dx (out= or new); dy is re-read from a copy when it partly overlaps dx.
py::array grad_output(py::handle out_, View& v, py::array& dy) {
  py::array dx = output(out_, v);
  if (overlaps(dx, dy) && !same_layout(dx, dy)) dy = dy.attr("copy")();
  return dx;
}

py::array same_as_x(py::handle a_, const char* name, const View& v) {
  py::array a = as_ndarray(a_, name);
  if (!a.dtype().equal(v.x.dtype()))
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + "; expected " +
                         std::string(py::str(v.x.dtype())) + " (the dtype of x)");
  if (shape_of(a) != v.shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a) + "; expected " + shape_str(v.shape) +
                          " (the shape of x)");
  if (!(a.flags() & py::array::c_style) || !is_aligned(a)) {
    a = py::module_::import("numpy").attr("ascontiguousarray")(a);
    if (!is_aligned(a)) a = a.attr("copy")();
  }
  return a;
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();


void check_momentum(double m) {
  if (!(m >= 0.0 && m <= 1.0)) {
    std::ostringstream s;
    s << "momentum must be in [0, 1], got " << m;
    throw py::value_error(s.str());
  }
}

// A 1-d/any float array's values as doubles (contiguous float32/float64 read directly).
std::vector<double> doubles_of(const py::array& a) {
  const auto n = static_cast<size_t>(a.size());
  const int num = a.dtype().num();
  if ((a.flags() & py::array::c_style) && is_aligned(a) && a.dtype().byteorder() != '>') {
    if (num == py::detail::npy_api::NPY_DOUBLE_) {
      const auto* p = static_cast<const double*>(a.data());
      return std::vector<double>(p, p + n);
    }
    if (num == py::detail::npy_api::NPY_FLOAT_) {
      const auto* p = static_cast<const float*>(a.data());
      return std::vector<double>(p, p + n);
    }
  }
  const py::array_t<double> d = py::module_::import("numpy").attr("ascontiguousarray")(a, "float64");
  return std::vector<double>(d.data(), d.data() + n);
}

// Running statistics: both or neither; float ndarrays of shape (C,). Read as double.
struct Running {
  py::object mean, var;  // the caller's arrays (updated in place) or None
  std::vector<double> m, v;
  bool given() const { return !mean.is_none(); }
};
// need_writeable: the arrays are updated in place (training); read: also read their values as
// doubles (m, v), which the update needs.
Running running_stats(py::handle rm, py::handle rv, int64_t C, bool need_writeable, bool read = true) {
  Running r{py::reinterpret_borrow<py::object>(rm), py::reinterpret_borrow<py::object>(rv), {}, {}};
  if (rm.is_none() != rv.is_none())
    throw py::value_error(std::string("running_mean and running_var must be given together; got only ") +
                          (rm.is_none() ? "running_var" : "running_mean"));
  if (rm.is_none()) return r;
  for (auto [obj, name, dst] : {std::tuple{rm, "running_mean", &r.m}, std::tuple{rv, "running_var", &r.v}}) {
    py::array a = as_ndarray(obj, name);
    (void)float_dtype(a, name);
    if (shape_of(a) != std::vector<int64_t>{C})
      throw py::value_error(std::string(name) + " has shape " + shape_str(a) + "; expected " + shape_str({C}));
    if (need_writeable && !a.writeable()) throw py::value_error(std::string(name) + " is read-only");
    if (read) *dst = doubles_of(a);
  }
  return r;
}
// Writes values into a float array (float32/float64 contiguous ones directly, any other float
// dtype or layout through NumPy's assignment).
void write_doubles(const py::object& dst, const std::vector<double>& vals) {
  py::array a = py::reinterpret_borrow<py::array>(dst);
  const int num = a.dtype().num();
  if ((a.flags() & py::array::c_style) && is_aligned(a) && a.writeable() && a.dtype().byteorder() != '>' &&
      (num == py::detail::npy_api::NPY_DOUBLE_ || num == py::detail::npy_api::NPY_FLOAT_)) {
    if (num == py::detail::npy_api::NPY_DOUBLE_) std::copy(vals.begin(), vals.end(), static_cast<double*>(a.mutable_data()));
    else std::transform(vals.begin(), vals.end(), static_cast<float*>(a.mutable_data()), [](double v) { return static_cast<float>(v); });
    return;
  }
  py::array_t<double> nv(static_cast<py::ssize_t>(vals.size()));
  std::copy(vals.begin(), vals.end(), nv.mutable_data());
  dst.attr("__setitem__")(py::ellipsis(), nv);
}

// r = (1 - momentum) * r + momentum * batch, written into the caller's array (any float dtype).
void update_running(const py::object& arr, const std::vector<double>& old, const std::vector<double>& batch,
                    double momentum) {
  std::vector<double> nv(old.size());
  for (size_t c = 0; c < old.size(); ++c) nv[c] = (1.0 - momentum) * old[c] + momentum * batch[c];
  write_doubles(arr, nv);
}

// A float array as a contiguous array of the accumulation type (itself when it is one).
py::array acc_array_of(const py::object& a_, DType dt) {
  const py::array a = py::reinterpret_borrow<py::array>(a_);
  const py::dtype acc = acc_dtype(dt);
  if (a.dtype().equal(acc) && (a.flags() & py::array::c_style) && is_aligned(a)) return a;
  return py::module_::import("numpy").attr("ascontiguousarray")(a, acc);
}

// Coefficient arrays in the accumulation type, padded so whole-vector loads stay in bounds.
struct Coefs {
  DType dt;
  std::vector<float> f;
  std::vector<double> d;
  int64_t n;
  Coefs(DType dt_, int64_t count, int64_t k) : dt(dt_), n(count) {
    if (dt == DType::f64) d.assign(static_cast<size_t>(k * count + 16), 0.0);
    else f.assign(static_cast<size_t>(k * count + 16), 0.0f);
  }
  void set(int64_t which, int64_t i, double v) {
    if (dt == DType::f64) d[static_cast<size_t>(which * n + i)] = v;
    else f[static_cast<size_t>(which * n + i)] = static_cast<float>(v);
  }
  const void* ptr(int64_t which) const {
    return dt == DType::f64 ? static_cast<const void*>(d.data() + which * n)
                            : static_cast<const void*>(f.data() + which * n);
  }
};

// weight/bias as double vectors (ones / zeros when absent) and the dtype for their gradients.
std::vector<double> param_values(py::handle p, const char* name, const View& v, double fill, py::dtype* pdt) {
  const py::object a = param_acc(p, name, v.dt, {v.C}, pdt);
  std::vector<double> out(static_cast<size_t>(v.C), fill);
  if (!a.is_none()) out = doubles_of(py::reinterpret_borrow<py::array>(a));
  return out;
}

// A new array of the given dtype holding vals.
py::array array_of(const std::vector<int64_t>& shape, const py::dtype& dtype, const std::vector<double>& vals) {
  py::array a = empty(shape, dtype);
  write_doubles(a, vals);
  return a;
}

py::array acc_array(const std::vector<int64_t>& shape, DType dt, const std::vector<double>& vals) {
  return array_of(shape, acc_dtype(dt), vals);
}

py::object to_param(const std::vector<double>& g, int64_t C, const py::dtype& pdt) { return array_of({C}, pdt, g); }

// Elementwise y = (x - m) * a + b with coefficients per channel (ns = 0) or per (n, c) (ns = C).
void apply_affine(const View& v, py::array& y, const Coefs& k, int64_t ns) {
  ChanAffineArgs a{v.dt, v.layout, v.N, v.C, v.S, v.xp(), v.at(y), k.ptr(0), k.ptr(1), k.ptr(2), ns};
  if (v.N * v.C * v.S == 0) return;
  py::gil_scoped_release nogil;
  chan_affine(a);
}


// ---------------------------------------------------------------- BatchNorm

py::object batch_norm_forward(py::handle x_, py::handle w_, py::handle b_, py::handle rm_, py::handle rv_,
                              bool training, double momentum, double eps, int64_t channel_axis, py::handle out_,
                              bool want_stats) {
  View v = chan_view(x_, channel_axis);
  check_eps(eps);
  check_momentum(momentum);
  const int64_t C = v.C;
  const py::object w = param_acc(w_, "weight", v.dt, {C});
  const py::object b = param_acc(b_, "bias", v.dt, {C});
  Running run = running_stats(rm_, rv_, C, training, training);
  if (training && v.N * v.S < 2)
    throw py::value_error("batch_norm in training needs more than 1 value per channel, got x of shape " +
                          shape_str(v.shape));
  if (!training && !run.given())
    throw py::value_error("batch_norm in eval mode (training=False) needs running_mean and running_var");
  const py::array rm = training ? py::array() : acc_array_of(run.mean, v.dt);
  const py::array rv = training ? py::array() : acc_array_of(run.var, v.dt);
  const bool update = training && run.given();
  std::vector<double> bm(update ? static_cast<size_t>(C) : 0), bv(bm.size());
  py::array sm = empty({C}, acc_dtype(v.dt)), sr = empty({C}, acc_dtype(v.dt));
  py::array y = output(out_, v);
  BatchNormFwdArgs a{v.dt, v.layout, v.N, C, v.S, v.xp(), v.at(y), ptr_or_null(w), ptr_or_null(b),
                     training ? nullptr : rm.data(), training ? nullptr : rv.data(), training, eps,
                     sm.mutable_data(), sr.mutable_data(), update ? bm.data() : nullptr, update ? bv.data() : nullptr};
  {
    py::gil_scoped_release nogil;
    batch_norm_fwd(a);
  }
  if (update) {
    update_running(run.mean, run.m, bm, momentum);
    update_running(run.var, run.v, bv, momentum);
  }
  if (!want_stats) return y;
  return py::make_tuple(y, sm, sr);
}

py::tuple batch_norm_backward(py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_, py::handle w_,
                              bool training, int64_t channel_axis, py::handle out_) {
  View v = chan_view(x_, channel_axis);
  py::array dy = same_as_x(dy_, "dy", v);
  const int64_t C = v.C;
  const py::array mean = stat_acc(mean_, "save_mean", v.dt, {C});
  const py::array rstd = stat_acc(rstd_, "save_rstd", v.dt, {C});
  py::dtype pdt = v.x.dtype();
  const py::object w = param_acc(w_, "weight", v.dt, {C}, &pdt);
  std::vector<double> dw(static_cast<size_t>(C)), db(static_cast<size_t>(C));
  py::array dx = grad_output(out_, v, dy);
  BatchNormBwdArgs a{v.dt, v.layout, v.N, C, v.S, v.x.data(), dy.data(), dx.mutable_data(), mean.data(),
                     rstd.data(), ptr_or_null(w), training, dw.data(), db.data()};
  {
    py::gil_scoped_release nogil;
    batch_norm_bwd(a);
  }
  return py::make_tuple(dx, to_param(dw, C, pdt), to_param(db, C, pdt));
}

// ---------------------------------------------------------------- GroupNorm / InstanceNorm

// y with per-(n, c) coefficients from per-(n, g) statistics (shared by GroupNorm/InstanceNorm).
void group_apply(const View& v, int64_t G, const std::vector<double>& gm, const std::vector<double>& gr,
                 const std::vector<double>& w, const std::vector<double>& b, py::array& y, int64_t ns) {
  if (v.N * v.C * v.S == 0) return;
  const int64_t Cg = v.C / G, rows = ns ? v.N : 1;
  Coefs k(v.dt, rows * v.C, 3);
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t c = 0; c < v.C; ++c) {
      const size_t g = static_cast<size_t>(n * G + c / Cg);
      k.set(0, n * v.C + c, gm[g]);
      k.set(1, n * v.C + c, gr[g] * w[c]);
      k.set(2, n * v.C + c, b[c]);
    }
  apply_affine(v, y, k, ns);
}

// GroupNorm / InstanceNorm forward, fused (per (n, g) for NCHW, per batch of samples for
// channels-last); fills per-(n, g) mean, M2, rstd.
py::array group_fused(View& v, int64_t G, py::handle w_, py::handle b_, double eps, py::handle out_,
                      std::vector<double>& gm, std::vector<double>& gq, std::vector<double>& gr) {
  const py::object w = param_acc(w_, "weight", v.dt, {v.C});
  const py::object b = param_acc(b_, "bias", v.dt, {v.C});
  py::array y = output(out_, v);
  const size_t k = static_cast<size_t>(v.N * G);
  gm.assign(k, kNaN);
  gq.assign(k, kNaN);
  gr.assign(k, kNaN);
  GroupFwdArgs a{v.dt, v.N, v.C, v.S, G, v.x.data(), y.mutable_data(), ptr_or_null(w), ptr_or_null(b), eps, gm.data(), gq.data(), gr.data()};
  if (v.x.size() > 0) {
    py::gil_scoped_release nogil;
    if (v.layout == Layout::ncs) group_norm_fwd_ncs(a);
    else group_norm_fwd_nsc(a);
  }
  return y;
}

int64_t check_groups(int64_t G, int64_t C) {
  if (G < 1 || C % G != 0)
    throw py::value_error("num_groups=" + std::to_string(G) + " must be >= 1 and divide the number of channels C=" +
                          std::to_string(C));
  return G;
}

py::object group_norm_forward(py::handle x_, int64_t G, py::handle w_, py::handle b_, double eps,
                              int64_t channel_axis, py::handle out_, bool want_stats) {
  View v = chan_view(x_, channel_axis);
  check_groups(G, v.C);
  check_eps(eps);
  std::vector<double> gm, gq, gr;
  const py::array y = group_fused(v, G, w_, b_, eps, out_, gm, gq, gr);
  if (!want_stats) return y;
  return py::make_tuple(y, acc_array({v.N, G}, v.dt, gm), acc_array({v.N, G}, v.dt, gr));
}

// GroupNorm / InstanceNorm backward from the saved (N, G) statistics: fused per (n, g) for NCHW,
// per cache-sized batch of samples for channels-last.
py::tuple group_backward_of(View& v, py::array dy, int64_t G, py::handle mean_, py::handle rstd_, py::handle w_,
                            py::handle out_, bool affine_only) {
  const py::array mean = stat_acc(mean_, "mean", v.dt, {v.N, G});
  const py::array rstd = stat_acc(rstd_, "rstd", v.dt, {v.N, G});
  py::dtype pdt = v.x.dtype();
  const py::object w = param_acc(w_, "weight", v.dt, {v.C}, &pdt);
  const int64_t C = v.C;
  std::vector<double> sdy(static_cast<size_t>(v.N * C)), sdyx(sdy.size()), dw(static_cast<size_t>(C), 0.0),
      db(dw.size(), 0.0);
  py::array dx = grad_output(out_, v, dy);
  GroupBwdArgs a{v.dt, v.N, C, v.S, G, v.x.data(), dy.data(), dx.mutable_data(), mean.data(), rstd.data(),
                 ptr_or_null(w), affine_only, sdy.data(), sdyx.data(), dw.data(), db.data()};
  if (v.x.size() > 0) {
    py::gil_scoped_release nogil;
    if (v.layout == Layout::ncs) group_norm_bwd_ncs(a);
    else group_norm_bwd_nsc(a);
  }
  return py::make_tuple(dx, to_param(dw, C, pdt), to_param(db, C, pdt));
}

py::tuple group_norm_backward(py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_, py::handle w_,
                              int64_t G, int64_t channel_axis, py::handle out_) {
  View v = chan_view(x_, channel_axis);
  check_groups(G, v.C);
  py::array dy = same_as_x(dy_, "dy", v);
  return group_backward_of(v, dy, G, mean_, rstd_, w_, out_, false);
}

py::object instance_norm_forward(py::handle x_, py::handle w_, py::handle b_, py::handle rm_, py::handle rv_,
                                 bool use_input_stats, double momentum, double eps, int64_t channel_axis,
                                 py::handle out_, bool want_stats) {
  View v = chan_view(x_, channel_axis);
  check_eps(eps);
  check_momentum(momentum);
  const int64_t N = v.N, C = v.C;
  Running run = running_stats(rm_, rv_, C, use_input_stats);
  std::vector<double> gm, gr;
  py::array y;
  if (use_input_stats) {
    if (v.S < 2)
      throw py::value_error("instance_norm with use_input_stats=True needs more than 1 spatial value per channel, "
                            "got x of shape " + shape_str(v.shape));
    std::vector<double> iq;
    y = group_fused(v, C, w_, b_, eps, out_, gm, iq, gr);
    const std::vector<double>& im = gm;
    if (run.given() && N > 0) {  // PyTorch: batch averages of the per-instance mean / unbiased variance
      std::vector<double> bm(static_cast<size_t>(C), 0.0), bv(static_cast<size_t>(C), 0.0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
          bm[c] += im[n * C + c] / static_cast<double>(N);
          bv[c] += iq[n * C + c] / static_cast<double>(v.S - 1) / static_cast<double>(N);
        }
      update_running(run.mean, run.m, bm, momentum);
      update_running(run.var, run.v, bv, momentum);
    }
  } else {
    if (!run.given())
      throw py::value_error("instance_norm with use_input_stats=False needs running_mean and running_var");
    const std::vector<double> w = param_values(w_, "weight", v, 1.0, nullptr);
    const std::vector<double> b = param_values(b_, "bias", v, 0.0, nullptr);
    gm.resize(static_cast<size_t>(N * C));
    gr.resize(static_cast<size_t>(N * C));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        gm[n * C + c] = run.m[c];
        gr[n * C + c] = 1.0 / std::sqrt(run.v[c] + eps);
      }
    std::vector<double> m1(run.m), r1(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) r1[c] = 1.0 / std::sqrt(run.v[c] + eps);
    y = output(out_, v);
    group_apply(v, C, m1, r1, w, b, y, 0);
  }
  if (!want_stats) return y;
  return py::make_tuple(y, acc_array({N, C}, v.dt, gm), acc_array({N, C}, v.dt, gr));
}

py::tuple instance_norm_backward(py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_, py::handle w_,
                                 int64_t channel_axis, bool use_input_stats, py::handle out_) {
  View v = chan_view(x_, channel_axis);
  py::array dy = same_as_x(dy_, "dy", v);
  return group_backward_of(v, dy, v.C, mean_, rstd_, w_, out_, !use_input_stats);
}

}  // namespace

void bind_chan(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
        py::arg("channel_axis"), py::arg("out"), py::arg("want_stats"));
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"), py::arg("save_mean"),
        py::arg("save_rstd"), py::arg("weight"), py::arg("training"), py::arg("channel_axis"), py::arg("out"));
  m.def("group_norm_forward", &group_norm_forward, py::arg("x"), py::arg("num_groups"), py::arg("weight"),
        py::arg("bias"), py::arg("eps"), py::arg("channel_axis"), py::arg("out"), py::arg("want_stats"));
  m.def("group_norm_backward", &group_norm_backward, py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("rstd"),
        py::arg("weight"), py::arg("num_groups"), py::arg("channel_axis"), py::arg("out"));
  m.def("instance_norm_forward", &instance_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("use_input_stats"), py::arg("momentum"),
        py::arg("eps"), py::arg("channel_axis"), py::arg("out"), py::arg("want_stats"));
  m.def("instance_norm_backward", &instance_norm_backward, py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("rstd"), py::arg("weight"), py::arg("channel_axis"), py::arg("use_input_stats"), py::arg("out"));
}

}  // namespace nk::bind
