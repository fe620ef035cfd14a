// AVX2 kernels for the 8-row packed layouts of repack.h (compiled with -mavx2 -mfma -mf16c): the
// kernels of repack_simd.h over the AVX2 policy. One 256-bit weight load holds 4 weights of each
// of 8 rows; 4 activation bytes are broadcast to every lane, so maddubs + madd leave one partial
// int32 sum per weight row and the 8 rows' block scales apply with one float multiply-add.
// Integer sums stay exact; only the float summation order differs from the reference (per
// block, rows in lanes). M (1..4) activation rows share each weight register: 1 for decode,
// 4 in prefill tiles.
#include <immintrin.h>

#include "kernels/repack.h"
#include "kernels/repack_simd.h"

namespace owl::kernels {

namespace {

// Products of unsigned and signed bytes: pairs into int16 (no overflow: one side is at most 128
// in magnitude, the other 127), then pairs of those into int32. Sub-block partial sums stay
// int16 pairs until madd folds them with the (int16) scale.
struct Avx2Dot {
  static __m256i acc(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
  static constexpr bool kPartial16 = true;
  static constexpr bool kHighNibble16 = false;  // maddubs' int16 pairs would saturate at 240 * 127 * 2
  static __m256i part(__m256i p, __m256i u, __m256i s) { return _mm256_add_epi16(p, _mm256_maddubs_epi16(u, s)); }
  static __m256i part_at(__m256i p, __m256i u, const int8_t* a) { return part(p, u, bcast4(a)); }
  static __m256i scale(__m256i p, __m256i s) { return _mm256_madd_epi16(p, s); }

  // pshufb controls: pick[k] copies byte k of every 32-bit lane, zero-extended, into both of its
  // int16 halves; pick_hi[b] takes, for lane r (row r), byte 2r + b of a 16-byte [8 rows][2]
  // table (broadcast to both halves) into the high byte of both int16 halves (then >> 8:
  // sign-extended).
  __m256i pick[4], pick_hi[2];
  Avx2Dot() {
    alignas(32) int8_t c[32];
    for (int k = 0; k < 4; ++k) {
      for (int i = 0; i < 32; ++i)
        c[i] = (i % 2 == 0) ? static_cast<int8_t>(4 * ((i % 16) / 4) + k) : static_cast<int8_t>(-128);
      pick[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
    }
    for (int b = 0; b < 2; ++b) {
      for (int i = 0; i < 32; ++i) {
        const int row = (i / 4) % 4 + 4 * (i / 16);
        c[i] = (i % 2 == 1) ? static_cast<int8_t>(2 * row + b) : static_cast<int8_t>(-128);
      }
      pick_hi[b] = _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
    }
  }
  __m256i q4_k_scale(__m256i sc, int k) const { return _mm256_shuffle_epi8(sc, pick[k]); }
  static __m256i q6_k_pairs(const uint8_t* p) { return _mm256_broadcastsi128_si256(load16(p)); }
  __m256i q6_k_scale(__m256i pairs, int b) const {
    return _mm256_srai_epi16(_mm256_shuffle_epi8(pairs, pick_hi[b]), 8);
  }
};

}  // namespace

PackedFn packed_kernel_avx2(DType t) { return packed_kernels<Avx2Dot>(t); }

}  // namespace owl::kernels
