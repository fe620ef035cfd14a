// Scalar reference dequantisers (the definition of each format's bit order) and quantisers.
#include "tensor/quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/iq_grids.h"

namespace owl {

namespace {

template <class Block>
const Block* blocks(const void* p) {
  return static_cast<const Block*>(p);
}

void deq_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * ((b[i].qs[j] & 0xF) - 8);
      y[j + kQK / 2] = d * ((b[i].qs[j] >> 4) - 8);
    }
  }
}

void deq_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * (b[i].qs[j] & 0xF) + m;
      y[j + kQK / 2] = d * (b[i].qs[j] >> 4) + m;
    }
  }
}

// Bit j of the 32-bit little-endian qh is the 5th bit of element j.
template <class Block>
void deq_q5(const Block* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    float m = -16 * d;
    if constexpr (requires { b[i].m; }) m = f16_to_f32(b[i].m);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * lo + m;
      y[j + kQK / 2] = d * hi + m;
    }
  }
}

void deq_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = d * b[i].qs[j];
  }
}

// Q2_K: each 128 elements use 32 bytes of qs; element (shift s, byte l) = bits 2s..2s+1 of qs[l],
// the 4 shifts giving consecutive runs of 32; a scale byte covers 16 elements.
void deq_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    int is = 0;
    for (int n = 0; n < kQKK; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = b[i].scales[is++];
          const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

// Unpacks Q3_K's 16 6-bit scales: bytes 0-7 hold the low nibbles (scale j in byte j%8, nibble
// j/8), bytes 8-11 the high 2 bits (scale j at byte 8 + j%4, bits 2*(j/4)).
void q3_k_scales(const uint8_t* p, int8_t* sc) {
  for (int j = 0; j < 16; ++j) {
    const int lo = (p[j % 8] >> (4 * (j / 8))) & 0xF;
    const int hi = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
    sc[j] = static_cast<int8_t>((lo | hi << 4) - 32);
  }
}

// Q3_K: low 2 bits as Q2_K; the high bit of the element in run r (0..7) at byte l is bit r of
// hmask[l] (l < 32); a clear high bit subtracts 4.
void deq_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    int8_t sc[16];
    q3_k_scales(b[i].scales, sc);
    const uint8_t* q = b[i].qs;
    int is = 0, run = 0;
    for (int n = 0; n < kQKK; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, ++run) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d * sc[is++];
          for (int l = 0; l < 16; ++l) {
            const int k = l + 16 * half;
            const int hbit = (b[i].hmask[k] >> run) & 1;
            *y++ = dl * (((q[k] >> shift) & 3) - (hbit ? 0 : 4));
          }
        }
      }
    }
  }
}

// Q4_K: each 64 elements use 32 bytes of qs: low nibbles first 32, high nibbles next 32.
void deq_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t s0, m0, s1, m1;
      k4_scale_min(j, b[i].scales, s0, m0);
      k4_scale_min(j + 1, b[i].scales, s1, m1);
      const float d0 = d * s0, n0 = dmin * m0, d1 = d * s1, n1 = dmin * m1;
      for (int l = 0; l < 32; ++l) y[l] = d0 * (q[l] & 0xF) - n0;
      for (int l = 0; l < 32; ++l) y[l + 32] = d1 * (q[l] >> 4) - n1;
      y += 64;
    }
  }
}

// Q5_K: as Q4_K; the 5th bit of element l of sub-block j is bit j of qh[l].
void deq_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t s0, m0, s1, m1;
      k4_scale_min(j, b[i].scales, s0, m0);
      k4_scale_min(j + 1, b[i].scales, s1, m1);
      const float d0 = d * s0, n0 = dmin * m0, d1 = d * s1, n1 = dmin * m1;
      for (int l = 0; l < 32; ++l) y[l] = d0 * ((q[l] & 0xF) | (((b[i].qh[l] >> j) & 1) << 4)) - n0;
      for (int l = 0; l < 32; ++l) y[l + 32] = d1 * ((q[l] >> 4) | (((b[i].qh[l] >> (j + 1)) & 1) << 4)) - n1;
      y += 64;
    }
  }
}

