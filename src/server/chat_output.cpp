#include "server/chat_output.h"

#include <random>

#include "text/tokenizer.h"

namespace owl::server {

using json = nlohmann::ordered_json;

namespace {

// Length of the longest suffix of s that is a proper prefix of tag (a tag that may be starting).
size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % 62];
  return id;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// One call's body in one of the formats; false when it does not parse.
bool parse_call_body(std::string_view body, ToolCall& call) {
  std::string b = trim(body);
  // JSON object: {"name": ..., "arguments": {...} | "..."}
  if (!b.empty() && b.front() == '{') {
    json j = json::parse(b, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
    call.name = j["name"].get<std::string>();
    const json* args = j.contains("arguments") ? &j["arguments"] : (j.contains("parameters") ? &j["parameters"] : nullptr);
    if (!args) call.arguments = "{}";
    else if (args->is_string()) call.arguments = args->get<std::string>();
    else call.arguments = args->dump();
    return true;
  }
  // GLM-4.5: NAME then <arg_key>K</arg_key><arg_value>V</arg_value> pairs.
  size_t k = b.find("<arg_key>");
  call.name = trim(b.substr(0, k));
  if (call.name.empty() || call.name.find_first_of("<>{}\n") != std::string::npos) return false;
  json args = json::object();
  while (k != std::string::npos) {
    size_t ke = b.find("</arg_key>", k);
    size_t vs = b.find("<arg_value>", ke == std::string::npos ? k : ke);
    size_t ve = b.find("</arg_value>", vs == std::string::npos ? k : vs);
    if (ke == std::string::npos || vs == std::string::npos || ve == std::string::npos) return false;
    std::string key = trim(b.substr(k + 9, ke - k - 9));
    std::string val = b.substr(vs + 11, ve - vs - 11);
    json parsed = json::parse(val, nullptr, false);  // numbers/objects stay typed, text stays a string
    args[key] = parsed.is_discarded() || parsed.is_string() ? json(val) : parsed;
    k = b.find("<arg_key>", ve);
  }
  call.arguments = args.dump();
  return true;
}

}  // namespace

ReasoningSplitter::ReasoningSplitter(bool enabled, bool starts_inside, std::string open, std::string close)
    : enabled_(enabled), inside_(enabled && starts_inside), open_(std::move(open)), close_(std::move(close)) {}

ChatDelta ReasoningSplitter::push(std::string_view text) {
  ChatDelta d;
  if (!enabled_) {
    d.content = std::string(text);
    return d;
  }
  pending_ += text;
  for (;;) {
    if (inside_) {
      size_t at = pending_.find(close_);
      if (at != std::string::npos) {
        d.reasoning += pending_.substr(0, at);
        pending_.erase(0, at + close_.size());
        inside_ = false;
        seen_content_ = true;  // no second block
        strip_space_ = true;
        continue;
      }
      size_t hold = partial_tag_suffix(pending_, close_);
      d.reasoning += pending_.substr(0, pending_.size() - hold);
      pending_.erase(0, pending_.size() - hold);
      return d;
    }
    if (strip_space_) {
      // The blank line that follows the closing tag is not content.
      size_t ws = 0;
      while (ws < pending_.size() && std::isspace(static_cast<unsigned char>(pending_[ws]))) ++ws;
      pending_.erase(0, ws);
      if (pending_.empty()) return d;
      strip_space_ = false;
    }
    if (!seen_content_) {
      // Leading whitespace, then maybe the opening tag.
      size_t ws = 0;
      while (ws < pending_.size() && std::isspace(static_cast<unsigned char>(pending_[ws]))) ++ws;
      std::string_view rest = std::string_view(pending_).substr(ws);
      if (rest.substr(0, open_.size()) == open_) {
        pending_.erase(0, ws + open_.size());
        inside_ = true;
        continue;
      }
      if (rest.size() < open_.size() && open_.substr(0, rest.size()) == rest) return d;  // undecided
      if (rest.empty()) return d;
      seen_content_ = true;
    }
    d.content += pending_;
    pending_.clear();
    return d;
  }
}

ChatDelta ReasoningSplitter::flush() {
  ChatDelta d;
  if (inside_) d.reasoning = std::move(pending_);
  else d.content = std::move(pending_);
  pending_.clear();
  return d;
}

ParsedContent parse_tool_calls(std::string_view content) {
  ParsedContent out;
  struct Format {
    std::string_view open, close;
  };
  // DeepSeek wraps its calls in <｜tool▁calls▁begin｜> ... <｜tool▁calls▁end｜>.
  static const Format kFormats[] = {{"<tool_call>", "</tool_call>"},
                                    {"<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>"}};
  std::string text(content);
  for (const auto& f : kFormats) {
    std::string rest;
    size_t pos = 0;
    bool any = false;
    while (true) {
      size_t a = text.find(f.open, pos);
      if (a == std::string::npos) break;
      size_t b = text.find(f.close, a + f.open.size());
      if (b == std::string::npos) break;
      std::string body = text.substr(a + f.open.size(), b - a - f.open.size());
      ToolCall call;
      bool ok;
      if (f.open == "<tool_call>") {
        ok = parse_call_body(body, call);
      } else {
        // function<｜tool▁sep｜>NAME\n```json\n{...}\n```
        size_t sep = body.find("<｜tool▁sep｜>");
        ok = sep != std::string::npos;
        if (ok) {
          std::string after = body.substr(sep + std::string_view("<｜tool▁sep｜>").size());
          size_t nl = after.find('\n');
          call.name = trim(after.substr(0, nl));
          std::string args = nl == std::string::npos ? "{}" : trim(after.substr(nl + 1));
          if (args.rfind("```json", 0) == 0) args = args.substr(7);
          if (args.size() >= 3 && args.compare(args.size() - 3, 3, "```") == 0) args.resize(args.size() - 3);
          json j = json::parse(args, nullptr, false);
          ok = !call.name.empty() && !j.is_discarded();
          if (ok) call.arguments = j.dump();
        }
      }
      if (!ok) {
        rest += text.substr(pos, b + f.close.size() - pos);
      } else {
        rest += text.substr(pos, a - pos);
        call.id = call_id();
        out.calls.push_back(std::move(call));
        any = true;
      }
      pos = b + f.close.size();
    }
    rest += text.substr(pos);
    if (any) {
      text = rest;
      for (std::string_view marker : {"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"}) {
        size_t m;
        while ((m = text.find(marker)) != std::string::npos) text.erase(m, marker.size());
      }
    }
  }
  out.content = out.calls.empty() ? std::string(content) : trim(text);
  return out;
}

bool prompt_opens_reasoning(std::string_view prompt, std::string_view open, std::string_view close) {
  size_t o = prompt.rfind(open);
  if (o == std::string_view::npos) return false;
  size_t c = prompt.rfind(close);
  return c == std::string_view::npos || c < o;
}

ThinkingBudgetHook::ThinkingBudgetHook(const Tokenizer& tok, int64_t budget, bool starts_inside)
    : close_ids_(tok.encode("\n</think>\n\n", false)), budget_(budget), inside_(starts_inside) {}

std::vector<int32_t> ThinkingBudgetHook::at_start() {
  if (inside_ && budget_ <= 0) {
    done_ = true;
    return close_ids_;
  }
  return {};
}

std::vector<int32_t> ThinkingBudgetHook::on_token(int32_t, std::string_view text) {
  if (done_) return {};
  recent_ += text;
  if (recent_.size() > 64) recent_.erase(0, recent_.size() - 64);
  if (!inside_) {
    if (recent_.find("<think>") != std::string::npos) {
      inside_ = true;
      recent_.clear();
    }
    return {};
  }
  if (recent_.find("</think>") != std::string::npos) {
    done_ = true;  // the model closed it itself
    return {};
  }
  if (++used_ >= budget_) {
    done_ = true;
    return close_ids_;
  }
  return {};
}

}  // namespace owl::server
