// The dense GQA transformer family: Llama 2/3 (and Mistral, which ships as arch "llama"),
// Qwen2 / Qwen2.5 (and the DeepSeek-R1 distills), Qwen3.
// Per layer: x += Attention(RMSNorm(x)); x += SwiGLU(RMSNorm(x)).
// The members differ only in hyperparameters and the tensors present: qwen2 adds q/k/v biases,
// qwen3 per-head q/k RMSNorm; llama uses NORM rope (its converter permutes q/k rows into
// interleaved pairs), the qwens NEOX; Llama 3 scales rope by rope_freqs.weight; tied models
// reuse token_embd as the output head.
#include <nlohmann/json.hpp>

#include "model/blocks.h"
#include "model/families.h"

namespace owl {
namespace {

namespace tn = tensor_names;

class LlamaModel : public blocks::GqaDecoder {
 public:
  explicit LlamaModel(const ModelSource& src) : GqaDecoder(src, src.config()) {
    for (int64_t il = 0; il < config_.n_layer; ++il) load_ffn(src, il, /*experts=*/false, tn::kFfnNorm);
    finish_loading(src);
  }
};

// What the three members share.
class DenseFamily : public Family {
 public:
  std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t il) const override {
    std::vector<TensorSpec> t;
    gqa_attention_tensors(c, t, /*rope_pairs=*/c.rope_type == RopeType::Norm);
    ffn_tensors(c, il, tn::kFfnNorm, t);
    return t;
  }
  std::unique_ptr<Model> load(const ModelSource& src) const override { return std::make_unique<LlamaModel>(src); }
};

ModelConfig with_llama3_rope(ModelConfig c, float factor) {
  c.rope_scaling = RopeScaling::Llama3;
  c.rope_factor = factor;
  c.llama3_low_freq_factor = 1;
  c.llama3_high_freq_factor = 4;
  c.rope_orig_ctx = 8192;
  return c;
}

class Llama : public DenseFamily {
 public:
  const char* arch() const override { return "llama"; }
  std::vector<std::string> hf_model_types() const override { return {"llama", "mistral"}; }
  HfClass hf_class(const ModelConfig&) const override { return {"llama", "LlamaForCausalLM"}; }
  void read_gguf(ModelConfig& c, const GgufKeys&) const override { c.rope_type = RopeType::Norm; }
  void read_hf(ModelConfig& c, const HfKeys&) const override { c.rope_type = RopeType::Norm; }
  void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const override { w.u32("rope.dimension_count", c.n_rot); }
  void write_hf(const ModelConfig&, const ModelSource& src, nlohmann::json& j) const override {
    j["attention_bias"] = src.find(layer_tensor(0, tn::kAttnQBias)).has_value();
  }
  const char* tokenizer_pre() const override { return "llama-bpe"; }
  std::vector<SynthShape> synth_shapes() const override {
    auto s = [](auto... a) {
      ModelConfig c = synth_config("llama", a...);
      c.rope_type = RopeType::Norm;
      return c;
    };
    // vocab, embd, layers, heads, kv heads, head dim, ff, ctx, theta, eps (from each config.json)
    return {
        {"llama-3.2-1b", with_llama3_rope(s(128256, 2048, 16, 32, 8, 64, 8192, 131072, 5e5f, 1e-5f), 32), true},
        {"llama-3.2-3b", with_llama3_rope(s(128256, 3072, 28, 24, 8, 128, 8192, 131072, 5e5f, 1e-5f), 32), true},
        {"llama-3.1-8b", with_llama3_rope(s(128256, 4096, 32, 32, 8, 128, 14336, 131072, 5e5f, 1e-5f), 8), false},
        // golden/llama-rope-scaled's hyperparameters, for tests
        {"tiny-llama", with_llama3_rope(s(512, 256, 2, 4, 1, 64, 512, 131072, 5e5f, 1e-5f), 32), true},
    };
  }
};

// Qwen's sliding window is used only when use_sliding_window is set (llama.cpp's llama
// architecture ignores Mistral's window, and so does owl, as the GGUF would).
void read_qwen_sliding_window(ModelConfig& c, const HfKeys& k) {
  if (k.boolean("use_sliding_window", false)) c.sliding_window = k.integer("sliding_window", 0);
}

class Qwen2 : public DenseFamily {
 public:
  const char* arch() const override { return "qwen2"; }
  std::vector<std::string> hf_model_types() const override { return {"qwen2"}; }
  HfClass hf_class(const ModelConfig&) const override { return {"qwen2", "Qwen2ForCausalLM"}; }
  void read_gguf(ModelConfig& c, const GgufKeys&) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qkv_bias = true;
  }
  void read_hf(ModelConfig& c, const HfKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qkv_bias = true;
    read_qwen_sliding_window(c, k);
  }
  void write_hf(const ModelConfig& c, const ModelSource&, nlohmann::json& j) const override {
    if (c.sliding_window == 0) j["use_sliding_window"] = false;
  }
  const char* tokenizer_pre() const override { return "qwen2"; }
  std::vector<SynthShape> synth_shapes() const override {
    auto s = [](auto... a) {
      ModelConfig c = synth_config("qwen2", a...);
      c.attn_qkv_bias = true;
      return c;
    };
    return {
        {"deepseek-r1-distill-qwen-1.5b", s(151936, 1536, 28, 12, 2, 128, 8960, 131072, 1e4f, 1e-6f), false},
        {"qwen2.5-7b", s(152064, 3584, 28, 28, 4, 128, 18944, 131072, 1e6f, 1e-6f), false},
        {"tiny-qwen2", s(512, 256, 2, 4, 2, 64, 512, 131072, 1e4f, 1e-6f), false},  // golden/qwen2
    };
  }
};

