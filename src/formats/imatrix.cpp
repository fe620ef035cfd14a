#include "formats/imatrix.h"

#include <cstring>
#include <memory>

#include "base/error.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

namespace owl {

namespace {

const std::string kSums = ".in_sum2", kCounts = ".counts";

bool strip_suffix(std::string& s, const std::string& suf) {
  if (s.size() <= suf.size() || s.compare(s.size() - suf.size(), suf.size(), suf) != 0) return false;
  s.resize(s.size() - suf.size());
  return true;
}

// Sequential reads from the legacy file with bounds checks.
struct LegacyReader {
  const uint8_t* p;
  size_t size, pos = 0;
  const std::string& label;
  bool at_end() const { return pos == size; }
  void need(size_t n, const std::string& what) const {
    if (n > size - pos)
      throw Error("imatrix '" + label + "' is truncated at byte " + std::to_string(pos) + " (reading " + what +
                  "); not a llama.cpp imatrix file?");
  }
  int32_t i32(const std::string& what) {
    need(4, what);
    int32_t v;
    std::memcpy(&v, p + pos, 4);
    pos += 4;
    return v;
  }
  std::string str(int32_t len, const std::string& what) {
    if (len < 0 || len > (1 << 20))
      throw Error("imatrix '" + label + "': " + what + " has a bad length " + std::to_string(len));
    need(static_cast<size_t>(len), what);
    std::string s(reinterpret_cast<const char*>(p + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    return s;
  }
};

Imatrix read_legacy(const MappedFile& f) {
  const std::string& label = f.path();
  LegacyReader r{f.data(), f.size(), 0, label};
  Imatrix m;
  const int32_t n = r.i32("the entry count");
  if (n < 1) throw Error("imatrix '" + label + "' holds no entries (count " + std::to_string(n) + ")");
  for (int32_t i = 0; i < n; ++i) {
    const std::string what = "entry " + std::to_string(i + 1);
    std::string name = r.str(r.i32(what + " name length"), what + " name");
    const int32_t ncall = r.i32(what + " call count");
    const int32_t nval = r.i32(what + " value count");
    if (nval < 1) throw Error("imatrix '" + label + "': entry '" + name + "' has " + std::to_string(nval) + " values");
    r.need(static_cast<size_t>(nval) * 4, "the values of '" + name + "'");
    ImatrixEntry e;
    e.sums.resize(static_cast<size_t>(nval));
    std::memcpy(e.sums.data(), r.p + r.pos, static_cast<size_t>(nval) * 4);
    r.pos += static_cast<size_t>(nval) * 4;
    e.counts = {static_cast<double>(ncall)};
    if (!m.entries.emplace(std::move(name), std::move(e)).second)
      throw Error("imatrix '" + label + "' names a tensor twice (" + what + ")");
  }
  if (!r.at_end()) {  // optional: chunk count and the dataset's name
    m.chunk_count = r.i32("the chunk count");
    if (!r.at_end()) {
      const int32_t len = r.i32("the dataset name length");
      if (len > 0) m.datasets.push_back(r.str(len, "the dataset name"));
    }
  }
  return m;
}

Imatrix read_gguf(const std::string& path) {
  auto f = gguf::File::open(path);
  const gguf::Metadata& meta = f->metadata();
  Imatrix m;
  if (auto t = meta.get_string("general.type"); t && *t != "imatrix")
    throw Error("'" + path + "' is a GGUF of general.type '" + *t + "', not an imatrix");
  if (const gguf::Value* d = meta.find("imatrix.datasets"); d && d->type == gguf::ValueType::ARRAY)
    for (const auto& v : d->as_array().items)
      if (v.type == gguf::ValueType::STRING) m.datasets.push_back(v.as_string());
  m.chunk_count = meta.get_int("imatrix.chunk_count").value_or(0);
  m.chunk_size = meta.get_int("imatrix.chunk_size").value_or(0);

  std::map<std::string, std::pair<const gguf::TensorInfo*, const gguf::TensorInfo*>> parts;
  for (const auto& ti : f->tensor_infos()) {
    std::string name = ti.name;
    if (strip_suffix(name, kSums))
      parts[name].first = &ti;
    else if (strip_suffix(name, kCounts))
      parts[name].second = &ti;
  }
  if (parts.empty()) throw Error("imatrix '" + path + "' holds no '*.in_sum2' / '*.counts' tensors");
  for (const auto& [name, sc] : parts) {
    const auto [sums, counts] = sc;
    if (!sums || !counts)
      throw Error("imatrix '" + path + "': '" + name + "' has " + (sums ? "sums but no counts" : "counts but no sums"));
    if (sums->type != DType::F32 || counts->type != DType::F32)
      throw Error("imatrix '" + path + "': the sums and counts of '" + name + "' must be F32");
    const int64_t n_mat = sums->ne[1] * sums->ne[2] * sums->ne[3];
    if (counts->ne[0] * counts->ne[1] * counts->ne[2] * counts->ne[3] != n_mat)
      throw Error("imatrix '" + path + "': '" + name + "' has " + std::to_string(n_mat) + " matrices of sums but " +
                  std::to_string(counts->ne[0] * counts->ne[1]) + " counts");
    ImatrixEntry e;
    e.n_cols = sums->ne[0];
    const auto* s = static_cast<const float*>(f->view(*sums).data);
    const auto* c = static_cast<const float*>(f->view(*counts).data);
    e.sums.assign(s, s + e.n_cols * n_mat);
    e.counts.assign(c, c + n_mat);
    m.entries.emplace(name, std::move(e));
  }
  return m;
}

}  // namespace

std::vector<float> Imatrix::weights(const std::string& name, int64_t mat, int64_t row_len) const {
  auto it = entries.find(name);
  if (it == entries.end()) return {};
  const ImatrixEntry& e = it->second;
  const auto n_vals = static_cast<int64_t>(e.sums.size());
  if (row_len <= 0 || (e.n_cols && e.n_cols != row_len) || n_vals % row_len != 0 || mat < 0 || mat >= n_vals / row_len)
    throw Error("imatrix entry '" + name + "' (" + std::to_string(n_vals) + " values) has no matrix " +
                std::to_string(mat) + " of " + std::to_string(row_len) + " columns; was it made for another model?");
  // Legacy files count once for the whole stack; GGUF files per matrix.
  const double count = e.counts.size() == 1 ? e.counts[0] : e.counts[static_cast<size_t>(mat)];
  std::vector<float> w(static_cast<size_t>(row_len), 1.0f);
  if (count <= 0) return w;  // nothing routed to this expert: no information, equal weights
  const float* s = e.sums.data() + mat * row_len;
  for (int64_t j = 0; j < row_len; ++j) w[static_cast<size_t>(j)] = static_cast<float>(s[j] / count);
  return w;
}

Imatrix read_imatrix(const std::string& path) {
  MappedFile f(path);
  if (f.size() >= 4 && std::memcmp(f.data(), "GGUF", 4) == 0) return read_gguf(path);
  return read_legacy(f);
}

void write_imatrix(const Imatrix& m, const std::string& path) {
  gguf::Writer w;
  w.metadata().set("general.type", gguf::Value::str("imatrix"));
  std::vector<gguf::Value> names;
  for (const auto& d : m.datasets) names.push_back(gguf::Value::str(d));
  w.metadata().set("imatrix.datasets", gguf::Value::array(gguf::ValueType::STRING, std::move(names)));
  w.metadata().set("imatrix.chunk_count", gguf::Value::u32(static_cast<uint32_t>(m.chunk_count)));
  w.metadata().set("imatrix.chunk_size", gguf::Value::u32(static_cast<uint32_t>(m.chunk_size)));
  std::vector<std::vector<float>> counts;  // the writer keeps pointers until write()
  counts.reserve(m.entries.size());
  for (const auto& [name, e] : m.entries) {
    const auto n_mat = static_cast<int64_t>(e.counts.size());
    const int64_t n_cols = static_cast<int64_t>(e.sums.size()) / n_mat;
    if (n_cols * n_mat != static_cast<int64_t>(e.sums.size()) || (e.n_cols && e.n_cols != n_cols))
      throw Error("imatrix entry '" + name + "': " + std::to_string(e.sums.size()) + " sums do not split into " +
                  std::to_string(n_mat) + " matrices");
    counts.emplace_back(e.counts.begin(), e.counts.end());
    w.add_tensor(name + kSums, DType::F32, {n_cols, n_mat}, e.sums.data());
    w.add_tensor(name + kCounts, DType::F32, {1, n_mat}, counts.back().data());
  }
  w.write(path);
}

void check_imatrix(const Imatrix& m, const std::vector<TensorView>& tensors, const std::string& label) {
  std::map<std::string, const TensorView*> by_name;
  for (const auto& t : tensors) by_name[t.name] = &t;
  for (const auto& [name, e] : m.entries) {
    auto it = by_name.find(name);
    if (it == by_name.end())
      throw Error("imatrix '" + label + "' has an entry for '" + name +
                  "', which is not a tensor of this model; was it made for another model?");
    const TensorView& t = *it->second;
    const int64_t n_mat = t.n_dims >= 3 ? t.ne[2] : 1;
    const auto n_vals = static_cast<int64_t>(e.sums.size());
    if (n_vals != t.ne[0] * n_mat || (e.n_cols && e.n_cols != t.ne[0]) ||
        (e.counts.size() != 1 && static_cast<int64_t>(e.counts.size()) != n_mat))
      throw Error("imatrix '" + label + "' has " + std::to_string(n_vals) + " values for '" + name +
                  "', but the model's " + std::to_string(n_mat) + " x " + std::to_string(t.ne[0]) + " columns need " +
                  std::to_string(t.ne[0] * n_mat) + "; was it made for another model?");
  }
}

}  // namespace owl