// Q6_K: per 128 elements, 64 bytes of ql and 32 of qh. Element l + 32r (r = 0..3, l < 32):
// low 4 bits = nibble (r / 2) of ql[l + 32 * (r % 2)], high 2 bits = bits 2r..2r+1 of qh[l].
void deq_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n = 0; n < kQKK; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
      for (int r = 0; r < 4; ++r) {
        for (int l = 0; l < 32; ++l) {
          const int lo = (ql[l + 32 * (r % 2)] >> (4 * (r / 2))) & 0xF;
          const int hi = (qh[l] >> (2 * r)) & 3;
          y[l + 32 * r] = d * sc[l / 16 + 2 * r] * ((lo | hi << 4) - 32);
        }
      }
    }
  }
}

void deq_q8_k(const BlockQ8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK)
    for (int j = 0; j < kQKK; ++j) y[j] = b[i].d * b[i].qs[j];
}

void deq_iq4_nl(const BlockIQ4_NL* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * kIQ4NL[b[i].qs[j] & 0xF];
      y[j + kQK / 2] = d * kIQ4NL[b[i].qs[j] >> 4];
    }
  }
}

// IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l nibble ib%2 of byte ib/2,
// high 2 bits at bits 2ib of scales_h); within a sub-block the nibble order is IQ4_NL's.
void deq_iq4_xs(const BlockIQ4_XS* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int ib = 0; ib < 8; ++ib, y += 32) {
      const int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b[i].scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * (ls - 32);
      const uint8_t* qs = b[i].qs + 16 * ib;
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * kIQ4NL[qs[j] & 0xF];
        y[j + 16] = dl * kIQ4NL[qs[j] >> 4];
      }
    }
  }
}

// ---- Codebook formats (IQ1_S .. IQ3_S): decoded to integer levels and per-16 scales ----

inline int signed_level(int magnitude, uint32_t signs, int j) { return (signs >> j) & 1 ? -magnitude : magnitude; }

uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Group of 8 elements from an 8-byte grid entry and 8 sign bits.
void put8(uint64_t entry, uint32_t signs, int8_t* q) {
  for (int j = 0; j < 8; ++j) q[j] = static_cast<int8_t>(signed_level(grid_byte(entry, j), signs, j));
}
// Group of 8 elements from two 4-byte grid entries and 8 sign bits.
void put4x2(uint32_t e1, uint32_t e2, uint32_t signs, int8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<int8_t>(signed_level(grid_byte(e1, j), signs, j));
    q[j + 4] = static_cast<int8_t>(signed_level(grid_byte(e2, j), signs, j + 4));
  }
}
// IQ1 group of 8: 8 * grid ± 1 (the ±1/8 delta, scaled by 8).
void put_iq1(uint32_t index, bool negative_delta, int8_t* q) {
  const uint64_t e = kIQ1SGrid[index];
  for (int j = 0; j < 8; ++j) q[j] = static_cast<int8_t>(8 * grid_byte_signed(e, j) + (negative_delta ? -1 : 1));
}

void decode_iq2_xxs(const BlockIQ2_XXS& b, IQLevels& o) {
  o.d = f16_to_f32(b.d);
  o.mult = 0.125f;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t idx = load_u32(b.qs + 4 * ib), aux = load_u32(b.qs + 4 * ib + 2);
    o.scales[2 * ib] = o.scales[2 * ib + 1] = static_cast<int16_t>(2 * (aux >> 28) + 1);
    for (int l = 0; l < 4; ++l) {
      const uint32_t i = grid_index<kIQ2XXSGridBits, 0>(idx >> (8 * l), 0);
      put8(kIQ2XXSGrid[i], iq_signs8(aux >> (7 * l)), o.levels + 32 * ib + 8 * l);
    }
  }
}

void decode_iq2_xs(const BlockIQ2_XS& b, IQLevels& o) {
  o.d = f16_to_f32(b.d);
  o.mult = 0.125f;
  for (int ib = 0; ib < 8; ++ib) {
    o.scales[2 * ib] = static_cast<int16_t>(2 * (b.scales[ib] & 0xF) + 1);
    o.scales[2 * ib + 1] = static_cast<int16_t>(2 * (b.scales[ib] >> 4) + 1);
    for (int l = 0; l < 4; ++l) {
      const uint32_t q = b.qs[4 * ib + l];
      const uint32_t i = grid_index<kIQ2XSGridBits, 1>(q, q >> 8);
      put8(kIQ2XSGrid[i], iq_signs8(q >> 9), o.levels + 32 * ib + 8 * l);
    }
  }
}

