#include "convert/hf_export.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/safetensors_writer.h"
#include "convert/gguf_export.h"
#include "convert/hf_tokenizer_export.h"
#include "tensor/quants.h"

namespace owl {

namespace {

using json = nlohmann::json;

// The shortest decimal that reads back as the same float (1e-05, not 9.99999974e-06).
double nice(float f) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

int64_t trunk_layers(const ModelSource& src) {
  const ModelConfig& c = src.config();
  int64_t nextn = 0;
  if (const gguf::File* f = src.gguf_file()) nextn = f->metadata().get_int(c.arch + ".nextn_predict_layers").value_or(0);
  if (nextn < 0 || nextn >= c.n_layer) throw Error("model '" + src.path() + "': nextn_predict_layers leaves no layers");
  return c.n_layer - nextn;
}

struct Llama3 {
  float factor = 1, low = 1, high = 4;
  int64_t orig = 0;
};

// Recovers config.json's llama3 rope_scaling from the GGUF's divisors: the factor is the largest
// divisor; low/high/original context are the usual values, accepted only if they reproduce every divisor.
Llama3 recover_llama3(const ModelSource& src, const TensorView& rf) {
  const ModelConfig& c = src.config();
  if (rf.type != DType::F32 || rf.n_elements() != c.n_rot / 2)
    throw Error("model '" + src.path() + "': rope_freqs.weight must hold " + std::to_string(c.n_rot / 2) + " F32 values");
  std::vector<float> have(static_cast<size_t>(rf.n_elements()));
  std::memcpy(have.data(), rf.data, have.size() * 4);
  float factor = 1;
  for (float f : have) factor = std::max(factor, f);
  const int64_t origs[] = {8192, 4096, 2048, 16384, 32768, 65536, 131072, 1024};
  const float lows[] = {1, 2, 0.5f}, highs[] = {4, 8, 2, 1};
  for (int64_t orig : origs)
    for (float lo : lows)
      for (float hi : highs) {
        if (hi <= lo) continue;
        ModelConfig t = c;
        t.rope_factor = factor;
        t.rope_orig_ctx = orig;
        t.llama3_low_freq_factor = lo;
        t.llama3_high_freq_factor = hi;
        const std::vector<float> want = llama3_rope_freqs(t);
        bool same = true;
        for (size_t i = 0; i < want.size() && same; ++i) same = std::fabs(want[i] - have[i]) <= 1e-6f * std::fabs(have[i]);
        if (same) return {factor, lo, hi, orig};
      }
  throw Error("model '" + src.path() + "': rope_freqs.weight does not match llama3 rope scaling with usual parameters; "
              "owl cannot express it in config.json");
}

// One row at a time as float32, whatever the stored type.
void row_f32(const TensorView& t, int64_t r, float* dst) { dequantize_row_ref(t.type, t.row(r), dst, t.ne[0]); }

struct HfTensor {
  std::string name;
  DType type;
  std::vector<int64_t> shape;  // PyTorch order
  int64_t row_len;             // elements per output row (the last dimension)
  // Writes output row r (row_len floats).
  std::function<void(int64_t r, float* dst)> row;
};

const std::map<std::string, std::string>& layer_names() {
  static const std::map<std::string, std::string> m = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"attn_q_a.weight", "self_attn.q_a_proj.weight"},
      {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
      {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
      {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
      {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
      {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
      {"ffn_gate_inp.weight", "mlp.gate.weight"},
      {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
      {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
      {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
      {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"},
  };
  return m;
}

class Planner {
 public:
  Planner(const ModelSource& src, const HfExportOptions& opt) : src_(src), c_(src.config()) {
    if (!opt.dtype.empty()) {
      auto t = dtype_from_name(opt.dtype);
      if (!t || (*t != DType::F32 && *t != DType::F16 && *t != DType::BF16))
        throw UsageError("--dtype '" + opt.dtype + "' is not supported (supported: f32, f16, bf16)");
      forced_ = *t;
    }
  }

  std::vector<HfTensor> plan() {
    const int64_t trunk = trunk_layers(src_);
    for (const TensorView& t : src_.tensors()) {
      const std::string& n = t.name;
      if (n == "token_embd.weight") plain("model.embed_tokens.weight", t);
      else if (n == "output_norm.weight") plain("model.norm.weight", t);
      else if (n == "output.weight") plain("lm_head.weight", t);
      else if (n == "rope_freqs.weight") continue;  // becomes config.json rope_scaling
      else if (n.compare(0, 4, "blk.") == 0) layer_tensor(t, trunk);
      else unknown(n);
    }
    return std::move(out_);
  }

 private:
  [[noreturn]] void unknown(const std::string& n) const {
    throw Error("model '" + src_.path() + "': tensor '" + n + "' has no Hugging Face name owl knows for " + c_.arch +
                "; cannot export it");
  }

  DType out_type(DType stored) const {
    if (forced_) return *forced_;
    return (stored == DType::F32 || stored == DType::F16 || stored == DType::BF16) ? stored : DType::F32;
  }

  static std::vector<int64_t> torch_shape(const TensorView& t) {
    std::vector<int64_t> s;
    for (int i = std::max(t.n_dims, 1) - 1; i >= 0; --i) s.push_back(t.ne[static_cast<size_t>(i)]);
    return s;
  }

  void plain(const std::string& name, const TensorView& t) {
    out_.push_back({name, out_type(t.type), torch_shape(t), t.ne[0], [t](int64_t r, float* d) { row_f32(t, r, d); }});
  }

  void layer_tensor(const TensorView& t, int64_t trunk) {
    const std::string& n = t.name;
    const size_t dot = n.find('.', 4);
    int64_t il = -1;
    try {
      il = std::stoll(n.substr(4, dot - 4));
    } catch (...) {
      unknown(n);
    }
    if (dot == std::string::npos) unknown(n);
    if (il >= trunk) return;  // NextN / MTP layer
    const std::string rest = n.substr(dot + 1);
    const std::string hf = "model.layers." + std::to_string(il) + ".";

    if (rest == "attn_k_b.weight") return kv_b_merge(hf, t, "blk." + std::to_string(il) + ".attn_v_b.weight");
    if (rest == "attn_v_b.weight") return;  // merged with attn_k_b
    if (rest == "ffn_gate_exps.weight" || rest == "ffn_up_exps.weight" || rest == "ffn_down_exps.weight")
      return experts(hf, t, rest.substr(4, rest.find('_', 4) - 4));
    auto it = layer_names().find(rest);
    if (it == layer_names().end()) unknown(n);
    if (c_.arch == "llama" && (rest.compare(0, 7, "attn_q.") == 0 || rest.compare(0, 7, "attn_k.") == 0))
      return unpermute(hf + it->second, t, rest[5] == 'q' ? c_.n_head : c_.n_head_kv);
    plain(hf + it->second, t);
  }

  // Inverse of the converter's Llama permute: HF row h*D + s*D/2 + j = GGUF row h*D + 2j + s.
  void unpermute(const std::string& name, const TensorView& t, int64_t n_heads) {
    const bool vec = t.n_dims == 1;
    const int64_t rows = vec ? t.ne[0] : t.rows();
    if (rows % n_heads != 0 || (rows / n_heads) % 2 != 0)
      throw Error("model '" + src_.path() + "': '" + t.name + "' has " + std::to_string(rows) + " rows, not " +
                  std::to_string(n_heads) + " heads of an even size");
    const int64_t d = rows / n_heads;
    auto gguf_row = [d](int64_t r) {
      const int64_t h = r / d, w = r % d, s = w / (d / 2), j = w % (d / 2);
      return h * d + 2 * j + s;
    };
    if (vec) {  // a bias: permute single elements
      out_.push_back({name, out_type(t.type), torch_shape(t), t.ne[0], [t, gguf_row](int64_t, float* dst) {
                        std::vector<float> all(static_cast<size_t>(t.ne[0]));
                        row_f32(t, 0, all.data());
                        for (int64_t i = 0; i < t.ne[0]; ++i) dst[i] = all[static_cast<size_t>(gguf_row(i))];
                      }});
      return;
    }
    out_.push_back({name, out_type(t.type), torch_shape(t), t.ne[0],
                    [t, gguf_row](int64_t r, float* dst) { row_f32(t, gguf_row(r), dst); }});
  }

  // {in, out, n_expert} -> mlp.experts.E.<proj>_proj.weight (out, in) for each expert.
  void experts(const std::string& hf, const TensorView& t, const std::string& proj) {
    if (t.n_dims != 3) throw Error("model '" + src_.path() + "': '" + t.name + "' is not a stack of expert matrices");
    for (int64_t e = 0; e < t.ne[2]; ++e) {
      const int64_t base = e * t.ne[1];
      out_.push_back({hf + "mlp.experts." + std::to_string(e) + "." + proj + "_proj.weight", out_type(t.type),
                      {t.ne[1], t.ne[0]}, t.ne[0], [t, base](int64_t r, float* dst) { row_f32(t, base + r, dst); }});
    }
  }

  // attn_k_b {nope, kv_lora, n_head} + attn_v_b {kv_lora, v, n_head} -> kv_b_proj (n_head*(nope+v), kv_lora):
  // per head the rows [W_k (nope rows) ; W_v (v rows)], W_k being attn_k_b's head transposed.
  void kv_b_merge(const std::string& hf, const TensorView& kb, const std::string& vb_name) {
    auto vb = src_.find(vb_name);
    if (!vb) throw Error("model '" + src_.path() + "' has '" + kb.name + "' but lacks '" + vb_name + "'; the file is incomplete");
    const TensorView v = *vb;
    const int64_t nope = kb.ne[0], lora = kb.ne[1], nh = kb.ne[2], vd = v.ne[1];
    if (v.ne[0] != lora || v.ne[2] != nh)
      throw Error("model '" + src_.path() + "': '" + kb.name + "' " + kb.shape_str() + " and '" + vb_name + "' " +
                  v.shape_str() + " do not describe the same heads");
    DType type = out_type(kb.type);
    if (!forced_ && kb.type != v.type) type = DType::F32;
    // A head's W_k is gathered once per head and cached between its rows.
    auto cache = std::make_shared<std::pair<int64_t, std::vector<float>>>(-1, std::vector<float>());
    out_.push_back({hf + "self_attn.kv_b_proj.weight", type, {nh * (nope + vd), lora}, lora,
                    [kb, v, nope, lora, vd, cache](int64_t r, float* dst) {
                      const int64_t h = r / (nope + vd), i = r % (nope + vd);
                      if (i >= nope) return row_f32(v, h * vd + (i - nope), dst);
                      if (cache->first != h) {
                        cache->second.resize(static_cast<size_t>(lora * nope));
                        for (int64_t l = 0; l < lora; ++l) row_f32(kb, h * lora + l, cache->second.data() + l * nope);
                        cache->first = h;
                      }
                      for (int64_t l = 0; l < lora; ++l) dst[l] = cache->second[static_cast<size_t>(l * nope + i)];
                    }});
  }

  const ModelSource& src_;
  const ModelConfig& c_;
  std::optional<DType> forced_;
  std::vector<HfTensor> out_;
};

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

}  // namespace

json hf_config_json(const ModelSource& src, const std::string& torch_dtype) {
  const ModelConfig& c = src.config();
  const std::string& a = c.arch;
  const bool mla = a == "deepseek2";
  json j;
  const bool v3 = mla && c.expert_gating == ExpertGating::Sigmoid;
  const std::map<std::string, std::pair<const char*, const char*>> types = {
      {"llama", {"LlamaForCausalLM", "llama"}},         {"qwen2", {"Qwen2ForCausalLM", "qwen2"}},
      {"qwen3", {"Qwen3ForCausalLM", "qwen3"}},         {"qwen3moe", {"Qwen3MoeForCausalLM", "qwen3_moe"}},
      {"glm4moe", {"Glm4MoeForCausalLM", "glm4_moe"}},
  };
  if (mla) {
    j["architectures"] = {v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
    j["model_type"] = v3 ? "deepseek_v3" : "deepseek_v2";
  } else if (auto it = types.find(a); it != types.end()) {
    j["architectures"] = {it->second.first};
    j["model_type"] = it->second.second;
  } else {
    throw Error("model '" + src.path() + "': architecture '" + a + "' has no Hugging Face mapping in owl; cannot export it");
  }
  if (!c.name.empty()) j["_name_or_path"] = c.name;
  j["vocab_size"] = c.n_vocab;
  j["max_position_embeddings"] = c.n_ctx_train;
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.n_ff;
  j["num_hidden_layers"] = trunk_layers(src);
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = mla ? c.n_head : c.n_head_kv;  // HF decompresses MLA's K/V per head
  if (!mla) j["head_dim"] = c.head_dim_k;
  j["rms_norm_eps"] = nice(c.rms_eps);
  j["rope_theta"] = nice(c.rope_theta);
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = !src.find("output.weight");
  j["torch_dtype"] = torch_dtype;
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_ids.size() > 1) j["eos_token_id"] = c.eos_ids;
  else if (c.eos_id >= 0) j["eos_token_id"] = c.eos_id;

  if (a == "llama") j["attention_bias"] = static_cast<bool>(src.find("blk.0.attn_q.bias"));
  if (c.sliding_window > 0) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = c.sliding_window;
    j["max_window_layers"] = j["num_hidden_layers"];
  } else if (a == "qwen2" || a == "qwen3" || a == "qwen3moe") {
    j["use_sliding_window"] = false;
  }

  // rope_scaling: llama3 comes from the GGUF's rope_freqs tensor.
  json rs;
  if (auto rf = src.find("rope_freqs.weight"); rf && a == "llama") {
    const Llama3 l = recover_llama3(src, *rf);
    rs = {{"rope_type", "llama3"}, {"factor", nice(l.factor)}, {"low_freq_factor", nice(l.low)},
          {"high_freq_factor", nice(l.high)}, {"original_max_position_embeddings", l.orig}};
  } else if (c.rope_scaling == RopeScaling::Llama3) {
    rs = {{"rope_type", "llama3"}, {"factor", nice(c.rope_factor)}, {"low_freq_factor", nice(c.llama3_low_freq_factor)},
          {"high_freq_factor", nice(c.llama3_high_freq_factor)}, {"original_max_position_embeddings", c.rope_orig_ctx}};
  } else if (c.rope_scaling == RopeScaling::Linear) {
    rs = {{"type", "linear"}, {"factor", nice(c.rope_factor)}};
  } else if (c.rope_scaling == RopeScaling::Yarn) {
    // GGUF's yarn_log_multiplier is 0.1 * mscale_all_dim; mscale = mscale_all_dim leaves cos/sin unscaled,
    // which is what llama.cpp computes from the GGUF.
    const double mscale_all_dim = nice(static_cast<float>(static_cast<double>(c.yarn_log_multiplier) / 0.1));
    rs = {{"type", "yarn"}, {"factor", nice(c.rope_factor)}, {"original_max_position_embeddings", c.rope_orig_ctx},
          {"beta_fast", nice(c.yarn_beta_fast)}, {"beta_slow", nice(c.yarn_beta_slow)},
          {"mscale", mscale_all_dim}, {"mscale_all_dim", mscale_all_dim}};
  }
  j["rope_scaling"] = rs.is_null() ? json(nullptr) : rs;

  if (a == "glm4moe") {
    j["partial_rotary_factor"] = static_cast<double>(c.n_rot) / static_cast<double>(c.head_dim_k);
    j["attention_bias"] = c.attn_qkv_bias;
    j["use_qk_norm"] = static_cast<bool>(src.find("blk.0.attn_q_norm.weight"));
    j["num_nextn_predict_layers"] = 0;
  }
  if (a == "qwen3moe") {
    j["num_experts"] = c.n_expert;
    j["num_experts_per_tok"] = c.n_expert_used;
    j["moe_intermediate_size"] = c.n_ff_exp;
    j["norm_topk_prob"] = c.expert_weights_norm;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = json::array();
  }
  if (mla || a == "glm4moe") {
    j["n_routed_experts"] = c.n_expert;
    j["num_experts_per_tok"] = c.n_expert_used;
    j["moe_intermediate_size"] = c.n_ff_exp;
    j["n_shared_experts"] = c.n_expert_shared;
    j["first_k_dense_replace"] = c.n_leading_dense;
    j["moe_layer_freq"] = 1;
    j["routed_scaling_factor"] = nice(c.expert_weights_scale);
    j["norm_topk_prob"] = c.expert_weights_norm;
    j["scoring_func"] = c.expert_gating == ExpertGating::Sigmoid ? "sigmoid" : "softmax";
    j["n_group"] = c.expert_group_count;
    j["topk_group"] = c.expert_group_used;
    if (mla)
      j["topk_method"] = v3 ? "noaux_tc" : (c.expert_group_count > 1 ? "group_limited_greedy" : "greedy");
  }
  if (mla) {
    j["q_lora_rank"] = c.q_lora_rank > 0 ? json(c.q_lora_rank) : json(nullptr);
    j["kv_lora_rank"] = c.kv_lora_rank;
    j["qk_nope_head_dim"] = c.qk_nope_dim;
    j["qk_rope_head_dim"] = c.qk_rope_dim;
    j["v_head_dim"] = c.v_head_dim;
    j["num_nextn_predict_layers"] = 0;
  }
  return j;
}

std::string export_hf(const ModelSource& src, const std::string& folder, const HfExportOptions& opt) {
  namespace fs = std::filesystem;
  std::vector<HfTensor> tensors = Planner(src, opt).plan();
  std::map<DType, int64_t> elems;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    elems[t.type] += n;
  }
  DType main = DType::F32;
  int64_t best = -1;
  for (const auto& [t, n] : elems)
    if (n > best) best = n, main = t;
  const json config = hf_config_json(src, torch_dtype_name(main));

  std::error_code ec;
  fs::create_directories(folder, ec);
  if (!fs::is_directory(folder, ec))
    throw Error("cannot create folder '" + folder + "'" + (ec ? ": " + ec.message() : "") +
                "; give a writable folder path");

  safetensors::Writer w;
  for (const HfTensor& t : tensors) {
    w.add_tensor(t.name, t.type, t.shape, [&t](uint8_t* dst, size_t n_bytes) {
      const size_t row_out = row_bytes(t.type, t.row_len);
      const int64_t rows = static_cast<int64_t>(n_bytes / row_out);
      std::vector<float> row(static_cast<size_t>(t.row_len));
      for (int64_t r = 0; r < rows; ++r) {
        t.row(r, row.data());
        quantize_row(t.type, row.data(), dst + static_cast<size_t>(r) * row_out, t.row_len);
      }
    });
  }
  w.write((fs::path(folder) / "model.safetensors").string());

  const std::string cfg_path = (fs::path(folder) / "config.json").string();
  std::ofstream f(cfg_path, std::ios::binary);
  if (!f) throw Error("cannot write '" + cfg_path + "'; check that the folder is writable");
  f << config.dump(2) << "\n";
  if (!f.flush()) throw Error("writing '" + cfg_path + "' failed (disk full?)");

  const gguf::File* g = src.gguf_file();
  if (!g || g->metadata().get_string("tokenizer.ggml.model").value_or("none") == "none") return "";
  return write_hf_tokenizer(g->metadata(), folder, src.config().n_ctx_train);
}

}  // namespace owl
