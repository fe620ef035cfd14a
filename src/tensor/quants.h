// Quantised block formats, bit-compatible with GGUF/ggml. A row of n elements
// of a quantised type is n / block_size blocks laid out back to back; each
// struct below is one block, byte for byte as ggml stores it (little-endian,
// no padding; the static_asserts pin the sizes from dtype.cpp).
//
// Value of element i of a block (d, dmin, m: fp16 unless said otherwise):
//   Q4_0   d * (q - 8)          q: 4 bits; qs[j] low nibble = element j, high nibble = element j+16
//   Q4_1   d * q + m            same nibble order
//   Q5_0   d * (q - 16)         q: 4 low bits as Q4_0, 5th bit of element j = bit j of qh (32-bit LE)
//   Q5_1   d * q + m            same as Q5_0
//   Q8_0   d * q                q: int8
//   Q8_K   d * q                d: float32, q: int8; bsums[k] = sum of q[16k .. 16k+15]
//   Q2_K   d * sc * q - dmin * mn          per 16 elements: scales[s] = sc | mn << 4
//   Q3_K   d * (sc - 32) * (q - 4 * !hbit) per 16 elements: 6-bit sc packed in 12 bytes
//   Q4_K   d * sc * q - dmin * mn          per 32 elements: 6-bit sc/mn packed in 12 bytes
//   Q5_K   as Q4_K with a 5th bit from qh
//   Q6_K   d * sc * (q - 32)               per 16 elements: int8 sc; 6-bit q from ql (4) + qh (2)
//   IQ4_NL d * kIQ4NL[q]                    q: 4 bits, nibble order as Q4_0
//   IQ4_XS d * (ls - 32) * kIQ4NL[q]        per 32 elements: 6-bit ls from scales_l/scales_h
// The codebook formats (grids in tensor/iq_grids.h; groups of 8 elements share one grid index,
// IQ3 groups of 4; s: a 3- or 4-bit stored scale, ls = 2s + 1; signs: iq_signs8 or stored bits):
//   IQ2_XXS d * ls / 8 * ±grid    per 32: 4 8-bit indices, 4 7-bit sign sets, 4-bit s
//   IQ2_XS  d * ls / 8 * ±grid    per 16: 4-bit s; per 8: 9-bit index + 7-bit signs in one uint16
//   IQ2_S   d * ls / 8 * ±grid    per 16: 4-bit s; per 8: 10-bit index (qs + 2 bits of qh), 8 sign bits
//   IQ3_XXS d * ls / 4 * ±grid    per 32: 8 8-bit indices (of 4), 4 7-bit sign sets, 4-bit s
//   IQ3_S   d * ls * ±grid        per 32: 4-bit s; per 4: 9-bit index (qs + 1 bit of qh); 8 sign bits per 8
//   IQ1_S   d * ls * (grid ± 1/8) per 32: 3-bit s, sign of the 1/8; per 8: 11-bit index (qs + 3 bits of qh)
//   IQ1_M   d * ls * (grid ± 1/8) d: fp16 from the top nibbles of scales; per 16: 3-bit s; per 8:
//                                 11-bit index (qs + 3 bits of qh) and the sign of the 1/8 (4th bit)
// The K-quant bit orders (which bits of qs/qh/ql hold which element) are in
// quants.cpp next to the scalar dequantisers, which are the reference.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace owl {

constexpr int kQK = 32;    // block size of the legacy formats
constexpr int kQKK = 256;  // block size of the K-quants ("super-blocks")

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];  // low nibble: scale, high nibble: min, per 16 elements
  uint8_t qs[kQKK / 4];       // 2-bit quants
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];  // high bit of each quant
  uint8_t qs[kQKK / 4];     // low 2 bits
  uint8_t scales[12];       // 16 scales of 6 bits
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 scales + 8 mins of 6 bits
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];  // low 4 bits
  uint8_t qh[kQKK / 4];  // high 2 bits
  int8_t scales[kQKK / 16];
  uint16_t d;
};
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;            // high 2 bits of the 8 sub-block scales
  uint8_t scales_l[kQKK / 64];  // low 4 bits, two per byte
  uint8_t qs[kQKK / 2];
};

