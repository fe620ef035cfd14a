// owl serve MODEL [--host H] [--port P] [--parallel N] [--ctx N] [--api-key KEY] [--threads N]
//                 [--chat-template F.jinja] [--max-queue N] [--prefill-chunk N] [--kv-budget TOKENS]
//                 [--kv-type f16|f32] [--no-prefix-cache] [--max-body BYTES]
// The API key may also be given in $OWL_API_KEY (out of the process list); --api-key wins.
// Serves the model over an OpenAI-compatible HTTP API (see src/server/server.h).
// --port 0 picks a free port; the address is printed on stderr as
// "listening on http://HOST:PORT" once the server accepts connections.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/thread_pool.h"
#include "chat/chat_template.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "cli/text_model.h"
#include "hub/resolve.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/kv_cache.h"
#include "server/http.h"
#include "server/server.h"
#include "text/tokenizer.h"

namespace {

struct Options {
  std::string model, host = "127.0.0.1", api_key, chat_template, kv_type = "f16", quant, mem;
  int port = 8080, parallel = 4, threads = 0, max_queue = 64;
  int64_t ctx = 0, prefill_chunk = 256, kv_budget = 0, max_body = 8 << 20;
  bool no_prefix_cache = false;
};

owl::http::Server* g_server = nullptr;
extern "C" void on_signal(int) {
  if (g_server) g_server->stop();
}

void run(const Options& o) {
  if (o.parallel < 1 || o.parallel > 256) throw owl::UsageError("--parallel must be between 1 and 256");
  if (o.port < 0 || o.port > 65535) throw owl::UsageError("--port must be between 0 and 65535");
  if (o.max_queue < 0) throw owl::UsageError("--max-queue must be 0 or more");
  if (o.ctx < 0 || o.prefill_chunk < 1 || o.kv_budget < 0 || o.max_body < 1)
    throw owl::UsageError("--ctx, --kv-budget must be >= 0; --prefill-chunk and --max-body >= 1");
  if (o.threads > 0) owl::set_default_threads(o.threads);
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load

  owl::cli::TextModel tm = owl::cli::load_text_model(o.model, o.chat_template, "serve", o.quant, o.mem);
  owl::Model* model = tm.model.get();
  owl::Tokenizer* tok = tm.tokenizer.get();

  owl::EngineOptions eo;
  eo.n_parallel = o.parallel;
  eo.n_ctx = o.ctx;
  eo.prefill_chunk = o.prefill_chunk;
  eo.kv_budget_tokens = o.kv_budget;
  eo.max_queue = o.max_queue;
  eo.kv_type = kv_type;
  eo.prefix_cache = !o.no_prefix_cache;
  owl::Engine engine(*model, *tok, eo);

  owl::server::ApiOptions ao;
  ao.model_id = std::filesystem::path(o.model).filename().string();
  if (ao.model_id.size() > 5 && ao.model_id.ends_with(".gguf")) ao.model_id.resize(ao.model_id.size() - 5);
  ao.api_key = o.api_key;
  if (const char* env = std::getenv("OWL_API_KEY"); ao.api_key.empty() && env) ao.api_key = env;
  owl::server::OpenAIServer api(engine, *tok, std::move(tm.chat_template), ao);

  owl::http::ServerOptions ho;
  ho.host = o.host;
  ho.port = o.port;
  ho.max_body_bytes = static_cast<size_t>(o.max_body);
  // Every running and queued request holds a connection; leave room for health checks and refusals.
  ho.max_connections = o.parallel + o.max_queue + 16;
  owl::http::Server http(ho, [&](const owl::http::Request& req, owl::http::Response& res) { api.handle(req, res); });
  http.listen();
  g_server = &http;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::fprintf(stderr, "owl serve: model '%s', context %lld, %d parallel sequences, KV budget %lld tokens\n",
               ao.model_id.c_str(), static_cast<long long>(engine.n_ctx()), o.parallel,
               static_cast<long long>(engine.stats().kv_budget_tokens));
  std::fprintf(stderr, "listening on http://%s:%d\n", o.host.c_str(), http.port());
  std::fflush(stderr);
  http.run();
  g_server = nullptr;
}

void setup(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  auto o = std::make_shared<Options>();
  cmd->add_option("model", o->model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", o->port, "port (0: pick a free one; default 8080)");
  cmd->add_option("--parallel", o->parallel, "sequences decoded together (default 4)");
  cmd->add_option("--ctx", o->ctx, "context length per sequence (default: the model's)");
  cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' (default: $OWL_API_KEY)");
  cmd->add_option("--threads", o->threads, "compute threads (default: all CPUs)");
  cmd->add_option("--chat-template", o->chat_template, "Jinja chat template file overriding the model's");
  cmd->add_option("--max-queue", o->max_queue, "waiting requests beyond this get 429 (default 64)");
  cmd->add_option("--prefill-chunk", o->prefill_chunk, "prompt tokens per step over all sequences (default 256)");
  cmd->add_option("--kv-budget", o->kv_budget, "KV cache budget in tokens (default parallel x ctx)");
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: f16 (default), q8_0, q4_0 or f32");
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "do not reuse cached prompt prefixes");
  owl::cli::add_quant_option(cmd, o->quant);
  owl::cli::add_mem_option(cmd, o->mem);
  cmd->add_option("--max-body", o->max_body, "largest request body in bytes (default 8 MiB; larger get 413)");
  cmd->callback([o] { run(*o); });
}

OWL_COMMAND(setup);

}  // namespace
