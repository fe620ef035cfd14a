// Field-by-field comparison of two ModelConfigs (every hyperparameter; the
// display name is left out).
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "model/config.h"

inline void expect_same_hparams(const owl::ModelConfig& a, const owl::ModelConfig& b, const std::string& what) {
#define SAME(f) EXPECT_EQ(a.f, b.f) << what << ": " #f
  SAME(arch);
  SAME(n_vocab);
  SAME(n_ctx_train);
  SAME(n_embd);
  SAME(n_layer);
  SAME(n_head);
  SAME(n_head_kv);
  SAME(head_dim_k);
  SAME(head_dim_v);
  SAME(n_ff);
  SAME(rms_eps);
  SAME(sliding_window);
  SAME(rope_type);
  SAME(rope_theta);
  SAME(n_rot);
  SAME(rope_scaling);
  SAME(rope_factor);
  SAME(rope_orig_ctx);
  SAME(yarn_beta_fast);
  SAME(yarn_beta_slow);
  SAME(yarn_log_multiplier);
  SAME(attn_qkv_bias);
  SAME(attn_qk_norm);
  SAME(n_expert);
  SAME(n_expert_used);
  SAME(n_ff_exp);
  SAME(n_expert_shared);
  SAME(n_ff_shexp);
  SAME(n_leading_dense);
  SAME(expert_weights_scale);
  SAME(expert_weights_norm);
  SAME(expert_gating);
  SAME(expert_group_count);
  SAME(expert_group_used);
  SAME(q_lora_rank);
  SAME(kv_lora_rank);
  SAME(qk_nope_dim);
  SAME(qk_rope_dim);
  SAME(v_head_dim);
  SAME(tokenizer_model);
  SAME(tokenizer_vocab);
  SAME(has_chat_template);
  SAME(bos_id);
  SAME(eos_id);
#undef SAME
}
