// Selects the vector API of the ISA this translation unit is compiled for (-DNK_ISA=<name>).
#pragma once
#if defined(NK_ISA_AVX512) || defined(NK_ISA_AVX512_BF16)
#include "vec_avx512.h"
#elif defined(NK_ISA_AVX2)
#include "vec_avx2.h"
#else
#include "vec_scalar.h"
#endif
