// Bindings for dropout: forward (y and optionally the mask) and backward (from a mask or a seed).
#include <cmath>
#include <sstream>

#include "checks.h"
#include "normkit/dropout.h"

namespace nk::bind {
namespace {

void check_p(double p) {
  if (!(p >= 0.0 && p < 1.0)) {
    std::ostringstream s;
    s << "p must be in [0, 1), got " << p;
    throw py::value_error(s.str());
  }
}

// Shared by forward and backward: y = kept ? x * 1/(1-p) : 0, keep from the seed or the mask.
py::object run(py::handle x_, const char* xname, double p, py::handle seed_, py::handle mask_, py::handle out_,
               bool want_mask) {
  py::array x = as_ndarray(x_, xname);
  const DType dt = float_dtype(x, xname);
  check_p(p);
  const std::vector<int64_t> shape = shape_of(x);
  py::array mask_in;
  const bool have_mask = !mask_.is_none();
  uint64_t seed = 0;
  if (have_mask) {
    mask_in = as_ndarray(mask_, "mask");
    if (mask_in.dtype().kind() != 'b')
      throw py::type_error("mask has dtype " + std::string(py::str(mask_in.dtype())) + "; expected bool");
    if (shape_of(mask_in) != shape)
      throw py::value_error("mask has shape " + shape_str(mask_in) + "; expected " + shape_str(shape) + " (the shape of " +
                            xname + ")");
    mask_in = contiguous(mask_in);
  } else {
    if (seed_.is_none()) throw py::value_error("dropout_backward needs the forward's mask or its seed");
    seed = as_seed(seed_);
  }
  x = contiguous(x);
  py::array y = out_.is_none() ? empty(shape, x.dtype()) : check_out(out_, "out", shape, x.dtype());
  if (overlaps(x, y) && !same_layout(x, y)) x = x.attr("copy")();
  if (have_mask && overlaps(mask_in, y)) mask_in = mask_in.attr("copy")();
  py::array mask = want_mask ? empty(shape, py::dtype("bool")) : py::array();

  DropoutArgs a{};
  a.dtype = dt;
  a.n = static_cast<int64_t>(x.size());
  a.x = x.data();
  a.y = y.mutable_data();
  a.mask_in = have_mask ? static_cast<const uint8_t*>(mask_in.data()) : nullptr;
  a.mask_out = want_mask ? static_cast<uint8_t*>(mask.mutable_data()) : nullptr;
  a.seed = seed;
  a.threshold = static_cast<uint32_t>(std::floor(p * 4294967296.0));
  a.scale = 1.0 / (1.0 - p);
  if (a.n > 0) {
    py::gil_scoped_release nogil;
    dropout(a);
  }
  if (want_mask) return py::make_tuple(y, mask);
  return y;
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def(
      "dropout",
      [](py::handle x, double p, py::handle seed, py::handle out, bool want_mask) {
        if (seed.is_none()) throw py::value_error("dropout needs a seed");
        return run(x, "x", p, seed, py::none(), out, want_mask);
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("out") = py::none(), py::arg("want_mask") = false);
  m.def(
      "dropout_backward",
      [](py::handle dy, py::handle mask, double p, py::handle seed, py::handle out) {
        return run(dy, "dy", p, seed, mask, out, false);
      },
      py::arg("dy"), py::arg("mask"), py::arg("p"), py::arg("seed"), py::arg("out") = py::none());
}

}  // namespace nk::bind
