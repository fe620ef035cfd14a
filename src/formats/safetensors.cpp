#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"

namespace owl::safetensors {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit (100 MB)
constexpr int kMaxJsonDepth = 16;              // real headers nest 3 deep

struct DTypeName {
  const char* name;
  DType type;
};
constexpr DTypeName kDTypes[] = {
    {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F8_E4M3", DType::F8_E4M3}, {"F64", DType::F64},
    {"I8", DType::I8},   {"I16", DType::I16}, {"I32", DType::I32},   {"I64", DType::I64},
};

struct TooDeep {};

// Parses JSON, rejecting duplicate top-level keys (they would silently shadow a tensor)
// and absurd nesting (a fuzzer's "[[[[..." must not exhaust the stack).
json parse_json(const char* begin, const char* end, std::string& duplicate) {
  std::set<std::string> seen;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    if (ev == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second) duplicate = k;
    }
    return true;
  };
  return json::parse(begin, end, cb);
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  out = a * b;
  return false;
}

}  // namespace

const std::vector<std::string>& supported_dtypes() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> r;
    for (const auto& d : kDTypes) r.push_back(d.name);
    return r;
  }();
  return v;
}

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.type;
  return std::nullopt;
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void File::fail(const std::string& what) const {
  throw Error("invalid safetensors file '" + label_ + "': " + what +
              "; the file is corrupt or truncated, download or convert it again");
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
  if (size_ < 8) fail("file is only " + std::to_string(size_) + " bytes, too short for the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, data_, 8);
  if (n > kMaxHeader) fail("header length " + std::to_string(n) + " exceeds the 100 MB limit of the format");
  if (n > size_ - 8)
    fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size_) +
         " bytes); the file ends inside the header");
  if (n < 2 || data_[8] != '{') fail("the header is not a JSON object");
  data_offset_ = 8 + n;
  const uint64_t data_size = size_ - data_offset_;

  const char* hb = reinterpret_cast<const char*>(data_ + 8);
  json h;
  std::string duplicate;
  try {
    h = parse_json(hb, hb + n, duplicate);
  } catch (const TooDeep&) {
    fail("the header JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  } catch (const json::exception& e) {
    fail(std::string("the header is not valid JSON (") + e.what() + ")");
  }
  if (!h.is_object()) fail("the header is not a JSON object");
  if (!duplicate.empty()) fail("tensor '" + duplicate + "' appears twice in the header");

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail("__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { fail("tensor '" + name + "' " + what); };
    if (!e.is_object()) bad("is not an object with dtype, shape and data_offsets");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) bad("has no dtype string");
    if (sh == e.end() || !sh->is_array()) bad("has no shape array");
    if (off == e.end() || !off->is_array() || off->size() != 2) bad("has no data_offsets [begin, end]");

    TensorInfo t;
    t.name = name;
    t.dtype_name = dt->get<std::string>();
    auto type = dtype_from_safetensors(t.dtype_name);
    if (!type) {
      std::string list;
      for (const auto& s : supported_dtypes()) list += (list.empty() ? "" : ", ") + s;
      bad("has unsupported dtype '" + t.dtype_name + "' (owl reads " + list + ")");
    }
    t.dtype = *type;
    uint64_t numel = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) bad("has a shape entry that is not a non-negative integer");
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || mul_overflows(numel, v, numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        bad("has an element count that overflows");
      t.shape.push_back(static_cast<int64_t>(v));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      bad("has data_offsets that are not non-negative integers");
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end) bad("has data_offsets begin " + std::to_string(t.begin) + " > end " + std::to_string(t.end));
    if (t.end > data_size)
      bad("data [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") extends past the data section (" +
          std::to_string(data_size) + " bytes); the file ends early");
    uint64_t want = 0;
    if (mul_overflows(numel, info(t.dtype).type_size, want)) bad("has a byte size that overflows");
    if (t.end - t.begin != want)
      bad("has " + std::to_string(t.end - t.begin) + " bytes of data but shape x " + t.dtype_name + " needs " +
          std::to_string(want));
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // No two tensors may share bytes (a hostile file could alias weights).
  std::vector<const TensorInfo*> by_begin;
  for (const auto& t : tensors_)
    if (t.end > t.begin) by_begin.push_back(&t);
  std::sort(by_begin.begin(), by_begin.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i)
    if (by_begin[i]->begin < by_begin[i - 1]->end)
      fail("tensors '" + by_begin[i - 1]->name + "' and '" + by_begin[i]->name + "' overlap");
}

