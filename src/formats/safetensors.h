// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}),
// then the data section; offsets are relative to the data section.
// Files are memory-mapped and validated strictly: the header length against
// the file size, JSON syntax, every tensor's byte range inside the data section
// with begin <= end and end - begin == elements x dtype size, and no two
// tensors overlapping. Anything else is an owl::Error naming the file and tensor.
//
// A checkpoint is one model.safetensors or several shards listed by
// model.safetensors.index.json ({"weight_map": {"tensor": "shard file"}}).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/mapped_file.h"
#include "tensor/tensor.h"

namespace owl::safetensors {

struct TensorInfo {
  std::string name;
  std::string dtype_name;  // as written in the header ("BF16")
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // PyTorch order: outermost first, a linear layer is (out, in)
  uint64_t begin = 0;          // byte range inside the data section
  uint64_t end = 0;

  int64_t n_elements() const;
  uint64_t n_bytes() const { return end - begin; }
};

// The dtype names owl reads, for error messages.
const std::vector<std::string>& supported_dtypes();
std::optional<DType> dtype_from_safetensors(const std::string& name);

class File {
 public:
  static std::unique_ptr<File> open(const std::string& path);  // memory-mapped; throws owl::Error
  // Parses an in-memory buffer that must outlive the File (tests, fuzzing).
  static std::unique_ptr<File> parse(const uint8_t* data, size_t size, const std::string& label);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const TensorInfo* find(const std::string& name) const;
  const uint8_t* data(const TensorInfo& t) const { return data_ + data_offset_ + t.begin; }
  // A ggml-order view (ne = reversed shape); throws for more than 4 dimensions.
  TensorView view(const TensorInfo& t) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return label_; }
  uint64_t data_offset() const { return data_offset_; }

 private:
  File() = default;
  void parse_all();
  [[noreturn]] void fail(const std::string& what) const;

  std::unique_ptr<MappedFile> map_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string label_;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a Hugging Face checkpoint folder, across shards.
class Checkpoint {
 public:
  // model.safetensors.index.json if present, else model.safetensors, else every *.safetensors.
  static std::unique_ptr<Checkpoint> open_folder(const std::string& folder);

  struct Entry {
    const File* file;
    const TensorInfo* info;
  };
  std::optional<Entry> find(const std::string& name) const;
  std::vector<Entry> tensors() const;  // shard by shard, sorted by name
  const std::vector<std::unique_ptr<File>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<File>> files_;
  std::map<std::string, Entry> index_;
};

}  // namespace owl::safetensors
