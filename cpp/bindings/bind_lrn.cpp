// Bindings for local response normalization (forward with optional scale, backward).
#include <cmath>
#include <sstream>

#include "chan_view.h"
#include "checks.h"
#include "normkit/lrn.h"

namespace nk::bind {
namespace {

void check_lrn(int64_t size, double alpha, double beta, double k) {
  std::ostringstream s;
  if (size < 1) s << "size must be >= 1, got " << size;
  else if (!std::isfinite(alpha)) s << "alpha must be finite, got " << alpha;
  else if (!std::isfinite(beta)) s << "beta must be finite, got " << beta;
  else if (!(k > 0.0) || !std::isfinite(k)) s << "k must be a finite number > 0, got " << k;
  if (!s.str().empty()) throw py::value_error(s.str());
}

py::object lrn_forward(py::handle x_, int64_t size, double alpha, double beta, double k, int64_t channel_axis,
                       py::handle out_, bool want_scale) {
  View v = chan_view(x_, channel_axis);
  check_lrn(size, alpha, beta, k);
  py::array y = output(out_, v);
  py::array scale = want_scale ? empty(v.shape, acc_dtype(v.dt)) : py::array();
  LrnFwdArgs a{v.dt, v.layout, v.N, v.C, v.S, v.xp(), v.at(y), want_scale ? scale.mutable_data() : nullptr,
               size, alpha, beta, k};
  if (v.x.size() > 0) {
    py::gil_scoped_release nogil;
    lrn_fwd(a);
  }
  if (want_scale) return py::make_tuple(y, scale);
  return y;
}

py::tuple lrn_backward(py::handle dy_, py::handle x_, py::handle y_, py::handle scale_, int64_t size, double alpha,
                       double beta, double k, int64_t channel_axis, py::handle out_) {
  View v = chan_view(x_, channel_axis);
  check_lrn(size, alpha, beta, k);
  py::array dy = same_as_x(dy_, "dy", v);
  py::array y = same_as_x(y_, "y", v);
  py::array scale = stat_acc(scale_, "scale", v.dt, v.shape);
  py::array dx = grad_output(out_, v, dy);
  if (overlaps(dx, y)) y = y.attr("copy")();
  if (overlaps(dx, scale)) scale = scale.attr("copy")();
  LrnBwdArgs a{v.dt, v.layout, v.N, v.C, v.S, dy.data(), v.xp(), y.data(), scale.data(), v.at(dx), size,
               alpha, beta, k};
  if (v.x.size() > 0) {
    py::gil_scoped_release nogil;
    lrn_bwd(a);
  }
  return py::make_tuple(dx);
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
