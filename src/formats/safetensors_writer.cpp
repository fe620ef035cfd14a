#include "formats/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/atomic_write.h"
#include "base/error.h"

namespace owl::safetensors {

namespace {
uint64_t pad8(uint64_t x) { return (x + 7) / 8 * 8; }
}  // namespace

std::string dtype_to_safetensors(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::F64:
      return "F64";
    case DType::I8:
      return "I8";
    case DType::I16:
      return "I16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::F8_E4M3:
      return "F8_E4M3";
    default:
      break;
  }
  throw Error(std::string("safetensors cannot hold ") + owl::dtype_name(t) + " tensors; dequantize them first");
}

void Writer::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape, Fill fill) {
  if (name.empty() || name == "__metadata__") throw Error("safetensors writer: invalid tensor name '" + name + "'");
  if (tensors_.count(name)) throw Error("safetensors writer: duplicate tensor name '" + name + "'");
  dtype_to_safetensors(type);  // rejects quantised types early
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("safetensors writer: tensor '" + name + "' has a negative dimension");
    n *= static_cast<uint64_t>(d);
  }
  tensors_[name] = Pending{type, shape, n * info(type).type_size, std::move(fill)};
}

void Writer::write(const std::string& path) const {
  // Header first: offsets follow from the sizes alone.
  nlohmann::ordered_json header;
  header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors_) {
    offset = pad8(offset);
    header[name] = {
        {"dtype", dtype_to_safetensors(t.type)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.n_bytes}}};
    offset += t.n_bytes;
  }
  std::string h = header.dump();
  h.append(pad8(h.size()) - h.size(), ' ');

  write_file_atomically(path, [&](std::FILE* f) {
    auto put = [&](const void* p, size_t n) { write_bytes(f, p, n, path); };
    const uint64_t hlen = h.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(hlen >> (8 * i));
    put(len, 8);
    put(h.data(), h.size());
    std::vector<uint8_t> buf;
    uint64_t pos = 0;
    for (const auto& [name, t] : tensors_) {
      const uint64_t start = pad8(pos);
      static const char zeros[8] = {};
      put(zeros, start - pos);
      buf.assign(t.n_bytes, 0);
      t.fill(buf.data(), buf.size());
      put(buf.data(), buf.size());
      pos = start + t.n_bytes;
    }
  });
}

}  // namespace owl::safetensors
