#include "chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "base/error.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"

namespace owl::chat {
namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw owl::Error("cannot read " + p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// tokenizer_config.json writes special tokens as "text" or {"content": "text", ...}.
std::optional<std::string> token_text(const nlohmann::ordered_json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return std::nullopt;
}

ChatTemplate load_folder(const std::filesystem::path& dir) {
  std::optional<std::string> source, bos, eos;
  auto cfg_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    nlohmann::ordered_json cfg;
    try {
      cfg = nlohmann::ordered_json::parse(read_text(cfg_path));
    } catch (const nlohmann::json::exception& e) {
      throw owl::Error(cfg_path.string() + " is not valid JSON: " + e.what());
    }
    bos = token_text(cfg, "bos_token");
    eos = token_text(cfg, "eos_token");
    auto it = cfg.find("chat_template");
    if (it != cfg.end() && it->is_string()) {
      source = it->get<std::string>();
    } else if (it != cfg.end() && it->is_array()) {  // named templates: use "default"
      for (const auto& t : *it)
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
          source = t["template"].get<std::string>();
    }
  }
  // Newer transformers save the template beside the config; it takes precedence.
  if (std::filesystem::exists(dir / "chat_template.jinja")) source = read_text(dir / "chat_template.jinja");
  if (!source)
    throw owl::Error(dir.string() +
                     " has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)");
  return ChatTemplate(*source, bos, eos);
}

ChatTemplate load_gguf(const std::string& path) {
  auto f = gguf::File::open(path);
  const auto& md = f->metadata();
  auto source = md.get_string("tokenizer.chat_template");
  if (!source) throw owl::Error(path + " has no tokenizer.chat_template metadata; pass a .jinja file instead");
  auto token = [&](const char* id_key) -> std::optional<std::string> {
    auto id = md.get_int(id_key);
    const gguf::Value* toks = md.find("tokenizer.ggml.tokens");
    if (!id || !toks || toks->type != gguf::ValueType::ARRAY) return std::nullopt;
    const auto& items = toks->as_array().items;
    if (*id < 0 || static_cast<size_t>(*id) >= items.size() ||
        items[static_cast<size_t>(*id)].type != gguf::ValueType::STRING)
      return std::nullopt;
    return items[static_cast<size_t>(*id)].as_string();
  };
  return ChatTemplate(*source, token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"));
}

}  // namespace

ChatInputs ChatInputs::from_json(const nlohmann::ordered_json& j, const std::optional<std::string>& default_bos,
                                 const std::optional<std::string>& default_eos) {
  if (!j.is_object()) throw owl::Error("chat input must be a JSON object with a \"messages\" array");
  ChatInputs in;
  auto it = j.find("messages");
  if (it == j.end() || !it->is_array()) throw owl::Error("chat input needs a \"messages\" array");
  in.messages = *it;
  if (auto t = j.find("tools"); t != j.end()) {
    if (!t->is_null() && !t->is_array()) throw owl::Error("chat input \"tools\" must be an array or null");
    in.tools = *t;
  }
  if (auto g = j.find("add_generation_prompt"); g != j.end()) {
    if (!g->is_boolean()) throw owl::Error("chat input \"add_generation_prompt\" must be true or false");
    in.add_generation_prompt = g->get<bool>();
  }
  if (auto e = j.find("extra"); e != j.end() && !e->is_null()) {
    if (!e->is_object()) throw owl::Error("chat input \"extra\" must be an object of template variables");
    in.extra = *e;
  }
  auto token = [&](const char* key, const std::optional<std::string>& dflt) -> std::optional<std::string> {
    auto k = j.find(key);
    if (k == j.end()) return dflt;
    if (k->is_null()) return std::nullopt;
    if (!k->is_string()) throw owl::Error(std::string("chat input \"") + key + "\" must be a string or null");
    return k->get<std::string>();
  };
  in.bos_token = token("bos_token", default_bos);
  in.eos_token = token("eos_token", default_eos);
  return in;
}

ChatTemplate::ChatTemplate(std::string source, std::optional<std::string> bos_token,
                           std::optional<std::string> eos_token, jinja::Options options)
    : source_(std::move(source)), bos_(std::move(bos_token)), eos_(std::move(eos_token)), tmpl_(source_, options) {}

ChatTemplate ChatTemplate::load(const std::string& model) {
  namespace fs = std::filesystem;
  if (!fs::exists(model))
    throw owl::Error("model not found: " + model + " (expected a .jinja file, a model folder or a GGUF file)");
  if (fs::is_directory(model)) return load_folder(model);
  std::ifstream f(model, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  if (f.gcount() == 4 && std::string(magic, 4) == "GGUF") return load_gguf(model);
  return ChatTemplate(read_text(model));
}

std::string ChatTemplate::render(const ChatInputs& in) const {
  // The variables transformers' apply_chat_template passes, in its order.
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = in.messages;
  ctx["tools"] = in.tools;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = in.add_generation_prompt;
  if (in.bos_token) ctx["bos_token"] = *in.bos_token;
  if (in.eos_token) ctx["eos_token"] = *in.eos_token;
  for (const auto& [k, v] : in.extra.items()) ctx[k] = v;
  return tmpl_.render(ctx);
}

bool ChatTemplate::reads_enable_thinking() const { return source_.find("enable_thinking") != std::string::npos; }

void apply_tool_turn_style(const ToolTurnStyle& style, nlohmann::ordered_json& messages) {
  if (!style.known) return;
  for (auto& m : messages) {
    if (!m.is_object() || m.value("role", "") != "assistant" || !m.contains("tool_calls") ||
        !m["tool_calls"].is_array() || m["tool_calls"].empty())
      continue;
    if (!m.contains("content") || m["content"].is_null() || m["content"] == "")
      m["content"] = style.null_content ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json("");
    for (auto& call : m["tool_calls"]) {
      if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) continue;
      auto& args = call["function"]["arguments"];
      if (style.object_arguments && args.is_string()) {
        auto parsed = nlohmann::ordered_json::parse(args.get<std::string>(), nullptr, false);
        if (parsed.is_object()) args = std::move(parsed);
      } else if (!style.object_arguments && args.is_object()) {
        args = args.dump();
      }
    }
  }
}

ToolTurnStyle tool_turn_style(const ChatTemplate& t) {
  using json = nlohmann::ordered_json;
  json parameters = {{"type", "object"}, {"properties", {{"owl_probe_key", {{"type", "string"}}}}}};
  json tool = {{"type", "function"}};
  tool["function"] = {{"name", "owl_probe_fn"}, {"description", "probe"}, {"parameters", parameters}};
  const json call = {{"id", "owlprobe1"},
                     {"type", "function"},
                     {"function", {{"name", "owl_probe_fn"}, {"arguments", R"({"owl_probe_key":"owl_probe_value"})"}}}};
  for (const bool null_content : {false, true})
    for (const bool object_arguments : {true, false}) {
      ToolTurnStyle style{true, object_arguments, null_content};
      ChatInputs in;
      in.messages = json::array({{{"role", "user"}, {"content", "owl_probe_question"}},
                                 {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({call})}},
                                 {{"role", "tool"}, {"tool_call_id", "owlprobe1"}, {"content", "owl_probe_result"}}});
      in.tools = json::array({tool});
      in.bos_token = t.bos_token().value_or("");
      in.eos_token = t.eos_token().value_or("");
      apply_tool_turn_style(style, in.messages);
      std::string out;
      try {
        out = t.render(in);
      } catch (const jinja::TemplateError&) {
        continue;
      }
      // The call whole: its name and value, after the question, neither encoded twice nor "None".
      const size_t q = out.find("owl_probe_question");
      if (q == std::string::npos) continue;
      const std::string_view after = std::string_view(out).substr(q);
      if (after.find("owl_probe_fn") != std::string_view::npos &&
          after.find("owl_probe_value") != std::string_view::npos &&
          after.find("\\\"owl_probe_key") == std::string_view::npos && after.find("None") == std::string_view::npos)
        return style;
    }
  return {};
}

std::string message_text(const nlohmann::ordered_json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string s;
  if (content.is_array())
    for (const auto& part : content) s += part.value("text", "");
  return s;
}

std::string plain_chat_prompt(const nlohmann::ordered_json& messages) {
  std::string text;
  for (const auto& m : messages) {
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    text += role + ": " + message_text(m.value("content", nlohmann::ordered_json(""))) + "\n";
  }
  return text + "assistant:";
}

std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const std::string& prompt) {
  std::vector<int32_t> ids = tok.encode(prompt, /*add_special=*/true);
  if (ids.size() >= 2 && tok.bos_id() >= 0 && ids[0] == tok.bos_id() && ids[1] == tok.bos_id()) ids.erase(ids.begin());
  return ids;
}

}  // namespace owl::chat
