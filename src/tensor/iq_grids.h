// The codebooks of the IQ1_S/IQ1_M, IQ2_XXS/IQ2_XS/IQ2_S and IQ3_XXS/IQ3_S formats (tables in
// iq_grids.cpp). A block stores, per group of 8 (IQ3: 4) elements, an index into one of these
// grids; entry k holds the group's magnitudes, element j in byte j of the little-endian value.
// Each grid has exactly 2^bits entries for the bits of index its format stores, so no stored
// index can leave its grid: every read of a grid, in the reference (tensor/quants.cpp) and in the
// AVX2 decoders (kernels/codebook_avx2.h), takes its index from grid_index below, whose
// static_assert ties the bits extracted to the grid's size. A hostile file therefore cannot make
// a low-bit block read outside a table (the sign table takes 7 masked bits, IQ4_NL's 4; Q2_K and
// Q3_K look nothing up), so there is nothing to reject at load; tests/tensor/iq_quants_test.cpp
// (IQHostile) decodes all-ones and random blocks through the reference and matmul.
#pragma once
#include <cstdint>

namespace owl {

inline constexpr int kIQ2XXSGridBits = 8, kIQ2XSGridBits = 9, kIQ2SGridBits = 10;
inline constexpr int kIQ3XXSGridBits = 8, kIQ3SGridBits = 9, kIQ1SGridBits = 11;

extern const uint64_t kIQ2XXSGrid[1 << kIQ2XXSGridBits];  // bytes 8, 25, 43
extern const uint64_t kIQ2XSGrid[1 << kIQ2XSGridBits];    // bytes 8, 25, 43
extern const uint64_t kIQ2SGrid[1 << kIQ2SGridBits];      // bytes 8, 25, 43
extern const uint32_t kIQ3XXSGrid[1 << kIQ3XXSGridBits];  // bytes 4, 12, ..., 52, 62
extern const uint32_t kIQ3SGrid[1 << kIQ3SGridBits];      // bytes 1, 3, ..., 15
extern const uint64_t kIQ1SGrid[1 << kIQ1SGridBits];      // int8 bytes -1, 0, +1 (IQ1_S and IQ1_M)

// Grid index from a stored low byte and kHighBits more bits (taken from the low bits of `high`):
// the static_assert proves the result is inside a grid of 2^kGridBits entries whatever the block
// holds.
template <int kGridBits, int kHighBits>
constexpr uint32_t grid_index(uint32_t low8, uint32_t high) {
  static_assert(8 + kHighBits == kGridBits, "stored index bits must address exactly the grid");
  return (low8 & 0xFF) | ((high & ((1u << kHighBits) - 1)) << 8);
}

// Byte j of grid entry e.
inline int grid_byte(uint64_t e, int j) { return static_cast<int>((e >> (8 * j)) & 0xFF); }
inline int grid_byte_signed(uint64_t e, int j) { return static_cast<int8_t>((e >> (8 * j)) & 0xFF); }

// The IQ2/IQ3 sign patterns: 7 stored bits give the signs of elements 0-6 of a group of 8 (bit j
// set: element j negative); element 7's sign makes the count of negatives even.
constexpr uint8_t iq_signs8(uint32_t seven_bits) {
  const uint32_t s = seven_bits & 127;
  uint32_t parity = 0;
  for (uint32_t v = s; v; v >>= 1) parity ^= v & 1;
  return static_cast<uint8_t>(s | parity << 7);
}
static_assert(iq_signs8(0) == 0 && iq_signs8(1) == 129 && iq_signs8(3) == 3 && iq_signs8(127) == 255);

}  // namespace owl
