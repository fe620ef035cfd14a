// The Q6_K kernel for the multishift layout of repack.h (PackForm::Q6KMultishift; compiled with
// AVX-512 VBMI, called only after a CPUID check). The interleaved Q6_K layout spends 17 shifts,
// masks and ORs on every 128 levels (low nibbles and 2-bit high parts from separate planes);
// here one vpermb puts each row's 6 bytes of 8 levels into its own 64-bit lane, one
// vpmultishiftqb cuts the 8 bytes at bit offsets 0, 6, .., 42 and one AND keeps 6 bits: 64 levels
// in 3 instructions, on 512-bit registers (lanes 2r and 2r + 1: row r, 4 elements each), for about
// half the micro-ops per weight byte. The integer sums are exact and meet the block scale in the
// same float order as the AVX2 and VNNI kernels, so all give the same bits.
#include <immintrin.h>

#include "kernels/repack.h"
#include "kernels/repack_simd.h"

// GCC 12's 512-bit intrinsics pass _mm512_undefined_*() as the unused merge source, which
// -Wmaybe-uninitialized reports once inlined (GCC bug 105593): no value is read uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace owl::kernels {

namespace {

// vpermb's control: 64-bit lane r takes bytes 6r .. 6r + 5 of the chunk (its top 2 bytes are
// cut off by the shifts and mask).
struct alignas(64) LaneBytes {
  int8_t b[64];
};
constexpr LaneBytes kLanes = [] {
  LaneBytes l{};
  for (int i = 0; i < 64; ++i) l.b[i] = static_cast<int8_t>(6 * (i / 8) + (i % 8 < 6 ? i % 8 : 5));
  return l;
}();

// M activation rows (1 <= M <= 4) against one 8-row group; see PackedFn.
template <int M>
void gemm_q6_k_multishift(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld,
                          int valid) {
  constexpr size_t kBytes = kPackedBytes<BlockQ6_K>;
  const int64_t nb = in / kQKK;
  const __m512i perm = _mm512_load_si512(kLanes.b);
  // vpmultishiftqb: byte e of each lane from bit 6e, the level of element e of the 8.
  const __m512i shifts = _mm512_set1_epi64(0x2A241E18120C0600LL);
  const __m512i m6 = _mm512_set1_epi8(0x3F);
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    prefetch_block<DType::Q6_K>(b, kBytes);
    const uint8_t* sc = b + kQ6KMultishiftScales;
    const BlockQ8_K* a[M];
    __m512i isum[M];  // lanes 2r, 2r + 1: row r
    for (int m = 0; m < M; ++m) {
      a[m] = reinterpret_cast<const BlockQ8_K*>(xa + m * xs) + i;
      isum[m] = _mm512_setzero_si512();
    }
    for (int k = 0; k < 8; ++k) {  // sub-blocks 2k and 2k + 1
      // Lane 2r + t: scale 2k + t of row r; each sub-block's scale into both lanes of its row.
      const __m512i s = _mm512_cvtepi8_epi32(load16(sc + 16 * k));
      const __m512i s_even = _mm512_shuffle_epi32(s, _MM_PERM_CCAA), s_odd = _mm512_shuffle_epi32(s, _MM_PERM_DDBB);
      for (int t = 0; t < 2; ++t) {
        __m512i p[M];
        for (int m = 0; m < M; ++m) p[m] = _mm512_setzero_si512();
        for (int h = 0; h < 2; ++h) {  // chunk j: elements 8j .. 8j + 8 of sub-block j / 2
          const int j = 4 * k + 2 * t + h;
          // The chunk's 48 bytes and 16 beyond (the next chunk or the scales: inside the block).
          const __m512i q =
              _mm512_and_si512(_mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(perm, _mm512_loadu_si512(b + 48 * j))), m6);
          for (int m = 0; m < M; ++m) {
            int64_t a8;
            std::memcpy(&a8, a[m]->qs + 8 * j, 8);
            p[m] = _mm512_dpbusd_epi32(p[m], q, _mm512_set1_epi64(a8));
          }
        }
        for (int m = 0; m < M; ++m) isum[m] = _mm512_add_epi32(isum[m], _mm512_mullo_epi32(p[m], t ? s_odd : s_even));
      }
    }
    const __m256 d = fp16x8(b + kQ6KMultishiftD);
    for (int m = 0; m < M; ++m) {
      // Lane r of the 8: lanes 2r + 2r + 1, then the -32 offset of every level.
      const __m256i rows = _mm512_cvtepi64_epi32(_mm512_add_epi32(isum[m], _mm512_srli_epi64(isum[m], 32)));
      const __m256i sum = _mm256_add_epi32(rows, q6_k_offset(sc, a[m]->bsums));
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a[m]->d)), _mm256_cvtepi32_ps(sum), acc[m]);
    }
  }
  store_rows<M>(acc, y, ld, valid);
}

void q6_k_multishift(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, int m, float* y, int64_t ld,
                     int valid) {
  switch (m) {
    case 1:
      return gemm_q6_k_multishift<1>(in, grp, xa, xs, y, ld, valid);
    case 2:
      return gemm_q6_k_multishift<2>(in, grp, xa, xs, y, ld, valid);
    case 3:
      return gemm_q6_k_multishift<3>(in, grp, xa, xs, y, ld, valid);
    default:
      return gemm_q6_k_multishift<4>(in, grp, xa, xs, y, ld, valid);
  }
}

}  // namespace

PackedFn packed_kernel_q6_k_multishift() { return q6_k_multishift; }

}  // namespace owl::kernels
