#include "model/config.h"

#include "base/error.h"
#include "formats/gguf.h"

namespace owl {

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> a = {"llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", "glm4moe"};
  return a;
}

void check_supported_architecture(const std::string& arch) {
  for (const auto& a : supported_architectures())
    if (a == arch) return;
  std::string list;
  for (const auto& a : supported_architectures()) list += (list.empty() ? "" : ", ") + a;
  throw Error("unsupported architecture '" + arch + "' (supported: " + list + ")");
}

ModelConfig config_from_gguf(const gguf::Metadata& m) {
  ModelConfig c;
  auto arch = m.get_string("general.architecture");
  if (!arch) throw Error("GGUF metadata has no general.architecture; this is not a model file");
  c.arch = *arch;
  check_supported_architecture(c.arch);
  c.name = m.get_string("general.name").value_or("");
  const std::string p = c.arch + ".";
  auto req = [&](const std::string& k) -> int64_t {
    auto v = m.get_int(p + k);
    if (!v) throw Error("GGUF metadata lacks required key '" + p + k + "'");
    if (*v < 0) throw Error("GGUF metadata key '" + p + k + "' is negative");
    return *v;
  };
  auto opt = [&](const std::string& k, int64_t def) { return m.get_int(p + k).value_or(def); };
  auto optf = [&](const std::string& k, float def) { return static_cast<float>(m.get_float(p + k).value_or(def)); };

  c.n_embd = req("embedding_length");
  c.n_layer = req("block_count");
  c.n_head = req("attention.head_count");
  c.n_head_kv = opt("attention.head_count_kv", c.n_head);
  c.n_ctx_train = opt("context_length", 4096);
  c.n_ff = opt("feed_forward_length", 0);
  if (c.n_head <= 0 || c.n_embd <= 0 || c.n_layer <= 0) throw Error("GGUF metadata has zero heads, layers or width");
  c.head_dim_k = opt("attention.key_length", c.n_embd / c.n_head);
  c.head_dim_v = opt("attention.value_length", c.head_dim_k);
  c.rms_eps = optf("attention.layer_norm_rms_epsilon", 1e-6f);
  c.sliding_window = opt("attention.sliding_window", 0);
  c.rope_theta = optf("rope.freq_base", 10000.0f);
  c.n_rot = opt("rope.dimension_count", c.head_dim_k);

  std::string scaling = m.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "yarn") c.rope_scaling = RopeScaling::Yarn;
  else if (scaling == "linear") c.rope_scaling = RopeScaling::Linear;
  c.rope_factor = optf("rope.scaling.factor", 1.0f);
  c.rope_orig_ctx = opt("rope.scaling.original_context_length", c.n_ctx_train);
  c.yarn_beta_fast = optf("rope.scaling.yarn_beta_fast", 32.0f);
  c.yarn_beta_slow = optf("rope.scaling.yarn_beta_slow", 1.0f);
  c.yarn_log_multiplier = optf("rope.scaling.yarn_log_multiplier", 0.0f);

  c.rope_type = (c.arch == "llama" || c.arch == "deepseek2") ? RopeType::Norm : RopeType::Neox;
  c.attn_qkv_bias = c.arch == "qwen2" || c.arch == "glm4moe";
  c.attn_qk_norm = c.arch == "qwen3" || c.arch == "qwen3moe" || c.arch == "glm4moe";

  c.n_expert = opt("expert_count", 0);
  c.n_expert_used = opt("expert_used_count", 0);
  c.n_ff_exp = opt("expert_feed_forward_length", 0);
  c.n_expert_shared = opt("expert_shared_count", 0);
  c.n_ff_shexp = opt("expert_shared_feed_forward_length", 0);
  c.n_leading_dense = opt("leading_dense_block_count", 0);
  c.expert_weights_scale = optf("expert_weights_scale", 1.0f);
  c.expert_weights_norm = m.get_bool(p + "expert_weights_norm").value_or(c.arch == "qwen3moe");
  int64_t gating = opt("expert_gating_func", c.arch == "glm4moe" ? 2 : 1);
  if (gating != 1 && gating != 2)
    throw Error("expert_gating_func " + std::to_string(gating) + " is not supported (1 softmax, 2 sigmoid)");
  c.expert_gating = static_cast<ExpertGating>(gating);
  c.expert_group_count = opt("expert_group_count", 1);
  c.expert_group_used = opt("expert_group_used_count", 1);
  if (c.n_expert > 0 && (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert))
    throw Error("expert_used_count must be between 1 and expert_count");

  if (c.arch == "deepseek2") {
    c.q_lora_rank = opt("attention.q_lora_rank", 0);
    c.kv_lora_rank = req("attention.kv_lora_rank");
    c.qk_rope_dim = c.n_rot;
    int64_t k_mla = opt("attention.key_length_mla", c.head_dim_k);
    c.qk_nope_dim = k_mla - c.qk_rope_dim;
    c.v_head_dim = opt("attention.value_length_mla", c.head_dim_v);
  }

  c.tokenizer_model = m.get_string("tokenizer.ggml.model").value_or("none");
  if (const gguf::Value* toks = m.find("tokenizer.ggml.tokens")) c.tokenizer_vocab = toks->as_array().items.size();
  c.n_vocab = opt("vocab_size", c.tokenizer_vocab);
  c.has_chat_template = m.has("tokenizer.chat_template");
  c.bos_id = m.get_int("tokenizer.ggml.bos_token_id").value_or(-1);
  c.eos_id = m.get_int("tokenizer.ggml.eos_token_id").value_or(-1);
  if (c.eos_id >= 0) c.eos_ids.push_back(c.eos_id);
  if (auto eot = m.get_int("tokenizer.ggml.eot_token_id"); eot && *eot != c.eos_id) c.eos_ids.push_back(*eot);
  return c;
}

}  // namespace owl
