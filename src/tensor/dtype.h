// Tensor element types. The numeric values are GGUF's (ggml_type), so a type
// read from a file is used as is. Quantised types store blocks of `block_size`
// elements in `type_size` bytes; see tensor/quants.h for the block layouts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace owl {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  // Not a GGUF type: safetensors' FP8 (e4m3), used by DeepSeek-V3/R1 and Kimi K2 checkpoints.
  F8_E4M3 = 1000,
};

struct DTypeInfo {
  const char* name;
  int64_t block_size;  // elements per block (1 for plain types)
  size_t type_size;    // bytes per block
  bool quantized;
};

// Info for a known type, or nullopt for an id owl does not know.
std::optional<DTypeInfo> dtype_info(uint32_t id);
const DTypeInfo& info(DType t);  // t must be known
inline const char* dtype_name(DType t) { return info(t).name; }
std::optional<DType> dtype_from_name(const std::string& name);  // "q4_k", "Q4_K", "f16" ...

// Bytes taken by one row of n elements (n must be a multiple of the block size).
size_t row_bytes(DType t, int64_t n);

}  // namespace owl