void decode_iq2_s(const BlockIQ2_S& b, IQLevels& o) {
  o.d = f16_to_f32(b.d);
  o.mult = 0.125f;
  const uint8_t* signs = b.qs + kQKK / 8;
  for (int ib = 0; ib < 8; ++ib) {
    o.scales[2 * ib] = static_cast<int16_t>(2 * (b.scales[ib] & 0xF) + 1);
    o.scales[2 * ib + 1] = static_cast<int16_t>(2 * (b.scales[ib] >> 4) + 1);
    for (int l = 0; l < 4; ++l) {
      const uint32_t i = grid_index<kIQ2SGridBits, 2>(b.qs[4 * ib + l], b.qh[ib] >> (2 * l));
      put8(kIQ2SGrid[i], signs[4 * ib + l], o.levels + 32 * ib + 8 * l);
    }
  }
}

void decode_iq3_xxs(const BlockIQ3_XXS& b, IQLevels& o) {
  o.d = f16_to_f32(b.d);
  o.mult = 0.25f;
  const uint8_t* scales_signs = b.qs + kQKK / 4;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t aux = load_u32(scales_signs + 4 * ib);
    o.scales[2 * ib] = o.scales[2 * ib + 1] = static_cast<int16_t>(2 * (aux >> 28) + 1);
    const uint8_t* q = b.qs + 8 * ib;
    for (int l = 0; l < 4; ++l) {
      const uint32_t i1 = grid_index<kIQ3XXSGridBits, 0>(q[2 * l], 0);
      const uint32_t i2 = grid_index<kIQ3XXSGridBits, 0>(q[2 * l + 1], 0);
      put4x2(kIQ3XXSGrid[i1], kIQ3XXSGrid[i2], iq_signs8(aux >> (7 * l)), o.levels + 32 * ib + 8 * l);
    }
  }
}

void decode_iq3_s(const BlockIQ3_S& b, IQLevels& o) {
  o.d = f16_to_f32(b.d);
  o.mult = 1.0f;
  for (int ib = 0; ib < 8; ++ib) {
    o.scales[2 * ib] = o.scales[2 * ib + 1] =
        static_cast<int16_t>(2 * ((b.scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1);
    const uint8_t* q = b.qs + 8 * ib;
    for (int l = 0; l < 4; ++l) {
      const uint32_t i1 = grid_index<kIQ3SGridBits, 1>(q[2 * l], b.qh[ib] >> (2 * l));
      const uint32_t i2 = grid_index<kIQ3SGridBits, 1>(q[2 * l + 1], b.qh[ib] >> (2 * l + 1));
      put4x2(kIQ3SGrid[i1], kIQ3SGrid[i2], b.signs[4 * ib + l], o.levels + 32 * ib + 8 * l);
    }
  }
}

void decode_iq1_s(const BlockIQ1_S& b, IQLevels& o) {
  o.d = f16_to_f32(b.d);
  o.mult = 0.125f;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t h = b.qh[ib];
    o.scales[2 * ib] = o.scales[2 * ib + 1] = static_cast<int16_t>(2 * ((h >> 12) & 7) + 1);
    for (int l = 0; l < 4; ++l)
      put_iq1(grid_index<kIQ1SGridBits, 3>(b.qs[4 * ib + l], h >> (3 * l)), (h & 0x8000) != 0,
              o.levels + 32 * ib + 8 * l);
  }
}

void decode_iq1_m(const BlockIQ1_M& b, IQLevels& o) {
  uint16_t sc[4];
  std::memcpy(sc, b.scales, sizeof sc);
  const uint16_t d16 =
      static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
  o.d = f16_to_f32(d16);
  o.mult = 0.125f;
  for (int ib = 0; ib < 8; ++ib) {
    const int shift = 6 * (ib % 2);
    o.scales[2 * ib] = static_cast<int16_t>(2 * ((sc[ib / 2] >> shift) & 7) + 1);
    o.scales[2 * ib + 1] = static_cast<int16_t>(2 * ((sc[ib / 2] >> (shift + 3)) & 7) + 1);
    for (int l = 0; l < 4; ++l) {
      const uint32_t nibble = (b.qh[2 * ib + l / 2] >> (4 * (l % 2))) & 0xF;
      put_iq1(grid_index<kIQ1SGridBits, 3>(b.qs[4 * ib + l], nibble), (nibble & 8) != 0, o.levels + 32 * ib + 8 * l);
    }
  }
}

template <class Block>
void deq_codebook(DType t, const Block* b, float* y, int64_t nb) {
  IQLevels lv;
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    iq_decode(t, &b[i], lv);
    for (int k = 0; k < kQKK / 16; ++k) {
      const float dl = lv.d * static_cast<float>(lv.scales[k]) * lv.mult;  // exact: mult is a power of two
      for (int j = 0; j < 16; ++j) y[16 * k + j] = dl * lv.levels[16 * k + j];
    }
  }
}

}  // namespace

