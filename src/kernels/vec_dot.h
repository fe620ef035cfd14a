// Internal to the kernels: dot products of one stored weight row with up to kMaxNR activation
// rows that were converted to the weight's "vec-dot" type (Q8_0 blocks for the 32-element
// formats, Q8_K blocks for the K-quants, IQ4_XS and the IQ1/IQ2/IQ3 codebook types, float32 for
// float weights), the way ggml does it. Each weight type has a scalar reference and an AVX2
// version; the codebook types also an AVX-512 VBMI one (codebook_avx512vbmi.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/type_traits.h"
#include "tensor/dtype.h"
#include "tensor/quants.h"

namespace owl::kernels {

constexpr int kMaxNR = 6;  // activation rows per pass over one weight row (6: best measured for Q4_K)

// y[r * y_stride] = dot(w, x + r * x_stride bytes) for r < nr (1 <= nr <= kMaxNR); n elements.
// A Q8_0 activation row is its n / 32 blocks followed by the same blocks' scales as float32
// and their quant sums (q8_0_act_row_bytes), so kernels need no fp16 conversion per weight row.
using DotFn = void (*)(int64_t n, const void* w, const void* x, size_t x_stride, int nr, float* y, int64_t y_stride);

// Byte offset of those float scales (4-aligned, so rows and scales stay float-aligned); after
// them, each block's sum of its 32 quants as int32 (the packed Q5_0 kernels multiply unsigned
// 5-bit levels and take 16 * sum off); and the row size.
inline size_t q8_0_act_scales_offset(int64_t n) {
  return (static_cast<size_t>(n / kQK) * sizeof(BlockQ8_0) + 3) & ~size_t{3};
}
inline size_t q8_0_act_sums_offset(int64_t n) { return q8_0_act_scales_offset(n) + static_cast<size_t>(n / kQK) * 4; }
inline size_t q8_0_act_row_bytes(int64_t n) { return q8_0_act_sums_offset(n) + static_cast<size_t>(n / kQK) * 4; }

// Runtime nr -> compile-time NR for a kernel wrapper K<NR>::f (no intrinsics here, so every ISA's
// kernel file uses it; each file's wrappers live in its own anonymous namespace).
template <template <int> class K>
void by_nr(int64_t n, const void* w, const void* x, size_t xs, int nr, float* y, int64_t ys) {
  static_assert(kMaxNR == 6, "by_nr dispatches 1..6 rows");
  switch (nr) {
    case 1:
      return K<1>::f(n, w, x, xs, y, ys);
    case 2:
      return K<2>::f(n, w, x, xs, y, ys);
    case 3:
      return K<3>::f(n, w, x, xs, y, ys);
    case 4:
      return K<4>::f(n, w, x, xs, y, ys);
    case 5:
      return K<5>::f(n, w, x, xs, y, ys);
    default:
      return K<6>::f(n, w, x, xs, y, ys);
  }
}

// A wrapper K<NR> for by_nr around a kernel template taking NR, e.g.
// OWL_NR_KERNEL(KIQ1_S, dot_iq1_s<NR>).
#define OWL_NR_KERNEL(name, ...)                                                              \
  template <int NR>                                                                           \
  struct name {                                                                               \
    static void f(int64_t n, const void* w, const void* x, size_t xs, float* y, int64_t ys) { \
      __VA_ARGS__(n, w, x, xs, y, ys);                                                        \
    }                                                                                         \
  };

// The dot kernel of weight type t (activations converted to type_traits(t)->act); null for a
// type without one: every type of kTypeTraits has a reference, most an AVX2 version.
DotFn dot_fn_ref(DType t);
DotFn dot_fn_avx2(DType t);
// The AVX-512 VBMI one-row kernels (codebook_avx512vbmi.cpp), taken under Isa::Avx512Vnni when
// the CPU has VBMI; bit-identical to dot_fn_avx2. Null for types without one.
DotFn dot_fn_avx512vbmi(DType t);

// Many activation rows against a tile of weight rows, each weight row decoded once for all of
// them (the codebook types, whose per-row kernels would decode it again per group of kMaxNR):
// y[k * ld + o] = dot(weight row o at w + o * w_stride, activation row k at x + k * x_stride) for
// o < n_w, k < n_act; bit-identical to the type's dot_fn_avx2. Null for types without one.
using TileFn = void (*)(int64_t n, const uint8_t* w, size_t w_stride, int64_t n_w, const uint8_t* x, size_t x_stride,
                        int64_t n_act, float* y, int64_t ld);
TileFn tile_fn_avx2(DType t);

// AVX2 activation quantisers (bit-identical to quantize_row for Q8_0 / Q8_K).
void quantize_q8_0_avx2(const float* x, void* y, int64_t n);
void quantize_q8_k_avx2(const float* x, void* y, int64_t n);

// CPU features, read once.
bool cpu_has_avx2_fma_f16c();
bool cpu_has_avx512_vnni();  // AVX512F/BW/VL + VNNI, enabled by the OS
bool cpu_has_avx512_vbmi();  // the above + AVX512_VBMI
// An Intel CPU (CPUID vendor "GenuineIntel"): its 512-bit shuffles run on port 5, one of the two
// ports of 512-bit vpdpbusd, where Zen 4/5 run them on other pipes (the wide Q8_0 kernel).
bool cpu_is_intel();
// Whether the plain kernels take their AVX2 versions now (default_isa(), read once per call).
inline bool use_avx2() { return default_isa() != Isa::Scalar; }

}  // namespace owl::kernels
