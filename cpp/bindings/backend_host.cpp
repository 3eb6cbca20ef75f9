// The host's kernel table: the CPU kernels behind the CUDA entry points' signatures (backend.h).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend.h"

namespace nk::bind {
namespace {

// Scalar conversions, rounding to nearest even (the CUDA kernels' from_acc / to_acc).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else {  // zero or subnormal: man * 2^-24
    const float v = std::ldexp(static_cast<float>(man), -24);
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN / inf
  if (x >= 0x477ff000u) return sign | 0x7c00u;                              // rounds to inf
  if (x < 0x38800000u) {  // half subnormal or zero: round |f| * 2^24 to an integer, ties to even
    float a;
    std::memcpy(&a, &x, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  const uint32_t rounded = x + 0xfffu + ((x >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

double load(DType dt, const void* p, int64_t i) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::f16: return half_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.0;
}

// v through the accumulation type into dt.
void store(DType dt, void* p, int64_t i, double v) {
  switch (dt) {
    case DType::f32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(p)[i] = v; break;
    case DType::f16: static_cast<uint16_t*>(p)[i] = float_to_half(static_cast<float>(v)); break;
    case DType::bf16: static_cast<uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(v)); break;
  }
}

template <class A, void (*F)(const A&)> const char* call(const A& a, int, void*) {
  F(a);
  return nullptr;
}

const char* group_fwd(const GroupFwdArgs& a, Layout layout, int, void*) {
  if (layout == Layout::ncs) group_norm_fwd_ncs(a); else group_norm_fwd_nsc(a);
  return nullptr;
}

const char* group_bwd(const GroupBwdArgs& a, Layout layout, int, void*) {
  if (layout == Layout::ncs) group_norm_bwd_ncs(a); else group_norm_bwd_nsc(a);
  return nullptr;
}

const char* running_update(DType dt, int64_t C, void* run, const double* batch, double momentum, int, void*) {
  for (int64_t c = 0; c < C; ++c) store(dt, run, c, (1.0 - momentum) * load(dt, run, c) + momentum * batch[c]);
  return nullptr;
}

const char* instance_batch_stats(int64_t N, int64_t C, int64_t S, const double* mean, const double* m2, double* bm,
                                 double* bv, int, void*) {
  for (int64_t c = 0; c < C; ++c) bm[c] = bv[c] = 0.0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      bm[c] += mean[n * C + c] / static_cast<double>(N);
      bv[c] += m2[n * C + c] / static_cast<double>(S - 1) / static_cast<double>(N);
    }
  return nullptr;
}

// Slices k of w viewed as (A, K, B) whose L2 norm exceeds max_value are scaled down to it.
const char* max_norm(DType dt, int64_t A, int64_t K, int64_t B, void* w, double max_value, int, void*) {
  std::vector<double> sq(static_cast<size_t>(K), 0.0), scale(static_cast<size_t>(K), 1.0);
  if (A == 1 || B >= 16) {  // slices made of rows of B contiguous values: sums of squares per row
    std::vector<double> rows(static_cast<size_t>(A * K));
    reg_row_sum(RegRowSumArgs{dt, RegNorm::l2, A * K, B, B, w, rows.data()});
    for (int64_t a = 0; a < A; ++a)
      for (int64_t k = 0; k < K; ++k) sq[k] += rows[a * K + k];
  } else {  // short rows: column statistics of (A, K*B); sum x^2 = M2 + A mean^2 per column
    std::vector<double> mean(K * B), m2(K * B), mn(K * B), mx(K * B);
    col_stats(ColStatsArgs{dt, A, K * B, K * B, w, mean.data(), m2.data(), mn.data(), mx.data()});
    for (int64_t k = 0; k < K; ++k)
      for (int64_t b = 0; b < B; ++b) {
        const double m = mean[k * B + b];
        sq[k] += m2[k * B + b] + static_cast<double>(A) * m * m;
      }
  }
  bool any = false;
  for (int64_t k = 0; k < K; ++k) {
    const double norm = std::sqrt(sq[k]);
    if (norm > max_value) {
      scale[k] = max_value / norm;
      any = true;
    }
  }
  if (any) reg_scale(RegScaleArgs{dt, A, K, B, w, scale.data()});
  return nullptr;
}

const char* convert(DType src, DType dst, int64_t n, const void* from, void* to, int, void*) {
  for (int64_t i = 0; i < n; ++i) store(dst, to, i, load(src, from, i));
  return nullptr;
}

const char* copy_to_host(int, const void* src, int64_t bytes, void* dst, void*) {
  std::memcpy(dst, src, static_cast<size_t>(bytes));
  return nullptr;
}

const char* scratch_alloc(int, int64_t bytes, void*, void** ptr) {
  *ptr = std::malloc(static_cast<size_t>(bytes > 0 ? bytes : 1));
  return *ptr ? nullptr : "out of host memory";
}

const char* scratch_free(int, void* ptr, void*) {
  std::free(ptr);
  return nullptr;
}

}  // namespace

const Backend& host_backend() {
  static const Backend b{
      "host",
      false,
      call<RowNormFwdArgs, layer_norm_fwd>,
      call<RowNormFwdArgs, rms_norm_fwd>,
      call<RowNormBwdArgs, layer_norm_bwd>,
      call<RowNormBwdArgs, rms_norm_bwd>,
      call<DropoutArgs, dropout>,
      call<BatchNormFwdArgs, batch_norm_fwd>,
      call<BatchNormBwdArgs, batch_norm_bwd>,
      group_fwd,
      group_bwd,
      running_update,
      instance_batch_stats,
      call<LrnFwdArgs, lrn_fwd>,
      call<LrnBwdArgs, lrn_bwd>,
      call<RegRowSumArgs, reg_row_sum>,
      call<RegApplyArgs, reg_apply>,
      max_norm,
      convert,
      copy_to_host,
      scratch_alloc,
      scratch_free,
  };
  return b;
}

}  // namespace nk::bind
