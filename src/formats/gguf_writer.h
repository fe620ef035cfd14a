// GGUF writer (versions 2 and 3, little-endian): metadata in the given order
// with the exact value types, tensor infos, then the tensor data, each tensor
// starting at a multiple of the alignment (general.alignment, default 32) and
// zero-padded to it, as llama.cpp and gguf-py write files.
//
// Tensor bytes come either from memory (a pointer that must outlive write())
// or from a fill callback called once per tensor while writing, so a
// multi-gigabyte model is generated tensor by tensor without holding it all.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace owl::gguf {

class Writer {
 public:
  // Fills exactly n_bytes at dst.
  using Fill = std::function<void(uint8_t* dst, size_t n_bytes)>;

  explicit Writer(uint32_t version = 3);

  Metadata& metadata() { return meta_; }
  const Metadata& metadata() const { return meta_; }

  // ne in ggml order (ne[0] = row length), 1 to 4 dims. Offsets are assigned in call order.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne, const void* data);
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne, Fill fill);
  // Keeps an existing layout: the tensor's data goes at `offset` (relative to the data section;
  // aligned, not overlapping another tensor). Used to rewrite a file byte for byte.
  void add_tensor_at(const std::string& name, DType type, const std::vector<int64_t>& ne, const void* data,
                     uint64_t offset);
  size_t tensor_count() const { return tensors_.size(); }

  // Writes the file (atomically: to PATH.tmp, then renamed); throws owl::Error on I/O failure.
  void write(const std::string& path) const;
  // The whole file as bytes (tests, fuzzing, small files).
  std::string to_bytes() const;

  // Total file size write() will produce.
  uint64_t file_size() const;

 private:
  struct Pending {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    uint64_t n_bytes = 0;
    uint64_t offset = 0;  // relative to the data section
    const void* data = nullptr;
    Fill fill;
  };
  void add(Pending p);
  uint64_t alignment() const;
  std::string header_bytes() const;  // header + KVs + tensor infos + padding to the data section
  template <typename Sink>
  void emit(Sink& sink) const;

  uint32_t version_;
  Metadata meta_;
  std::vector<Pending> tensors_;
  uint64_t data_size_ = 0;  // bytes of the data section so far (each tensor padded)
};

// Rewrites a parsed GGUF file: same metadata, tensor order, offsets and data.
// For files written by llama.cpp/gguf-py the result is byte-identical.
std::string serialize(const File& f);
void write_file(const File& f, const std::string& path);

}  // namespace owl::gguf
