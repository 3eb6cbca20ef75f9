// normkit — channel-wise normalizations (BatchNorm, GroupNorm, InstanceNorm).
//
// Kernels see a contiguous (N, C, S) tensor in one of two layouts (S = product of the spatial
// dims; the bindings copy other strides once):
//   ncs (channel_axis = 1):            element (n, c, s) at n*C*S + c*S + s
//   nsc (channel_axis = -1, channels-last): element (n, s, c) at n*S*C + s*C + c
// Data tensors have element type T (args.dtype); coefficient arrays have the accumulation type
// A (float for f32/f16/bf16, double for f64); statistics and sums are double.
//
// Coefficients are indexed [n * coef_nstride + c]: coef_nstride = C gives one value per
// (sample, channel), 0 one value per channel shared by all samples.
//
// Every reduction is taken over fixed units (span chunks for ncs, row chunks for nsc) whose
// boundaries depend only on the shape, and merged in unit order: results are bitwise identical
// for any thread count.
#pragma once
#include <cstdint>

#include "normkit/types.h"

namespace nk {

enum class Layout : int { ncs = 0, nsc = 1 };

// Per-channel statistics over s (per_sample) or over (n, s) (!per_sample):
//   mean[k] = mean of the values, m2[k] = sum((x - mean)^2)                        (= written)
// with k = n * C + c (per_sample, arrays [N*C]) or k = c (arrays [C]).
struct ChanStatsArgs {
  DType dtype; Layout layout;
  int64_t N, C, S;
  const void* x;
  bool per_sample;
  double* mean;
  double* m2;
};

// y = (x - m) * a + b elementwise, coefficients per (n, c) or per c.             (y = written)
// y may equal x.
struct ChanAffineArgs {
  DType dtype; Layout layout;
  int64_t N, C, S;
  const void* x;
  void* y;
  const void* m; const void* a; const void* b;  // A arrays, see coef_nstride
  int64_t coef_nstride;
};

// Sums for the backward, with xhat = (x - m) * r:
//   sdy[k] = sum(dy), sdyx[k] = sum(dy * xhat)                                    (= written)
// over s (per_sample, k = n * C + c) or over (n, s) (k = c).
struct ChanGradSumsArgs {
  DType dtype; Layout layout;
  int64_t N, C, S;
  const void* x; const void* dy;
  const void* m; const void* r;  // A arrays, see coef_nstride
  int64_t coef_nstride;
  bool per_sample;
  double* sdy;
  double* sdyx;
};

// dx = k1 * dy + k2 * (x - m) + k3 elementwise, coefficients per (n, c) or per c.  (dx = written)
// dx may equal dy or x.
struct ChanGradApplyArgs {
  DType dtype; Layout layout;
  int64_t N, C, S;
  const void* x; const void* dy;
  void* dx;
  const void* m; const void* k1; const void* k2; const void* k3;  // A arrays
  int64_t coef_nstride;
};

// GroupNorm / InstanceNorm (Cg = C / G channels per group, Cg = 1 for InstanceNorm) forward.
// ncs (group_norm_fwd_ncs): fused per (n, g): the group's Cg * S values are contiguous, so their
// statistics are taken and they are normalized while still in cache (x is read from memory once
// when a group fits in L2). nsc (group_norm_fwd_nsc): per batch of samples that fits in cache,
// per-(n, c) statistics (units as chan_stats per sample), Chan merges over each group's channels
// in channel order, then the normalize pass. Both write:
//   mean[k], m2[k], rstd[k] = 1/sqrt(m2[k] / (Cg*S) + eps) for k = n * G + g            (= written)
//   y = (x - mean[k]) * rstd[k] * weight[c] + bias[c]                                  (= written)
// weight, bias: A[C] or nullptr (ones / zeros). y may equal x.
struct GroupFwdArgs {
  DType dtype;
  int64_t N, C, S, G;
  const void* x;
  void* y;
  const void* weight; const void* bias;
  double eps;
  double* mean; double* m2; double* rstd;
};

// BatchNorm forward, fused into one parallel region: in training the statistics of x over
// (n, s) per channel, then per channel c
//   mean[c] = batch mean (training) or run_mean[c]; var = batch M2 / count (biased) or run_var[c]
//   rstd[c] = 1 / sqrt(var + eps)
//   save_mean[c] = mean[c], save_rstd[c] = rstd[c]          (= written; both may be null: not wanted)
//   batch_mean[c] = mean, batch_var[c] = M2 / (count - 1) (unbiased; training only) (= written)
//   y = (x - mean[c]) * (rstd[c] * weight[c]) + bias[c]                                  (= written)
// weight, bias: A[C] or nullptr (ones / zeros); run_mean, run_var: A[C], read in eval only;
// batch_mean/batch_var may be nullptr. y may equal x. Units and merge order as chan_stats.
struct BatchNormFwdArgs {
  DType dtype; Layout layout;
  int64_t N, C, S;
  const void* x;
  void* y;
  const void* weight; const void* bias;
  const void* run_mean; const void* run_var;
  bool training;
  double eps;
  void* save_mean; void* save_rstd;  // A[C]
  double* batch_mean; double* batch_var;
};

// BatchNorm backward, fused into one parallel region, with xhat = (x - mean[c]) * rstd[c]:
//   dbias[c] = sum(dy), dweight[c] = sum(dy * xhat)  over (n, s)                        (= written)
//   training: dx = weight[c] * rstd[c] * (dy - dbias[c] / count - xhat * dweight[c] / count)
//   eval:     dx = weight[c] * rstd[c] * dy                                               (= written)
// mean, rstd: A[C]; weight: A[C] or nullptr (ones). dx may equal dy or x.
struct BatchNormBwdArgs {
  DType dtype; Layout layout;
  int64_t N, C, S;
  const void* x; const void* dy;
  void* dx;
  const void* mean; const void* rstd; const void* weight;
  bool training;
  double* dweight; double* dbias;
};

// GroupNorm / InstanceNorm backward. ncs (group_norm_bwd_ncs): fused per (n, g) (the group's
// Cg * S values of x and dy are contiguous: their sums are taken and dx is written while they
// are in cache). nsc (group_norm_bwd_nsc): per cache-sized batch of samples, unit sums as
// chan_grad_sums (per sample), merged in unit order, then the elementwise pass. With xhat = (x - mean[k]) * rstd[k], k = n * G + g, and K = Cg * S:
//   sdy[n*C + c] = sum_s(dy), sdyx[n*C + c] = sum_s(dy * xhat)                          (= written)
//   dweight[c] = sum_n sdyx[n*C + c], dbias[c] = sum_n sdy[n*C + c]                     (= written)
//   dx = rstd[k] * (w[c] dy - sum_g(w sdy) / K - xhat * sum_g(w sdyx) / K)              (= written)
//   (affine_only: dx = rstd[k] * w[c] * dy, the statistics being constants)
// mean, rstd: A[N*G]; weight: A[C] or nullptr. sdy, sdyx: double[N*C] scratch from the caller.
// dx may equal dy or x.
struct GroupBwdArgs {
  DType dtype;
  int64_t N, C, S, G;
  const void* x; const void* dy;
  void* dx;
  const void* mean; const void* rstd; const void* weight;
  bool affine_only;
  double* sdy; double* sdyx;
  double* dweight; double* dbias;
};

void chan_stats(const ChanStatsArgs& args);
void batch_norm_fwd(const BatchNormFwdArgs& args);
void batch_norm_bwd(const BatchNormBwdArgs& args);
void group_norm_bwd_ncs(const GroupBwdArgs& args);
void group_norm_bwd_nsc(const GroupBwdArgs& args);
void group_norm_fwd_ncs(const GroupFwdArgs& args);
void group_norm_fwd_nsc(const GroupFwdArgs& args);
void chan_affine(const ChanAffineArgs& args);
void chan_grad_sums(const ChanGradSumsArgs& args);
void chan_grad_apply(const ChanGradApplyArgs& args);

}  // namespace nk
