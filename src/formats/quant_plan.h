// Which type each tensor of a model is written in when it is converted to a
// target such as "q4_k_m", and the row conversion itself. Shared by
// `owl quantize` (GGUF -> GGUF), `owl synth` and `--quant` at load for
// Hugging Face folders, so all three make the same choices.
//
// The choices follow llama.cpp's llama-quantize (learned from its
// llama_tensor_get_type; the golden q4_k_m files are the check):
//  * Only tensors whose name ends in "weight", with 2 or more dims, are converted;
//    norms (*_norm.weight), the MoE router (ffn_gate_inp), biases, 1-D tensors
//    (rope_freqs, exp_probs_b), integer tensors and a few tiny named tensors keep their
//    stored type.
//  * For the quantised targets: the output head (token_embd when the model has
//    no output.weight) is Q6_K unless the target is Q8_0 (Q8_0 when its rows do
//    not fit the target's blocks); Q4_K_M/Q5_K_M give Q6_K to the attn_v and
//    ffn_down tensors of "use_more_bits" layers (the first and last eighth and
//    every third layer between); Q4_K_S gives Q5_K to the first 4 attn_v and the
//    first eighth of ffn_down; models with exactly 8 experts keep attn_k/attn_v
//    in Q8_0 and (Q4_K_S/M) attn_output in Q5_K; 70B-class llama/qwen2
//    models (80 layers, GQA) get Q5_K attn_v instead of Q4_K.
//  * A row length that is not a multiple of the chosen type's block falls back:
//    Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and to F16 when that does not fit
//    either (the 32-element formats fall back to F16 directly).
//  * The low-bit targets (q2_k, q3_k_m, iq3_s, iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s)
//    follow the mix llama-quantize gave the golden files of those types (lowbit_type in
//    quant_plan.cpp: the output head Q5_K/Q6_K, token_embd Q2_K/IQ3_S, attn_v/attn_k/attn_output
//    a step up, 8-expert models' attention at Q4_K-Q8_0); rows that do not fit 256-element blocks
//    fall back to IQ4_NL (codebook types) or Q4_0 (Q2_K, Q3_K).
//  * F32/F16/BF16 targets convert every convertible tensor to that type, no mix.
#pragma once
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace owl {

class ThreadPool;
namespace gguf {
struct Metadata;
}

// A conversion target: "q4_k_m" -> base type Q4_K with the _M mix.
struct QuantTarget {
  std::string name;         // as the user spells it: "q4_k_m"
  DType base = DType::F32;  // the type most tensors get
  uint32_t file_type = 0;   // llama.cpp's llama_ftype, written as general.file_type
  enum class Mix { None, KS, KM, Low } mix = Mix::None;
};

// Parses a target name (case-insensitive). Throws owl::UsageError listing the valid names.
QuantTarget parse_quant_target(const std::string& name);
// "f32, f16, bf16, q8_0, ..." for help texts and errors.
std::string quant_target_names();

// What the mix rules need to know about the model.
struct QuantModelInfo {
  std::string arch;  // GGUF architecture name
  int64_t n_layer = 0;
  int64_t n_expert = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
};
// From GGUF metadata (<arch>.block_count, expert_count, attention.head_count[_kv]).
QuantModelInfo quant_model_info(const gguf::Metadata& meta);

// For each tensor (name, n_dims and ne are used; data is not), the type it is
// converted to, or nullopt when it keeps its stored type. `tensors` must be the
// whole model: the mix counts attn_v tensors and looks for output.weight.
std::vector<std::optional<DType>> plan_tensor_types(const QuantTarget& target, const QuantModelInfo& model,
                                                    const std::vector<TensorView>& tensors);

// `--tensor-type REGEX=TYPE` (llama-quantize's option): tensors whose name the regex matches
// anywhere (ECMAScript) get TYPE; the first matching rule wins. Only tensors the plan converts
// are affected, and a row length TYPE cannot hold falls back as above.
struct TensorTypeRule {
  std::string pattern;
  DType type = DType::F32;
};
// Parses "REGEX=TYPE" (TYPE a type name: q4_k, iq2_xxs, ...). Throws owl::UsageError for a
// missing '=', a bad regex or a type owl cannot write.
TensorTypeRule parse_tensor_type_rule(const std::string& spec);

// `--recipe dynamic-moe LOWTYPE`, the mix of the dynamic low-bit DeepSeek/Kimi files: routed experts
// (ffn_{gate,up}_exps) at LOWTYPE and ffn_down_exps at LOWTYPE too, except IQ1_S/IQ1_M whose
// down projections get IQ2_XXS; everything else (attention, shared experts, the dense leading
// layers, embeddings) as q4_k_m mixes it (Q4_K with Q6_K for some), and the output head Q6_K.
// As rules placed before any --tensor-type rules (which therefore cannot override them).
std::vector<TensorTypeRule> dynamic_moe_rules(DType low);

// plan_tensor_types, then each convertible tensor that a rule matches gets that rule's type.
std::vector<std::optional<DType>> plan_tensor_types(const QuantTarget& target, const QuantModelInfo& model,
                                                    const std::vector<TensorView>& tensors,
                                                    const std::vector<TensorTypeRule>& rules);

// Converts n_rows rows of row_len floats to `to` (row_bytes(to, row_len) bytes per row),
// rows split over `pool`.
void quantize_rows(DType to, const float* src, int64_t n_rows, int64_t row_len, uint8_t* dst, ThreadPool& pool);

// Converts a stored tensor of any type owl can dequantise to `to`, row by row
// (each row dequantised to float, then quantised), rows split over `pool`.
// dst holds row_bytes(to, ne[0]) * rows() bytes. Throws owl::Error for a source
// type that cannot be dequantised or a row length `to` cannot hold.
// importance: empty, or one vector of ne[0] column weights per matrix (ne[2] of a stack).
void convert_tensor(const TensorView& src, DType to, uint8_t* dst, ThreadPool& pool,
                    const std::vector<std::vector<float>>& importance = {});

}  // namespace owl
