// Constrained decoding for one generation: before each sampled token the grammar's token
// mask sends every token it does not allow to -inf; each generated token then advances the
// grammar. With `start_after` (a reasoning model's "</think>") the constraint waits until the
// output has produced that text, so reasoning stays free and the answer is constrained.
// With `open_ids` (the tokens of "<think>" when the model may or may not open a reasoning block)
// the first token may also be one of them, and then the constraint waits for `start_after`.
// With `trigger` (a tool call's start marker under tool_choice "auto") the answer stays free
// until it writes that text; the grammar, which starts with the trigger, then takes over from
// the trigger's first byte. Once the grammar is complete only end-of-generation tokens are allowed.
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
                    std::string start_after = "", std::vector<int32_t> open_ids = {}, std::string trigger = "");

  // Whether the next token is masked.
  bool active() const { return phase_ == Phase::Active || (phase_ == Phase::First && trigger_.empty()); }
  // Sets the logits of the tokens the grammar does not allow next to -inf (logits has n_vocab rows' worth).
  void apply(std::vector<float>& logits);
  // The token generated (sampled or forced) and the text it added to the output.
  void accept(int32_t id, std::string_view text);
  bool complete() const { return matcher_.accepting(); }

 private:
  enum class Phase {
    First,      // the first token may open a reasoning block (open_ids)
    Reasoning,  // free until start_after
    Trigger,    // free until the trigger
    Active,     // constrained
    Off,        // the text after the trigger broke the grammar: free, for the parser to judge
  };
  // Reasoning has ended (or there was none): wait for the trigger, or constrain.
  Phase after_reasoning() const { return trigger_.empty() ? Phase::Active : Phase::Trigger; }
  // Looks for the trigger in the text seen so far; from it on the grammar applies.
  void find_trigger();

  std::shared_ptr<const grammar::Vocabulary> vocab_;
  grammar::Matcher matcher_;
  std::string start_after_;
  std::string trigger_;
  std::string seen_;               // output text while waiting for start_after or the trigger
  std::vector<int32_t> open_ids_;  // allowed as the first token, which then defers the constraint
  Phase phase_;
  std::vector<uint64_t> mask_;
};

}  // namespace owl
