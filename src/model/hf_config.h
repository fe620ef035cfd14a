// Hugging Face config.json -> ModelConfig. The result is the config that
// llama.cpp's converter would write into the GGUF of the same checkpoint, so
// families see one convention whatever the source:
//   - arch is the GGUF name (mistral -> llama, deepseek_v3/kimi_k2 -> deepseek2, ...);
//   - MLA models get the GGUF's absorbed-attention view: n_head_kv = 1,
//     head_dim_k = kv_lora_rank + qk_rope_head_dim, head_dim_v = kv_lora_rank
//     (config.json says num_key_value_heads = num_attention_heads because HF
//     decompresses K/V per head);
//   - rope_scaling maps to RopeScaling: yarn (yarn_log_multiplier = 0.1 * mscale_all_dim),
//     llama3 (low/high frequency factors), linear.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "model/config.h"

namespace owl {

// config.json model_type values owl reads.
std::vector<std::string> supported_hf_model_types();
// (The architecture of a model_type: family_for_hf_model_type in family.h.)

// Throws owl::Error naming the key for missing or mistyped required keys, and
// listing the supported model types for an unsupported one.
ModelConfig config_from_hf(const nlohmann::json& config);

// A Hugging Face folder: config.json (required), generation_config.json (bos/eos
// ids), tokenizer_config.json (chat template), tokenizer.json (vocabulary size).
ModelConfig load_hf_config(const std::string& folder);

}  // namespace owl
