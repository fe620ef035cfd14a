// One normalised description of a model, whatever file it came from.
// GGUF metadata (formats/gguf) and Hugging Face config.json both map into it;
// every family's code reads only this struct, never raw keys.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace owl {

namespace gguf {
struct Metadata;
}

enum class RopeType { Norm, Neox };  // Norm: pairs (2i, 2i+1); Neox: pairs (i, i + n_rot/2)
enum class RopeScaling { None, Linear, Yarn, Llama3 };
enum class ExpertGating { Softmax = 1, Sigmoid = 2 };

struct ModelConfig {
  std::string arch;  // GGUF architecture name, the key of the family registry (family.h)
  std::string name;

  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;         // every block, including n_nextn_layers trailing NextN/MTP blocks
  int64_t n_nextn_layers = 0;  // GGUF nextn_predict_layers, config.json num_nextn_predict_layers (DeepSeek-V3, GLM-4.5)
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;  // per-head query/key size (GGUF attention.key_length)
  int64_t head_dim_v = 0;  // per-head value size
  int64_t n_ff = 0;        // dense FFN hidden size
  float rms_eps = 1e-6f;
  int64_t sliding_window = 0;  // 0 = full attention

  // RoPE
  RopeType rope_type = RopeType::Norm;
  float rope_theta = 10000.0f;
  int64_t n_rot = 0;  // rotated dims per head (partial rotary when < head dim)
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_factor = 1.0f;
  int64_t rope_orig_ctx = 0;
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float yarn_log_multiplier = 0.0f;  // GGUF rope.scaling.yarn_log_multiplier (0.1 * mscale_all_dim)
  // Llama-3 frequency scaling from config.json (GGUF stores rope_freqs.weight instead).
  float llama3_low_freq_factor = 1.0f;
  float llama3_high_freq_factor = 4.0f;

  // Attention details
  bool attn_qkv_bias = false;  // qwen2, glm4moe
  bool attn_qk_norm = false;   // qwen3, qwen3moe, glm4moe (when enabled)

  // Mixture of experts (n_expert == 0: dense)
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;
  int64_t n_expert_shared = 0;
  int64_t n_ff_shexp = 0;  // shared expert hidden size (0: n_ff_exp * n_expert_shared)
  int64_t n_leading_dense = 0;
  float expert_weights_scale = 1.0f;
  bool expert_weights_norm = false;
  ExpertGating expert_gating = ExpertGating::Softmax;
  int64_t expert_group_count = 1;
  int64_t expert_group_used = 1;

  // Multi-head latent attention (deepseek2): q_lora_rank 0 = direct query projection.
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_dim = 0;
  int64_t qk_rope_dim = 0;
  int64_t v_head_dim = 0;

  // Tokenizer summary (details live in the text layer)
  std::string tokenizer_model;  // gpt2, llama, none, hf (tokenizer.json)
  int64_t tokenizer_vocab = 0;
  bool has_chat_template = false;
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  std::vector<int64_t> eos_ids;        // every end-of-generation id (generation_config.json may list several)
  bool has_tokenizer_config = false;   // Hugging Face tokenizer_config.json present
  bool has_generation_config = false;  // Hugging Face generation_config.json present

  bool is_moe() const { return n_expert > 0; }
  bool is_mla() const { return kv_lora_rank > 0; }
  bool layer_is_moe(int64_t il) const { return is_moe() && il >= n_leading_dense; }
};

// Reads the `<arch>.*` keys of a GGUF file: those every architecture shares here, then the
// family's own (family.h). Missing required keys and unknown architectures are clear errors.
ModelConfig config_from_gguf(const gguf::Metadata& meta);

}  // namespace owl
