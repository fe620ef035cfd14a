// safetensors writer: the layout the reader (formats/safetensors.h) and
// PyTorch's safetensors expect — u64 little-endian header length, a JSON header
// ({"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets"}}) padded
// with spaces to a multiple of 8, then the tensors sorted by name, each
// starting 8-byte aligned. Tensor bytes come from a fill callback called once
// per tensor while writing, so a large model streams through one tensor's
// worth of memory.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace owl::safetensors {

// The safetensors dtype name of F32/F16/BF16/I32/... ("F32", "BF16"); throws for quantised types.
std::string dtype_to_safetensors(DType t);

class Writer {
 public:
  using Fill = std::function<void(uint8_t* dst, size_t n_bytes)>;

  // shape in PyTorch order (outermost first; a linear layer is {out, in}).
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape, Fill fill);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  size_t tensor_count() const { return tensors_.size(); }

  // Writes atomically (PATH.tmp, then renamed); throws owl::Error on I/O failure.
  void write(const std::string& path) const;

 private:
  struct Pending {
    DType type;
    std::vector<int64_t> shape;
    uint64_t n_bytes = 0;
    Fill fill;
  };
  std::map<std::string, Pending> tensors_;  // sorted by name, the order they are stored in
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
};

}  // namespace owl::safetensors