struct BlockIQ2_XXS {
  uint16_t d;
  uint16_t qs[kQKK / 8];  // per 32 elements 4 uint16: 4 index bytes, then 4 x 7 sign bits + 4-bit scale
};
struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[kQKK / 8];      // per 8 elements: index (9 low bits) | signs << 9
  uint8_t scales[kQKK / 32];  // two 4-bit scales (per 16 elements) per byte, low nibble first
};
struct BlockIQ2_S {
  uint16_t d;
  uint8_t qs[kQKK / 4];       // 32 low index bytes (one per 8 elements), then 32 sign bytes
  uint8_t qh[kQKK / 32];      // per 32 elements: the index high bits, 2 per group of 8
  uint8_t scales[kQKK / 32];  // as IQ2_XS
};
struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[3 * kQKK / 8];  // 64 index bytes (one per 4 elements), then per 32 a uint32: 4 x 7 sign bits + scale
};
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[kQKK / 4];       // low 8 index bits, one per 4 elements
  uint8_t qh[kQKK / 32];      // 9th index bit, one byte per 32 elements
  uint8_t signs[kQKK / 8];    // one sign bit per element
  uint8_t scales[kQKK / 64];  // two 4-bit scales (per 32 elements) per byte
};
struct BlockIQ1_S {
  uint16_t d;
  uint8_t qs[kQKK / 8];    // low 8 index bits, one per 8 elements
  uint16_t qh[kQKK / 32];  // per 32: 4 x 3 high index bits, 3-bit scale (bits 12-14), delta sign (bit 15)
};
struct BlockIQ1_M {
  uint8_t qs[kQKK / 8];       // low 8 index bits, one per 8 elements
  uint8_t qh[kQKK / 16];      // per 8 elements a nibble: 3 high index bits, delta sign (bit 3)
  uint8_t scales[kQKK / 32];  // 4 uint16: 4 x 3-bit scales each (bits 0-11); bits 12-15 form fp16 d
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82 &&
              sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110 && sizeof(BlockIQ1_S) == 50 &&
              sizeof(BlockIQ1_M) == 56);

// The codebook formats as integers: levels[i] of the 256 elements of one block and a scale per 16
// elements, so that element i = d * mult * scale[i / 16] * levels[i] (mult: 1/8, 1/4 or 1; IQ1
// levels are 8 * grid ± 1, mult 1/8). Both the dequantiser and the reference dot products use it.
struct IQLevels {
  float d = 0;     // the block's fp16 scale
  float mult = 1;  // power of two: d * mult * scale is exact
  int8_t levels[kQKK];
  int16_t scales[kQKK / 16];
};
// Whether t is one of the seven codebook types above.
bool is_codebook_type(DType t);
// Decodes one block of codebook type t (is_codebook_type(t)); every stored index is in range.
void iq_decode(DType t, const void* block, IQLevels& out);

// The 16 non-linear levels of IQ4_NL and IQ4_XS.
inline constexpr int8_t kIQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Scale and min number j (0..7) of a Q4_K/Q5_K block's 12 packed bytes: bytes 0-3 hold the low
// 6 bits of scales 0-3, bytes 4-7 those of mins 0-3; bytes 8-11 hold the low 4 bits of scale
// (low nibble) and min (high nibble) 4-7, whose top 2 bits sit in bits 6-7 of bytes 0-3 / 4-7.
inline void k4_scale_min(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Whether quantize_row supports t.
bool can_quantize(DType t);
// Quantises n floats (a multiple of t's block size) into row_bytes(t, n) bytes at dst.
// Throws owl::Error for a type that cannot be quantised or a bad n.
void quantize_row(DType t, const float* src, void* dst, int64_t n);
// As quantize_row, for stored weights: Q8_0 rounds halves away from zero as llama-quantize's
// reference quantiser does (so owl's Q8_0 files equal llama.cpp's byte for byte); activations
// keep quantize_row's round-half-to-even, which is what ggml's AVX2 activation quantiser does.
// importance: n per-column weights (an importance matrix's, formats/imatrix.h) by which each
// element's squared error counts, or null; the low-bit types (Q2_K, Q3_K and the codebook types)
// use it, the others ignore it.
void quantize_weight_row(DType t, const float* src, void* dst, int64_t n, const float* importance = nullptr);
// Whether quantising weights to t wants an importance matrix: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS and
// IQ2_S lose too much without one, so `owl quantize` refuses them without (as llama-quantize does).
bool needs_importance(DType t);
// Scalar reference dequantisation of every type in this header plus F32/F16/BF16;
// kernels::dequantize_row is the fast entry point and agrees with this exactly.
void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n);

}  // namespace owl
