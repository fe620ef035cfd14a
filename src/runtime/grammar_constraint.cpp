#include "runtime/grammar_constraint.h"

#include <algorithm>
#include <cmath>

namespace owl {

GrammarConstraint::GrammarConstraint(std::shared_ptr<const grammar::Grammar> g,
                                     std::shared_ptr<const grammar::Vocabulary> vocab, std::string start_after,
                                     std::vector<int32_t> open_ids)
    : vocab_(std::move(vocab)),
      matcher_(std::make_shared<grammar::MaskCache>(std::move(g), vocab_->trie)),
      start_after_(std::move(start_after)),
      active_(start_after_.empty() || !open_ids.empty()),
      open_ids_(std::move(open_ids)) {}

void GrammarConstraint::apply(std::vector<float>& logits) {
  if (!active_) return;
  matcher_.fill_mask(mask_);
  if (first_)
    for (int32_t id : open_ids_) mask_[static_cast<uint32_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  for (size_t id = 0; id < logits.size(); ++id) {
    bool allowed = id / 64 < mask_.size() && ((mask_[id / 64] >> (id % 64)) & 1);
    if (!allowed) logits[id] = -INFINITY;
  }
}

void GrammarConstraint::accept(int32_t id, std::string_view text) {
  if (first_) {
    first_ = false;
    if (std::find(open_ids_.begin(), open_ids_.end(), id) != open_ids_.end()) {
      active_ = false;  // the model opened a reasoning block: free until start_after
      return;
    }
  }
  if (!active_) {
    seen_ += text;
    size_t at = seen_.find(start_after_);
    if (at != std::string::npos) active_ = true;  // the answer starts with the next token
    if (seen_.size() > 4 * start_after_.size() + 64) seen_.erase(0, seen_.size() - start_after_.size());
    return;
  }
  if (id >= 0 && static_cast<size_t>(id) < vocab_->token_bytes.size()) matcher_.advance(vocab_->token_bytes[id]);
}

}  // namespace owl
