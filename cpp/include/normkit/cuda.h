// normkit — CUDA entry points (compiled into normkit._cuda when NORMKIT_CUDA is on).
//
// Each op takes the CPU kernel's argument struct (norm.h, dropout.h, regularize.h) with device
// pointers instead of host ones, the CUDA device that owns them and a stream (a cudaStream_t; 0
// is the legacy default stream). The work is enqueued on that stream and nothing waits for it.
// Returns nullptr on success, else a static message (CUDA's error text). No exceptions.
//
// Results are bitwise reproducible: every reduction combines fixed partials in a fixed order
// (no atomics), and how the work is split depends only on the shapes, never on the device.
// Indices are 64-bit throughout.
#pragma once
#include <cstdint>

#include "normkit/chan_norm.h"
#include "normkit/dropout.h"
#include "normkit/lrn.h"
#include "normkit/norm.h"
#include "normkit/regularize.h"

namespace nk::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no device (never fails).
int device_count();
// "name (sm_XY)" of device `dev`, or the error text.
const char* device_name(int dev);

// Device memory owned by normkit (outputs for libraries that cannot allocate for us).
const char* malloc_device(int dev, int64_t bytes, void** ptr);
const char* free_device(int dev, void* ptr);
const char* stream_synchronize(int dev, void* stream);
// Stream-ordered scratch memory from normkit's per-device pool (kept between calls): usable by work
// enqueued on `stream` after the call; scratch_free releases it in stream order.
const char* scratch_alloc(int dev, int64_t bytes, void* stream, void** ptr);
const char* scratch_free(int dev, void* ptr, void* stream);
// dst[i] = src[i] converted (through the accumulation type, rounded to nearest even), on the stream.
const char* convert(DType src_dtype, DType dst_dtype, int64_t n, const void* src, void* dst, int dev, void* stream);
// bytes from device memory to host memory, after the stream's work so far (waits for it).
const char* copy_to_host(int dev, const void* src, int64_t bytes, void* dst, void* stream);

const char* layer_norm_fwd(const RowNormFwdArgs& args, int dev, void* stream);
const char* rms_norm_fwd(const RowNormFwdArgs& args, int dev, void* stream);
const char* layer_norm_bwd(const RowNormBwdArgs& args, int dev, void* stream);
const char* rms_norm_bwd(const RowNormBwdArgs& args, int dev, void* stream);

const char* dropout(const DropoutArgs& args, int dev, void* stream);

// Channel norms on contiguous (N, C, S) tensors (chan_norm.h). The double arrays (batch_mean,
// batch_var, dweight, dbias; GroupNorm's mean, m2, rstd, sdy, sdyx) are device memory too.
// GroupNorm/InstanceNorm (G = C) take the layout, which GroupFwdArgs / GroupBwdArgs lack.
const char* batch_norm_fwd(const BatchNormFwdArgs& args, int dev, void* stream);
const char* lrn_fwd(const LrnFwdArgs& args, int dev, void* stream);
const char* lrn_bwd(const LrnBwdArgs& args, int dev, void* stream);
const char* batch_norm_bwd(const BatchNormBwdArgs& args, int dev, void* stream);
const char* group_norm_fwd(const GroupFwdArgs& args, Layout layout, int dev, void* stream);
const char* group_norm_bwd(const GroupBwdArgs& args, Layout layout, int dev, void* stream);
// run[c] = (1 - momentum) * run[c] + momentum * batch[c] (run: C values of run_dtype; batch: double).
const char* running_update(DType run_dtype, int64_t C, void* run, const double* batch, double momentum, int dev,
                           void* stream);
// bm[c] = mean over n of mean[n, c], bv[c] = mean over n of m2[n, c] / (S - 1) (InstanceNorm's
// running-statistics update, PyTorch's convention).
const char* instance_batch_stats(int64_t N, int64_t C, int64_t S, const double* mean, const double* m2, double* bm,
                                 double* bv, int dev, void* stream);

// args.out is device memory (double[M]).
const char* reg_row_sum(const RegRowSumArgs& args, int dev, void* stream);
const char* reg_apply(const RegApplyArgs& args, int dev, void* stream);
// Max-norm in place on w viewed as contiguous (A, K, B): slices k whose L2 norm exceeds
// max_value are scaled to it (reg_row_sum + reg_scale of regularize.h, all on the device).
const char* max_norm(DType dtype, int64_t A, int64_t K, int64_t B, void* w, double max_value, int dev, void* stream);

}  // namespace nk::cuda
