// Prefill tiles for the codebook types (IQ1_S .. IQ3_S) on AVX2 (compiled with -mavx2 -mfma
// -mf16c; chosen only after the CPUID check). The per-row kernels decode a weight row's grid
// entries, sign patterns and scales again for every group of kMaxNR activation rows; with many
// rows (prefill, a MoE expert's tokens) that decoding costs more than the products. Here the
// tile's weight rows are decoded once into their Sub32 form (magnitudes, signs, scales: 96
// bytes per 32 weights) and then multiplied with every activation row of the block. The
// products run through the same dot_subs as the per-row kernels, so every output is
// bit-identical to theirs, whatever the row count or grouping.
#include <algorithm>
#include <vector>

#include "kernels/codebook_avx2.h"
#include "kernels/vec_dot.h"

namespace owl::kernels {

namespace {

using namespace avx2_shared;

template <int NR>
void dot_decoded(int64_t nb, const Sub32* subs, const float* dw, const uint8_t* x, size_t xs, float* y, int64_t ys) {
  // Whole-register loads and stores: plain struct copies were compiled as 16-byte halves through
  // the stack, and the 32-byte reloads stalled on store forwarding (3x slower than no tiles).
  auto sub = [subs](int64_t i, int ib) {
    const Sub32& s = subs[i * (kQKK / 32) + ib];
    return Sub32{load32(&s.mag), load32(&s.sgn), load32(&s.scales)};
  };
  dot_subs<NR>(
      nb, sub, [dw](int64_t i) { return dw[i]; }, x, xs, y, ys);
}

template <class D>
void tile_codebook(int64_t n, const uint8_t* w, size_t w_stride, int64_t n_w, const uint8_t* x, size_t xs,
                   int64_t n_act, float* y, int64_t ld) {
  const int64_t nb = n / kQKK, subs_per_row = nb * (kQKK / 32);
  // The tile's weight rows decoded (matmul's tiles are 16 rows: ~96 KB for 2048 inputs, in L2),
  // reused per thread. Each group of kMaxNR activation rows then stays in L1 while it meets
  // every row of the tile, instead of the whole activation block streaming from L2 per row.
  thread_local std::vector<Sub32> subs;
  thread_local std::vector<float> dw;
  subs.resize(static_cast<size_t>(n_w * subs_per_row));
  dw.resize(static_cast<size_t>(n_w * nb));
  for (int64_t o = 0; o < n_w; ++o) {
    const auto* blocks = as<typename D::B>(w + o * w_stride);
    for (int64_t i = 0; i < nb; ++i) {
      for (int ib = 0; ib < kQKK / 32; ++ib) {
        const Sub32 s = D::get(blocks[i], ib);
        Sub32& d = subs[static_cast<size_t>(o * subs_per_row + i * (kQKK / 32) + ib)];
        _mm256_storeu_si256(&d.mag, s.mag);
        _mm256_storeu_si256(&d.sgn, s.sgn);
        _mm256_storeu_si256(&d.scales, s.scales);
      }
      dw[static_cast<size_t>(o * nb + i)] = D::d(blocks[i]) * D::kMult;
    }
  }
  for (int64_t r = 0; r < n_act; r += kMaxNR) {
    const uint8_t* xr = x + r * xs;
    const int64_t nr = std::min<int64_t>(kMaxNR, n_act - r);
    for (int64_t o = 0; o < n_w; ++o) {
      const Sub32* so = subs.data() + o * subs_per_row;
      const float* dwo = dw.data() + o * nb;
      float* yr = y + r * ld + o;
      switch (nr) {
        case 1:
          dot_decoded<1>(nb, so, dwo, xr, xs, yr, ld);
          break;
        case 2:
          dot_decoded<2>(nb, so, dwo, xr, xs, yr, ld);
          break;
        case 3:
          dot_decoded<3>(nb, so, dwo, xr, xs, yr, ld);
          break;
        case 4:
          dot_decoded<4>(nb, so, dwo, xr, xs, yr, ld);
          break;
        case 5:
          dot_decoded<5>(nb, so, dwo, xr, xs, yr, ld);
          break;
        default:
          dot_decoded<6>(nb, so, dwo, xr, xs, yr, ld);
      }
    }
  }
}

}  // namespace

TileFn tile_fn_avx2(DType t) {
  switch (t) {
    case DType::IQ2_XXS:
      return tile_codebook<DecIQ2_XXS>;
    case DType::IQ2_XS:
      return tile_codebook<DecIQ2_XS>;
    case DType::IQ2_S:
      return tile_codebook<DecIQ2_S>;
    case DType::IQ3_XXS:
      return tile_codebook<DecIQ3_XXS>;
    case DType::IQ3_S:
      return tile_codebook<DecIQ3_S>;
    case DType::IQ1_S:
      return tile_codebook<DecIQ1_S>;
    case DType::IQ1_M:
      return tile_codebook<DecIQ1_M>;
    default:
      return nullptr;
  }
}

}  // namespace owl::kernels
