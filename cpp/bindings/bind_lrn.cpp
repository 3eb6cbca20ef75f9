// Bindings for local response normalization (forward with optional scale, backward), on host or
// GPU arrays.
#include <cmath>
#include <sstream>

#include "chan_view.h"
#include "normkit/lrn.h"

namespace nk::bind {
namespace {

void check_lrn(int64_t size, double alpha, double beta, double k) {
  std::ostringstream s;
  if (size < 1) s << "size must be >= 1, got " << size;
  else if (!std::isfinite(alpha)) s << "alpha must be finite, got " << num_str(alpha);
  else if (!std::isfinite(beta)) s << "beta must be finite, got " << num_str(beta);
  else if (!(k > 0.0) || !std::isfinite(k)) s << "k must be a finite number > 0, got " << num_str(k);
  if (!s.str().empty()) throw py::value_error(s.str());
}

py::object lrn_forward(py::handle x_, int64_t size, double alpha, double beta, double k, int64_t channel_axis,
                       py::handle out_, bool want_scale) {
  Call c("local_response_norm", {{"x", x_}, {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  check_lrn(size, alpha, beta, k);
  c.out("out", v.shape, v.dt);
  Arr& y = c.output("out", "y", v.shape, v.dt);
  c.protect("x", "y", true);  // each output reads its channel neighbours: x must not change under it
  Arr scale = want_scale ? c.empty(v.shape, v.dt == DType::f64 ? DType::f64 : DType::f32) : Arr{};
  const LrnFwdArgs a{v.dt, v.layout, v.N, v.C, v.S, c["x"].data<const void>(), y.data(),
                     want_scale ? scale.data() : nullptr, size, alpha, beta, k};
  if (v.size() > 0)
    c.run("local_response_norm forward", [&](const Backend& be, int dev, void* s) { return be.lrn_fwd(a, dev, s); });
  if (want_scale) return py::make_tuple(c.result(y), c.result(scale));
  return c.result(y);
}

py::tuple lrn_backward(py::handle dy_, py::handle x_, py::handle y_, py::handle scale_, int64_t size, double alpha,
                       double beta, double k, int64_t channel_axis, py::handle out_) {
  Call c("local_response_norm_backward", {{"dy", dy_}, {"x", x_}, {"y", y_}, {"scale", scale_}, {"out", out_}});
  const Chan v = chan_of(c, channel_axis);
  check_lrn(size, alpha, beta, k);
  like_x(c, "dy");
  like_x(c, "y");
  c.stat("scale", v.dt, v.shape);
  c.out("out", v.shape, v.dt);
  const DType acc = v.dt == DType::f64 ? DType::f64 : DType::f32;
  c.in_dtype("scale", acc);
  Arr& dx = c.output("out", "dx", v.shape, v.dt);
  for (const char* name : {"x", "dy", "y", "scale"}) c.protect(name, "dx", true);
  const LrnBwdArgs a{v.dt, v.layout, v.N, v.C, v.S, c["dy"].data<const void>(), c["x"].data<const void>(),
                     c["y"].data<const void>(), c["scale"].data<const void>(), dx.data(), size, alpha, beta, k};
  if (v.size() > 0)
    c.run("local_response_norm backward", [&](const Backend& be, int dev, void* s) { return be.lrn_bwd(a, dev, s); });
  return py::make_tuple(c.result(dx));
}

}  // namespace

void bind_lrn(py::module_& m) {
  m.def("local_response_norm", &lrn_forward, py::arg("x"), py::arg("size"), py::arg("alpha"), py::arg("beta"),
        py::arg("k"), py::arg("channel_axis"), py::arg("out") = py::none(), py::arg("want_scale") = false);
  m.def("local_response_norm_backward", &lrn_backward, py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("scale"),
        py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("k"), py::arg("channel_axis"),
        py::arg("out") = py::none());
}

}  // namespace nk::bind
