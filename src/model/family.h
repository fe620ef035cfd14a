// A model family: everything owl knows about one architecture, in the family's own file
// (llama.cpp, qwen3moe.cpp, deepseek2.cpp, glm4moe.cpp): its hyperparameter defaults and how
// they map onto GGUF and config.json keys, the tensors of a layer (GGUF and Hugging Face names,
// shapes, HF layout), the real model shapes `owl synth` writes, and its forward pass.
// Everything else (config readers and writers, convert, export, synth, info) asks the registry:
// a new family is one file plus one line in families.cpp.
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/config_keys.h"
#include "model/tensor_names.h"

namespace owl {

class Model;
class ModelSource;

// How a tensor's Hugging Face form differs from its GGUF form.
enum class HfLayout {
  Same,         // same values, same row order
  RopePairsQ,   // Llama q_proj: each query head's rows in rotate-half order (GGUF: interleaved pairs)
  RopePairsK,   // the same for k_proj, per KV head
  ExpertStack,  // one HF matrix per expert ("{e}") <-> GGUF stack {in, out, n_expert}
  KvBSplitK,    // DeepSeek kv_b_proj: per head, its W_k rows transposed form attn_k_b {nope, kv_lora, n_head}
  KvBSplitV,    //   and its W_v rows form attn_v_b {kv_lora, v, n_head}
};

// How `owl synth` fills a tensor with random values.
enum class SynthInit { Matrix, Norm, Bias, Zero };

// One tensor of a layer.
struct TensorSpec {
  TensorName name;
  std::vector<int64_t> ne;  // GGUF shape, ggml order
  bool required = true;     // false: the loader accepts it when present (synth leaves it out)
  HfLayout hf_layout = HfLayout::Same;
  SynthInit init = SynthInit::Matrix;
};

// A real model's shape for `owl synth` (random weights, real sizes).
struct SynthShape {
  std::string name;
  ModelConfig config;
  bool tied = false;  // no output.weight: the head reuses token_embd
};

// config.json "model_type" and "architectures" of a family.
struct HfClass {
  const char* model_type;
  const char* architecture;
};

class Family {
 public:
  virtual ~Family() = default;

  // The GGUF general.architecture this family runs.
  virtual const char* arch() const = 0;

  // ---- hyperparameters ----
  // config.json model_type values that load as this architecture.
  virtual std::vector<std::string> hf_model_types() const = 0;
  // What export writes as model_type / architectures for this config.
  virtual HfClass hf_class(const ModelConfig& c) const = 0;
  // Family keys and defaults, applied after the keys every architecture shares (config.cpp,
  // hf_config.cpp). GGUF keys are read as "<arch>.<key>".
  virtual void read_gguf(ModelConfig& c, const GgufKeys& k) const {}
  virtual void read_hf(ModelConfig& c, const HfKeys& k) const {}
  // The inverse, for convert (GGUF) and export (config.json); the source answers questions
  // about tensors (e.g. whether biases are present).
  virtual void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const {}
  virtual void write_hf(const ModelConfig& c, const ModelSource& src, nlohmann::json& j) const {}
  // tokenizer.ggml.pre for a tokenizer.json whose pre-tokenizer owl does not recognise.
  virtual const char* tokenizer_pre() const { return "default"; }

  // ---- tensors ----
  // The tensors of layer il, in file order (a NextN layer's own tensors after its block's).
  virtual std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t il) const = 0;

  // ---- shapes and forward ----
  virtual std::vector<SynthShape> synth_shapes() const { return {}; }
  // Builds the model; the source must outlive it (weights stay in the mapped file).
  virtual std::unique_ptr<Model> load(const ModelSource& src) const = 0;
};

// ---- the registry ----
// Every family, built-in ones first (families.cpp), then registered ones.
std::vector<const Family*> families();
// The family of a GGUF architecture, or null.
const Family* find_family(const std::string& arch);
// The same; throws owl::Error listing the supported architectures when there is none.
const Family& family_of(const std::string& arch);
// The family reading a config.json model_type, or null.
const Family* family_for_hf_model_type(const std::string& model_type);
// Adds a family (tests, out-of-tree families); its arch must be new.
void register_family(std::unique_ptr<Family> family);

// ---- helpers for family files ----
// A dense GQA shape of a real model (NEOX rope unless the family says otherwise in read).
ModelConfig synth_config(const std::string& arch, int64_t vocab, int64_t n_embd, int64_t n_layer, int64_t n_head,
                         int64_t n_head_kv, int64_t head_dim, int64_t n_ff, int64_t ctx, float rope_theta,
                         float rms_eps);
// GQA attention tensors of layer il (attn_norm, q, k, v, output; q/k/v biases required when
// c.attn_qkv_bias, else accepted; q/k norms when c.attn_qk_norm).
void gqa_attention_tensors(const ModelConfig& c, std::vector<TensorSpec>& out, bool rope_pairs = false);
// The FFN tensors of layer il after its norm (`norm`): SwiGLU for dense layers, else router,
// optional exp_probs_b (required when require_probs_bias), the expert stacks and shared experts.
void ffn_tensors(const ModelConfig& c, int64_t il, const TensorName& norm, std::vector<TensorSpec>& out,
                 bool require_probs_bias = false);
// The NextN/MTP layer's own tensors (blk.<il>.nextn.*, HF model.layers.<il>.{eh_proj,enorm,...})
// when il is one of the c.n_nextn_layers last layers; nothing otherwise.
void nextn_tensors(const ModelConfig& c, int64_t il, std::vector<TensorSpec>& out);

}  // namespace owl

namespace owl {

// DeepSeekMoE routing (deepseek2, glm4moe): shared experts, leading dense layers, scaled and
// group-limited routing over softmax or sigmoid scores. config.json and GGUF keys both ways.
void read_hf_deepseek_moe(ModelConfig& c, const HfKeys& k, const char* default_scoring);
void write_hf_deepseek_moe(const ModelConfig& c, nlohmann::json& j);
void write_gguf_deepseek_moe(const ModelConfig& c, GgufKeyWriter& w);

}  // namespace owl
