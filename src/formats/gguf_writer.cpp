#include "formats/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "base/atomic_write.h"
#include "base/error.h"

namespace owl::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t unsigned_of(const Value& v) {
  if (auto* u = std::get_if<uint64_t>(&v.v)) return *u;
  return static_cast<uint64_t>(v.as_int());
}

void put_value(std::string& out, const Value& v, const std::string& key) {
  switch (v.type) {
    case ValueType::UINT8:
      put<uint8_t>(out, static_cast<uint8_t>(unsigned_of(v)));
      return;
    case ValueType::INT8:
      put<int8_t>(out, static_cast<int8_t>(v.as_int()));
      return;
    case ValueType::UINT16:
      put<uint16_t>(out, static_cast<uint16_t>(unsigned_of(v)));
      return;
    case ValueType::INT16:
      put<int16_t>(out, static_cast<int16_t>(v.as_int()));
      return;
    case ValueType::UINT32:
      put<uint32_t>(out, static_cast<uint32_t>(unsigned_of(v)));
      return;
    case ValueType::INT32:
      put<int32_t>(out, static_cast<int32_t>(v.as_int()));
      return;
    case ValueType::UINT64:
      put<uint64_t>(out, unsigned_of(v));
      return;
    case ValueType::INT64:
      put<int64_t>(out, v.as_int());
      return;
    case ValueType::FLOAT32:
      put<float>(out, static_cast<float>(v.as_float()));
      return;
    case ValueType::FLOAT64:
      put<double>(out, v.as_float());
      return;
    case ValueType::BOOL:
      put<uint8_t>(out, v.as_bool() ? 1 : 0);
      return;
    case ValueType::STRING:
      put_string(out, v.as_string());
      return;
    case ValueType::ARRAY: {
      const Array& a = v.as_array();
      put<uint32_t>(out, static_cast<uint32_t>(a.elem_type));
      put<uint64_t>(out, a.items.size());
      for (const Value& item : a.items) {
        if (item.type != a.elem_type)
          throw Error("GGUF writer: metadata key '" + key + "' is an array of " + value_type_name(a.elem_type) +
                      " holding a " + value_type_name(item.type));
        put_value(out, item, key);
      }
      return;
    }
  }
  throw Error("GGUF writer: metadata key '" + key + "' has unknown value type " +
              std::to_string(static_cast<uint32_t>(v.type)));
}

uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Output to a std::string or a FILE*; the same emit() code serves both.
struct StringSink {
  std::string& out;
  void write(const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
  void zeros(size_t n) { out.append(n, '\0'); }
};

struct FileSink {
  std::FILE* f;
  const std::string& path;
  void write(const void* p, size_t n) { write_bytes(f, p, n, path); }
  void zeros(size_t n) {
    static const char z[4096] = {};
    while (n) {
      size_t k = std::min(n, sizeof z);
      write(z, k);
      n -= k;
    }
  }
};

}  // namespace

Writer::Writer(uint32_t version) : version_(version) {
  if (version != 2 && version != 3) throw Error("GGUF writer: version must be 2 or 3");
}

uint64_t Writer::alignment() const {
  if (const Value* a = meta_.find("general.alignment")) {
    uint64_t al = unsigned_of(*a);
    if (a->type != ValueType::UINT32 || al == 0 || (al & (al - 1)) != 0)
      throw Error("GGUF writer: general.alignment must be a u32 power of two");
    return al;
  }
  return 32;
}

void Writer::add(Pending p) {
  if (p.name.empty()) throw Error("GGUF writer: tensor with an empty name");
  if (p.ne.empty() || p.ne.size() > 4) throw Error("GGUF writer: tensor '" + p.name + "' must have 1 to 4 dimensions");
  for (const auto& t : tensors_)
    if (t.name == p.name) throw Error("GGUF writer: duplicate tensor name '" + p.name + "'");
  int64_t n = 1;
  for (int64_t d : p.ne) {
    if (d <= 0) throw Error("GGUF writer: tensor '" + p.name + "' has a non-positive dimension");
    n *= d;
  }
  p.n_bytes = row_bytes(p.type, p.ne[0]) * static_cast<uint64_t>(n / p.ne[0]);
  tensors_.push_back(std::move(p));
}

