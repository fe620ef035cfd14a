// A paged KV cache for many sequences at once. Memory comes in pages of
// `page_tokens` tokens; one page holds those tokens' rows for every layer.
// A sequence owns a list of pages and grows a page at a time, so it never
// moves or copies what it already cached; removing it returns its pages to a
// free list for the next sequence. The pool's address space is reserved at
// construction (one anonymous mapping, transparent huge pages where the
// kernel offers them); a page's memory becomes resident only when first written.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/kv_store.h"
#include "tensor/dtype.h"

namespace owl {

struct KVCacheOptions {
  DType type = DType::F16;  // F16, Q8_0, Q4_0 (blocks of 32 values) or F32
  int64_t n_ctx = 4096;     // most tokens one sequence may hold
  int64_t n_seq_max = 1;    // the pool holds n_seq_max full-context sequences
  int64_t page_tokens = 32;
};

class KVCache : public KVStore {
 public:
  KVCache(std::vector<KVLayerShape> layers, const KVCacheOptions& opts);
  ~KVCache() override;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  int64_t n_ctx() const { return opts_.n_ctx; }
  const KVCacheOptions& options() const { return opts_; }
  // (sequence, tokens cached) of every sequence held, in no particular order.
  std::vector<std::pair<int32_t, int64_t>> sequence_lengths() const;
  DType type() const override { return opts_.type; }
  // Drops a sequence and frees its pages (no-op for an unknown one).
  void remove(int32_t seq);
  // Keeps only the first n tokens of seq (freeing pages past them).
  void truncate(int32_t seq, int64_t n);
  // Makes dst hold a copy of the first n tokens of src (whatever dst held is dropped): the
  // choices of an n > 1 request start from one prefilled prompt. A copy, not a shared page:
  // each choice owns its pages, so none of the cache's bookkeeping has to count references.
  void copy_prefix(int32_t src, int32_t dst, int64_t n);
  int64_t pages_in_use() const { return pages_total_ - static_cast<int64_t>(free_pages_.size()); }
  size_t bytes_allocated() const { return static_cast<size_t>(pages_total_) * page_bytes_; }

  int64_t seq_length(int32_t seq) const override;
  void grow(int32_t seq, int64_t n) override;
  void store(int layer, int32_t seq, int64_t pos, const float* k, const float* v) override;
  kernels::KVSpan keys(int layer, int32_t seq) const override;
  kernels::KVSpan values(int layer, int32_t seq) const override;

 private:
  struct Sequence {
    int64_t length = 0;
    std::vector<int64_t> pages;  // page numbers, in token order
    // Per layer, the page base pointers of K and of V (KVSpan::pages points into these).
    std::vector<std::vector<const void*>> k_pages, v_pages;
  };
  const Sequence& sequence(int32_t seq) const;
  int64_t take_page();
  uint8_t* page_base(int64_t page) const { return arena_ + static_cast<size_t>(page) * page_bytes_; }

  std::vector<KVLayerShape> layers_;
  KVCacheOptions opts_;
  std::vector<size_t> k_offset_, v_offset_;  // byte offsets of each layer's K and V inside a page
  size_t page_bytes_ = 0;
  int64_t max_pages_ = 0;
  int64_t pages_total_ = 0;
  uint8_t* arena_ = nullptr;  // max_pages_ * page_bytes_, reserved up front
  size_t arena_bytes_ = 0;
  std::vector<int64_t> free_pages_;
  std::unordered_map<int32_t, Sequence> seqs_;
};

// "f16" / "q8_0" / "q4_0" / "f32" -> DType; throws owl::UsageError otherwise.
DType kv_type_from_name(const std::string& name);

}  // namespace owl
