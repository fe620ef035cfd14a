// owl tokenize MODEL [TEXT | --file F] [--json] [--special]: the token ids of a
// text. With --json prints {"ids": [...], "pieces": [...]} (pieces are the
// vocabulary strings, e.g. "Ġworld"); otherwise one "id<TAB>piece" line per
// token. BOS/EOS are added only with --special. With neither TEXT nor --file
// the text is read from stdin.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/command.h"
#include "hub/resolve.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model;
  std::string text;
  std::string file;
  bool json = false;
  bool special = false;
};

std::string read_text(const Options& o, bool have_text) {
  if (have_text) return o.text;
  if (o.file.empty() || o.file == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(o.file, std::ios::binary);
  if (!f) throw owl::Error("cannot read --file " + o.file);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void run(const Options& o, bool have_text) {
  if (have_text && !o.file.empty()) throw owl::UsageError("give either TEXT or --file, not both");
  auto tok = owl::Tokenizer::open(owl::hub::resolve_model(o.model, true));
  std::vector<int32_t> ids = tok->encode(read_text(o, have_text), o.special);
  if (o.json) {
    nlohmann::json out = {{"ids", ids}, {"pieces", nlohmann::json::array()}};
    for (int32_t id : ids) out["pieces"].push_back(tok->token_text(id));
    // GGUF vocabularies may hold invalid UTF-8 pieces: print U+FFFD rather than fail.
    std::string s = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%s\n", s.c_str());
    return;
  }
  for (int32_t id : ids) {
    std::string piece =
        nlohmann::json(tok->token_text(id)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%d\t%s\n", id, piece.c_str());
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("tokenize", "Print the token ids of a text");
  sub->add_option("model", o->model, "a GGUF file, a folder with tokenizer.json, a tokenizer.json or a hub id")
      ->required();
  auto* text = sub->add_option("text", o->text, "the text (default: --file or stdin)");
  sub->add_option("--file", o->file, "read the text from this file ('-' = stdin)");
  sub->add_flag("--json", o->json, "print {\"ids\": [...], \"pieces\": [...]}");
  sub->add_flag("--special", o->special, "add BOS/EOS as the tokenizer's post-processor does");
  sub->callback([o, text] { run(*o, text->count() > 0); });
}

}  // namespace

OWL_COMMAND(setup);