void Writer::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne, const void* data) {
  Pending p{name, type, ne, 0, 0, data, {}};
  add(std::move(p));
  Pending& t = tensors_.back();
  t.offset = pad_to(data_size_, alignment());
  data_size_ = t.offset + t.n_bytes;
}

void Writer::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne, Fill fill) {
  Pending p{name, type, ne, 0, 0, nullptr, std::move(fill)};
  add(std::move(p));
  Pending& t = tensors_.back();
  t.offset = pad_to(data_size_, alignment());
  data_size_ = t.offset + t.n_bytes;
}

void Writer::add_tensor_at(const std::string& name, DType type, const std::vector<int64_t>& ne, const void* data,
                           uint64_t offset) {
  if (offset % alignment() != 0)
    throw Error("GGUF writer: tensor '" + name + "' offset " + std::to_string(offset) + " is not aligned");
  Pending p{name, type, ne, 0, offset, data, {}};
  add(std::move(p));
  const Pending& t = tensors_.back();
  for (size_t i = 0; i + 1 < tensors_.size(); ++i) {
    const Pending& o = tensors_[i];
    if (t.offset < o.offset + o.n_bytes && o.offset < t.offset + t.n_bytes) {
      std::string other = o.name;
      tensors_.pop_back();
      throw Error("GGUF writer: tensor '" + name + "' overlaps tensor '" + other + "'");
    }
  }
  data_size_ = std::max(data_size_, t.offset + t.n_bytes);
}

std::string Writer::header_bytes() const {
  std::string h;
  put<uint32_t>(h, kMagic);
  put<uint32_t>(h, version_);
  put<uint64_t>(h, tensors_.size());
  put<uint64_t>(h, meta_.items.size());
  for (const auto& [k, v] : meta_.items) {
    put_string(h, k);
    put<uint32_t>(h, static_cast<uint32_t>(v.type));
    put_value(h, v, k);
  }
  for (const auto& t : tensors_) {
    put_string(h, t.name);
    put<uint32_t>(h, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(h, static_cast<uint64_t>(d));
    put<uint32_t>(h, static_cast<uint32_t>(t.type));
    put<uint64_t>(h, t.offset);
  }
  h.append(pad_to(h.size(), alignment()) - h.size(), '\0');
  return h;
}

uint64_t Writer::file_size() const { return header_bytes().size() + pad_to(data_size_, alignment()); }

template <typename Sink>
void Writer::emit(Sink& sink) const {
  std::string h = header_bytes();
  sink.write(h.data(), h.size());
  // Data in offset order, gaps and the tail zero-filled up to the alignment.
  std::vector<const Pending*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  uint64_t pos = 0;
  std::vector<uint8_t> buf;
  for (const Pending* t : order) {
    sink.zeros(t->offset - pos);
    if (t->data) {
      sink.write(t->data, t->n_bytes);
    } else {
      buf.resize(t->n_bytes);
      t->fill(buf.data(), buf.size());
      sink.write(buf.data(), buf.size());
    }
    pos = t->offset + t->n_bytes;
  }
  sink.zeros(pad_to(pos, alignment()) - pos);
}

std::string Writer::to_bytes() const {
  std::string out;
  StringSink s{out};
  emit(s);
  return out;
}

void Writer::write(const std::string& path) const {
  write_file_atomically(path, [&](std::FILE* f) {
    FileSink s{f, path};
    emit(s);
  });
}

namespace {
Writer writer_for(const File& f) {
  Writer w(f.version());
  w.metadata() = f.metadata();
  for (const auto& ti : f.tensor_infos()) {
    std::vector<int64_t> ne(ti.ne.begin(), ti.ne.begin() + ti.n_dims);
    w.add_tensor_at(ti.name, ti.type, ne, f.view(ti).data, ti.offset);
  }
  return w;
}
}  // namespace

std::string serialize(const File& f) { return writer_for(f).to_bytes(); }
void write_file(const File& f, const std::string& path) { writer_for(f).write(path); }

}  // namespace owl::gguf