const TensorInfo* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TensorView File::view(const TensorInfo& t) const {
  if (t.shape.size() > 4)
    throw Error("safetensors file '" + label_ + "': tensor '" + t.name + "' has " + std::to_string(t.shape.size()) +
                " dimensions; owl handles at most 4");
  TensorView v;
  v.name = t.name;
  v.type = t.dtype;
  v.n_dims = std::max<int>(1, static_cast<int>(t.shape.size()));
  for (size_t i = 0; i < t.shape.size(); ++i) v.ne[i] = t.shape[t.shape.size() - 1 - i];
  v.data = data(t);
  return v;
}

std::unique_ptr<Checkpoint> Checkpoint::open_folder(const std::string& folder) {
  namespace fs = std::filesystem;
  auto c = std::make_unique<Checkpoint>();
  fs::path dir(folder);
  fs::path index_path = dir / "model.safetensors.index.json";
  std::error_code ec;

  auto add_file = [&](const fs::path& p) -> File* {
    c->files_.push_back(File::open(p.string()));
    return c->files_.back().get();
  };
  auto add_entry = [&](const File* f, const TensorInfo& t) {
    if (c->index_.count(t.name))
      throw Error("checkpoint '" + folder + "': tensor '" + t.name + "' is stored in both '" +
                  c->index_[t.name].file->path() + "' and '" + f->path() + "'");
    c->index_[t.name] = Entry{f, &t};
  };

  if (fs::exists(index_path, ec)) {
    const std::string ip = index_path.string();
    MappedFile m(ip);
    json idx;
    try {
      const char* b = reinterpret_cast<const char*>(m.data());
      idx = json::parse(b, b + m.size());
    } catch (const json::exception& e) {
      throw Error("'" + ip + "' is not valid JSON (" + e.what() + "); download it again");
    }
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw Error("'" + ip + "' has no weight_map object; download it again");
    std::map<std::string, File*> shards;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw Error("'" + ip + "': weight_map entry '" + it.key() + "' is not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
          shard == "." || shard == "..")
        throw Error("'" + ip + "': shard name '" + shard + "' must be a plain file name in the folder");
      if (!shards.count(shard)) {
        if (!fs::exists(dir / shard, ec))
          throw Error("checkpoint '" + folder + "' lacks shard '" + shard +
                      "' listed in model.safetensors.index.json; "
                      "the download is incomplete");
        shards[shard] = add_file(dir / shard);
      }
      const File* f = shards[shard];
      const TensorInfo* t = f->find(it.key());
      if (!t)
        throw Error("checkpoint '" + folder + "': tensor '" + it.key() + "' is listed in the index under '" + shard +
                    "' but that shard does not hold it");
      add_entry(f, *t);
    }
    return c;
  }

  std::vector<fs::path> files;
  if (fs::exists(dir / "model.safetensors", ec)) {
    files.push_back(dir / "model.safetensors");
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
  }
  if (files.empty())
    throw Error("folder '" + folder + "' holds no *.safetensors weights (nor model.safetensors.index.json)");
  for (const auto& p : files) {
    File* f = add_file(p);
    for (const auto& t : f->tensors()) add_entry(f, t);
  }
  return c;
}

std::optional<Checkpoint::Entry> Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

std::vector<Checkpoint::Entry> Checkpoint::tensors() const {
  std::vector<Entry> v;
  for (const auto& f : files_)
    for (const auto& t : f->tensors())
      if (auto e = find(t.name); e && e->file == f.get()) v.push_back(*e);
  return v;
}

}  // namespace owl::safetensors
