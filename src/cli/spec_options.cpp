#include "cli/spec_options.h"

#include "base/error.h"
#include "cli/load_options.h"
#include "hub/resolve.h"
#include "runtime/speculative.h"
#include "text/tokenizer.h"

namespace owl::cli {

void add_spec_options(CLI::App* cmd, SpecFlags& flags) {
  cmd->add_option("--spec", flags.spec,
                  "speculative decoding: mtp[:K] (the model's NextN head), draft[:K] (with --draft), ngram[:K] "
                  "(prompt lookup) or none (default); the output is the same, only faster");
  cmd->add_option("--draft", flags.draft, "with --spec draft: a small model with the same tokenizer");
}

void configure_spec(const SpecFlags& flags, const Model& target, const Tokenizer& target_tokenizer, EngineOptions& eo,
                    DraftModel& draft) {
  eo.spec = parse_spec(flags.spec);
  check_spec_target(target, eo.spec);
  if (eo.spec.kind != SpecKind::Draft) {
    if (!flags.draft.empty()) throw UsageError("--draft MODEL drafts only with --spec draft[:K]");
    return;
  }
  if (flags.draft.empty())
    throw UsageError("--spec draft needs --draft MODEL (a small model with the target's tokenizer)");
  draft.source = open_source(hub::resolve_model(flags.draft, /*pull_if_missing=*/true), "");
  draft.model = Model::load(*draft.source);
  check_draft_model(target, *draft.model);
  std::unique_ptr<Tokenizer> draft_tokenizer;
  if (const auto* f = draft.source->gguf_file()) draft_tokenizer = Tokenizer::from_gguf(*f);
  if (!draft.source->hf_folder().empty()) draft_tokenizer = Tokenizer::from_hf_dir(draft.source->hf_folder());
  if (draft_tokenizer) check_draft_tokenizer(target_tokenizer, *draft_tokenizer);
  eo.draft_model = draft.model.get();
}

}  // namespace owl::cli
