// The (N, C, S) view of a channel-norm input shared by the channel-wise bindings (BatchNorm,
// GroupNorm, InstanceNorm, LRN); defined in bind_chan.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "checks.h"
#include "normkit/chan_norm.h"

namespace nk::bind {

struct View {
  py::array x;  // C-contiguous and aligned (the input or a copy)
  DType dt;
  Layout layout;
  int64_t N, C, S;
  std::vector<int64_t> shape;
  int64_t n0 = 0;  // first sample (a batch of samples [n0, n0 + N) of the array)
  int64_t offset() const { return n0 * C * S * static_cast<int64_t>(x.itemsize()); }
  const void* xp() const { return static_cast<const char*>(x.data()) + offset(); }
  void* at(py::array& a) const { return static_cast<char*>(a.mutable_data()) + offset(); }
};

// x (any float ndarray, rank >= 2) viewed as (N, C, S) for channel_axis 1 or -1: C-contiguous
// and aligned (copied once otherwise); ValueError/TypeError for bad input.
View chan_view(py::handle x_, int64_t channel_axis);
// out= (or a new array) for y / dx, with x re-read from a copy when it partly overlaps out.
py::array output(py::handle out_, View& v);
// dx (out= or new); dy is re-read from a copy when it partly overlaps dx.
py::array grad_output(py::handle out_, View& v, py::array& dy);
// An array argument with x's shape and dtype, C-contiguous (copied once otherwise).
py::array same_as_x(py::handle a_, const char* name, const View& v);

}  // namespace nk::bind
