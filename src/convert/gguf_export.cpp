#include "convert/gguf_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/quant_plan.h"
#include "formats/gguf_writer.h"
#include "convert/hf_tokenizer_gguf.h"
#include "kernels/kernels.h"
#include "model/family.h"
#include "tensor/quants.h"

namespace owl {

namespace {

using gguf::Value;

// llama.cpp's llama_ftype for the files owl writes (general.file_type).
uint32_t file_type_of(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::BF16:
      return 32;
    default:
      return 0;
  }
}

// Tensors the converter keeps in F32 whatever --outtype says: vectors (norms,
// biases, exp_probs_b), the MoE router and the rope frequency divisors.
bool stays_f32(const TensorView& t) {
  if (t.n_dims <= 1) return true;
  const std::string& n = t.name;
  return n.find("ffn_gate_inp.") != std::string::npos || n == "rope_freqs.weight";
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

std::vector<float> llama3_rope_freqs(const ModelConfig& c) {
  return kernels::llama3_rope_factors(c.n_rot, c.rope_theta, c.rope_factor, c.llama3_low_freq_factor,
                                      c.llama3_high_freq_factor, c.rope_orig_ctx);
}

gguf::Metadata gguf_metadata_from_config(const ModelConfig& c, uint32_t file_type) {
  const Family& family = family_of(c.arch);
  gguf::Metadata m;
  GgufKeyWriter w(m, c.arch);
  m.set("general.architecture", Value::str(c.arch));
  m.set("general.name", Value::str(c.name));
  m.set("general.file_type", Value::u32(file_type));
  w.u32("vocab_size", c.n_vocab);
  w.u32("context_length", c.n_ctx_train);
  w.u32("embedding_length", c.n_embd);
  w.u32("block_count", c.n_layer);
  w.u32("feed_forward_length", c.n_ff);
  w.u32("attention.head_count", c.n_head);
  w.f32("attention.layer_norm_rms_epsilon", c.rms_eps);
  w.f32("rope.freq_base", c.rope_theta);
  w.u32("attention.head_count_kv", c.n_head_kv);
  if (c.head_dim_k != c.n_embd / c.n_head || c.head_dim_v != c.head_dim_k) {
    w.u32("attention.key_length", c.head_dim_k);
    w.u32("attention.value_length", c.head_dim_v);
  }
  if (c.n_rot != c.head_dim_k) w.u32("rope.dimension_count", c.n_rot);
  if (c.sliding_window > 0) w.u32("attention.sliding_window", c.sliding_window);
  if (c.n_nextn_layers > 0) w.u32("nextn_predict_layers", c.n_nextn_layers);
  if (c.is_moe()) {
    w.u32("expert_count", c.n_expert);
    w.u32("expert_used_count", c.n_expert_used);
    w.u32("expert_feed_forward_length", c.n_ff_exp);
    if (c.n_ff_shexp > 0) w.u32("expert_shared_feed_forward_length", c.n_ff_shexp);
  }
  switch (c.rope_scaling) {
    case RopeScaling::None:
    case RopeScaling::Llama3:  // written as the rope_freqs.weight tensor
      break;
    case RopeScaling::Linear:
      w.string("rope.scaling.type", "linear");
      w.f32("rope.scaling.factor", c.rope_factor);
      break;
    case RopeScaling::Yarn:
      w.string("rope.scaling.type", "yarn");
      w.f32("rope.scaling.factor", c.rope_factor);
      w.u32("rope.scaling.original_context_length", c.rope_orig_ctx);
      w.f32("rope.scaling.yarn_beta_fast", c.yarn_beta_fast);
      w.f32("rope.scaling.yarn_beta_slow", c.yarn_beta_slow);
      if (c.yarn_log_multiplier != 0.0f) w.f32("rope.scaling.yarn_log_multiplier", c.yarn_log_multiplier);
      break;
  }
  family.write_gguf(c, w);
  return m;
}

void write_gguf(const ModelSource& src, const std::string& path, const GgufExportOptions& opt) {
  ModelConfig c = src.config();
  if (!opt.name.empty()) c.name = opt.name;
  std::optional<QuantTarget> target;
  if (!opt.type.empty()) target = parse_quant_target(opt.type);  // a UsageError listing the names

  std::vector<TensorView> tensors = src.tensors();
  if (tensors.empty()) throw Error("model '" + src.path() + "' has no tensors; nothing to convert");
  for (const auto& t : tensors)
    if (!is_float(t.type) && !info(t.type).quantized)
      throw Error("model '" + src.path() + "': tensor '" + t.name + "' has type " + dtype_name(t.type) +
                  ", which is not a weight type owl converts");

  // llama3 rope scaling: the GGUF carries the frequency divisors as a tensor (after token_embd).
  std::vector<float> rope_freqs;
  if (c.rope_scaling == RopeScaling::Llama3 && !src.find("rope_freqs.weight")) {
    rope_freqs = llama3_rope_freqs(c);
    TensorView rf;
    rf.name = "rope_freqs.weight";
    rf.type = DType::F32;
    rf.n_dims = 1;
    rf.ne = {static_cast<int64_t>(rope_freqs.size()), 1, 1, 1};
    rf.data = rope_freqs.data();
    size_t at = 0;
    while (at < tensors.size() && tensors[at].name == "token_embd.weight") ++at;
    tensors.insert(tensors.begin() + static_cast<std::ptrdiff_t>(at), rf);
  }

  // Each tensor's output type: the converter's F32 tensors, then the quantisation plan of
  // the target (owl quantize's, llama-quantize's mix), else the stored float type.
  std::vector<std::optional<DType>> plan(tensors.size());
  if (target) {
    QuantModelInfo mi{c.arch, c.n_layer, c.n_expert, c.n_head, c.n_head_kv};
    plan = plan_tensor_types(*target, mi, tensors);
  }
  std::vector<DType> out_types;
  std::map<DType, int64_t> matrix_elems;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    DType o = t.type;
    if (stays_f32(t))
      o = DType::F32;
    else if (plan[i])
      o = *plan[i];
    else if (!is_float(o))
      o = DType::F32;  // quantised sources become F32 unless a target says otherwise
    out_types.push_back(o);
    if (t.n_dims >= 2) matrix_elems[o] += t.n_elements();
  }
  DType main_type = DType::F32;
  int64_t best = -1;
  for (const auto& [t, n] : matrix_elems)
    if (n > best) best = n, main_type = t;
  const uint32_t file_type = target ? target->file_type : file_type_of(main_type);

  gguf::Writer w;
  w.metadata() = gguf_metadata_from_config(c, file_type);
  const std::string folder = src.hf_folder();
  if (!folder.empty() && std::filesystem::exists(std::filesystem::path(folder) / "tokenizer.json"))
    add_hf_tokenizer_metadata(w.metadata(), folder, c);
  else
    w.metadata().set("tokenizer.ggml.model", Value::str("none"));

  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView t = tensors[i];
    const DType out = out_types[i];
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + std::max(t.n_dims, 1));
    if (out == t.type) {
      w.add_tensor(t.name, out, ne, [t](uint8_t* dst, size_t n) { std::memcpy(dst, t.data, n); });
      continue;
    }
    if (ne[0] % info(out).block_size != 0)
      throw Error("tensor '" + t.name + "' has rows of " + std::to_string(ne[0]) + " elements, not a multiple of " +
                  dtype_name(out) + "'s block size");
    w.add_tensor(t.name, out, ne, [t, out](uint8_t* dst, size_t) { convert_tensor(t, out, dst, default_pool()); });
  }

  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec))
    throw Error("cannot write '" + path + "': folder '" + parent.string() + "' does not exist");
  w.write(path);
}

}  // namespace owl
