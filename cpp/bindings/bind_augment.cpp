// Bindings for the augmentations: random_crop, random_flip, gaussian_noise, pca_lighting.
// Images are (N, C, H, W) / (N, H, W, C) for channel_axis 1 / -1, or one image without the N axis.
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "checks.h"
#include "normkit/augment.h"

namespace nk::bind {
namespace {

// images viewed as (N, P, H, W, Q), C-contiguous and aligned (copied once otherwise).
struct Images {
  py::array x;
  DType dt;
  ImageGeom g;
  bool nhwc;
  bool batched;  // rank 4 (else one image of rank 3)
  int64_t C() const { return g.P * g.Q; }
  // The shape of an output with h x w pixels per image.
  std::vector<int64_t> shape(int64_t h, int64_t w) const {
    std::vector<int64_t> s;
    if (batched) s.push_back(g.N);
    if (!nhwc) s.push_back(C());
    s.push_back(h);
    s.push_back(w);
    if (nhwc) s.push_back(C());
    return s;
  }
};

Images images_view(py::handle x_, int64_t channel_axis) {
  Images v;
  v.x = as_ndarray(x_, "images");
  v.dt = float_dtype(v.x, "images");
  const int64_t nd = v.x.ndim();
  if (nd != 3 && nd != 4)
    throw py::value_error("images has shape " + shape_str(v.x) +
                          "; expected 4 dimensions (N, C, H, W) or (N, H, W, C), or 3 for one image");
  if (channel_axis != 1 && channel_axis != -1 && !(nd == 4 && channel_axis == 3))
    throw py::value_error("channel_axis must be 1 (NCHW) or -1 (NHWC), got " + std::to_string(channel_axis));
  v.nhwc = channel_axis != 1;
  v.batched = nd == 4;
  const std::vector<int64_t> s = shape_of(v.x);
  const int64_t b = v.batched ? 1 : 0;  // first axis after N
  const int64_t N = v.batched ? s[0] : 1;
  v.g = v.nhwc ? ImageGeom{N, 1, s[b], s[b + 1], s[b + 2]} : ImageGeom{N, s[b], s[b + 1], s[b + 2], 1};
  v.x = contiguous(v.x);
  return v;
}

void check_range(bool ok, const char* name, const char* expected, double got) {
  if (ok) return;
  std::ostringstream s;
  s << name << " must be " << expected << ", got " << got;
  throw py::value_error(s.str());
}

// eigvals / eigvecs: any real array, given shape; returned as contiguous float64.
py::array real_f64(py::handle a_, const char* name, const std::vector<int64_t>& shape, const std::string& why) {
  py::array a = as_ndarray(a_, name);
  const char kind = a.dtype().kind();
  bool ok = kind == 'f' || kind == 'i' || kind == 'u';
  if (!ok) {
    try {
      float_dtype(a, name);
      ok = true;
    } catch (py::type_error&) {
    }
  }
  if (!ok)
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) +
                         "; expected a real (float or integer) dtype");
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " has shape " + shape_str(a) + "; expected " + shape_str(shape) + " " +
                          why);
  return py::module_::import("numpy").attr("ascontiguousarray")(a, py::dtype("float64"));
}

py::array crop(py::handle x_, int64_t h, int64_t w, int64_t pad_h, int64_t pad_w, py::handle seed_,
               int64_t channel_axis) {
  Images v = images_view(x_, channel_axis);
  const uint64_t seed = as_seed(seed_);
  if (pad_h < 0 || pad_w < 0)
    throw py::value_error("padding must be >= 0, got (" + std::to_string(pad_h) + ", " + std::to_string(pad_w) + ")");
  const int64_t Hp = v.g.H + 2 * pad_h, Wp = v.g.W + 2 * pad_w;
  if (h < 1 || w < 1 || h > Hp || w > Wp)
    throw py::value_error("size (h, w) = (" + std::to_string(h) + ", " + std::to_string(w) +
                          ") must be at least (1, 1) and fit in the padded image (H + 2*pad_h, W + 2*pad_w) = (" +
                          std::to_string(Hp) + ", " + std::to_string(Wp) + ")");
  if (Hp >= (int64_t{1} << 32) || Wp >= (int64_t{1} << 32)) throw py::value_error("images are too large to crop");
  py::array y = empty(v.shape(h, w), v.x.dtype());
  CropArgs a{v.dt, v.g, h, w, pad_h, pad_w, seed, v.x.data(), y.mutable_data()};
  if (y.size() > 0) {
    py::gil_scoped_release nogil;
    random_crop(a);
  }
  return y;
}

