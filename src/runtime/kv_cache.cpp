#include "runtime/kv_cache.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/error.h"
#include "tensor/quants.h"

namespace owl {

namespace {
size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
}  // namespace

DType kv_type_from_name(const std::string& name) {
  if (name == "f16") return DType::F16;
  if (name == "f32") return DType::F32;
  if (name == "q8_0") return DType::Q8_0;
  if (name == "q4_0") return DType::Q4_0;
  throw UsageError("KV cache type '" + name + "' is not supported; use f16, q8_0, q4_0 or f32");
}

KVCache::KVCache(std::vector<KVLayerShape> layers, const KVCacheOptions& opts)
    : layers_(std::move(layers)), opts_(opts) {
  if (!kernels::is_kv_type(opts_.type))
    throw Error(std::string("KV cache type ") + dtype_name(opts_.type) +
                " is not supported; use F16, Q8_0, Q4_0 or F32");
  if (opts_.n_ctx <= 0 || opts_.n_seq_max <= 0 || opts_.page_tokens <= 0)
    throw Error("KV cache: context length, sequence count and page size must be positive");
  const bool blocks = opts_.type == DType::Q8_0 || opts_.type == DType::Q4_0;
  for (const auto& l : layers_) {
    if (blocks && (l.k_width % kQK != 0 || l.v_width % kQK != 0))
      throw UsageError(std::string("KV cache type ") + dtype_name(opts_.type) +
                       " needs rows of multiples of 32 values; " + "this model caches " + std::to_string(l.k_width) +
                       "/" + std::to_string(l.v_width) + " per token and layer; use --kv-type f16");
    k_offset_.push_back(page_bytes_);
    page_bytes_ += round_up(kernels::kv_bytes(opts_.type, opts_.page_tokens * l.k_width), 64);
    v_offset_.push_back(page_bytes_);
    page_bytes_ += round_up(kernels::kv_bytes(opts_.type, opts_.page_tokens * l.v_width), 64);
  }
  const int64_t pages_per_seq = (opts_.n_ctx + opts_.page_tokens - 1) / opts_.page_tokens;
  max_pages_ = pages_per_seq * opts_.n_seq_max;
  // Reserved, not committed: the kernel backs only the pages written to, so a large pool
  // costs address space, not memory. Huge pages cut the TLB misses of attention's reads.
  arena_bytes_ = static_cast<size_t>(max_pages_) * page_bytes_;
  if (arena_bytes_ == 0) return;  // no layer caches anything (a pipeline stage without layers)
  void* p = ::mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw Error("KV cache: cannot reserve " + std::to_string(arena_bytes_ >> 20) + " MiB (" + std::strerror(errno) +
                "); lower the context size or the number of parallel sequences");
#ifdef MADV_HUGEPAGE
  ::madvise(p, arena_bytes_, MADV_HUGEPAGE);  // a hint: failure changes nothing
#endif
  arena_ = static_cast<uint8_t*>(p);
}

KVCache::~KVCache() {
  if (arena_) ::munmap(arena_, arena_bytes_);
}

std::vector<std::pair<int32_t, int64_t>> KVCache::sequence_lengths() const {
  std::vector<std::pair<int32_t, int64_t>> out;
  out.reserve(seqs_.size());
  for (const auto& [id, s] : seqs_) out.emplace_back(id, s.length);
  return out;
}

const KVCache::Sequence& KVCache::sequence(int32_t seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw Error("KV cache: sequence " + std::to_string(seq) + " holds no tokens");
  return it->second;
}

int64_t KVCache::seq_length(int32_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

int64_t KVCache::take_page() {
  if (!free_pages_.empty()) {
    int64_t p = free_pages_.back();
    free_pages_.pop_back();
    return p;
  }
  if (pages_total_ >= max_pages_)
    throw Error("KV cache is full (" + std::to_string(opts_.n_seq_max) + " sequences of " +
                std::to_string(opts_.n_ctx) + " tokens); finish or remove a sequence, or raise the context size");
  return pages_total_++;
}

void KVCache::grow(int32_t seq, int64_t n) {
  if (n > opts_.n_ctx)
    throw Error("sequence of " + std::to_string(n) + " tokens does not fit the context of " +
                std::to_string(opts_.n_ctx) + " tokens; shorten the prompt or raise the context size (--ctx)");
  Sequence& s = seqs_[seq];
  if (s.k_pages.empty()) {
    s.k_pages.resize(layers_.size());
    s.v_pages.resize(layers_.size());
  }
  while (static_cast<int64_t>(s.pages.size()) * opts_.page_tokens < n) {
    const int64_t p = take_page();
    s.pages.push_back(p);
    uint8_t* base = page_base(p);
    for (size_t l = 0; l < layers_.size(); ++l) {
      s.k_pages[l].push_back(base + k_offset_[l]);
      s.v_pages[l].push_back(base + v_offset_[l]);
    }
  }
  if (n > s.length) s.length = n;
}

void KVCache::truncate(int32_t seq, int64_t n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  Sequence& s = it->second;
  if (n >= s.length) return;
  s.length = n;
  const size_t keep = static_cast<size_t>((n + opts_.page_tokens - 1) / opts_.page_tokens);
  while (s.pages.size() > keep) {
    free_pages_.push_back(s.pages.back());
    s.pages.pop_back();
    for (size_t l = 0; l < layers_.size(); ++l) {
      s.k_pages[l].pop_back();
      s.v_pages[l].pop_back();
    }
  }
}

void KVCache::copy_prefix(int32_t src, int32_t dst, int64_t n) {
  if (src == dst) throw Error("KV cache: cannot copy sequence " + std::to_string(src) + " onto itself");
  if (n > sequence(src).length)
    throw Error("KV cache: sequence " + std::to_string(src) + " holds fewer than " + std::to_string(n) + " tokens");
  truncate(dst, 0);
  grow(dst, n);
  // A page holds its tokens' rows for every layer, so whole pages copy everything; rows past n
  // in the last page are copied too and never read.
  const Sequence& from = sequence(src);
  const Sequence& to = sequence(dst);
  const auto n_pages = static_cast<size_t>((n + opts_.page_tokens - 1) / opts_.page_tokens);
  for (size_t i = 0; i < n_pages; ++i) std::memcpy(page_base(to.pages[i]), page_base(from.pages[i]), page_bytes_);
}

void KVCache::remove(int32_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int64_t p : it->second.pages) free_pages_.push_back(p);
  seqs_.erase(it);
}

void KVCache::store(int layer, int32_t seq, int64_t pos, const float* k, const float* v) {
  const Sequence& s = sequence(seq);
  if (pos < 0 || pos >= s.length) throw Error("KV cache: position " + std::to_string(pos) + " was not reserved");
  const KVLayerShape& shape = layers_[static_cast<size_t>(layer)];
  uint8_t* base = page_base(s.pages[static_cast<size_t>(pos / opts_.page_tokens)]);
  const int64_t row = pos % opts_.page_tokens;
  auto put = [&](size_t offset, int64_t width, const float* src) {
    uint8_t* dst = base + offset + kernels::kv_bytes(opts_.type, row * width);
    if (opts_.type == DType::F32) {
      std::memcpy(dst, src, static_cast<size_t>(width) * 4);
    } else if (opts_.type == DType::F16) {
      kernels::fp32_to_fp16_row(src, reinterpret_cast<uint16_t*>(dst), width);
    } else {
      kernels::quantize_kv_row(opts_.type, src, dst, width);  // Q8_0 / Q4_0: blocks of 32 with an F16 scale
    }
  };
  put(k_offset_[static_cast<size_t>(layer)], shape.k_width, k);
  if (shape.v_width > 0) put(v_offset_[static_cast<size_t>(layer)], shape.v_width, v);
}

kernels::KVSpan KVCache::keys(int layer, int32_t seq) const {
  const Sequence& s = sequence(seq);
  return {opts_.type, opts_.page_tokens, s.k_pages[static_cast<size_t>(layer)].data(),
          layers_[static_cast<size_t>(layer)].k_width};
}

kernels::KVSpan KVCache::values(int layer, int32_t seq) const {
  const KVLayerShape& shape = layers_[static_cast<size_t>(layer)];
  if (shape.v_width == 0) return keys(layer, seq);  // MLA: values are read from the key rows
  const Sequence& s = sequence(seq);
  return {opts_.type, opts_.page_tokens, s.v_pages[static_cast<size_t>(layer)].data(), shape.v_width};
}

}  // namespace owl
