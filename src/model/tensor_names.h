// The one table of tensor names: every tensor owl reads, under its GGUF name and its Hugging
// Face name. Per-layer names are relative to "blk.<il>." (GGUF) and "model.layers.<il>." (HF);
// "{e}" in an HF name stands for the expert index of a stacked GGUF expert tensor.
// Families list which of these a layer holds (family.h, TensorSpec); the loaders, convert,
// export and synth all go through this table, so a name is spelled once.
#pragma once
#include <cstdint>
#include <string>

namespace owl {

struct TensorName {
  const char* gguf;
  const char* hf;  // null: no Hugging Face tensor (e.g. rope_freqs becomes config.json keys)
};

namespace tensor_names {
// Whole-model tensors.
inline constexpr TensorName kTokenEmbd{"token_embd.weight", "model.embed_tokens.weight"};
inline constexpr TensorName kOutputNorm{"output_norm.weight", "model.norm.weight"};
inline constexpr TensorName kOutput{"output.weight", "lm_head.weight"};
inline constexpr TensorName kRopeFreqs{"rope_freqs.weight", nullptr};  // Llama-3 rope divisors

// Attention.
inline constexpr TensorName kAttnNorm{"attn_norm.weight", "input_layernorm.weight"};
inline constexpr TensorName kAttnQ{"attn_q.weight", "self_attn.q_proj.weight"};
inline constexpr TensorName kAttnQBias{"attn_q.bias", "self_attn.q_proj.bias"};
inline constexpr TensorName kAttnK{"attn_k.weight", "self_attn.k_proj.weight"};
inline constexpr TensorName kAttnKBias{"attn_k.bias", "self_attn.k_proj.bias"};
inline constexpr TensorName kAttnV{"attn_v.weight", "self_attn.v_proj.weight"};
inline constexpr TensorName kAttnVBias{"attn_v.bias", "self_attn.v_proj.bias"};
inline constexpr TensorName kAttnOutput{"attn_output.weight", "self_attn.o_proj.weight"};
inline constexpr TensorName kAttnOutputBias{"attn_output.bias", "self_attn.o_proj.bias"};
inline constexpr TensorName kAttnQNorm{"attn_q_norm.weight", "self_attn.q_norm.weight"};
inline constexpr TensorName kAttnKNorm{"attn_k_norm.weight", "self_attn.k_norm.weight"};
// Multi-head latent attention (DeepSeek): kv_b_proj is split into k_b and v_b.
inline constexpr TensorName kAttnQA{"attn_q_a.weight", "self_attn.q_a_proj.weight"};
inline constexpr TensorName kAttnQANorm{"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"};
inline constexpr TensorName kAttnQB{"attn_q_b.weight", "self_attn.q_b_proj.weight"};
inline constexpr TensorName kAttnKvAMqa{"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"};
inline constexpr TensorName kAttnKvANorm{"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"};
inline constexpr TensorName kAttnKvB{"attn_kv_b.weight", "self_attn.kv_b_proj.weight"};  // older GGUFs
inline constexpr TensorName kAttnKB{"attn_k_b.weight", "self_attn.kv_b_proj.weight"};
inline constexpr TensorName kAttnVB{"attn_v_b.weight", "self_attn.kv_b_proj.weight"};

// Feed-forward.
inline constexpr TensorName kFfnNorm{"ffn_norm.weight", "post_attention_layernorm.weight"};
inline constexpr TensorName kPostAttnNorm{"post_attention_norm.weight", "post_attention_layernorm.weight"};  // GLM
inline constexpr TensorName kFfnGate{"ffn_gate.weight", "mlp.gate_proj.weight"};
inline constexpr TensorName kFfnUp{"ffn_up.weight", "mlp.up_proj.weight"};
inline constexpr TensorName kFfnDown{"ffn_down.weight", "mlp.down_proj.weight"};
inline constexpr TensorName kFfnGateInp{"ffn_gate_inp.weight", "mlp.gate.weight"};  // the MoE router
inline constexpr TensorName kExpProbsB{"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"};
inline constexpr TensorName kFfnGateExps{"ffn_gate_exps.weight", "mlp.experts.{e}.gate_proj.weight"};
inline constexpr TensorName kFfnUpExps{"ffn_up_exps.weight", "mlp.experts.{e}.up_proj.weight"};
inline constexpr TensorName kFfnDownExps{"ffn_down_exps.weight", "mlp.experts.{e}.down_proj.weight"};
inline constexpr TensorName kFfnGateShexp{"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"};
inline constexpr TensorName kFfnUpShexp{"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"};
inline constexpr TensorName kFfnDownShexp{"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"};

// The NextN / multi-token-prediction layer (DeepSeek-V3/R1 layer 61, GLM-4.5): a full block plus
// these. embed_tokens and shared_head.head are copies of the trunk's (optional in GGUF files).
inline constexpr TensorName kNextnEhProj{"nextn.eh_proj.weight", "eh_proj.weight"};
inline constexpr TensorName kNextnEnorm{"nextn.enorm.weight", "enorm.weight"};
inline constexpr TensorName kNextnHnorm{"nextn.hnorm.weight", "hnorm.weight"};
inline constexpr TensorName kNextnSharedHeadNorm{"nextn.shared_head_norm.weight", "shared_head.norm.weight"};
inline constexpr TensorName kNextnEmbedTokens{"nextn.embed_tokens.weight", "embed_tokens.weight"};
inline constexpr TensorName kNextnSharedHeadHead{"nextn.shared_head_head.weight", "shared_head.head.weight"};
}  // namespace tensor_names

// "blk.<il>.<name>"
std::string layer_tensor(int64_t il, const TensorName& t);
// "model.layers.<il>.<name>"
std::string hf_layer_tensor(int64_t il, const std::string& hf_name);

}  // namespace owl
