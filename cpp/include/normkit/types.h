// normkit — shared plain types for kernels, dispatch and bindings.
// Only PODs and enums here: this header is included by every per-ISA translation unit,
// so it must not define inline functions (they would be compiled with different ISA flags
// and merged by the linker).
#pragma once
#include <cstdint>

namespace nk {

// IEEE binary16 and bfloat16 storage: 16 raw bits, converted to float32 for all arithmetic.
struct f16 { uint16_t bits; };
struct bf16 { uint16_t bits; };

// Element type of the data tensors. Accumulation is float32 for f32/f16/bf16 and float64 for f64;
// weights, biases and saved statistics are passed in the accumulation type.
enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

}  // namespace nk
