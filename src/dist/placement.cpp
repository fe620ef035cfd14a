#include "dist/placement.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "base/error.h"

namespace owl::dist {

namespace {

// "blk.<n>." -> n, else -1.
int64_t layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return -1;
  try {
    return std::stoll(name.substr(4, dot - 4));
  } catch (const std::exception&) {
    return -1;
  }
}

// FNV-1a, 64 bit.
void mix(uint64_t& h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ULL;
  }
}

constexpr size_t kHeadBytes = 16u << 20;

void mix_file_head(uint64_t& h, const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error("cannot read model file '" + p.string() + "'");
  std::vector<char> buf(1 << 20);
  for (size_t read = 0; read < kHeadBytes && f;) {
    f.read(buf.data(), static_cast<std::streamsize>(std::min(buf.size(), kHeadBytes - read)));
    const auto got = static_cast<size_t>(f.gcount());
    if (got == 0) break;
    mix(h, buf.data(), got);
    read += got;
  }
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> layer_ranges(const ModelSource& src, const std::vector<double>& weights) {
  const ModelConfig& c = src.config();
  const int64_t n_trunk = c.n_layer - c.n_nextn_layers;
  std::vector<double> layer_bytes(static_cast<size_t>(std::max<int64_t>(n_trunk, 0)), 0.0);
  double head = 0;
  for (const TensorView& t : src.tensors()) {
    const int64_t il = layer_of(t.name);
    if (il < 0) {
      head += static_cast<double>(t.n_bytes());
    } else if (il < n_trunk) {
      layer_bytes[static_cast<size_t>(il)] += static_cast<double>(t.n_bytes());
    }
  }
  const double total = head + std::accumulate(layer_bytes.begin(), layer_bytes.end(), 0.0);
  const double weight_sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  const auto n_ranks = static_cast<int64_t>(weights.size());
  std::vector<std::pair<int64_t, int64_t>> ranges;
  double held = head, share_end = 0;
  int64_t begin = 0;
  for (int64_t r = 0; r < n_ranks; ++r) {
    share_end += total * weights[static_cast<size_t>(r)] / weight_sum;
    int64_t end = begin;
    // A layer goes to this rank while at least half of it fits within the rank's share.
    while (end < n_trunk && (r == n_ranks - 1 || held + layer_bytes[static_cast<size_t>(end)] / 2 <= share_end))
      held += layer_bytes[static_cast<size_t>(end++)];
    ranges.emplace_back(begin, end);
    begin = end;
  }
  return ranges;
}

std::vector<std::pair<int64_t, int64_t>> pipeline_pieces(const std::vector<int32_t>& seq_ids, int64_t chunk_rows,
                                                         int64_t micro_batches) {
  const auto n = static_cast<int64_t>(seq_ids.size());
  const int64_t chunk = std::max<int64_t>(chunk_rows, 1), parts = std::max<int64_t>(micro_batches, 1);
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (int64_t b = 0; b < n; b += chunk) {
    const int64_t e = std::min(n, b + chunk), len = e - b;
    int64_t start = b, r = b + 1;
    // Piece k ends at the first change of sequence at or past k + 1 parts of the chunk's rows.
    for (int64_t k = 0; k + 1 < parts; ++k) {
      r = std::max({r, start + 1, b + ((k + 1) * len + parts - 1) / parts});
      while (r < e && seq_ids[static_cast<size_t>(r)] == seq_ids[static_cast<size_t>(r - 1)]) ++r;
      if (r >= e) break;
      pieces.emplace_back(start, r);
      start = r;
    }
    pieces.emplace_back(start, e);
  }
  return pieces;
}

Fingerprint fingerprint(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  Fingerprint fp;
  fp.checksum = 14695981039346656037ULL;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.is_regular_file(ec)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      const std::string name = f.filename().string();
      const uint64_t size = fs::file_size(f, ec);
      fp.size += size;
      mix(fp.checksum, name.data(), name.size());
      mix(fp.checksum, reinterpret_cast<const char*>(&size), sizeof size);
      if (name == "config.json") mix_file_head(fp.checksum, f);
    }
    return fp;
  }
  fp.size = fs::file_size(path, ec);
  if (ec) throw Error("cannot read model file '" + path + "': " + ec.message());
  mix_file_head(fp.checksum, path);
  return fp;
}

}  // namespace owl::dist
