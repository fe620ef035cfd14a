// owl serve MODEL [--host H] [--port P] [--parallel N] [--ctx N] [--api-key KEY] [--threads N]
//                 [--chat-template F.jinja] [--max-queue N] [--prefill-chunk N] [--kv-budget TOKENS]
//                 [--kv-type f16|f32] [--no-prefix-cache] [--max-body BYTES] [--api-key-file F]
//                 [--header-timeout S] [--body-timeout S] [--max-client-connections N]
//                 [--spec MODE [--draft M]]
// The API key may also be given in a file (--api-key-file) or $OWL_API_KEY, out of the process
// list; --api-key wins, then the file, then the environment.
// Serves the model over an OpenAI-compatible HTTP API (see src/server/server.h), with Ollama's
// and Anthropic's APIs and a chat page beside it. --port 0 picks a free port; the address is
// printed on stderr as "listening on http://HOST:PORT" once the server accepts connections,
// then the chat page's URL.
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
#include "cli/spec_options.h"
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
  std::string model, host = "127.0.0.1", api_key, api_key_file, chat_template, kv_type = "f16", quant, split, mem;
  int port = 8080, parallel = 4, threads = 0, max_queue = 64, max_client_connections = 128;
  double header_timeout = 10, body_timeout = 30;
  int64_t ctx = 0, prefill_chunk = 256, kv_budget = 0, max_body = 8 << 20;
  bool no_prefix_cache = false;
  owl::cli::SpecFlags spec;
};

owl::http::Server* g_server = nullptr;
extern "C" void on_signal(int) {
  if (g_server) g_server->stop();
}

// The key is the file's first line (surrounding whitespace dropped); an empty key is an error,
// since serving without authentication by mistake is worse than not starting.
std::string read_api_key_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw owl::Error("cannot read --api-key-file '" + path + "'");
  std::string key;
  std::getline(f, key);
  const size_t b = key.find_first_not_of(" \t\r"), e = key.find_last_not_of(" \t\r");
  key = b == std::string::npos ? "" : key.substr(b, e - b + 1);
  if (key.empty()) throw owl::Error("--api-key-file '" + path + "' holds no key on its first line");
  return key;
}

// A GGUF file's size, or a model folder's files' sizes together.
int64_t model_size_on_disk(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return static_cast<int64_t>(fs::file_size(path, ec));
  int64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(path, ec))
    if (e.is_regular_file(ec)) total += static_cast<int64_t>(e.file_size(ec));
  return total;
}

void run(const Options& o) {
  if (o.parallel < 1 || o.parallel > 256) throw owl::UsageError("--parallel must be between 1 and 256");
  if (o.port < 0 || o.port > 65535) throw owl::UsageError("--port must be between 0 and 65535");
  if (o.max_queue < 0) throw owl::UsageError("--max-queue must be 0 or more");
  if (o.ctx < 0 || o.prefill_chunk < 1 || o.kv_budget < 0 || o.max_body < 1)
    throw owl::UsageError("--ctx, --kv-budget must be >= 0; --prefill-chunk and --max-body >= 1");
  if (o.header_timeout <= 0 || o.body_timeout <= 0 || o.header_timeout > 3600 || o.body_timeout > 3600)
    throw owl::UsageError("--header-timeout and --body-timeout must be more than 0 and at most 3600 seconds");
  if (o.max_client_connections < 1) throw owl::UsageError("--max-client-connections must be 1 or more");
  std::string api_key = o.api_key;
  if (api_key.empty() && !o.api_key_file.empty()) api_key = read_api_key_file(o.api_key_file);
  if (const char* env = std::getenv("OWL_API_KEY"); api_key.empty() && env) api_key = env;
  if (o.threads > 0) owl::set_default_threads(o.threads);
  const owl::DType kv_type = owl::kv_type_from_name(o.kv_type);  // before the (slow) load

  owl::cli::TextModel tm = owl::cli::load_text_model(o.model, o.chat_template, "serve", o.quant, o.mem, o.split);
  if (!tm.model) return;  // a rank of a distributed run other than 0: it served rank 0's steps
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
  owl::cli::DraftModel draft;
  owl::cli::configure_spec(o.spec, *model, *tok, eo, draft);
  owl::Engine engine(*model, *tok, eo);

  owl::server::ApiOptions ao;
  ao.model_id = std::filesystem::path(o.model).filename().string();
  if (ao.model_id.size() > 5 && ao.model_id.ends_with(".gguf")) ao.model_id.resize(ao.model_id.size() - 5);
  ao.api_key = api_key;
  ao.architecture = tm.source->config().arch;
  ao.model_bytes = model_size_on_disk(tm.path);
  ao.expert_cache = tm.source->expert_cache;
  owl::server::OpenAIServer api(engine, *tok, std::move(tm.chat_template), ao);

  owl::http::ServerOptions ho;
  ho.host = o.host;
  ho.port = o.port;
  ho.max_body_bytes = static_cast<size_t>(o.max_body);
  // Requests in progress: every running and queued one, and room for the engine's own 429s.
  ho.max_requests = o.parallel + o.max_queue + 16;
  ho.max_connections_per_client = o.max_client_connections;
  ho.header_timeout_ms = static_cast<int>(o.header_timeout * 1000);
  ho.body_timeout_ms = static_cast<int>(o.body_timeout * 1000);
  owl::http::Server http(ho, [&](const owl::http::Request& req, owl::http::Response& res) { api.handle(req, res); });
  http.listen();
  g_server = &http;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::fprintf(stderr, "owl serve: model '%s', context %lld, %d parallel sequences, KV budget %lld tokens\n",
               ao.model_id.c_str(), static_cast<long long>(engine.n_ctx()), o.parallel,
               static_cast<long long>(engine.stats().kv_budget_tokens));
  std::fprintf(stderr, "listening on http://%s:%d\n", o.host.c_str(), http.port());
  // 0.0.0.0 and :: listen everywhere but are no address to open; loopback is.
  const std::string page_host = o.host == "0.0.0.0" ? "127.0.0.1" : o.host == "::" ? "[::1]" : o.host;
  std::fprintf(stderr, "chat page: http://%s:%d/  (Ollama API at /api, Anthropic Messages at /v1/messages)\n",
               page_host.c_str(), http.port());
  std::fflush(stderr);
  http.run();
  g_server = nullptr;
}

