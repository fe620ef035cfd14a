// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) as the
// GGUF tokenizer.ggml.* keys llama.cpp's converter writes:
//   - byte-level BPE (GPT-2 style: Llama 3, Qwen, DeepSeek-V3, GLM) -> model "gpt2"
//     with tokens, token_type and merges, and tokenizer.ggml.pre named after
//     the pre-tokenizer's regexes (llama-bpe, qwen2, deepseek-v3, tekken, ...);
//   - SentencePiece-style BPE with byte fallback (Llama 2, Mistral 7B) -> model
//     "llama" with tokens, scores (-rank of the merge that forms the piece) and token_type;
//   - bos/eos/pad/unk ids, add_bos/add_eos and the chat template.
// Ids missing from the vocabulary up to the model's vocab_size become
// "[PAD<id>]" unused tokens, as the converter pads them.
#pragma once
#include <string>

#include "formats/gguf.h"
#include "model/config.h"

namespace owl {

// Adds the tokenizer keys of `folder` to `m`; throws owl::Error for a tokenizer.json it cannot map.
void add_hf_tokenizer_metadata(gguf::Metadata& m, const std::string& folder, const ModelConfig& c);

}  // namespace owl
