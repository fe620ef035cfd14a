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

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);

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
void quantize_weight_row(DType t, const float* src, void* dst, int64_t n);
// Scalar reference dequantisation of every type in this header plus F32/F16/BF16;
// kernels::dequantize_row is the fast entry point and agrees with this exactly.
void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n);

}  // namespace owl
