// owl chat MODEL: interactive multi-turn chat in the terminal through the model's
// chat template. Reasoning is shown apart from the answer (dim on a terminal,
// "[thinking]" lines otherwise). Commands: /reset, /think on|off, /budget N, /quit.
// Ctrl-C stops the current generation; at the prompt it ends the program.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/thread_pool.h"
#include "chat/chat_template.h"
#include "chat/reasoning.h"
#include "chat/thinking_budget.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "cli/spec_options.h"
#include "cli/text_model.h"
#include "hub/resolve.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/kv_cache.h"
#include "server/chat_output.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model, chat_template, system, quant, mem;
  int64_t max_tokens = 1024, ctx = 4096, budget = -1;
  float temp = 0.6f, top_p = 0.95f;
  int top_k = 20;
  uint64_t seed = 0;
  int threads = 0;
  bool no_think = false, show_prompt = false;
  std::string kv_type = "f16";
  owl::cli::SpecFlags spec;
};

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_generating{false};

void on_sigint(int) {
  if (!g_generating.load()) {
    static const char msg[] = "\n";
    (void)!write(STDOUT_FILENO, msg, 1);
    std::_Exit(130);
  }
  g_interrupted.store(true);
}

void run(const Options& o) {
  if (o.max_tokens < 1 || o.ctx < 16) throw owl::UsageError("-n must be >= 1 and --ctx >= 16");
  if (o.threads > 0) owl::set_default_threads(o.threads);
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load
  owl::cli::TextModel tm = owl::cli::load_text_model(o.model, o.chat_template, "chat", o.quant, o.mem);
  const owl::Tokenizer* tok = tm.tokenizer.get();
  const std::optional<owl::chat::ChatTemplate>& tmpl = tm.chat_template;
  const owl::chat::ReasoningTags tags =
      tmpl ? owl::chat::reasoning_tags_for_template(tmpl->source()) : owl::chat::ReasoningTags{};

  owl::EngineOptions eo;
  eo.n_parallel = 1;
  eo.n_ctx = o.ctx;
  eo.kv_type = kv_type;
  owl::cli::DraftModel draft;
  owl::cli::configure_spec(o.spec, *tm.model, *tok, eo, draft);
  owl::Engine engine(*tm.model, *tok, eo);

  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);

  const bool tty = isatty(STDOUT_FILENO);
  bool think = !o.no_think;
  int64_t budget = o.budget;
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  std::fprintf(stderr, "owl chat: /reset clears the conversation, /think on|off, /budget N (-1: none), /quit\n");

  std::string line;
  for (;;) {
    if (tty) std::printf("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      messages = nlohmann::ordered_json::array();
      if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
      std::printf("(conversation reset)\n");
      continue;
    }
    if (line == "/think on" || line == "/think off") {
      think = line == "/think on";
      std::printf("(thinking %s)\n", think ? "on" : "off");
      continue;
    }
    if (line.rfind("/budget", 0) == 0) {
      try {
        budget = std::stoll(line.substr(7));
        std::printf("(thinking budget %s)\n", budget < 0 ? "off" : std::to_string(budget).c_str());
      } catch (const std::exception&) {
        std::printf("(usage: /budget N, a number of reasoning tokens; -1 for no budget)\n");
      }
      continue;
    }
    if (line[0] == '/') {
      std::printf("(unknown command %s; commands: /reset /think on|off /budget N /quit)\n", line.c_str());
      continue;
    }

    messages.push_back({{"role", "user"}, {"content", line}});
    std::string prompt;
    if (tmpl) {
      owl::chat::ChatInputs in;
      in.messages = messages;
      in.bos_token = tmpl->bos_token();
      in.eos_token = tmpl->eos_token();
      prompt = think ? tmpl->render(in) : owl::chat::render_without_thinking(*tmpl, in, tags).prompt;
    } else {
      prompt = owl::chat::plain_chat_prompt(messages);
    }
    if (o.show_prompt) std::fprintf(stderr, "[prompt]\n%s\n[/prompt]\n", prompt.c_str());

    owl::GenerationRequest req;
    req.prompt = owl::chat::encode_chat_prompt(*tok, prompt);
    req.max_tokens = o.max_tokens;
    req.sampling.temperature = o.temp;
    req.sampling.top_k = o.top_k;
    req.sampling.top_p = o.top_p;
    req.sampling.seed = o.seed;
    const owl::chat::ReasoningStart start = owl::chat::reasoning_start(prompt, tags);
    // The same markers as the server keeps: control tokens are not text, except what the parsers read.
    req.keep_special = owl::server::chat_marker_tokens(
        *tok, tags, tmpl ? owl::chat::tool_call_format_for_template(tmpl->source()) : owl::chat::ToolCallFormat::None);
    if (budget >= 0) req.hook = std::make_shared<owl::server::ThinkingBudgetHook>(*tok, budget, start, tags);
    std::shared_ptr<owl::GenerationStream> stream;
    try {
      stream = engine.submit(req);
    } catch (const owl::Error& e) {
      messages.erase(messages.end() - 1);
      std::printf("(%s; /reset starts a new conversation)\n", e.what());
      continue;
    }

    owl::chat::ReasoningParser parser(start, tags);
    std::string answer;
    bool in_thought = false;
    auto show = [&](const owl::chat::ReasoningDelta& d) {
      if (!d.reasoning.empty()) {
        if (!in_thought) std::printf(tty ? "\033[2m" : "[thinking] ");
        in_thought = true;
        std::printf("%s", d.reasoning.c_str());
      }
      if (!d.content.empty()) {
        if (in_thought) std::printf(tty ? "\033[0m\n" : "\n[answer] ");
        in_thought = false;
        std::printf("%s", d.content.c_str());
        answer += d.content;
      }
      std::fflush(stdout);
    };
    g_interrupted.store(false);
    g_generating.store(true);
    bool done = false;
    while (!done) {
      if (g_interrupted.load()) stream->cancel();
      for (const auto& ev : stream->wait(std::chrono::milliseconds(50))) {
        show(parser.feed(ev.text));
        if (ev.finish != owl::FinishReason::None) {
          done = true;
          if (ev.finish == owl::FinishReason::Error) std::printf("\n(error: %s)", ev.error.c_str());
          if (ev.finish == owl::FinishReason::Cancelled) std::printf("\n(stopped)");
        }
      }
    }
    g_generating.store(false);
    show(parser.finish());
    if (in_thought && tty) std::printf("\033[0m");
    std::printf("\n");
    messages.push_back({{"role", "assistant"}, {"content", answer}});
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("chat", "Chat with a model in the terminal through its chat template");
  sub->add_option("model", o->model, "GGUF file, Hugging Face folder or hub id")->required();
  sub->add_option("--chat-template", o->chat_template, "use this .jinja template instead of the model's");
  sub->add_option("--system", o->system, "system message");
  sub->add_option("-n,--max-tokens", o->max_tokens, "tokens per answer at most");
  sub->add_option("--ctx", o->ctx, "context length");
  sub->add_option("--temp", o->temp, "temperature (0: greedy)");
  sub->add_option("--top-k", o->top_k, "top-k");
  sub->add_option("--top-p", o->top_p, "top-p");
  sub->add_option("--seed", o->seed, "random seed");
  sub->add_option("--budget", o->budget, "thinking budget in tokens (-1: none)");
  sub->add_flag("--no-think", o->no_think, "start with thinking off");
  sub->add_option("-t,--threads", o->threads, "worker threads");
  owl::cli::add_spec_options(sub, o->spec);
  sub->add_option("--kv-type", o->kv_type, "KV cache type: f16 (default), q8_0, q4_0 or f32");
  sub->add_flag("--show-prompt", o->show_prompt, "print each rendered prompt on stderr");
  owl::cli::add_quant_option(sub, o->quant);
  owl::cli::add_mem_option(sub, o->mem);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
