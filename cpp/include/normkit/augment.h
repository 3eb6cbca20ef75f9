// normkit — batched, seeded image augmentation: random crop, horizontal flip, Gaussian noise and
// AlexNet PCA lighting.
//
// Images: a batch of N images viewed as (N, P, H, W, Q), C-contiguous: NCHW is P = C, Q = 1 and
// channels-last NHWC is P = 1, Q = C. A row is W pixels of Q values (W * Q contiguous elements),
// and "horizontal" is along W. Outputs are = written and never alias the input.
//
// Random decisions (documented so that they can be reproduced; rng/philox.h, rng/normal.h):
// each op draws from its own derived seed s' = derive_seed(seed, tag) and, for image n,
//   random_crop    tag 1: oy = (u32(s', 2n) * (Hp - h + 1)) >> 32,  ox = (u32(s', 2n + 1) * (Wp - w + 1)) >> 32
//   random_flip    tag 2: flipped iff u32(s', n) < flip_threshold      (= floor(p * 2^32), 2^32 for p = 1)
//   gaussian_noise tag 3: element i (flat C order) adds std * normal(s', i)
//   pca_lighting   tag 4: alpha_k = std * normal(s', n * K + k), k < K = C
// where u32 is the Philox element stream and normal the Box-Muller stream on it (float32). A
// result depends only on (seed, shapes, hyperparameters): identical for every thread count and ISA.
#pragma once
#include <cstdint>

#include "normkit/types.h"

namespace nk {

// Tags of the derived seeds above.
enum class AugTag : uint32_t { crop = 1, flip = 2, noise = 3, lighting = 4 };

// N images of P planes x H rows x W pixels x Q values, C-contiguous (see above).
struct ImageGeom {
  int64_t N, P, H, W, Q;
};

// y (N, P, h, w, Q) = the h x w window at (oy, ox) of x zero-padded by pad_h rows above and below
// and pad_w pixels left and right (Hp = H + 2 pad_h, Wp = W + 2 pad_w; 1 <= h <= Hp, 1 <= w <= Wp):
//   y[n, p, i, j, q] = x[n, p, oy + i - pad_h, ox + j - pad_w, q], or +0 outside x.
// Values are copied bit for bit (any dtype of that size).
struct CropArgs {
  DType dtype;
  ImageGeom x_geom;
  int64_t h, w, pad_h, pad_w;
  uint64_t seed;
  const void* x;  // T[N, P, H, W, Q]
  void* y;        // T[N, P, h, w, Q]
};

// y[n, p, r, j, q] = flipped(n) ? x[n, p, r, W - 1 - j, q] : x[n, p, r, j, q] (bit copies).
struct FlipArgs {
  DType dtype;
  ImageGeom geom;
  uint64_t seed;
  uint64_t flip_threshold;  // in [0, 2^32]
  const void* x;            // T[N, P, H, W, Q]
  void* y;                  // T[N, P, H, W, Q]
};

// y[i] = x[i] + std * normal(s', i) for the n elements in flat order: float32 normal and float32
// arithmetic (float64 for f64 data, the normal converted exactly), rounded once to T.
struct NoiseArgs {
  DType dtype;
  int64_t n;
  uint64_t seed;
  double std;
  const void* x;  // T[n]
  void* y;        // T[n]
};

// y[n, c at (p, q), pixel] = x + shift[n, c], shift[n, c] = sum_k eigvecs[c, k] * alpha_k * eigvals[k]
// with alpha_k = std * normal(s', n * C + k) (float32) and channel c = p + q (one of P, Q is 1);
// shift in float64, then the accumulation type (float32, float64 for f64), one rounding of the sum.
struct LightingArgs {
  DType dtype;
  ImageGeom geom;  // C = P * Q channels
  uint64_t seed;
  double std;
  const double* eigvals;  // [C]
  const double* eigvecs;  // [C, C], row-major: column k is eigenvector k
  const void* x;          // T[N, P, H, W, Q]
  void* y;                // T[N, P, H, W, Q]
};

void random_crop(const CropArgs& args);
void random_flip(const FlipArgs& args);
void gaussian_noise(const NoiseArgs& args);
void pca_lighting(const LightingArgs& args);

}  // namespace nk
