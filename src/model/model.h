// A loaded model: one forward call for every use (prefill, decode,
// continuous batching). Families (llama.cpp, ...) implement Model; the family
// registry (family.h) builds it.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/kv_store.h"
#include "model/source.h"

namespace owl {

// A flat batch of tokens from any number of sequences. Within one sequence the
// rows must continue it in order: positions seq_length, seq_length+1, ...
struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int64_t> positions;
  std::vector<int32_t> seq_ids;
  std::vector<uint8_t> want_logits;  // 1: return this row's logits

  void add(int32_t token, int64_t pos, int32_t seq, bool logits) {
    tokens.push_back(token);
    positions.push_back(pos);
    seq_ids.push_back(seq);
    want_logits.push_back(logits ? 1 : 0);
  }
  void clear() {
    tokens.clear();
    positions.clear();
    seq_ids.clear();
    want_logits.clear();
  }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_logits() const {
    int64_t n = 0;
    for (auto w : want_logits) n += w;
    return n;
  }
};

class Model {
 public:
  virtual ~Model() = default;

  // Builds the model of the family registered for source.config().arch. The source must outlive the model
  // (weights stay in the mapped file).
  static std::unique_ptr<Model> load(const ModelSource& source);

  const ModelConfig& config() const { return config_; }
  int64_t n_vocab() const { return config_.n_vocab; }

  // Per layer, the rows a KV cache must hold for this model.
  virtual std::vector<KVLayerShape> kv_shape() const = 0;

  // Evaluates the batch, storing its keys/values in `kv`. Returns the logits of the rows with
  // want_logits, in batch order: [n_logits][n_vocab], valid until the next forward call.
  virtual std::span<const float> forward(const Batch& batch, KVStore& kv) = 0;

  // ---- the NextN / multi-token-prediction head (DeepSeek-V3/R1, GLM-4.5 files that keep it) ----
  // The head drafts the token after next: row k takes token t_k and the hidden h_{k-1} of the
  // previous position, and like trunk row k predicts t_{k+1} (golden README, "MTP").
  bool has_mtp() const { return config_.n_nextn_layers > 0; }
  // The rows the head's own KV cache needs (one layer); empty without a head.
  virtual std::vector<KVLayerShape> mtp_kv_shape() const { return {}; }
  // The trunk's hidden rows after output_norm (what the output head reads) of every row of the
  // last forward's batch: [n_rows][n_embd], valid until the next forward call.
  virtual std::span<const float> last_hidden() const { return {}; }
  // Runs the head over the batch: row r takes batch.tokens[r] at batch.positions[r] and hidden row r
  // ([batch.size()][n_embd]: the trunk's hidden of the previous position, or the head's own to
  // chain it), storing its K/V in `kv` (a cache of mtp_kv_shape()). Returns the logits of the
  // want_logits rows; mtp_hidden() then holds their hidden after shared_head_norm. Throws
  // owl::Error when the model has no NextN layer.
  virtual std::span<const float> mtp_forward(const Batch& batch, const float* hidden, KVStore& kv);
  virtual std::span<const float> mtp_hidden() const { return {}; }

 protected:
  explicit Model(ModelConfig c) : config_(std::move(c)) {}
  ModelConfig config_;
};

// Checks a batch against the model and cache: ids in the vocabulary, equal column lengths,
// positions continuing each sequence. Grows each sequence in `kv` to its new length.
void prepare_batch(const Batch& batch, int64_t n_vocab, KVStore& kv);

}  // namespace owl
