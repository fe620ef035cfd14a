#include "runtime/grammar_constraint.h"

#include <algorithm>
#include <cmath>

namespace owl {

GrammarConstraint::GrammarConstraint(std::shared_ptr<const grammar::Grammar> g,
                                     std::shared_ptr<const grammar::Vocabulary> vocab, std::string start_after,
                                     std::vector<int32_t> open_ids, std::string trigger)
    : vocab_(std::move(vocab)),
      matcher_(std::make_shared<grammar::MaskCache>(std::move(g), vocab_->trie)),
      start_after_(std::move(start_after)),
      trigger_(std::move(trigger)),
      open_ids_(std::move(open_ids)) {
  if (!open_ids_.empty())
    phase_ = Phase::First;
  else if (!start_after_.empty())
    phase_ = Phase::Reasoning;
  else
    phase_ = after_reasoning();
}

void GrammarConstraint::apply(std::vector<float>& logits) {
  if (!active()) return;
  matcher_.fill_mask(mask_);
  if (phase_ == Phase::First)
    for (int32_t id : open_ids_) mask_[static_cast<uint32_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  for (size_t id = 0; id < logits.size(); ++id) {
    bool allowed = id / 64 < mask_.size() && ((mask_[id / 64] >> (id % 64)) & 1);
    if (!allowed) logits[id] = -INFINITY;
  }
}

void GrammarConstraint::find_trigger() {
  size_t at = seen_.find(trigger_);
  if (at == std::string::npos) {
    // Keep only what may be the start of a trigger split over tokens.
    if (seen_.size() > trigger_.size()) seen_.erase(0, seen_.size() - trigger_.size());
    return;
  }
  phase_ = matcher_.advance(seen_.substr(at)) ? Phase::Active : Phase::Off;
  seen_.clear();
}

void GrammarConstraint::accept(int32_t id, std::string_view text) {
  if (phase_ == Phase::First) {
    if (std::find(open_ids_.begin(), open_ids_.end(), id) != open_ids_.end()) {
      phase_ = Phase::Reasoning;  // the model opened a reasoning block: free until start_after
      return;
    }
    phase_ = after_reasoning();  // answered at once
  }
  switch (phase_) {
    case Phase::Reasoning: {
      seen_ += text;
      size_t at = seen_.find(start_after_);
      if (at != std::string::npos) {
        seen_.erase(0, at + start_after_.size());
        phase_ = after_reasoning();  // the answer starts with the next token
        if (phase_ == Phase::Trigger)
          find_trigger();
        else
          seen_.clear();
      } else if (seen_.size() > 4 * start_after_.size() + 64) {
        seen_.erase(0, seen_.size() - start_after_.size());
      }
      return;
    }
    case Phase::Trigger:
      seen_ += text;
      find_trigger();
      return;
    case Phase::Active:
      if (id >= 0 && static_cast<size_t>(id) < vocab_->token_bytes.size()) matcher_.advance(vocab_->token_bytes[id]);
      return;
    case Phase::First:
    case Phase::Off:
      return;
  }
}

}  // namespace owl
