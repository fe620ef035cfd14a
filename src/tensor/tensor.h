// A view of tensor data that lives elsewhere (usually a memory-mapped file).
// Shapes are in ggml order: ne[0] is the innermost (contiguous) dimension, so a
// linear layer W with `in` inputs and `out` outputs has ne = {in, out} and each
// of its `out` rows is one contiguous run of row_bytes(type, in) bytes.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "tensor/dtype.h"

namespace owl {

struct TensorView {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  const void* data = nullptr;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }  // rows of ne[0] elements
  size_t row_size() const { return row_bytes(type, ne[0]); }
  size_t n_bytes() const { return row_size() * static_cast<size_t>(rows()); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_size();
  }
  std::string shape_str() const;  // "[256, 512]"
};

}  // namespace owl
