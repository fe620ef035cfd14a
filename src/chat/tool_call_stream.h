// Tool calls streamed while they are generated, in OpenAI's delta shape: the first delta of a
// call carries its index, id and name (with arguments ""), the next ones fragments of its
// arguments, which add up to the final arguments string.
//
// JSON-argument formats (Hermes, DeepSeek V3/R1/V3.1, Kimi K2) stream the arguments' JSON text
// as it comes, whitespace outside strings dropped (the final arguments are the same compact
// text, minify_json). The key/value formats (Qwen3-Coder XML, GLM-4.5) stream one
// `"key":value` member per finished parameter. Llama 3.1 and Mistral calls go out whole once
// the answer is complete.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "chat/tool_calls.h"

namespace owl::chat {

struct ToolCallDelta {
  size_t index = 0;
  bool first = false;  // the call's first delta: id and name set, arguments ""
  std::string id, name;
  std::string arguments;  // a fragment (when !first)
};

// The calls visible in a partial answer: each with its name once that is complete, and the
// part of its final arguments string known so far.
struct PartialCall {
  std::string id;  // the model's own (Kimi), else empty
  std::string name;
  std::string arguments;  // a prefix of the final arguments
};
std::vector<PartialCall> partial_tool_calls(ToolCallFormat format, std::string_view text,
                                            const nlohmann::ordered_json& tools);

class ToolCallStreamer {
 public:
  // `id_seed` as parse_tool_calls takes it, so that streamed and final ids agree.
  ToolCallStreamer(ToolCallFormat format, nlohmann::ordered_json tools, uint64_t id_seed)
      : format_(format), tools_(std::move(tools)), id_seed_(id_seed) {}
  // `content` is the whole answer content so far.
  std::vector<ToolCallDelta> update(std::string_view content);
  // The deltas that complete the answer's final calls (calls not streamed yet go out whole).
  std::vector<ToolCallDelta> finish(const ParsedOutput& parsed);
  bool started() const { return !sent_.empty(); }

 private:
  struct Sent {
    std::string id;
    std::string arguments;
  };
  void emit(size_t index, const std::string& id, const std::string& name, const std::string& arguments,
            std::vector<ToolCallDelta>& out);
  ToolCallFormat format_;
  nlohmann::ordered_json tools_;
  uint64_t id_seed_;
  std::vector<Sent> sent_;
};

}  // namespace owl::chat
