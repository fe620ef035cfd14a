#include "model/config.h"

#include "base/error.h"
#include "formats/gguf.h"
#include "model/family.h"

namespace owl {

ModelConfig config_from_gguf(const gguf::Metadata& m) {
  ModelConfig c;
  auto arch = m.get_string("general.architecture");
  if (!arch) throw Error("GGUF metadata has no general.architecture; this is not a model file");
  c.arch = *arch;
  const Family& family = family_of(c.arch);
  c.name = m.get_string("general.name").value_or("");
  const GgufKeys k(m, c.arch);

  c.n_embd = k.required("embedding_length");
  c.n_layer = k.required("block_count");
  c.n_head = k.required("attention.head_count");
  c.n_head_kv = k.integer("attention.head_count_kv", c.n_head);
  c.n_ctx_train = k.integer("context_length", 4096);
  c.n_ff = k.integer("feed_forward_length", 0);
  if (c.n_head <= 0 || c.n_embd <= 0 || c.n_layer <= 0) throw Error("GGUF metadata has zero heads, layers or width");
  c.head_dim_k = k.integer("attention.key_length", c.n_embd / c.n_head);
  c.head_dim_v = k.integer("attention.value_length", c.head_dim_k);
  c.rms_eps = k.real("attention.layer_norm_rms_epsilon", 1e-6f);
  c.sliding_window = k.integer("attention.sliding_window", 0);
  c.rope_theta = k.real("rope.freq_base", 10000.0f);
  c.n_rot = k.integer("rope.dimension_count", c.head_dim_k);
  c.n_nextn_layers = k.integer("nextn_predict_layers", 0);

  const std::string scaling = k.string("rope.scaling.type", "none");
  if (scaling == "yarn")
    c.rope_scaling = RopeScaling::Yarn;
  else if (scaling == "linear")
    c.rope_scaling = RopeScaling::Linear;
  c.rope_factor = k.real("rope.scaling.factor", 1.0f);
  c.rope_orig_ctx = k.integer("rope.scaling.original_context_length", c.n_ctx_train);
  c.yarn_beta_fast = k.real("rope.scaling.yarn_beta_fast", 32.0f);
  c.yarn_beta_slow = k.real("rope.scaling.yarn_beta_slow", 1.0f);
  c.yarn_log_multiplier = k.real("rope.scaling.yarn_log_multiplier", 0.0f);

  c.n_expert = k.integer("expert_count", 0);
  c.n_expert_used = k.integer("expert_used_count", 0);
  c.n_ff_exp = k.integer("expert_feed_forward_length", 0);
  c.n_expert_shared = k.integer("expert_shared_count", 0);
  c.n_ff_shexp = k.integer("expert_shared_feed_forward_length", 0);
  c.n_leading_dense = k.integer("leading_dense_block_count", 0);
  c.expert_weights_scale = k.real("expert_weights_scale", 1.0f);
  c.expert_weights_norm = k.boolean("expert_weights_norm", false);
  const int64_t gating = k.integer("expert_gating_func", 1);
  if (gating != 1 && gating != 2)
    throw Error("expert_gating_func " + std::to_string(gating) + " is not supported (1 softmax, 2 sigmoid)");
  c.expert_gating = static_cast<ExpertGating>(gating);
  c.expert_group_count = k.integer("expert_group_count", 1);
  c.expert_group_used = k.integer("expert_group_used_count", 1);

  family.read_gguf(c, k);
  if (c.n_expert > 0 && (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert))
    throw Error("expert_used_count must be between 1 and expert_count");
  if (c.n_nextn_layers < 0 || c.n_nextn_layers >= c.n_layer)
    throw Error("nextn_predict_layers " + std::to_string(c.n_nextn_layers) + " leaves no trunk layers of " +
                std::to_string(c.n_layer));

  c.tokenizer_model = m.get_string("tokenizer.ggml.model").value_or("none");
  if (const gguf::Value* toks = m.find("tokenizer.ggml.tokens")) c.tokenizer_vocab = toks->as_array().items.size();
  c.n_vocab = k.integer("vocab_size", c.tokenizer_vocab);
  c.has_chat_template = m.has("tokenizer.chat_template");
  c.bos_id = m.get_int("tokenizer.ggml.bos_token_id").value_or(-1);
  c.eos_id = m.get_int("tokenizer.ggml.eos_token_id").value_or(-1);
  if (c.eos_id >= 0) c.eos_ids.push_back(c.eos_id);
  if (auto eot = m.get_int("tokenizer.ggml.eot_token_id"); eot && *eot != c.eos_id) c.eos_ids.push_back(*eot);
  return c;
}

}  // namespace owl
