// What a model needs from a KV cache: room for a sequence's next tokens, a
// place to store each token's key/value rows per layer, and spans over a
// sequence's cached rows for kernels::attention. The paged implementation
// lives in runtime/kv_cache.h; the model layer sees only this interface (the
// runtime layer sits below the model layer).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

namespace owl {

// Floats cached per token in one layer. A family picks them: GQA caches
// n_head_kv * head_dim for K and for V; MLA caches one latent row in K and
// sets v_width = 0, which makes values() alias the key pages.
struct KVLayerShape {
  int64_t k_width = 0;
  int64_t v_width = 0;
};

class KVStore {
 public:
  virtual ~KVStore() = default;
  // Tokens cached for `seq` (0 for a sequence never seen).
  virtual int64_t seq_length(int32_t seq) const = 0;
  // The type rows are stored in (F32, F16, Q8_0 or Q4_0).
  virtual DType type() const = 0;
  // Makes `seq` hold n tokens (allocating pages as needed); throws owl::Error
  // when n exceeds the context length or the page pool is exhausted.
  virtual void grow(int32_t seq, int64_t n) = 0;
  // Writes the key (and value, unless the layer has v_width 0) row of token `pos` of `seq`.
  virtual void store(int layer, int32_t seq, int64_t pos, const float* k, const float* v) = 0;
  // The cached rows of `seq` in `layer`; valid until the next grow() of that sequence.
  virtual kernels::KVSpan keys(int layer, int32_t seq) const = 0;
  virtual kernels::KVSpan values(int layer, int32_t seq) const = 0;
};

}  // namespace owl
