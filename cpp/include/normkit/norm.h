// normkit — row normalizations: LayerNorm and RMSNorm over the trailing N elements of M rows.
//
// Data tensors have element type T (args.dtype); "A" below is the accumulation type
// (float for f32/f16/bf16, double for f64). All sizes and strides are in elements.
//
// Forward (layer_norm_fwd / rms_norm_fwd), for every row i < M:
//   src_i    = x_i                       or, when res != nullptr, h_i = round_T(x_i + res_i) (= written)
//   LayerNorm: mean_i = sum(src_i)/N, var_i = sum((src_i - mean_i)^2)/N (two-pass, corrected)
//   RMSNorm:   mean_i = 0,             var_i = sum(src_i^2)/N
//   rstd_i   = 1/sqrt(var_i + eps)
//   y_i      = (src_i - mean_i) * rstd_i * weight + bias                                  (= written)
//   mean[i], rstd[i] (= written, A) when the pointers are non-null (mean ignored for RMSNorm).
//   weight/bias: A[N] or nullptr (ones / zeros).
//   x, res: row stride ldx / ldr (may be negative); y and h: contiguous [M, N].
//   Aliasing: y may equal x (same layout, in place); h may equal x or res; nothing else overlaps.
//
// Backward (layer_norm_bwd / rms_norm_bwd), with xhat = (x - mean) * rstd (mean = 0 for RMSNorm),
// g = dy * weight:
//   dx_i     = rstd_i * (g - mean_N(g) - xhat * mean_N(g * xhat))     (LayerNorm)    (= written)
//   dx_i     = rstd_i * (g - xhat * mean_N(g * xhat))                  (RMSNorm)      (= written)
//   dweight  = sum_i dy_i * xhat_i,  dbias = sum_i dy_i      (= written, A[N]; may be nullptr)
//   dy, x: row strides lddy / ldx; dx contiguous [M, N]; dx may equal dy or x (same layout).
//   Row sums over i are taken per fixed chunk of rows and combined in chunk order, so every
//   output is bitwise identical for any thread count (see cpu/parallel.h).
#pragma once
#include <cstdint>

#include "normkit/types.h"

namespace nk {

struct RowNormFwdArgs {
  DType dtype;
  int64_t M, N;
  const void* x; int64_t ldx;
  const void* res; int64_t ldr;   // optional residual (add_layer_norm / add_rms_norm)
  const void* weight;             // A[N] or nullptr
  const void* bias;               // A[N] or nullptr (LayerNorm only)
  void* y;                        // T[M, N]
  void* h;                        // T[M, N], required when res != nullptr
  void* mean;                     // A[M] or nullptr (LayerNorm only)
  void* rstd;                     // A[M] or nullptr
  double eps;
  // CUDA only (the CPU kernels ignore it): weight and bias are stored in T instead of A.
  bool param_in_dtype = false;
};

struct RowNormBwdArgs {
  DType dtype;
  int64_t M, N;
  const void* dy; int64_t lddy;
  const void* x; int64_t ldx;
  const void* mean;               // A[M] (LayerNorm only)
  const void* rstd;               // A[M]
  const void* weight;             // A[N] or nullptr
  void* dx;                       // T[M, N]
  void* dweight;                  // A[N] or nullptr
  void* dbias;                    // A[N] or nullptr (LayerNorm only)
  // CUDA only (the CPU kernels ignore it): weight, dweight and dbias are stored in T instead of A.
  bool param_in_dtype = false;
};

// Dispatched entry points (cpu/dispatch.cpp forwards to the selected ISA).
void layer_norm_fwd(const RowNormFwdArgs& args);
void rms_norm_fwd(const RowNormFwdArgs& args);
void layer_norm_bwd(const RowNormBwdArgs& args);
void rms_norm_bwd(const RowNormBwdArgs& args);

}  // namespace nk
