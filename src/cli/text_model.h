// What `owl serve` and `owl chat` both load: a model that produces text, with its
// tokenizer and (when it has one, or --chat-template gives one) its chat template.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "model/model.h"
#include "model/source.h"
#include "text/tokenizer.h"

namespace owl::cli {

struct TextModel {
  std::string path;  // the resolved local file or folder
  std::unique_ptr<ModelSource> source;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  std::optional<chat::ChatTemplate> chat_template;  // nullopt: callers use a plain role: content format
};

// `spec` is a path or hub id (pulled when missing); `template_file` overrides the model's
// template when non-empty. `command` ("serve", "chat") words the messages. A model
// without a vocabulary is an owl::Error; a missing template is a note on stderr.
// `quant` is the --quant option (cli/load_options.h): empty, or a target for HF folders;
// `mem` the --mem option (empty: the default budget).
// `split` is --split (dist/distributed.h): under mpirun, the ranks other than 0 serve rank 0's
// steps inside this call and get a TextModel without a model.
TextModel load_text_model(const std::string& spec, const std::string& template_file, const std::string& command,
                          const std::string& quant = "", const std::string& mem = "", const std::string& split = "");

}  // namespace owl::cli
