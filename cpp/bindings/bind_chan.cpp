// Bindings for the channel-wise norms: batch_norm, group_norm, instance_norm, on host or GPU
// arrays. Each op: the argument rules (array.h), x viewed as (N, C, S) in its layout, then the
// kernels of the arrays' device (backend.h). Statistics the kernels produce in double (batch
// statistics, GroupNorm's per-(n, g) mean / M2 / rstd, parameter gradients) live in arrays of the
// device; the running statistics are updated there too.
#include <cmath>
#include <limits>
#include <sstream>

#include "chan_view.h"
#include "normkit/chan_norm.h"

namespace nk::bind {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

DType acc_of(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

void check_momentum(double m) {
  if (!(m >= 0.0 && m <= 1.0)) {
    std::ostringstream s;
    s << "momentum must be in [0, 1], got " << num_str(m);
    throw py::value_error(s.str());
  }
}

int64_t check_groups(int64_t G, int64_t C) {
  if (G < 1 || C % G != 0)
    throw py::value_error("num_groups=" + std::to_string(G) + " must be >= 1 and divide the number of channels C=" +
                          std::to_string(C));
  return G;
}

// running_mean / running_var: both or neither, float arrays of shape (C,), writable when they are
// updated. Whether they are given.
bool running(Call& c, int64_t C, bool updated) {
  const bool m = c.has("running_mean"), v = c.has("running_var");
  if (m != v)
    throw py::value_error(std::string("running_mean and running_var must be given together; got only ") +
                          (m ? "running_mean" : "running_var"));
  if (!m) return false;
  for (const char* name : {"running_mean", "running_var"}) {
    (void)c.floats(name);
    if (c[name].shape != std::vector<int64_t>{C})
      throw py::value_error(std::string(name) + " has shape " + shape_str(c[name].shape) + "; expected " +
                            shape_str({C}));
    if (updated) c.in_place(name);
  }
  return true;
}

// running = (1 - momentum) * running + momentum * batch, in place in the caller's arrays.
void update_running(Call& c, const Arr& bm, const Arr& bv, int64_t C, double momentum) {
  for (auto [name, batch] : {std::pair{"running_mean", &bm}, std::pair{"running_var", &bv}}) {
    const py::object caller = c[name].obj;
    Arr& r = c.dense(name);
    c.run("running statistics update", [&](const Backend& be, int dev, void* s) {
      return be.running_update(r.dt(), C, r.data(), batch->data<const double>(), momentum, dev, s);
    });
    if (!r.obj.is(caller)) c.write_back(caller, r);
  }
}

// y / dx: out= (checked; inputs overlapping it other than in place re-read from copies) or new.
Arr& chan_output(Call& c, const Chan& v, const char* as, std::initializer_list<const char*> inputs) {
  c.out("out", v.shape, v.dt);
  Arr& o = c.output("out", as, v.shape, v.dt);
  for (const char* name : inputs) c.protect(name, as);
  return o;
}

// ---------------------------------------------------------------- BatchNorm

// The BatchNorm kernel (also InstanceNorm with running statistics in eval): y, save_mean,
// save_rstd and the batch statistics (double, when `update`). Eval reads the running ones.
struct BnOut {
  Arr y, sm, sr, bm, bv;
};
BnOut batch_norm_call(Call& c, const Chan& v, bool training, double eps, bool update, bool want_stats) {
  const int64_t C = v.C;
  const DType acc = acc_of(v.dt);
  BatchNormFwdArgs a{v.dt, v.layout, v.N, C, v.S, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, training,
                     eps, nullptr, nullptr, nullptr, nullptr};
  a.weight = c.in_dtype("weight", acc);
  a.bias = c.in_dtype("bias", acc);
  if (!training) {
    a.run_mean = c.in_dtype("running_mean", acc);
    a.run_var = c.in_dtype("running_var", acc);
  }
  BnOut o;
  if (update) {
    o.bm = c.scratch({C}, DType::f64);
    o.bv = c.scratch({C}, DType::f64);
    a.batch_mean = o.bm.data<double>();
    a.batch_var = o.bv.data<double>();
  }
  if (want_stats) {  // (not wanted: the kernels skip them)
    o.sm = c.empty({C}, acc);
    o.sr = c.empty({C}, acc);
    a.save_mean = o.sm.data();
    a.save_rstd = o.sr.data();
  }
  o.y = chan_output(c, v, "y", {"x"});
  a.x = c["x"].data<const void>();
  a.y = o.y.data();
  if (C > 0)
    c.run("batch_norm forward", [&](const Backend& be, int dev, void* s) { return be.batch_norm_fwd(a, dev, s); });
  return o;
}

py::object batch_norm_forward(py::handle x_, py::handle w_, py::handle b_, py::handle rm_, py::handle rv_,
                              bool training, double momentum, double eps, int64_t channel_axis, py::handle out_,
                              bool want_stats) {
  Call c("batch_norm", {{"x", x_}, {"weight", w_}, {"bias", b_}, {"running_mean", rm_}, {"running_var", rv_},
                        {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  check_eps(eps);
  check_momentum(momentum);
  c.param("weight", v.dt, {v.C});
  c.param("bias", v.dt, {v.C});
  const bool given = running(c, v.C, training);
  if (training && v.N * v.S < 2)
    throw py::value_error("batch_norm in training needs more than 1 value per channel, got x of shape " +
                          shape_str(v.shape));
  if (!training && !given)
    throw py::value_error("batch_norm in eval mode (training=False) needs running_mean and running_var");
  const bool update = training && given;
  BnOut o = batch_norm_call(c, v, training, eps, update, want_stats);
  if (update && v.C > 0) update_running(c, o.bm, o.bv, v.C, momentum);
  if (!want_stats) return c.result(o.y);
  return py::make_tuple(c.result(o.y), c.result(o.sm), c.result(o.sr));
}

py::tuple batch_norm_backward(py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_, py::handle w_,
                              bool training, int64_t channel_axis, py::handle out_) {
  Call c("batch_norm_backward", {{"dy", dy_}, {"x", x_}, {"save_mean", mean_}, {"save_rstd", rstd_},
                                 {"weight", w_}, {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  like_x(c, "dy");
  const int64_t C = v.C;
  const DType acc = acc_of(v.dt);
  c.stat("save_mean", v.dt, {C}, " (the input's shape before axis)");
  c.stat("save_rstd", v.dt, {C}, " (the input's shape before axis)");
  c.param("weight", v.dt, {C});
  const DType pdt = c.has("weight") ? c["weight"].dt() : v.dt;
  BatchNormBwdArgs a{v.dt, v.layout, v.N, C, v.S, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, training,
                     nullptr, nullptr};
  a.mean = c.in_dtype("save_mean", acc);
  a.rstd = c.in_dtype("save_rstd", acc);
  a.weight = c.in_dtype("weight", acc);
  Arr& dx = chan_output(c, v, "dx", {"x", "dy"});
  // Double gradients: handed back when the parameters are float64, else temporaries cast below.
  Arr dw = pdt == DType::f64 ? c.empty({C}, pdt) : c.scratch({C}, DType::f64);
  Arr db = pdt == DType::f64 ? c.empty({C}, pdt) : c.scratch({C}, DType::f64);
  a.x = c["x"].data<const void>();
  a.dy = c["dy"].data<const void>();
  a.dx = dx.data();
  a.dweight = dw.data<double>();
  a.dbias = db.data<double>();
  if (C > 0)
    c.run("batch_norm backward", [&](const Backend& be, int dev, void* s) { return be.batch_norm_bwd(a, dev, s); });
  return py::make_tuple(c.result(dx), c.result(c.cast(dw, pdt)), c.result(c.cast(db, pdt)));
}

// ---------------------------------------------------------------- GroupNorm / InstanceNorm

// GroupNorm forward (InstanceNorm: G = C): y and the per-(n, g) statistics in double.
struct GnOut {
  Arr y, mean, m2, rstd;
};
GnOut group_fwd(Call& c, const Chan& v, int64_t G, double eps, bool want_stats) {
  c.param("weight", v.dt, {v.C});
  c.param("bias", v.dt, {v.C});
  const DType acc = acc_of(v.dt);
  GroupFwdArgs a{v.dt, v.N, v.C, v.S, G, nullptr, nullptr, nullptr, nullptr, eps, nullptr, nullptr, nullptr};
  a.weight = c.in_dtype("weight", acc);
  a.bias = c.in_dtype("bias", acc);
  GnOut o;
  o.y = chan_output(c, v, "y", {"x"});
  // The double statistics are temporaries unless handed back as they are (float64 data, wanted)
  // or filled with NaN (no values: no kernel writes them).
  const bool keep = v.size() == 0 || (want_stats && acc == DType::f64);
  o.mean = keep ? c.empty({v.N, G}, DType::f64) : c.scratch({v.N, G}, DType::f64);
  o.m2 = keep ? c.empty({v.N, G}, DType::f64) : c.scratch({v.N, G}, DType::f64);
  o.rstd = keep ? c.empty({v.N, G}, DType::f64) : c.scratch({v.N, G}, DType::f64);
  a.x = c["x"].data<const void>();
  a.y = o.y.data();
  a.mean = o.mean.data<double>();
  a.m2 = o.m2.data<double>();
  a.rstd = o.rstd.data<double>();
  if (v.size() > 0) {
    c.run("group_norm forward",
          [&](const Backend& be, int dev, void* s) { return be.group_norm_fwd(a, v.layout, dev, s); });
  } else if (v.N * G > 0) {  // no values per group: the statistics are undefined
    c.fill(o.mean, kNaN);
    c.fill(o.m2, kNaN);
    c.fill(o.rstd, kNaN);
  }
  return o;
}

py::object group_norm_forward(py::handle x_, int64_t G, py::handle w_, py::handle b_, double eps,
                              int64_t channel_axis, py::handle out_, bool want_stats) {
  Call c("group_norm", {{"x", x_}, {"weight", w_}, {"bias", b_}, {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  check_groups(G, v.C);
  check_eps(eps);
  GnOut o = group_fwd(c, v, G, eps, want_stats);
  if (!want_stats) return c.result(o.y);
  const DType acc = acc_of(v.dt);
  return py::make_tuple(c.result(o.y), c.result(c.cast(o.mean, acc)), c.result(c.cast(o.rstd, acc)));
}

// GroupNorm / InstanceNorm backward from the saved (N, G) statistics (affine_only: the statistics
// were constants, InstanceNorm from running statistics).
py::tuple group_bwd(Call& c, const Chan& v, int64_t G, bool affine_only) {
  like_x(c, "dy");
  const DType acc = acc_of(v.dt);
  c.stat("mean", v.dt, {v.N, G}, " (the input's shape before axis)");
  c.stat("rstd", v.dt, {v.N, G}, " (the input's shape before axis)");
  c.param("weight", v.dt, {v.C});
  const DType pdt = c.has("weight") ? c["weight"].dt() : v.dt;
  GroupBwdArgs a{v.dt, v.N, v.C, v.S, G, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, affine_only,
                 nullptr, nullptr, nullptr, nullptr};
  a.mean = c.in_dtype("mean", acc);
  a.rstd = c.in_dtype("rstd", acc);
  a.weight = c.in_dtype("weight", acc);
  Arr& dx = chan_output(c, v, "dx", {"x", "dy"});
  Arr sdy = c.scratch({v.N, v.C}, DType::f64), sdyx = c.scratch({v.N, v.C}, DType::f64);
  const bool keep = v.size() == 0 || pdt == DType::f64;  // handed back as they are, or zero-filled
  Arr dw = keep ? c.empty({v.C}, DType::f64) : c.scratch({v.C}, DType::f64);
  Arr db = keep ? c.empty({v.C}, DType::f64) : c.scratch({v.C}, DType::f64);
  a.x = c["x"].data<const void>();
  a.dy = c["dy"].data<const void>();
  a.dx = dx.data();
  a.sdy = sdy.data<double>();
  a.sdyx = sdyx.data<double>();
  a.dweight = dw.data<double>();
  a.dbias = db.data<double>();
  if (v.size() > 0) {
    c.run("group_norm backward",
          [&](const Backend& be, int dev, void* s) { return be.group_norm_bwd(a, v.layout, dev, s); });
  } else {
    c.fill(dw, 0.0);
    c.fill(db, 0.0);
  }
  return py::make_tuple(c.result(dx), c.result(c.cast(dw, pdt)), c.result(c.cast(db, pdt)));
}

py::tuple group_norm_backward(py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_, py::handle w_,
                              int64_t G, int64_t channel_axis, py::handle out_) {
  Call c("group_norm_backward", {{"dy", dy_}, {"x", x_}, {"mean", mean_}, {"rstd", rstd_}, {"weight", w_},
                                 {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  return group_bwd(c, v, check_groups(G, v.C), false);
}

py::object instance_norm_forward(py::handle x_, py::handle w_, py::handle b_, py::handle rm_, py::handle rv_,
                                 bool use_input_stats, double momentum, double eps, int64_t channel_axis,
                                 py::handle out_, bool want_stats) {
  Call c("instance_norm", {{"x", x_}, {"weight", w_}, {"bias", b_}, {"running_mean", rm_}, {"running_var", rv_},
                           {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  check_eps(eps);
  check_momentum(momentum);
  const int64_t N = v.N, C = v.C;
  const DType acc = acc_of(v.dt);
  const bool given = running(c, C, use_input_stats);
  if (use_input_stats) {
    if (v.S < 2)
      throw py::value_error("instance_norm with use_input_stats=True needs more than 1 spatial value per channel, "
                            "got x of shape " + shape_str(v.shape));
    GnOut o = group_fwd(c, v, C, eps, want_stats);
    if (given && N > 0 && C > 0) {  // PyTorch: batch averages of the per-instance mean / unbiased variance
      Arr bm = c.scratch({C}, DType::f64), bv = c.scratch({C}, DType::f64);
      c.run("instance_norm batch statistics", [&](const Backend& be, int dev, void* s) {
        return be.instance_batch_stats(N, C, v.S, o.mean.data<const double>(), o.m2.data<const double>(),
                                       bm.data<double>(), bv.data<double>(), dev, s);
      });
      update_running(c, bm, bv, C, momentum);
    }
    if (!want_stats) return c.result(o.y);
    return py::make_tuple(c.result(o.y), c.result(c.cast(o.mean, acc)), c.result(c.cast(o.rstd, acc)));
  }
  if (!given) throw py::value_error("instance_norm with use_input_stats=False needs running_mean and running_var");
  c.param("weight", v.dt, {C});
  c.param("bias", v.dt, {C});
  // Constant statistics per channel: BatchNorm's eval path.
  BnOut o = batch_norm_call(c, v, false, eps, false, want_stats);
  if (!want_stats) return c.result(o.y);
  return py::make_tuple(c.result(o.y), c.broadcast_rows(o.sm, N), c.broadcast_rows(o.sr, N));
}

py::tuple instance_norm_backward(py::handle dy_, py::handle x_, py::handle mean_, py::handle rstd_, py::handle w_,
                                 int64_t channel_axis, bool use_input_stats, py::handle out_) {
  Call c("instance_norm_backward", {{"dy", dy_}, {"x", x_}, {"mean", mean_}, {"rstd", rstd_}, {"weight", w_},
                                    {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  return group_bwd(c, v, v.C, !use_input_stats);
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
