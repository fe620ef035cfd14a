#include "model/model.h"

#include <utility>

#include "base/error.h"
#include "model/family.h"

namespace owl {

std::unique_ptr<Model> Model::load(const ModelSource& source) { return family_of(source.config().arch).load(source); }

std::span<const float> Model::mtp_forward(const Batch&, const float*, KVStore&) {
  throw Error("this " + config_.arch + " model has no NextN (multi-token prediction) layer");
}

void prepare_batch(const Batch& batch, int64_t n_vocab, KVStore& kv) {
  const size_t n = batch.tokens.size();
  if (batch.positions.size() != n || batch.seq_ids.size() != n || batch.want_logits.size() != n)
    throw Error("batch: tokens, positions, sequence ids and logit flags differ in length");
  // (sequence, next expected position); batches hold few sequences, so a flat list is enough.
  std::vector<std::pair<int32_t, int64_t>> next;
  for (size_t i = 0; i < n; ++i) {
    const int32_t tok = batch.tokens[i], seq = batch.seq_ids[i];
    if (tok < 0 || tok >= n_vocab)
      throw Error("token id " + std::to_string(tok) + " is outside the vocabulary (0.." + std::to_string(n_vocab - 1) +
                  ")");
    if (seq < 0) throw Error("batch: negative sequence id " + std::to_string(seq));
    size_t j = 0;
    while (j < next.size() && next[j].first != seq) ++j;
    if (j == next.size()) next.emplace_back(seq, kv.seq_length(seq));
    if (batch.positions[i] != next[j].second)
      throw Error("batch: sequence " + std::to_string(seq) + " continues at position " +
                  std::to_string(next[j].second) + ", got position " + std::to_string(batch.positions[i]));
    ++next[j].second;
  }
  for (const auto& [seq, len] : next) kv.grow(seq, len);
}

}  // namespace owl
