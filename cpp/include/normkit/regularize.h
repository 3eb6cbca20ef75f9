// normkit — regularizers (L1/L2 penalties and their gradients, proximal L1, weight decay,
// max-norm) and the column statistics behind feature scaling.
//
// Data tensors have element type T (args.dtype); arithmetic is float32 for f32/f16/bf16 and
// float64 for f64; sums and statistics are double.
//
// Reductions are taken over fixed units whose boundaries depend only on the shape (never on the
// thread count) and combined in unit order, so results are bitwise identical for any thread
// count:
//   reg_row_sum: each row is cut into units of 16384 values; a unit sums blocks of 256 values in
//                float32 (float64 for f64) vector lanes, each block's total is added in double;
//                the unit totals of a row are added in double in unit order.
//   col_stats:   rows are cut into par::row_chunks(M, N); a chunk takes a two-pass mean/M2 per
//                column (float32/float64 lanes over blocks of 64 rows, block totals added in
//                double) and chunks are merged with Chan's formula in double, in chunk order.
#pragma once
#include <cstdint>

#include "normkit/types.h"

namespace nk {

enum class RegNorm : int { l1 = 0, l2 = 1 };

// out[r] = sum_j f(x[r * ld + j]) for r < M, j < N, with f = |x| (l1) or x^2 (l2).  (out = written)
// x: T[M rows, row stride ld >= N]; out: double[M].
struct RegRowSumArgs {
  DType dtype; RegNorm norm;
  int64_t M, N, ld;
  const void* x;
  double* out;
};

// Elementwise over n contiguous values, c a scalar (rounded to float32 for f32/f16/bf16):
//   add_sign:       y += c * sign(x)       (sign(0) = 0, sign(NaN) = NaN)        (y = accumulated)
//   add_scaled:     y += c * x                                                    (y = accumulated)
//   soft_threshold: y = x - clamp(x, -c, c) = sign(x) * max(|x| - c, 0), exact +0 (y = written)
//   scale:          y = c * x                                                     (y = written)
// For add_*, y must not overlap x unless y == x. For soft_threshold and scale y may equal x.
enum class RegOp : int { add_sign = 0, add_scaled = 1, soft_threshold = 2, scale = 3 };
struct RegApplyArgs {
  DType dtype; RegOp op;
  int64_t n;
  const void* x;
  void* y;
  double c;
};

// In-place rescale of slices: w viewed as contiguous (A, K, B);
//   w[a, k, b] *= scale[k]  for every k with scale[k] != 1; other slices are not written.  (w = updated)
// scale: double[K] (rounded to float32 for f32/f16/bf16).
struct RegScaleArgs {
  DType dtype;
  int64_t A, K, B;
  void* w;
  const double* scale;
};

// Per-column statistics of x: T[M rows, row stride ld >= N] over its M rows:
//   mean[c], m2[c] = sum((x - mean)^2), min[c], max[c]                            (= written)
// all double[N]. M >= 1. min/max skip NaN values (a column of NaN only gives +inf/-inf); mean
// and m2 are NaN when the column has a NaN.
struct ColStatsArgs {
  DType dtype;
  int64_t M, N, ld;
  const void* x;
  double* mean; double* m2; double* min; double* max;
};

void reg_row_sum(const RegRowSumArgs& args);
void reg_apply(const RegApplyArgs& args);
void reg_scale(const RegScaleArgs& args);
void col_stats(const ColStatsArgs& args);

}  // namespace nk
