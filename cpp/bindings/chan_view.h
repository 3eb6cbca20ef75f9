// The (N, C, S) view of a channel-norm input, shared by the channel-wise bindings (BatchNorm,
// GroupNorm, InstanceNorm in bind_chan.cpp, LRN in bind_lrn.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "array.h"
#include "normkit/chan_norm.h"

namespace nk::bind {

struct Chan {
  DType dt;
  Layout layout;
  int64_t N, C, S;
  std::vector<int64_t> shape;
  int64_t size() const { return N * C * S; }
};

// The call's x (any float array, rank >= 2) viewed as (N, C, S) for channel_axis 1 or -1, made
// C-contiguous and aligned (copied once otherwise); ValueError/TypeError for bad input.
inline Chan chan_of(Call& c, int64_t channel_axis) {
  const DType dt = c.floats("x");
  const Arr& x = c["x"];
  const int64_t nd = x.ndim();
  if (nd < 2) throw py::value_error("x must have at least 2 dimensions (N, C, ...), got shape " + shape_str(x.shape));
  if (channel_axis != 1 && channel_axis != -1)
    throw py::value_error("channel_axis must be 1 (N, C, ...) or -1 (channels-last), got " +
                          std::to_string(channel_axis));
  const int64_t ax = channel_axis == 1 ? 1 : nd - 1;
  int64_t spatial = 1;
  for (int64_t d = 1; d < nd; ++d)
    if (d != ax) spatial *= x.shape[d];
  // S == 1: both layouts are the same memory; the channels-last kernels handle it best.
  const Layout layout = (ax == 1 && spatial > 1) ? Layout::ncs : Layout::nsc;
  Chan v{dt, layout, x.shape[0], x.shape[ax], spatial, x.shape};
  c.dense("x");
  return v;
}

// An argument with x's dtype and shape, made C-contiguous (copied once otherwise).
inline const void* like_x(Call& c, const char* name) {
  if (!c.has(name)) throw py::type_error(std::string(name) + " must be a numpy.ndarray, got NoneType");
  c.same_as(name, "x");
  return c.dense(name).data<const void>();
}

}  // namespace nk::bind
