// owl chat-template MODEL --input CASE.json: prints exactly the prompt the model's chat
// template renders for the conversation in CASE.json (fields as in
// ../shared/chat-templates/*/cases.jsonl), with no added newline. A template error
// (including the template's own raise_exception) exits 1 with its message.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "chat/chat_template.h"
#include "cli/command.h"
#include "hub/resolve.h"

namespace {

struct Options {
  std::string model;
  std::string input;
};

std::string read_input(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(path, std::ios::binary);
  if (!f) throw owl::Error("cannot read --input " + path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void run(const Options& o) {
  nlohmann::ordered_json input;
  try {
    input = nlohmann::ordered_json::parse(read_input(o.input));
  } catch (const nlohmann::json::exception& e) {
    throw owl::Error("--input " + o.input + " is not valid JSON: " + e.what());
  }
  auto tmpl = owl::chat::ChatTemplate::load(owl::hub::resolve_model(o.model, true));
  auto inputs = owl::chat::ChatInputs::from_json(input, tmpl.bos_token(), tmpl.eos_token());
  std::string prompt = tmpl.render(inputs);
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub =
      app.add_subcommand("chat-template", "Print the prompt a model's chat template renders for a conversation");
  sub->add_option("model", o->model, "a .jinja file, a model folder (tokenizer_config.json), a GGUF file or a hub id")
      ->required();
  sub->add_option(
         "--input", o->input,
         "conversation JSON: messages, tools, add_generation_prompt, extra, bos_token, eos_token ('-' = stdin)")
      ->required();
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
