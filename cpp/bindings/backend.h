// The kernels of one device, as a table: the host's (the CPU kernels, host_backend()) or a GPU's
// (the CUDA entry points of cuda.h, handed from normkit._cuda to normkit._core in a capsule named
// "normkit.backend"). The bindings validate once (array.h) and then run the table of the arrays'
// device; every entry has the signature of the CUDA entry point (cuda.h): the argument struct,
// the device, a stream; it returns nullptr or an error text.
#pragma once
#include <cstdint>

#include "normkit/chan_norm.h"
#include "normkit/dropout.h"
#include "normkit/lrn.h"
#include "normkit/norm.h"
#include "normkit/regularize.h"

namespace nk::bind {

struct Backend {
  const char* name;
  // The row norms read weight/bias in x's dtype as well as in the accumulation dtype.
  bool params_in_dtype;
  const char* (*layer_norm_fwd)(const RowNormFwdArgs&, int dev, void* stream);
  const char* (*rms_norm_fwd)(const RowNormFwdArgs&, int dev, void* stream);
  const char* (*layer_norm_bwd)(const RowNormBwdArgs&, int dev, void* stream);
  const char* (*rms_norm_bwd)(const RowNormBwdArgs&, int dev, void* stream);
  const char* (*dropout)(const DropoutArgs&, int dev, void* stream);
  const char* (*batch_norm_fwd)(const BatchNormFwdArgs&, int dev, void* stream);
  const char* (*batch_norm_bwd)(const BatchNormBwdArgs&, int dev, void* stream);
  const char* (*group_norm_fwd)(const GroupFwdArgs&, Layout, int dev, void* stream);
  const char* (*group_norm_bwd)(const GroupBwdArgs&, Layout, int dev, void* stream);
  const char* (*running_update)(DType run_dtype, int64_t C, void* run, const double* batch, double momentum, int dev,
                                void* stream);
  const char* (*instance_batch_stats)(int64_t N, int64_t C, int64_t S, const double* mean, const double* m2,
                                      double* bm, double* bv, int dev, void* stream);
  const char* (*lrn_fwd)(const LrnFwdArgs&, int dev, void* stream);
  const char* (*lrn_bwd)(const LrnBwdArgs&, int dev, void* stream);
  const char* (*reg_row_sum)(const RegRowSumArgs&, int dev, void* stream);
  const char* (*reg_apply)(const RegApplyArgs&, int dev, void* stream);
  const char* (*max_norm)(DType, int64_t A, int64_t K, int64_t B, void* w, double max_value, int dev, void* stream);
  const char* (*convert)(DType src, DType dst, int64_t n, const void* from, void* to, int dev, void* stream);
  const char* (*copy_to_host)(int dev, const void* src, int64_t bytes, void* dst, void* stream);
  // Temporaries of a call (never handed to the caller): stream-ordered scratch memory.
  const char* (*scratch_alloc)(int dev, int64_t bytes, void* stream, void** ptr);
  const char* (*scratch_free)(int dev, void* ptr, void* stream);
};

// The CPU kernels (dev and stream ignored; they run to completion on the calling thread's pool).
const Backend& host_backend();

inline constexpr const char* kBackendCapsule = "normkit.backend";

}  // namespace nk::bind