void setup(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve",
                                 "Serve a model over HTTP: a chat page at /, the OpenAI API at /v1, Ollama's at /api, "
                                 "Anthropic's Messages at /v1/messages");
  cmd->footer(
      "Open the printed http://HOST:PORT/ in a browser to chat. Clients: OpenAI SDKs and Open WebUI (OpenAI "
      "connection) use base URL http://HOST:PORT/v1; Ollama clients and Open WebUI (Ollama connection) use "
      "http://HOST:PORT (OLLAMA_HOST); Anthropic SDKs and agents use base URL http://HOST:PORT "
      "(ANTHROPIC_BASE_URL). With --api-key, send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.");
  auto o = std::make_shared<Options>();
  cmd->add_option("model", o->model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", o->port, "port (0: pick a free one; default 8080)");
  cmd->add_option("--parallel", o->parallel, "sequences decoded together (default 4)");
  cmd->add_option("--ctx", o->ctx, "context length per sequence (default: the model's)");
  cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' (default: $OWL_API_KEY)");
  cmd->add_option("--api-key-file", o->api_key_file, "read the API key from the first line of this file");
  cmd->add_option("--header-timeout", o->header_timeout,
                  "seconds a request's head may take to arrive, from its first byte (default 10; then 408)");
  cmd->add_option("--body-timeout", o->body_timeout,
                  "seconds a request's body may take to arrive, after its head (default 30; then 408)");
  cmd->add_option("--max-client-connections", o->max_client_connections,
                  "open connections allowed from one client address (default 128)");
  cmd->add_option("--threads", o->threads, "compute threads (default: all CPUs)");
  cmd->add_option("--chat-template", o->chat_template, "Jinja chat template file overriding the model's");
  cmd->add_option("--max-queue", o->max_queue, "waiting requests beyond this get 429 (default 64)");
  cmd->add_option("--prefill-chunk", o->prefill_chunk, "prompt tokens per step over all sequences (default 256)");
  cmd->add_option("--kv-budget", o->kv_budget, "KV cache budget in tokens (default parallel x ctx)");
  owl::cli::add_spec_options(cmd, o->spec);
  cmd->add_option("--kv-type", o->kv_type, "KV cache type: f16 (default), q8_0, q4_0 or f32");
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "do not reuse cached prompt prefixes");
  owl::cli::add_quant_option(cmd, o->quant);
  owl::cli::add_split_option(cmd, o->split);
  owl::cli::add_mem_option(cmd, o->mem);
  cmd->add_option("--max-body", o->max_body, "largest request body in bytes (default 8 MiB; larger get 413)");
  cmd->callback([o] { run(*o); });
}

OWL_COMMAND(setup);

}  // namespace
