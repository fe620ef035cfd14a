#include "chat/reasoning.h"

namespace owl::chat {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

size_t leading_ws(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && is_ws(s[n])) ++n;
  return n;
}

std::string_view rstrip(std::string_view s) {
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace

ReasoningTags reasoning_tags_for_template(std::string_view template_source) {
  if (template_source.find("◁think▷") != std::string_view::npos) return {"◁think▷", "◁/think▷"};
  return {};
}

ReasoningStart reasoning_start(std::string_view prompt, const ReasoningTags& tags) {
  std::string_view tail = rstrip(prompt);
  if (ends_with(tail, tags.open)) return ReasoningStart::InReasoning;
  if (ends_with(tail, tags.close)) return ReasoningStart::Off;
  return ReasoningStart::Detect;
}

ReasoningParser::ReasoningParser(ReasoningStart start, ReasoningTags tags)
    : tags_(std::move(tags)),
      state_(start == ReasoningStart::Detect        ? State::Start
             : start == ReasoningStart::InReasoning ? State::Reasoning
                                                    : State::Content) {
  content_begun_ = start != ReasoningStart::InReasoning;  // Off: content is passed through as is
}

ReasoningDelta ReasoningParser::feed(std::string_view piece) {
  pending_.append(piece);
  ReasoningDelta out;
  step(out, false);
  return out;
}

ReasoningDelta ReasoningParser::finish() {
  ReasoningDelta out;
  step(out, true);
  return out;
}

void ReasoningParser::step(ReasoningDelta& out, bool final) {
  while (true) {
    std::string_view p = pending_;
    if (state_ == State::Start) {
      const size_t ws = leading_ws(p);
      std::string_view rest = p.substr(ws);
      if (rest.size() >= tags_.open.size() && rest.substr(0, tags_.open.size()) == tags_.open) {
        pending_.erase(0, ws + tags_.open.size());
        state_ = State::Reasoning;
        content_begun_ = false;
        continue;
      }
      bool may_open = rest.empty() || std::string_view(tags_.open).substr(0, rest.size()) == rest;
      if (may_open && !final) return;  // wait: it may still become the open tag
      state_ = State::Content;         // no reasoning block: everything is content, unchanged
      content_begun_ = true;
      continue;
    }
    if (state_ == State::Reasoning) {
      if (!reasoning_begun_) {  // drop whitespace after the open tag
        pending_.erase(0, leading_ws(p));
        p = pending_;
      }
      size_t close = p.find(tags_.close);
      if (close != std::string_view::npos) {
        out.reasoning.append(rstrip(p.substr(0, close)));
        pending_.erase(0, close + tags_.close.size());
        state_ = State::Content;
        continue;
      }
      // Hold a possible partial close tag and the whitespace before it.
      size_t keep = final ? 0 : partial_tag_suffix(p, tags_.close);
      std::string_view body = p.substr(0, p.size() - keep);
      std::string_view release = rstrip(body);  // trailing whitespace waits: it may precede the close tag
      if (!release.empty()) reasoning_begun_ = true;
      out.reasoning.append(release);
      pending_.erase(0, final ? pending_.size() : release.size());
      return;
    }
    // Content.
    if (!content_begun_) {  // drop whitespace after the close tag
      pending_.erase(0, leading_ws(p));
      if (pending_.empty()) return;
      content_begun_ = true;
    }
    out.content.append(pending_);
    pending_.clear();
    return;
  }
}

}  // namespace owl::chat
