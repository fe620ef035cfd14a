#include "formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/error.h"

namespace owl::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;

// Sequential reader over the header bytes; every read checks what remains.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& label) : p_(p), n_(n), label_(label) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("invalid GGUF file '" + label_ + "': " + what + " (at byte " + std::to_string(pos_) +
                "); the file is damaged: download or convert it again");
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T)) fail(std::string("file ends inside ") + what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail(std::string("file ends inside ") + what + " (length " + std::to_string(len) + ", only " +
           std::to_string(remaining()) + " bytes remain)");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& label_;
};

size_t min_value_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
      return 8;
    case ValueType::STRING:
      return 8;
    case ValueType::ARRAY:
      return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= 12; }

Value read_value(Cursor& c, ValueType t, int depth) {
  switch (t) {
    case ValueType::UINT8:
      return {t, uint64_t{c.read<uint8_t>("u8 value")}};
    case ValueType::INT8:
      return {t, int64_t{c.read<int8_t>("i8 value")}};
    case ValueType::UINT16:
      return {t, uint64_t{c.read<uint16_t>("u16 value")}};
    case ValueType::INT16:
      return {t, int64_t{c.read<int16_t>("i16 value")}};
    case ValueType::UINT32:
      return {t, uint64_t{c.read<uint32_t>("u32 value")}};
    case ValueType::INT32:
      return {t, int64_t{c.read<int32_t>("i32 value")}};
    case ValueType::UINT64:
      return {t, c.read<uint64_t>("u64 value")};
    case ValueType::INT64:
      return {t, c.read<int64_t>("i64 value")};
    case ValueType::FLOAT32:
      return {t, double{c.read<float>("f32 value")}};
    case ValueType::FLOAT64:
      return {t, c.read<double>("f64 value")};
    case ValueType::BOOL: {
      uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) c.fail("bool value " + std::to_string(b) + " is not 0 or 1");
      return {t, b == 1};
    }
    case ValueType::STRING:
      return {t, c.read_string("string value")};
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) c.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth));
      uint32_t et = c.read<uint32_t>("array element type");
      if (!valid_value_type(et)) c.fail("unknown array element type " + std::to_string(et));
      uint64_t n = c.read<uint64_t>("array length");
      ValueType elem = static_cast<ValueType>(et);
      if (n > c.remaining() / min_value_size(elem))
        c.fail("file ends inside an array of " + std::to_string(n) + " " + value_type_name(elem) + " elements (only " +
               std::to_string(c.remaining()) + " bytes remain)");
      Array a;
      a.elem_type = elem;
      a.items.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(c, elem, depth + 1));
      return {t, std::move(a)};
    }
  }
  c.fail("unknown value type " + std::to_string(static_cast<uint32_t>(t)));
}

}  // namespace

const char* value_type_name(ValueType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i <= 12 ? names[i] : "?";
}

bool Value::is_integer() const { return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v); }
bool Value::is_number() const { return is_integer() || std::holds_alternative<double>(v); }

int64_t Value::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw Error("integer value " + std::to_string(*u) + " is too large");
    return static_cast<int64_t>(*u);
  }
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  throw Error(std::string("expected an integer, found a ") + value_type_name(type));
}
double Value::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  return static_cast<double>(as_int());
}
bool Value::as_bool() const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  return as_int() != 0;
}
const std::string& Value::as_string() const {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  throw Error(std::string("expected a string, found a ") + value_type_name(type));
}
const Array& Value::as_array() const {
  if (auto* a = std::get_if<Array>(&v)) return *a;
  throw Error(std::string("expected an array, found a ") + value_type_name(type));
}

std::string Value::to_string(size_t max_items) const {
  if (auto* u = std::get_if<uint64_t>(&v)) return std::to_string(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", *d);
    return buf;
  }
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&v)) {
    if (s->size() > 60) return "\"" + s->substr(0, 57) + "...\" (" + std::to_string(s->size()) + " bytes)";
    return "\"" + *s + "\"";
  }
  const Array& a = std::get<Array>(v);
  std::string out = "[";
  for (size_t i = 0; i < a.items.size() && i < max_items; ++i) {
    if (i) out += ", ";
    out += a.items[i].to_string(max_items);
  }
  if (a.items.size() > max_items) out += ", ... (" + std::to_string(a.items.size()) + " items)";
  return out + "]";
}

