// GGUF (versions 2 and 3, little-endian): metadata key/values and tensor
// infos parsed with strict, overflow-safe validation; tensor data is used in
// place through a memory map. The writer emits the same layout.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/mapped_file.h"
#include "tensor/tensor.h"

namespace owl::gguf {

// The values of tokenizer.ggml.token_type (as ints, the way the array stores them).
namespace token_type {
enum : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
}  // namespace token_type

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

struct Value;
struct Array {
  ValueType elem_type = ValueType::UINT8;
  std::vector<Value> items;
};

// One metadata value; `type` keeps the exact on-disk type so a write reproduces it.
struct Value {
  ValueType type = ValueType::UINT8;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;

  bool is_integer() const;
  bool is_number() const;
  int64_t as_int() const;   // any integer or bool type; throws otherwise
  double as_float() const;  // any numeric type
  bool as_bool() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  std::string to_string(size_t max_items = 8) const;  // for display

  static Value u32(uint32_t x) { return {ValueType::UINT32, uint64_t{x}}; }
  static Value u64(uint64_t x) { return {ValueType::UINT64, x}; }
  static Value i32(int32_t x) { return {ValueType::INT32, int64_t{x}}; }
  static Value f32(float x) { return {ValueType::FLOAT32, double{x}}; }
  static Value boolean(bool x) { return {ValueType::BOOL, x}; }
  static Value str(std::string s) { return {ValueType::STRING, std::move(s)}; }
  static Value array(ValueType elem, std::vector<Value> items) {
    return {ValueType::ARRAY, Array{elem, std::move(items)}};
  }
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  DType type = DType::F32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t n_bytes = 0;
};

// Metadata in file order (order matters for byte-identical rewrites).
struct Metadata {
  std::vector<std::pair<std::string, Value>> items;

  const Value* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  void set(const std::string& key, Value v);  // replaces or appends
  // Typed getters: throw owl::Error naming the key when present with a wrong type.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
};

class File {
 public:
  // Opens and validates; throws owl::Error with the file name and the problem.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses an in-memory buffer (used by the fuzzer and tests); the buffer must outlive the File.
  static std::unique_ptr<File> parse(const uint8_t* data, size_t size, const std::string& label);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const Metadata& metadata() const { return meta_; }
  const std::vector<TensorInfo>& tensor_infos() const { return infos_; }
  const std::string& path() const { return label_; }
  size_t file_size() const { return size_; }

  const TensorInfo* find_info(const std::string& name) const;
  // A view of a tensor's bytes in the mapped file; nullopt if absent.
  std::optional<TensorView> tensor(const std::string& name) const;
  TensorView view(const TensorInfo& ti) const;

 private:
  File() = default;
  void parse_all();

  std::unique_ptr<MappedFile> map_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string label_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  Metadata meta_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t> index_;
};

}  // namespace owl::gguf
