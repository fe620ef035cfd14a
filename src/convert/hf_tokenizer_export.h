// The inverse of hf_tokenizer_gguf: a GGUF byte-level BPE vocabulary
// (tokenizer.ggml.model "gpt2") as tokenizer.json + tokenizer_config.json:
// the model vocabulary and merges, control/user-defined tokens as added
// tokens, the pre-tokenizer regexes that tokenizer.ggml.pre names, BOS added
// by a TemplateProcessing post-processor when add_bos_token is set, and the
// special tokens and chat template in tokenizer_config.json. "[PAD<id>]"
// padding entries are left out.
#pragma once
#include <string>

#include "formats/gguf.h"

namespace owl {

// Writes the two files into `folder` and returns "" when the GGUF has a vocabulary owl can
// express; otherwise writes nothing and returns why (e.g. "tokenizer.ggml.model 'llama'").
std::string write_hf_tokenizer(const gguf::Metadata& m, const std::string& folder, int64_t n_ctx);

}  // namespace owl