const Value* Metadata::find(const std::string& key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}
void Metadata::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

namespace {
template <typename F>
auto typed_get(const Metadata& m, const std::string& key, F f) -> std::optional<decltype(f(Value{}))> {
  const Value* v = m.find(key);
  if (!v) return std::nullopt;
  try {
    return f(*v);
  } catch (const Error& e) {
    throw Error("metadata key '" + key + "': " + e.what());
  }
}
}  // namespace

std::optional<int64_t> Metadata::get_int(const std::string& key) const {
  return typed_get(*this, key, [](const Value& v) { return v.as_int(); });
}
std::optional<double> Metadata::get_float(const std::string& key) const {
  return typed_get(*this, key, [](const Value& v) { return v.as_float(); });
}
std::optional<bool> Metadata::get_bool(const std::string& key) const {
  return typed_get(*this, key, [](const Value& v) { return v.as_bool(); });
}
std::optional<std::string> Metadata::get_string(const std::string& key) const {
  return typed_get(*this, key, [](const Value& v) { return v.as_string(); });
}

std::unique_ptr<File> File::open(const std::string& path) {
  auto map = std::make_unique<MappedFile>(path);
  auto f = parse(map->data(), map->size(), path);
  f->map_ = std::move(map);  // the parsed views point into the mapping: it lives as long as f
  return f;
}

std::unique_ptr<File> File::parse(const uint8_t* data, size_t size, const std::string& label) {
  auto f = std::unique_ptr<File>(new File());
  f->data_ = data;
  f->size_ = size;
  f->label_ = label;
  f->parse_all();
  return f;
}

