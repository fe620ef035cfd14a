// --spec and --draft, shared by the commands that generate through the engine (run, chat,
// serve): speculative decoding with the model's NextN head, a draft model or prompt lookup
// (runtime/speculative.h).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/model.h"
#include "model/source.h"
#include "runtime/engine.h"

namespace owl {
class Tokenizer;
}

namespace owl::cli {

struct SpecFlags {
  std::string spec = "none";
  std::string draft;  // --draft MODEL
};
void add_spec_options(CLI::App* cmd, SpecFlags& flags);

// The draft model, kept alive while the engine runs.
struct DraftModel {
  std::unique_ptr<ModelSource> source;
  std::unique_ptr<Model> model;
};
// Checks the flags against the target (one owl::UsageError line for each kind of bad input) and
// sets eo.spec / eo.draft_model, loading the draft model into `draft`.
void configure_spec(const SpecFlags& flags, const Model& target, const Tokenizer& target_tokenizer, EngineOptions& eo,
                    DraftModel& draft);

}  // namespace owl::cli
