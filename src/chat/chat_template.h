// A model's chat template: where it comes from (a .jinja file, a Hugging Face
// folder's tokenizer_config.json / chat_template.jinja, or GGUF metadata) and
// how it is rendered — with exactly the variables transformers'
// apply_chat_template passes, so the prompt is byte-identical to Python's.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chat/jinja.h"

namespace owl {
class Tokenizer;
}

namespace owl::chat {

// One conversation to render. JSON key order is kept (tool schemas print in order).
struct ChatInputs {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null = no tools (the template sees None, not undefined)
  bool add_generation_prompt = true;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more variables: enable_thinking, date_string ...
  std::optional<std::string> bos_token, eos_token;                  // nullopt = not passed to the template

  // From an object with the fields of ../shared/chat-templates/*/cases.jsonl (messages, tools,
  // add_generation_prompt, extra, bos_token, eos_token). A bos/eos key that is absent takes the
  // given default; one that is null stays unset. Throws owl::Error on a malformed object.
  static ChatInputs from_json(const nlohmann::ordered_json& j, const std::optional<std::string>& default_bos = {},
                              const std::optional<std::string>& default_eos = {});
};

class ChatTemplate {
 public:
  // Parses the template; throws jinja::TemplateError on a syntax error.
  explicit ChatTemplate(std::string source, std::optional<std::string> bos_token = {},
                        std::optional<std::string> eos_token = {}, jinja::Options options = {});

  // MODEL is a .jinja file, a folder with tokenizer_config.json (or chat_template.jinja), or a GGUF
  // file with tokenizer.chat_template. The model's bos/eos token texts become the defaults.
  static ChatTemplate load(const std::string& model);

  // The prompt text. Throws jinja::TemplateError (with the template's own message for raise_exception).
  std::string render(const ChatInputs& in) const;

  const std::string& source() const { return source_; }
  const std::optional<std::string>& bos_token() const { return bos_; }
  const std::optional<std::string>& eos_token() const { return eos_; }
  // The template reads `enable_thinking` (Qwen3, GLM-4.5+), so thinking can be switched off by variable.
  bool reads_enable_thinking() const;

 private:
  std::string source_;
  std::optional<std::string> bos_, eos_;
  jinja::Template tmpl_;
};

// How a template wants an assistant turn that called tools: OpenAI's clients send the call's
// arguments as a JSON string and the turn's content as null (or none), but templates differ:
// DeepSeek-V3/R1 concatenate the arguments as a string and render the calls only when `content
// is none`; GLM-4.5/4.6 iterate the arguments as a mapping (a string is an error) and print a
// null content as "None"; Llama 3.1 writes them with `tojson` (a string would be encoded twice);
// Qwen3 tests `'</think>' in content` (null is an error). Found once per template by rendering a
// probe conversation each way and keeping the first way that shows the call whole.
struct ToolTurnStyle {
  bool known = false;            // no way rendered the probe: messages go as they are
  bool object_arguments = true;  // arguments as a JSON object (else as its JSON text)
  bool null_content = false;     // a turn without text has content null (else "")
};
ToolTurnStyle tool_turn_style(const ChatTemplate& t);
// Rewrites the assistant turns with tool_calls in `messages` to the style.
void apply_tool_turn_style(const ToolTurnStyle& style, nlohmann::ordered_json& messages);

// A message's content as text: a string as it is, an array of content parts as their texts joined.
std::string message_text(const nlohmann::ordered_json& content);

// The prompt for a model without a chat template (`owl chat`, `owl serve`): each message as
// "<role>: <content>\n" (developer as system), then "assistant:".
std::string plain_chat_prompt(const nlohmann::ordered_json& messages);

// The tokens of a rendered chat prompt, with the model's BOS; a template that writes the BOS
// text itself would otherwise give it twice, so a doubled BOS is dropped.
std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const std::string& prompt);

}  // namespace owl::chat
