// Writes a ModelSource (usually a GGUF file) as a Hugging Face folder:
// config.json with the keys of the family's transformers config (those
// hf_config.cpp reads back into the same ModelConfig) and one
// model.safetensors under HF tensor names, undoing the GGUF conventions:
//   - Llama attn_q/attn_k rows go back from interleaved pairs to rotate-half
//     order (the inverse of the converter's permute);
//   - DeepSeek attn_k_b/attn_v_b merge back into kv_b_proj;
//   - stacked experts {in, out, n_expert} split into one (out, in) tensor per expert;
//   - a tied model gets tie_word_embeddings and no lm_head.weight;
//   - llama3 rope_freqs.weight becomes config.json rope_scaling (the
//     parameters are recovered from the divisors and checked to reproduce them);
//   - NextN/MTP layers (GGUF <arch>.nextn_predict_layers) become model.layers.<il>.* after the
//     num_hidden_layers trunk, with num_nextn_predict_layers (DeepSeek-V3's own layout).
// Quantised tensors are dequantised; tensors are streamed one at a time.
// A GPT-2-style (byte-level BPE) vocabulary becomes tokenizer.json (see hf_tokenizer_export.h).
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "model/source.h"

namespace owl {

struct HfExportOptions {
  // "" keeps F32/F16/BF16 tensors as they are and writes quantised ones as F32;
  // "f32", "f16" or "bf16" writes every tensor in that type.
  std::string dtype;
};

// config.json for the source (also used by tests to check the mapping).
nlohmann::json hf_config_json(const ModelSource& src, const std::string& torch_dtype);

// Writes config.json and model.safetensors into `folder` (created when missing), and
// tokenizer.json + tokenizer_config.json when the GGUF has a byte-level BPE vocabulary.
// Returns "" or, when the GGUF has a tokenizer that could not be written, why not.
std::string export_hf(const ModelSource& src, const std::string& folder, const HfExportOptions& opt);

}  // namespace owl
