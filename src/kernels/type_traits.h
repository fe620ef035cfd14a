// Internal to the kernels: what they know of each weight type matmul takes, in one table. Its
// block (elements and bytes, from the block structs of tensor/quants.h), the type its activations
// are converted to for the dot products (vec_dot.h), and the bytes of one block of 8 interleaved
// rows where it has a packed layout (repack.h). The kernel files supply functions only, by type:
// dot_fn_ref / dot_fn_avx2 (vec_dot_*.cpp), packed_kernels<Dot> (repack_simd.h); rows of any
// type dequantise with dequantize_row_ref (tensor/quants.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"
#include "tensor/quants.h"

namespace owl::kernels {

constexpr int kPackRows = 8;  // rows interleaved by the packed layouts

struct TypeTraits {
  DType type = DType::F32;
  int64_t block_elems = 1;  // elements per block (1: a float type)
  size_t block_bytes = 0;   // bytes per block
  DType act = DType::F32;   // what the activations are converted to: F32, Q8_0 or Q8_K
  size_t packed_bytes = 0;  // bytes per block of kPackRows interleaved rows; 0: no packed layout
};

namespace traits_detail {
template <class Block>
constexpr TypeTraits quant(DType t, int64_t elems, DType act, bool packed = false) {
  return {t, elems, sizeof(Block), act, packed ? kPackRows * sizeof(Block) : 0};
}
}  // namespace traits_detail

inline constexpr TypeTraits kTypeTraits[] = {
    {DType::F32, 1, sizeof(float), DType::F32, 0},
    {DType::F16, 1, sizeof(uint16_t), DType::F32, 0},
    {DType::BF16, 1, sizeof(uint16_t), DType::F32, 0},
    traits_detail::quant<BlockQ4_0>(DType::Q4_0, kQK, DType::Q8_0),
    traits_detail::quant<BlockQ4_1>(DType::Q4_1, kQK, DType::Q8_0),
    traits_detail::quant<BlockQ5_0>(DType::Q5_0, kQK, DType::Q8_0, /*packed=*/true),
    traits_detail::quant<BlockQ5_1>(DType::Q5_1, kQK, DType::Q8_0),
    traits_detail::quant<BlockQ8_0>(DType::Q8_0, kQK, DType::Q8_0, /*packed=*/true),
    traits_detail::quant<BlockIQ4_NL>(DType::IQ4_NL, kQK, DType::Q8_0),
    traits_detail::quant<BlockQ2_K>(DType::Q2_K, kQKK, DType::Q8_K),
    traits_detail::quant<BlockQ3_K>(DType::Q3_K, kQKK, DType::Q8_K),
    traits_detail::quant<BlockQ4_K>(DType::Q4_K, kQKK, DType::Q8_K, /*packed=*/true),
    traits_detail::quant<BlockQ5_K>(DType::Q5_K, kQKK, DType::Q8_K),
    traits_detail::quant<BlockQ6_K>(DType::Q6_K, kQKK, DType::Q8_K, /*packed=*/true),
    traits_detail::quant<BlockIQ4_XS>(DType::IQ4_XS, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ2_XXS>(DType::IQ2_XXS, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ2_XS>(DType::IQ2_XS, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ2_S>(DType::IQ2_S, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ3_XXS>(DType::IQ3_XXS, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ3_S>(DType::IQ3_S, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ1_S>(DType::IQ1_S, kQKK, DType::Q8_K),
    traits_detail::quant<BlockIQ1_M>(DType::IQ1_M, kQKK, DType::Q8_K),
};

// The traits of weight type t, or null for a type matmul does not take.
constexpr const TypeTraits* type_traits(DType t) {
  for (const TypeTraits& e : kTypeTraits)
    if (e.type == t) return &e;
  return nullptr;
}

// Bytes of one packed block of 8 rows of t (0: t has no packed layout).
constexpr size_t packed_block_bytes(DType t) {
  const TypeTraits* e = type_traits(t);
  return e ? e->packed_bytes : 0;
}
template <class Block>
constexpr size_t kPackedBytes = kPackRows * sizeof(Block);
static_assert(packed_block_bytes(DType::Q4_K) == kPackedBytes<BlockQ4_K> && packed_block_bytes(DType::Q4_0) == 0);

}  // namespace owl::kernels
