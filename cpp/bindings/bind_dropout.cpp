// Bindings for dropout: forward (y and optionally the mask) and backward (from a mask or a seed),
// on host or GPU arrays.
#include <cmath>
#include <sstream>

#include "array.h"
#include "normkit/dropout.h"

namespace nk::bind {
namespace {

void check_p(double p) {
  if (!(p >= 0.0 && p < 1.0)) {
    std::ostringstream s;
    s << "p must be in [0, 1), got " << num_str(p);
    throw py::value_error(s.str());
  }
}

// Shared by forward and backward: y = kept ? x * 1/(1-p) : 0, keep from the seed or the mask.
py::object run(const char* op, py::handle x_, const char* xname, double p, py::handle seed_, py::handle mask_,
               py::handle out_, bool want_mask) {
  Call c(op, {{xname, x_}, {"mask", mask_}, {"out", out_}});
  const DType dt = c.floats(xname);
  check_p(p);
  const std::vector<int64_t> shape = c[xname].shape;
  const bool have_mask = c.has("mask");
  uint64_t seed = 0;
  if (have_mask) {
    const Arr& m = c["mask"];
    if (m.kind != Kind::boolean) throw py::type_error("mask has dtype " + m.dtype_name() + "; expected bool");
    if (m.shape != shape)
      throw py::value_error("mask has shape " + shape_str(m.shape) + "; expected " + shape_str(shape) +
                            " (the shape of " + xname + ")");
  } else {
    if (seed_.is_none()) throw py::value_error("dropout_backward needs the forward's mask or its seed");
    seed = as_seed(seed_);
  }
  c.out("out", shape, dt);
  Arr& y = c.output("out", "y", shape, dt);
  c.protect(xname, "y");
  c.protect("mask", "y", true);
  DropoutArgs a{};
  a.dtype = dt;
  a.n = c[xname].size();
  a.x = c.dense(xname).data();
  a.y = y.data();
  a.mask_in = have_mask ? c.dense("mask").data<const uint8_t>() : nullptr;
  Arr mask = want_mask ? c.empty(shape, Kind::boolean) : Arr{};
  a.mask_out = want_mask ? mask.data<uint8_t>() : nullptr;
  a.seed = seed;
  a.threshold = static_cast<uint32_t>(std::floor(p * 4294967296.0));
  a.scale = 1.0 / (1.0 - p);
  if (a.n > 0) c.run("dropout", [&](const Backend& be, int dev, void* s) { return be.dropout(a, dev, s); });
  if (want_mask) return py::make_tuple(c.result(y), c.result(mask));
  return c.result(y);
}

// dropout(training=False) with out=: out checked like any output, then out[...] = x.
py::object identity(py::handle x_, double p, py::handle out_) {
  check_p(p);
  if (out_.is_none()) return py::reinterpret_borrow<py::object>(x_);
  Call c("dropout", {{"x", x_}, {"out", out_}});
  const DType dt = c.floats("x");
  c.out("out", c["x"].shape, dt);
  if (!same_layout(c["x"], c["out"])) c.write_back(py::reinterpret_borrow<py::object>(out_), c["x"]);
  return py::reinterpret_borrow<py::object>(out_);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def(
      "dropout",
      [](py::handle x, double p, py::handle seed, py::handle out, bool want_mask) {
        if (seed.is_none()) throw py::value_error("dropout needs a seed");
        return run("dropout", x, "x", p, seed, py::none(), out, want_mask);
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("out") = py::none(), py::arg("want_mask") = false);
  m.def(
      "dropout_backward",
      [](py::handle dy, py::handle mask, double p, py::handle seed, py::handle out) {
        return run("dropout_backward", dy, "dy", p, seed, mask, out, false);
      },
      py::arg("dy"), py::arg("mask"), py::arg("p"), py::arg("seed"), py::arg("out") = py::none());
  m.def("dropout_identity", &identity, py::arg("x"), py::arg("p"), py::arg("out"),
        "dropout with training=False: x itself, or copied into out (checked as an output).");
}

}  // namespace nk::bind
