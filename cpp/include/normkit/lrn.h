// normkit — local response normalization across channels (AlexNet; PyTorch/ONNX/Caffe conventions).
//
// Tensors are contiguous (N, C, S) in one of the two channel-norm layouts (normkit/chan_norm.h):
// ncs = channel_axis 1, nsc = channels-last. With before = size / 2 and after = (size - 1) / 2
// (PyTorch's centring) and channels outside [0, C) counting as zero:
//   scale[n,c,s] = k + alpha / size * sum_{c' = c - before}^{c + after} x[n,c',s]^2
//   y[n,c,s]     = x[n,c,s] * scale[n,c,s]^(-beta)
// Backward (dx = written):
//   dx[c] = dy[c] * scale[c]^(-beta)
//         - 2 * alpha * beta / size * x[c] * sum_{j = c - after}^{c + before} dy[j] * y[j] / scale[j]
// Window sums are taken in double: along the channel axis as a running sum (add the entering
// channel, subtract the leaving one; exact for float data, so no cancellation drift) in the ncs
// layout, where lanes run along s; in the nsc layout (lanes along the contiguous channels) as a
// direct sum of the window for size <= 16 and a running sum otherwise.
// Data T (x, y, dy, dx); scale in the accumulation type A (float for f32/f16/bf16, double for f64).
// y may equal x; dx may equal dy.
#pragma once
#include <cstdint>

#include "normkit/chan_norm.h"
#include "normkit/types.h"

namespace nk {

struct LrnFwdArgs {
  DType dtype;
  Layout layout;
  int64_t N, C, S;
  const void* x;  // T
  void* y;        // T                    (= written)
  void* scale;    // A, or nullptr        (= written)
  int64_t size;
  double alpha, beta, k;
};

struct LrnBwdArgs {
  DType dtype;
  Layout layout;
  int64_t N, C, S;
  const void* dy;     // T
  const void* x;      // T
  const void* y;      // T (the forward's output)
  const void* scale;  // A (the forward's scale)
  void* dx;           // T                (= written)
  int64_t size;
  double alpha, beta, k;
};

void lrn_fwd(const LrnFwdArgs& args);
void lrn_bwd(const LrnBwdArgs& args);

}  // namespace nk