void File::parse_all() {
  Cursor c(data_, size_, label_);
  if (size_ < 4) c.fail("file ends after " + std::to_string(size_) + " bytes, too short for a GGUF header");
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) {
    char m[5] = {};
    std::memcpy(m, data_, 4);
    for (char& ch : m)
      if (ch && (ch < 32 || ch > 126)) ch = '?';
    c.fail(std::string("bad magic '") + m + "', expected 'GGUF' (is this a GGUF model file?)");
  }
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    if (version_ == 1) c.fail("GGUF version 1 is obsolete and not supported; convert the model again");
    if ((version_ & 0xFFFF) == 0 && version_ != 0)
      c.fail("version " + std::to_string(version_) + " looks big-endian; only little-endian GGUF is supported");
    c.fail("unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
  }
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each metadata pair needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8+4+8+4+8.
  if (n_kv > c.remaining() / 13)
    c.fail("metadata count " + std::to_string(n_kv) + " cannot fit: the file ends after " + std::to_string(size_) +
           " bytes (truncated, or the count is corrupt)");
  if (n_tensors > c.remaining() / 32)
    c.fail("tensor count " + std::to_string(n_tensors) + " cannot fit: the file ends after " + std::to_string(size_) +
           " bytes (truncated, or the count is corrupt)");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    if (key.empty()) c.fail("metadata key #" + std::to_string(i) + " is empty");
    if (meta_.find(key)) c.fail("duplicate metadata key '" + key + "'");
    uint32_t t = c.read<uint32_t>("metadata value type");
    if (!valid_value_type(t)) c.fail("metadata key '" + key + "' has unknown value type " + std::to_string(t));
    meta_.items.emplace_back(key, read_value(c, static_cast<ValueType>(t), 0));
  }

  if (const Value* a = meta_.find("general.alignment")) {
    if (a->type != ValueType::UINT32) c.fail("general.alignment must be a u32");
    uint64_t al = std::get<uint64_t>(a->v);
    if (al == 0 || (al & (al - 1)) != 0) c.fail("general.alignment " + std::to_string(al) + " is not a power of two");
    alignment_ = al;
  }

  infos_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = c.read_string("tensor name");
    if (ti.name.empty()) c.fail("tensor #" + std::to_string(i) + " has an empty name");
    if (index_.count(ti.name)) c.fail("duplicate tensor name '" + ti.name + "'");
    ti.n_dims = c.read<uint32_t>("tensor dimension count");
    if (ti.n_dims < 1 || ti.n_dims > 4)
      c.fail("tensor '" + ti.name + "' has " + std::to_string(ti.n_dims) + " dimensions (1 to 4 allowed)");
    int64_t n_el = 1;
    for (uint32_t d = 0; d < ti.n_dims; ++d) {
      uint64_t ne = c.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.fail("tensor '" + ti.name + "' has invalid dimension " + std::to_string(ne));
      if (static_cast<uint64_t>(n_el) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne)
        c.fail("tensor '" + ti.name + "' element count overflows");
      ti.ne[d] = static_cast<int64_t>(ne);
      n_el *= static_cast<int64_t>(ne);
    }
    uint32_t type = c.read<uint32_t>("tensor type");
    auto tinfo = dtype_info(type);
    if (!tinfo || type == static_cast<uint32_t>(DType::F8_E4M3))
      c.fail("tensor '" + ti.name + "' has unknown type id " + std::to_string(type) +
             "; this file needs a newer owl, or re-quantize it to a supported type");
    ti.type = static_cast<DType>(type);
    if (ti.ne[0] % tinfo->block_size != 0)
      c.fail("tensor '" + ti.name + "' row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " +
             tinfo->name + " block size " + std::to_string(tinfo->block_size));
    uint64_t blocks = static_cast<uint64_t>(n_el / tinfo->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / tinfo->type_size)
      c.fail("tensor '" + ti.name + "' byte size overflows");
    ti.n_bytes = blocks * tinfo->type_size;
    ti.offset = c.read<uint64_t>("tensor offset");
    if (ti.offset % alignment_ != 0)
      c.fail("tensor '" + ti.name + "' offset " + std::to_string(ti.offset) + " is not aligned to " +
             std::to_string(alignment_));
    index_[ti.name] = infos_.size();
    infos_.push_back(std::move(ti));
  }

  uint64_t end = c.pos();
  uint64_t data_off = (end + alignment_ - 1) / alignment_ * alignment_;
  if (data_off > size_) {
    if (!infos_.empty()) c.fail("file ends before the tensor data section (truncated)");
    data_off = size_;
  }
  data_offset_ = data_off;
  uint64_t data_size = size_ - data_off;
  for (const auto& ti : infos_) {
    if (ti.offset > data_size || ti.n_bytes > data_size - ti.offset)
      throw Error("invalid GGUF file '" + label_ + "': the file ends inside the data of tensor '" + ti.name + "' (" +
                  std::to_string(ti.n_bytes) + " bytes at data offset " + std::to_string(ti.offset) + ", only " +
                  std::to_string(data_size) + " data bytes); the file is truncated, download it again");
  }
  // No two tensors may share bytes: a hostile file could alias one weight onto another.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& ti : infos_) by_offset.push_back(&ti);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->n_bytes)
      throw Error("invalid GGUF file '" + label_ + "': tensors '" + by_offset[i - 1]->name + "' and '" +
                  by_offset[i]->name + "' overlap in the data section; the file is damaged, convert it again");
}

const TensorInfo* File::find_info(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &infos_[it->second];
}

TensorView File::view(const TensorInfo& ti) const {
  TensorView v;
  v.name = ti.name;
  v.type = ti.type;
  v.n_dims = static_cast<int>(ti.n_dims);
  v.ne = ti.ne;
  v.data = data_ + data_offset_ + ti.offset;
  return v;
}

std::optional<TensorView> File::tensor(const std::string& name) const {
  const TensorInfo* ti = find_info(name);
  if (!ti) return std::nullopt;
  return view(*ti);
}

}  // namespace owl::gguf
