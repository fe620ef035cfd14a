#include "cli/text_model.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "cli/load_options.h"
#include "dist/distributed.h"
#include "hub/resolve.h"

namespace owl::cli {

namespace {
std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("--chat-template: cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TextModel load_text_model(const std::string& spec, const std::string& template_file, const std::string& command,
                          const std::string& quant, const std::string& mem, const std::string& split) {
  TextModel m;
  // A hub id (ORG/NAME[:QUANT]) resolves to the cached file or folder, pulling it when missing.
  m.path = hub::resolve_model(spec, /*pull_if_missing=*/true);
  m.source = open_source(m.path, quant, mem);
  const std::string what = "model '" + spec + "' cannot " + command + " text";
  try {
    if (m.source->gguf_file())
      m.tokenizer = Tokenizer::from_gguf(*m.source->gguf_file());
    else
      m.tokenizer = Tokenizer::open(m.source->hf_folder().empty() ? m.path : m.source->hf_folder());
  } catch (const Error& e) {
    throw Error(what + ": its tokenizer does not load (" + e.what() + "); use a model that carries its vocabulary");
  }
  if (!m.tokenizer || m.tokenizer->n_vocab() <= 0)
    throw Error(what + ": it has no tokenizer; use a model that carries its vocabulary");
  m.model = dist::load_model(*m.source, dist::parse_split(split));
  if (!m.model) return m;

  const Tokenizer& tok = *m.tokenizer;
  auto token_text = [&](int32_t id) -> std::optional<std::string> {
    if (id < 0) return std::nullopt;
    return tok.token_text(id);
  };
  if (!template_file.empty()) {
    m.chat_template.emplace(read_text(template_file), token_text(tok.bos_id()), token_text(tok.eos_id()));
  } else {
    try {
      m.chat_template.emplace(chat::ChatTemplate::load(m.path));
    } catch (const Error&) {
      std::fprintf(stderr,
                   "owl %s: the model has no chat template; chat uses the plain 'role: content' format "
                   "(pass --chat-template FILE.jinja to set one)\n",
                   command.c_str());
    }
  }
  return m;
}

}  // namespace owl::cli
