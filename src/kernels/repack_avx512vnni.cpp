// AVX-512 VNNI kernels for the 8-row packed layouts of repack.h (compiled with -mavx512vl
// -mavx512vnni on top of AVX2; called only after a CPUID check): the kernels of repack_simd.h
// over the VNNI policy. Same 256-bit registers and layout as the AVX2 policy, but vpdpbusd
// multiplies 4 unsigned weight bytes by 4 signed activation bytes and adds them into an int32
// lane in one instruction, where AVX2 needs maddubs + add (and int16 partial sums that must be
// flushed before they overflow). Sub-block sums are exact int32 and the block scales apply in
// the same float order as the AVX2 kernels, so both give bit-identical results.
#include <immintrin.h>

#include "kernels/repack.h"
#include "kernels/repack_simd.h"

namespace owl::kernels {

namespace {

// Partial sums are int32; scales are int32 lanes multiplied in with mullo.
struct VnniDot {
  static __m256i acc(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
  static constexpr bool kPartial16 = false;
  static constexpr bool kHighNibble16 = true;  // int32 partials: 8 steps of 4 x 240 x 128 fit
  static __m256i part(__m256i p, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(p, u, s); }
  // vpdpbusd reading the 4 activation bytes with an embedded broadcast ({1to8}): one load-op
  // where the intrinsics give a separate vpbroadcastd (GCC does not fold it), which made the
  // decode loops' loads and macro-ops the limit.
  static __m256i part_at(__m256i p, __m256i u, const int8_t* a) {
    __asm__("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(p) : "v"(u), "m"(*reinterpret_cast<const int32_t*>(a)));
    return p;
  }
  static __m256i scale(__m256i p, __m256i s) { return _mm256_mullo_epi32(p, s); }
  // Byte k of every 32-bit lane, zero-extended.
  static __m256i q4_k_scale(__m256i sc, int k) {
    return k == 3 ? _mm256_srli_epi32(sc, 24) : _mm256_and_si256(_mm256_srli_epi32(sc, 8 * k), _mm256_set1_epi32(0xFF));
  }
  // Lane r: scale 2k | scale 2k + 1 << 16 of row r (signed); q6_k_scale sign-extends one half.
  static __m256i q6_k_pairs(const uint8_t* p) { return _mm256_cvtepi8_epi16(load16(p)); }
  static __m256i q6_k_scale(__m256i pairs, int b) {
    return b ? _mm256_srai_epi32(pairs, 16) : _mm256_srai_epi32(_mm256_slli_epi32(pairs, 16), 16);
  }
};

}  // namespace

PackedFn packed_kernel_avx512vnni(DType t) { return packed_kernels<VnniDot>(t); }

}  // namespace owl::kernels