class Qwen3 : public DenseFamily {
 public:
  const char* arch() const override { return "qwen3"; }
  std::vector<std::string> hf_model_types() const override { return {"qwen3"}; }
  HfClass hf_class(const ModelConfig&) const override { return {"qwen3", "Qwen3ForCausalLM"}; }
  void read_gguf(ModelConfig& c, const GgufKeys&) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qk_norm = true;
  }
  void read_hf(ModelConfig& c, const HfKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qk_norm = true;
    read_qwen_sliding_window(c, k);
  }
  void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const override {
    w.u32("attention.key_length", c.head_dim_k);
    w.u32("attention.value_length", c.head_dim_v);
  }
  void write_hf(const ModelConfig& c, const ModelSource&, nlohmann::json& j) const override {
    if (c.sliding_window == 0) j["use_sliding_window"] = false;
  }
  const char* tokenizer_pre() const override { return "qwen2"; }
  std::vector<SynthShape> synth_shapes() const override {
    auto s = [](auto... a) {
      ModelConfig c = synth_config("qwen3", a...);
      c.attn_qk_norm = true;
      return c;
    };
    return {
        {"qwen3-0.6b", s(151936, 1024, 28, 16, 8, 128, 3072, 40960, 1e6f, 1e-6f), true},
        {"qwen3-1.7b", s(151936, 2048, 28, 16, 8, 128, 6144, 40960, 1e6f, 1e-6f), true},
        {"qwen3-4b", s(151936, 2560, 36, 32, 8, 128, 9728, 40960, 1e6f, 1e-6f), true},
        {"qwen3-8b", s(151936, 4096, 36, 32, 8, 128, 12288, 40960, 1e6f, 1e-6f), false},
        {"tiny-qwen3", s(512, 256, 2, 4, 2, 128, 512, 40960, 1e6f, 1e-6f), true},  // golden/qwen3
    };
  }
};

}  // namespace

const Family& llama_family() {
  static const Llama f;
  return f;
}
const Family& qwen2_family() {
  static const Qwen2 f;
  return f;
}
const Family& qwen3_family() {
  static const Qwen3 f;
  return f;
}

}  // namespace owl
