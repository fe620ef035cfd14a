#include "tensor/dtype.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"

namespace owl {

namespace {
struct Entry {
  uint32_t id;
  DTypeInfo info;
};
constexpr Entry kTypes[] = {
    {0, {"F32", 1, 4, false}},        {1, {"F16", 1, 2, false}},        {2, {"Q4_0", 32, 18, true}},
    {3, {"Q4_1", 32, 20, true}},      {6, {"Q5_0", 32, 22, true}},      {7, {"Q5_1", 32, 24, true}},
    {8, {"Q8_0", 32, 34, true}},      {9, {"Q8_1", 32, 36, true}},      {10, {"Q2_K", 256, 84, true}},
    {11, {"Q3_K", 256, 110, true}},   {12, {"Q4_K", 256, 144, true}},   {13, {"Q5_K", 256, 176, true}},
    {14, {"Q6_K", 256, 210, true}},   {15, {"Q8_K", 256, 292, true}},   {16, {"IQ2_XXS", 256, 66, true}},
    {17, {"IQ2_XS", 256, 74, true}},  {18, {"IQ3_XXS", 256, 98, true}}, {19, {"IQ1_S", 256, 50, true}},
    {20, {"IQ4_NL", 32, 18, true}},   {21, {"IQ3_S", 256, 110, true}},  {22, {"IQ2_S", 256, 82, true}},
    {23, {"IQ4_XS", 256, 136, true}}, {24, {"I8", 1, 1, false}},        {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},       {27, {"I64", 1, 8, false}},       {28, {"F64", 1, 8, false}},
    {29, {"IQ1_M", 256, 56, true}},   {30, {"BF16", 1, 2, false}},      {34, {"TQ1_0", 256, 54, true}},
    {35, {"TQ2_0", 256, 66, true}},   {39, {"MXFP4", 32, 17, true}},    {1000, {"F8_E4M3", 1, 1, false}},
};
}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t id) {
  for (const auto& e : kTypes)
    if (e.id == id) return e.info;
  return std::nullopt;
}

const DTypeInfo& info(DType t) {
  for (const auto& e : kTypes)
    if (e.id == static_cast<uint32_t>(t)) return e.info;
  throw Error("unknown tensor type id " + std::to_string(static_cast<uint32_t>(t)));
}

std::optional<DType> dtype_from_name(const std::string& name) {
  std::string up = name;
  std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& e : kTypes)
    if (up == e.info.name) return static_cast<DType>(e.id);
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& i = info(t);
  if (n % i.block_size != 0)
    throw Error(std::string("row of ") + std::to_string(n) + " elements is not a multiple of the " + i.name +
                " block size " + std::to_string(i.block_size));
  return static_cast<size_t>(n / i.block_size) * i.type_size;
}

}  // namespace owl
