// Constrained decoding for one generation: before each sampled token the grammar's token
// mask sends every token it does not allow to -inf; each generated token then advances the
// grammar. With `start_after` (a reasoning model's "</think>") the constraint waits until the
// output has produced that text, so reasoning stays free and the answer is constrained.
// With `open_ids` (the tokens of "<think>" when the model may or may not open a reasoning block)
// the first token may also be one of them, and then the constraint waits for `start_after`.
// Once the grammar is complete only end-of-generation tokens are allowed.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/maskbench.h"
#include "grammar/matcher.h"

namespace owl {

class GrammarConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const grammar::Grammar> g, std::shared_ptr<const grammar::Vocabulary> vocab,
                    std::string start_after = "", std::vector<int32_t> open_ids = {});

  bool active() const { return active_; }
  // Sets the logits of the tokens the grammar does not allow next to -inf (logits has n_vocab rows' worth).
  void apply(std::vector<float>& logits);
  // The token generated (sampled or forced) and the text it added to the output.
  void accept(int32_t id, std::string_view text);
  bool complete() const { return matcher_.accepting(); }

 private:
  std::shared_ptr<const grammar::Vocabulary> vocab_;
  grammar::Matcher matcher_;
  std::string start_after_;
  std::string seen_;  // output text while waiting for start_after
  bool active_;
  std::vector<int32_t> open_ids_;  // allowed as the first token, which then defers the constraint
  bool first_ = true;
  std::vector<uint64_t> mask_;
};

}  // namespace owl