bool is_codebook_type(DType t) {
  switch (t) {
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ3_XXS:
    case DType::IQ3_S:
    case DType::IQ1_S:
    case DType::IQ1_M:
      return true;
    default:
      return false;
  }
}

void iq_decode(DType t, const void* block, IQLevels& out) {
  switch (t) {
    case DType::IQ2_XXS:
      return decode_iq2_xxs(*blocks<BlockIQ2_XXS>(block), out);
    case DType::IQ2_XS:
      return decode_iq2_xs(*blocks<BlockIQ2_XS>(block), out);
    case DType::IQ2_S:
      return decode_iq2_s(*blocks<BlockIQ2_S>(block), out);
    case DType::IQ3_XXS:
      return decode_iq3_xxs(*blocks<BlockIQ3_XXS>(block), out);
    case DType::IQ3_S:
      return decode_iq3_s(*blocks<BlockIQ3_S>(block), out);
    case DType::IQ1_S:
      return decode_iq1_s(*blocks<BlockIQ1_S>(block), out);
    case DType::IQ1_M:
      return decode_iq1_m(*blocks<BlockIQ1_M>(block), out);
    default:
      throw Error(std::string("iq_decode: ") + dtype_name(t) + " is not a codebook type");
  }
}

void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n) {
  const int64_t nb = n / info(t).block_size;
  if (nb * info(t).block_size != n) row_bytes(t, n);  // throws the "not a multiple" error
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::Q4_0:
      return deq_q4_0(blocks<BlockQ4_0>(src), dst, nb);
    case DType::Q4_1:
      return deq_q4_1(blocks<BlockQ4_1>(src), dst, nb);
    case DType::Q5_0:
      return deq_q5(blocks<BlockQ5_0>(src), dst, nb);
    case DType::Q5_1:
      return deq_q5(blocks<BlockQ5_1>(src), dst, nb);
    case DType::Q8_0:
      return deq_q8_0(blocks<BlockQ8_0>(src), dst, nb);
    case DType::Q2_K:
      return deq_q2_k(blocks<BlockQ2_K>(src), dst, nb);
    case DType::Q3_K:
      return deq_q3_k(blocks<BlockQ3_K>(src), dst, nb);
    case DType::Q4_K:
      return deq_q4_k(blocks<BlockQ4_K>(src), dst, nb);
    case DType::Q5_K:
      return deq_q5_k(blocks<BlockQ5_K>(src), dst, nb);
    case DType::Q6_K:
      return deq_q6_k(blocks<BlockQ6_K>(src), dst, nb);
    case DType::Q8_K:
      return deq_q8_k(blocks<BlockQ8_K>(src), dst, nb);
    case DType::IQ4_NL:
      return deq_iq4_nl(blocks<BlockIQ4_NL>(src), dst, nb);
    case DType::IQ4_XS:
      return deq_iq4_xs(blocks<BlockIQ4_XS>(src), dst, nb);
    case DType::IQ2_XXS:
      return deq_codebook(t, blocks<BlockIQ2_XXS>(src), dst, nb);
    case DType::IQ2_XS:
      return deq_codebook(t, blocks<BlockIQ2_XS>(src), dst, nb);
    case DType::IQ2_S:
      return deq_codebook(t, blocks<BlockIQ2_S>(src), dst, nb);
    case DType::IQ3_XXS:
      return deq_codebook(t, blocks<BlockIQ3_XXS>(src), dst, nb);
    case DType::IQ3_S:
      return deq_codebook(t, blocks<BlockIQ3_S>(src), dst, nb);
    case DType::IQ1_S:
      return deq_codebook(t, blocks<BlockIQ1_S>(src), dst, nb);
    case DType::IQ1_M:
      return deq_codebook(t, blocks<BlockIQ1_M>(src), dst, nb);
    default:
      throw Error(std::string("dequantization of tensor type ") + dtype_name(t) +
                  " is not supported (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q8_K IQ4_NL IQ4_XS IQ1_S "
                  "IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S)");
  }
}

}  // namespace owl
