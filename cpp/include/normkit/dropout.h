// normkit — inverted dropout (forward and backward share one kernel).
//
// Element i of a flat array of n elements (C order) is kept iff
//   mask_in == nullptr:  philox_u32(seed, i) >= threshold      (cpp/src/rng/philox.h)
//   mask_in != nullptr:  mask_in[i] != 0
// and then
//   y[i]        = kept ? x[i] * scale : 0          (= written; exactly 0 also for inf/NaN x)
//   mask_out[i] = kept ? 1 : 0                     (= written, when mask_out != nullptr)
// The forward passes x; the backward passes dy as x (dx = dy * mask * scale) with the forward's
// seed or mask. threshold = floor(p * 2^32) drops with probability p (to within 2^-32); scale is
// 1 / (1 - p), applied in the accumulation type (float for f32/f16/bf16, double for f64).
// y may equal x. Results depend only on (seed, i): identical for every thread count and ISA.
#pragma once
#include <cstdint>

#include "normkit/types.h"

namespace nk {

struct DropoutArgs {
  DType dtype;
  int64_t n;
  const void* x;            // T[n]
  void* y;                  // T[n]
  const uint8_t* mask_in;   // uint8[n] or nullptr
  uint8_t* mask_out;        // uint8[n] or nullptr
  uint64_t seed;
  uint32_t threshold;
  double scale;
};

void dropout(const DropoutArgs& args);

}  // namespace nk