py::array flip(py::handle x_, double p, py::handle seed_, int64_t channel_axis) {
  Images v = images_view(x_, channel_axis);
  check_range(p >= 0.0 && p <= 1.0, "p", "in [0, 1]", p);
  const uint64_t seed = as_seed(seed_);
  py::array y = empty(shape_of(v.x), v.x.dtype());
  FlipArgs a{v.dt, v.g, seed, static_cast<uint64_t>(std::floor(p * 4294967296.0)), v.x.data(), y.mutable_data()};
  if (y.size() > 0) {
    py::gil_scoped_release nogil;
    random_flip(a);
  }
  return y;
}

py::array noise(py::handle x_, double std, py::handle seed_) {
  py::array x = as_ndarray(x_, "images");
  const DType dt = float_dtype(x, "images");
  check_range(std >= 0.0 && std::isfinite(std), "std", ">= 0 and finite", std);
  const uint64_t seed = as_seed(seed_);
  x = contiguous(x);
  py::array y = empty(shape_of(x), x.dtype());
  NoiseArgs a{dt, static_cast<int64_t>(x.size()), seed, std, x.data(), y.mutable_data()};
  if (std == 0.0) {  // exactly x (x + 0 * z would turn -0 into +0)
    std::memcpy(y.mutable_data(), x.data(), static_cast<size_t>(x.nbytes()));
  } else if (a.n > 0) {
    py::gil_scoped_release nogil;
    gaussian_noise(a);
  }
  return y;
}

py::array lighting(py::handle x_, py::handle eigvals_, py::handle eigvecs_, double std, py::handle seed_,
                   int64_t channel_axis) {
  Images v = images_view(x_, channel_axis);
  const int64_t C = v.C();
  const std::string why = "(C = " + std::to_string(C) + " channels in images of shape " + shape_str(v.x) + ")";
  py::array ev = real_f64(eigvals_, "eigvals", {C}, why);
  py::array evec = real_f64(eigvecs_, "eigvecs", {C, C}, why);
  check_range(std >= 0.0 && std::isfinite(std), "std", ">= 0 and finite", std);
  const uint64_t seed = as_seed(seed_);
  py::array y = empty(shape_of(v.x), v.x.dtype());
  LightingArgs a{v.dt, v.g, seed, std, static_cast<const double*>(ev.data()), static_cast<const double*>(evec.data()),
                 v.x.data(), y.mutable_data()};
  if (std == 0.0) {  // exactly x
    std::memcpy(y.mutable_data(), v.x.data(), static_cast<size_t>(v.x.nbytes()));
  } else if (y.size() > 0) {
    py::gil_scoped_release nogil;
    pca_lighting(a);
  }
  return y;
}

}  // namespace

void bind_augment(py::module_& m) {
  m.def("random_crop", &crop, py::arg("images"), py::arg("h"), py::arg("w"), py::arg("pad_h"), py::arg("pad_w"),
        py::arg("seed"), py::arg("channel_axis"));
  m.def("random_flip", &flip, py::arg("images"), py::arg("p"), py::arg("seed"), py::arg("channel_axis"));
  m.def("gaussian_noise", &noise, py::arg("images"), py::arg("std"), py::arg("seed"));
  m.def("pca_lighting", &lighting, py::arg("images"), py::arg("eigvals"), py::arg("eigvecs"), py::arg("std"),
        py::arg("seed"), py::arg("channel_axis"));
}

}  // namespace nk::bind
