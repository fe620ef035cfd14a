// Hugging Face folders: config.json -> ModelConfig agrees with the GGUF twin's
// metadata, and every GGUF tensor is found through open_hf_source bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "formats/gguf.h"
#include "model/hf_config.h"
#include "model/source.h"
#include "formats/config_compare.h"
#include "test_util.h"

using namespace owl;
using json = nlohmann::json;

namespace {

json read_json(const std::string& path) { return json::parse(test::read_file(path)); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string safetensors_bytes(const json& header, const std::string& data) {
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string b(8, '\0');
  uint64_t n = h.size();
  std::memcpy(&b[0], &n, 8);
  return b + h + data;
}

}  // namespace

TEST(HfConfig, TwinsMatchTheirGguf) {
  for (const char* m : {"llama", "qwen3", "deepseek-v3"}) {
    std::string dir = std::string("golden/") + m;
    ModelConfig hf = config_from_hf(read_json(test::shared_path(dir + "/hf/config.json")));
    auto g = gguf::File::open(test::shared_path(dir + "/f32.gguf"));
    ModelConfig gg = config_from_gguf(g->metadata());
    // MLA: config.json says num_key_value_heads = 4 (HF decompresses K/V per head); config_from_hf
    // gives the GGUF's absorbed view (1 latent KV head of kv_lora + rope), so they agree.
    expect_same_hparams(hf, gg, m);
    // Also through the folder loader.
    expect_same_hparams(load_hf_config(test::shared_path(dir + "/hf")), gg, m);
  }
  ModelConfig ds = config_from_hf(read_json(test::shared_path("golden/deepseek-v3/hf/config.json")));
  EXPECT_EQ(ds.n_head_kv, 1);
  EXPECT_EQ(ds.head_dim_k, 256 + 32);
  EXPECT_FLOAT_EQ(ds.yarn_log_multiplier, 0.1f);
  EXPECT_EQ(ds.rope_scaling, RopeScaling::Yarn);
  EXPECT_EQ(ds.expert_gating, ExpertGating::Sigmoid);
}

TEST(HfConfig, ModelTypesAndRopeScaling) {
  json base = read_json(test::shared_path("golden/llama/hf/config.json"));
  json mistral = base;
  mistral["model_type"] = "mistral";
  mistral["head_dim"] = nullptr;
  mistral["sliding_window"] = 4096;
  ModelConfig m = config_from_hf(mistral);
  EXPECT_EQ(m.arch, "llama");
  EXPECT_EQ(m.head_dim_k, 64);
  EXPECT_EQ(m.rope_type, RopeType::Norm);

  json l3 = base;
  l3["rope_scaling"] = {{"rope_type", "llama3"},
                        {"factor", 8.0},
                        {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 8192}};
  ModelConfig c = config_from_hf(l3);
  EXPECT_EQ(c.rope_scaling, RopeScaling::Llama3);
  EXPECT_EQ(c.rope_factor, 8.0f);
  EXPECT_EQ(c.llama3_high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_orig_ctx, 8192);

  json lin = base;
  lin["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
  EXPECT_EQ(config_from_hf(lin).rope_scaling, RopeScaling::Linear);
  EXPECT_EQ(config_from_hf(lin).rope_factor, 2.0f);

  json dyn = base;
  dyn["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2}};
  EXPECT_NE(error_of([&] { config_from_hf(dyn); }).find("rope_scaling type 'dynamic' is not supported"),
            std::string::npos);

  json ds = read_json(test::shared_path("golden/deepseek-v3/hf/config.json"));
  json kimi = ds;
  kimi["model_type"] = "kimi_k2";
  kimi["n_group"] = 1;
  kimi["topk_group"] = 1;
  EXPECT_EQ(config_from_hf(kimi).arch, "deepseek2");
  EXPECT_EQ(config_from_hf(kimi).expert_group_count, 1);
  json v2 = ds;
  v2["model_type"] = "deepseek_v2";
  v2["q_lora_rank"] = nullptr;
  v2["scoring_func"] = "softmax";
  v2["rope_scaling"]["mscale_all_dim"] = 0.707;
  ModelConfig v2c = config_from_hf(v2);
  EXPECT_EQ(v2c.q_lora_rank, 0);
  EXPECT_EQ(v2c.expert_gating, ExpertGating::Softmax);
  EXPECT_NEAR(v2c.yarn_log_multiplier, 0.0707f, 1e-6);

  json glm = read_json(test::shared_path("golden/qwen3/hf/config.json"));
  glm["model_type"] = "glm4_moe";
  glm["partial_rotary_factor"] = 0.5;
  glm["attention_bias"] = true;
  glm["use_qk_norm"] = true;
  glm["n_routed_experts"] = 16;
  glm["num_experts_per_tok"] = 4;
  glm["moe_intermediate_size"] = 64;
  glm["n_shared_experts"] = 1;
  glm["first_k_dense_replace"] = 1;
  glm["routed_scaling_factor"] = 2.5;
  ModelConfig g = config_from_hf(glm);
  EXPECT_EQ(g.arch, "glm4moe");
  EXPECT_EQ(g.n_rot, 64);
  EXPECT_EQ(g.rope_type, RopeType::Neox);
  EXPECT_TRUE(g.attn_qkv_bias);
  EXPECT_EQ(g.expert_gating, ExpertGating::Sigmoid);

  json q3moe = read_json(test::shared_path("golden/qwen3/hf/config.json"));
  q3moe["model_type"] = "qwen3_moe";
  q3moe["num_experts"] = 8;
  q3moe["num_experts_per_tok"] = 4;
  q3moe["moe_intermediate_size"] = 256;
  EXPECT_EQ(config_from_hf(q3moe).arch, "qwen3moe");
  EXPECT_TRUE(config_from_hf(q3moe).expert_weights_norm);
  json q2 = read_json(test::shared_path("golden/qwen3/hf/config.json"));
  q2["model_type"] = "qwen2";
  EXPECT_TRUE(config_from_hf(q2).attn_qkv_bias);
}

TEST(HfConfig, BadConfigsAreClearErrors) {
  json base = read_json(test::shared_path("golden/llama/hf/config.json"));
  json gpt = base;
  gpt["model_type"] = "gpt2";
  std::string e = error_of([&] { config_from_hf(gpt); });
  EXPECT_NE(e.find("model_type 'gpt2' is not supported (supported: llama, mistral, qwen2, qwen3, qwen3_moe, "
                   "deepseek_v2, deepseek_v3, kimi_k2, glm4_moe)"),
            std::string::npos)
      << e;
  json missing = base;
  missing.erase("hidden_size");
  EXPECT_NE(error_of([&] { config_from_hf(missing); }).find("lacks required key 'hidden_size'"), std::string::npos);
  json typed = base;
  typed["num_hidden_layers"] = "two";
  EXPECT_NE(error_of([&] { config_from_hf(typed); }).find("'num_hidden_layers' must be a non-negative integer"),
            std::string::npos);
  std::string empty = test::temp_dir();
  e = error_of([&] { load_hf_config(empty); });
  EXPECT_NE(e.find("has no config.json"), std::string::npos) << e;
  e = error_of([&] { open_model_source(empty); });
  EXPECT_NE(e.find("has no config.json"), std::string::npos) << e;
}

TEST(HfConfig, GenerationAndTokenizerFiles) {
  std::string dir = test::temp_dir();
  write(dir + "/config.json", test::read_file(test::shared_path("golden/qwen3/hf/config.json")));
  write(dir + "/generation_config.json", R"({"bos_token_id": 1, "eos_token_id": [7, 9]})");
  write(dir + "/tokenizer_config.json", R"({"chat_template": "{{ messages }}"})");
  write(dir + "/tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2}},
                                     "added_tokens": [{"id": 5, "content": "<x>"}]})");
  ModelConfig c = load_hf_config(dir);
  EXPECT_TRUE(c.has_generation_config);
  EXPECT_TRUE(c.has_tokenizer_config);
  EXPECT_TRUE(c.has_chat_template);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 7);
  EXPECT_EQ(c.eos_ids, (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(c.tokenizer_model, "hf");
  EXPECT_EQ(c.tokenizer_vocab, 6);
  ModelConfig twin = load_hf_config(test::shared_path("golden/qwen3/hf"));
  EXPECT_FALSE(twin.has_tokenizer_config);
  EXPECT_FALSE(twin.has_chat_template);
}

TEST(HfSource, EveryGgufTensorIsFoundBitIdentical) {
  for (const char* m : {"llama", "qwen3", "deepseek-v3"}) {
    std::string dir = std::string("golden/") + m;
    auto hf = open_model_source(test::shared_path(dir + "/hf"));
    auto gg = open_gguf_source(test::shared_path(dir + "/f32.gguf"));
    auto want = gg->tensors();
    EXPECT_EQ(hf->tensors().size(), want.size()) << m;
    EXPECT_EQ(hf->hf_folder(), test::shared_path(dir + "/hf"));
    for (const auto& g : want) {
      auto t = hf->find(g.name);
      ASSERT_TRUE(t) << m << ": " << g.name << " not found";
      EXPECT_EQ(t->type, g.type) << g.name;
      EXPECT_EQ(t->n_dims, g.n_dims) << g.name;
      EXPECT_EQ(t->ne, g.ne) << g.name << " " << t->shape_str() << " vs " << g.shape_str();
      ASSERT_EQ(t->n_bytes(), g.n_bytes()) << g.name;
      EXPECT_EQ(std::memcmp(t->data, g.data, g.n_bytes()), 0) << m << ": " << g.name << " differs";
    }
    // Same order as the GGUF for the dense twins (deepseek's GGUF orders within a layer differently).
    if (std::string(m) != "deepseek-v3") {
      auto got = hf->tensors();
      EXPECT_EQ(got.front().name, "token_embd.weight");
    }
  }
}

TEST(HfSource, Fp8WeightsAreDequantizedWithBlockScales) {
  std::string dir = test::temp_dir();
  write(dir + "/config.json", test::read_file(test::shared_path("golden/llama/hf/config.json")));
  // A 130x2 FP8 norm-free weight: two 128-row scale blocks. 0x38 = 1.0, 0xC0 = -2.0, 0x01 = 2^-9.
  const int rows = 130, cols = 2;
  std::string w(rows * cols, '\0');
  for (int r = 0; r < rows; ++r) {
    w[r * cols] = '\x38';
    w[r * cols + 1] = r == 129 ? '\x01' : '\xC0';
  }
  float scales[2] = {0.5f, 3.0f};
  std::string s(reinterpret_cast<const char*>(scales), 8);
  json h = {{"model.embed_tokens.weight",
             {{"dtype", "F8_E4M3"}, {"shape", {rows, cols}}, {"data_offsets", {0, rows * cols}}}},
            {"model.embed_tokens.weight_scale_inv",
             {{"dtype", "F32"}, {"shape", {2, 1}}, {"data_offsets", {rows * cols, rows * cols + 8}}}}};
  write(dir + "/model.safetensors", safetensors_bytes(h, w + s));
  auto src = open_hf_source(dir);
  auto t = src->find("token_embd.weight");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->type, DType::BF16);
  EXPECT_EQ(t->ne[0], cols);
  EXPECT_EQ(t->ne[1], rows);
  auto at = [&](int r, int c) {
    uint16_t b;
    std::memcpy(&b, static_cast<const uint8_t*>(t->data) + 2 * (r * cols + c), 2);
    uint32_t x = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
  };
  EXPECT_EQ(at(0, 0), 0.5f);
  EXPECT_EQ(at(127, 1), -1.0f);
  EXPECT_EQ(at(128, 0), 3.0f);
  EXPECT_EQ(at(128, 1), -6.0f);
  EXPECT_EQ(at(129, 1), std::ldexp(3.0f, -9));
}

TEST(HfSource, UnexpectedTensorsAndMissingExpertsAreErrors) {
  std::string dir = test::temp_dir();
  write(dir + "/config.json", test::read_file(test::shared_path("golden/llama/hf/config.json")));
  json h = {{"model.layers.0.self_attn.weird.weight", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}}};
  write(dir + "/model.safetensors", safetensors_bytes(h, std::string(4, '\0')));
  std::string e = error_of([&] { open_hf_source(dir); });
  EXPECT_NE(e.find("unexpected tensor 'model.layers.0.self_attn.weird.weight'"), std::string::npos) << e;

  write(dir + "/config.json", test::read_file(test::shared_path("golden/deepseek-v3/hf/config.json")));
  json x = {
      {"model.layers.1.mlp.experts.1.up_proj.weight", {{"dtype", "F32"}, {"shape", {1, 1}}, {"data_offsets", {0, 4}}}}};
  write(dir + "/model.safetensors", safetensors_bytes(x, std::string(4, '\0')));
  e = error_of([&] { open_hf_source(dir); });
  EXPECT_NE(e.find("lacks expert 0 of 'blk.1.ffn_up_exps.weight'"), std::string::npos) << e;
}
