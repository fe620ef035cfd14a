// Separating a reasoning model's thinking from its answer while it streams.
//
// DeepSeek-R1, Qwen3, GLM-4.5/4.6 and Kimi K2 Thinking all wrap reasoning in
// <think>…</think> (their chat templates use these tags). Where the block starts
// depends on the prompt: R1's template ends the prompt with "<think>\n", so the
// output starts inside reasoning; Qwen3/GLM with thinking off end it with an
// empty "<think>…</think>" block, so the output is all answer; otherwise the
// model opens the block itself. reasoning_start() reads that from the prompt.
//
// The parser is fed decoded text pieces as they arrive and returns what can be
// released now; text that might be the start of a tag (or whitespace that may
// turn out to border a tag) is held back until the next piece decides it.
// Reasoning and answer come out with the whitespace around the tags trimmed,
// as the templates trim it when the turn is put back into history.
#pragma once
#include <string>
#include <string_view>

namespace owl::chat {

struct ReasoningTags {
  std::string open = "<think>";
  std::string close = "</think>";
};

enum class ReasoningStart {
  Detect,       // the model may open a reasoning block at the start of its output
  InReasoning,  // the prompt opened the block: output is reasoning until the close tag
  Off,          // the prompt closed an (empty) block: output is all content
};

// The tags a chat template uses: "◁think▷"/"◁/think▷" when the template writes those
// (Kimi's reasoning markers in some releases), else "<think>"/"</think>".
ReasoningTags reasoning_tags_for_template(std::string_view template_source);

// Decides from the rendered prompt's tail (ignoring trailing whitespace).
ReasoningStart reasoning_start(std::string_view prompt, const ReasoningTags& tags = {});

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
};

class ReasoningParser {
 public:
  explicit ReasoningParser(ReasoningStart start, ReasoningTags tags = {});

  // Feeds the next decoded piece; returns the text that is now certain.
  ReasoningDelta feed(std::string_view piece);
  // End of output: releases anything held back. A block never closed is all reasoning.
  ReasoningDelta finish();

  bool in_reasoning() const { return state_ == State::Reasoning; }
  // Still at the start, holding text that may become the open tag.
  bool undecided() const { return state_ == State::Start; }

 private:
  enum class State { Start, Reasoning, Content };
  ReasoningTags tags_;
  State state_;
  std::string pending_;           // held back, not yet released
  bool reasoning_begun_ = false;  // a non-whitespace reasoning character has been released
  bool content_begun_ = false;    // same for content after a reasoning block

  void step(ReasoningDelta& out, bool final);
};

}  // namespace owl::chat
