// The production OpenAI server with each chat request's generated tokens scripted (stories260K
// cannot write tool calls or think tags by itself): the script's tokens go through the sampler
// loop, the incremental detokenizer, the reasoning splitter and the tool-call parser like
// sampled ones. The script may depend on the request (a tool loop's turns differ).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "runtime/engine.h"
#include "server/server.h"
#include "text/tokenizer.h"

namespace owl::test {

// Forces the tokens of `text`, then end-of-generation.
class ScriptHook : public TokenHook {
 public:
  ScriptHook(const Tokenizer& tok, const std::string& text) : ids_(tok.encode(text, false)) {
    ids_.push_back(tok.eos_id());
  }
  std::vector<int32_t> at_start() override { return ids_; }
  std::vector<int32_t> on_token(int32_t, std::string_view) override { return {}; }

 private:
  std::vector<int32_t> ids_;
};

class ScriptedServer : public server::OpenAIServer {
 public:
  using Script = std::function<std::string(const server::ChatParams&)>;
  ScriptedServer(Engine& engine, const Tokenizer& tok, chat::ChatTemplate tmpl, server::ApiOptions opts, Script script)
      : OpenAIServer(engine, tok, std::move(tmpl), std::move(opts)), tok_(tok), script_(std::move(script)) {}

 protected:
  std::shared_ptr<TokenHook> chat_hook(const server::ChatParams& p, chat::ReasoningStart,
                                       const chat::ReasoningTags&) const override {
    return std::make_shared<ScriptHook>(tok_, script_(p));
  }

 private:
  const Tokenizer& tok_;
  Script script_;
};

}  // namespace owl::test
