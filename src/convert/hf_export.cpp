#include "convert/hf_export.h"

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
#include "model/config_keys.h"
#include "model/family.h"
#include "tensor/quants.h"

namespace owl {

namespace {

using json = nlohmann::json;

int64_t trunk_layers(const ModelSource& src) { return src.config().n_layer - src.config().n_nextn_layers; }

struct Llama3 {
  float factor = 1, low = 1, high = 4;
  int64_t orig = 0;
};

// Recovers config.json's llama3 rope_scaling from the GGUF's divisors: the factor is the largest
// divisor; low/high/original context are the usual values, accepted only if they reproduce every divisor.
Llama3 recover_llama3(const ModelSource& src, const TensorView& rf) {
  const ModelConfig& c = src.config();
  if (rf.type != DType::F32 || rf.n_elements() != c.n_rot / 2)
    throw Error("model '" + src.path() + "': rope_freqs.weight must hold " + std::to_string(c.n_rot / 2) +
                " F32 values");
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
        for (size_t i = 0; i < want.size() && same; ++i)
          same = std::fabs(want[i] - have[i]) <= 1e-6f * std::fabs(have[i]);
        if (same) return {factor, lo, hi, orig};
      }
  throw Error("model '" + src.path() +
              "': rope_freqs.weight does not match llama3 rope scaling with usual parameters; "
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

class Planner {
 public:
  Planner(const ModelSource& src, const HfExportOptions& opt)
      : src_(src), c_(src.config()), family_(family_of(src.config().arch)) {
    if (!opt.dtype.empty()) {
      auto t = dtype_from_name(opt.dtype);
      if (!t || (*t != DType::F32 && *t != DType::F16 && *t != DType::BF16))
        throw UsageError("--dtype '" + opt.dtype + "' is not supported (supported: f32, f16, bf16)");
      forced_ = *t;
    }
  }

  std::vector<HfTensor> plan() {
    namespace tn = tensor_names;
    for (const TensorView& t : src_.tensors()) {
      const std::string& n = t.name;
      if (n == tn::kRopeFreqs.gguf) continue;  // becomes config.json rope_scaling
      bool top = false;
      for (const TensorName& name : {tn::kTokenEmbd, tn::kOutputNorm, tn::kOutput})
        if (n == name.gguf) {
          plain(name.hf, t);
          top = true;
        }
      if (top) continue;
      if (n.compare(0, 4, "blk.") == 0)
        blk_tensor(t);
      else
        unknown(n);
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

  // A blk.<il>.* tensor, named and laid out as the family's tensor list says.
  void blk_tensor(const TensorView& t) {
    const std::string& n = t.name;
    const size_t dot = n.find('.', 4);
    int64_t il = -1;
    try {
      il = std::stoll(n.substr(4, dot - 4));
    } catch (...) {
      unknown(n);
    }
    if (dot == std::string::npos) unknown(n);
    const std::string rest = n.substr(dot + 1);
    const TensorSpec* spec = nullptr;
    const std::vector<TensorSpec> specs = family_.layer_tensors(c_, il);
    for (const TensorSpec& s : specs)
      if (rest == s.name.gguf && s.name.hf) spec = &s;
    if (!spec) unknown(n);
    const std::string hf = hf_layer_tensor(il, spec->name.hf);
    switch (spec->hf_layout) {
      case HfLayout::Same:
        return plain(hf, t);
      case HfLayout::RopePairsQ:
        return unpermute(hf, t, c_.n_head);
      case HfLayout::RopePairsK:
        return unpermute(hf, t, c_.n_head_kv);
      case HfLayout::ExpertStack:
        return experts(hf, t);
      case HfLayout::KvBSplitK:
        return kv_b_merge(hf, t, owl::layer_tensor(il, tensor_names::kAttnVB));
      case HfLayout::KvBSplitV:
        return;  // merged with attn_k_b
    }
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

  // {in, out, n_expert} -> one (out, in) tensor per expert, "{e}" in the HF name replaced by its index.
  void experts(const std::string& hf, const TensorView& t) {
    if (t.n_dims != 3) throw Error("model '" + src_.path() + "': '" + t.name + "' is not a stack of expert matrices");
    const size_t at = hf.find("{e}");
    for (int64_t e = 0; e < t.ne[2]; ++e) {
      const int64_t base = e * t.ne[1];
      std::string name = hf;
      if (at != std::string::npos) name.replace(at, 3, std::to_string(e));
      out_.push_back({name, out_type(t.type), {t.ne[1], t.ne[0]}, t.ne[0], [t, base](int64_t r, float* dst) {
                        row_f32(t, base + r, dst);
                      }});
    }
  }

  // attn_k_b {nope, kv_lora, n_head} + attn_v_b {kv_lora, v, n_head} -> kv_b_proj (n_head*(nope+v), kv_lora):
  // per head the rows [W_k (nope rows) ; W_v (v rows)], W_k being attn_k_b's head transposed.
  void kv_b_merge(const std::string& hf, const TensorView& kb, const std::string& vb_name) {
    auto vb = src_.find(vb_name);
    if (!vb)
      throw Error("model '" + src_.path() + "' has '" + kb.name + "' but lacks '" + vb_name +
                  "'; the file is incomplete");
    const TensorView v = *vb;
    const int64_t nope = kb.ne[0], lora = kb.ne[1], nh = kb.ne[2], vd = v.ne[1];
    if (v.ne[0] != lora || v.ne[2] != nh)
      throw Error("model '" + src_.path() + "': '" + kb.name + "' " + kb.shape_str() + " and '" + vb_name + "' " +
                  v.shape_str() + " do not describe the same heads");
    DType type = out_type(kb.type);
    if (!forced_ && kb.type != v.type) type = DType::F32;
    // A head's W_k is gathered once per head and cached between its rows.
    auto cache = std::make_shared<std::pair<int64_t, std::vector<float>>>(-1, std::vector<float>());
    out_.push_back({hf, type, {nh * (nope + vd), lora}, lora, [kb, v, nope, lora, vd, cache](int64_t r, float* dst) {
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
  const Family& family_;
  std::optional<DType> forced_;
  std::vector<HfTensor> out_;
};

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    default:
      return "float32";
  }
}

}  // namespace

json hf_config_json(const ModelSource& src, const std::string& torch_dtype) {
  const ModelConfig& c = src.config();
  const Family& family = family_of(c.arch);
  const bool mla = c.is_mla();
  json j;
  const HfClass cls = family.hf_class(c);
  j["architectures"] = {cls.architecture};
  j["model_type"] = cls.model_type;
  if (!c.name.empty()) j["_name_or_path"] = c.name;
  j["vocab_size"] = c.n_vocab;
  j["max_position_embeddings"] = c.n_ctx_train;
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.n_ff;
  j["num_hidden_layers"] = trunk_layers(src);
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = mla ? c.n_head : c.n_head_kv;  // HF decompresses MLA's K/V per head
  if (!mla) j["head_dim"] = c.head_dim_k;
  j["rms_norm_eps"] = shortest_decimal(c.rms_eps);
  j["rope_theta"] = shortest_decimal(c.rope_theta);
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = !src.find(tensor_names::kOutput.gguf);
  j["torch_dtype"] = torch_dtype;
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_ids.size() > 1)
    j["eos_token_id"] = c.eos_ids;
  else if (c.eos_id >= 0)
    j["eos_token_id"] = c.eos_id;
  if (c.sliding_window > 0) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = c.sliding_window;
    j["max_window_layers"] = j["num_hidden_layers"];
  }

  // rope_scaling: llama3 comes from the GGUF's rope_freqs tensor.
  json rs;
  if (auto rf = src.find(tensor_names::kRopeFreqs.gguf)) {
    const Llama3 l = recover_llama3(src, *rf);
    rs = {{"rope_type", "llama3"},
          {"factor", shortest_decimal(l.factor)},
          {"low_freq_factor", shortest_decimal(l.low)},
          {"high_freq_factor", shortest_decimal(l.high)},
          {"original_max_position_embeddings", l.orig}};
  } else if (c.rope_scaling == RopeScaling::Llama3) {
    rs = {{"rope_type", "llama3"},
          {"factor", shortest_decimal(c.rope_factor)},
          {"low_freq_factor", shortest_decimal(c.llama3_low_freq_factor)},
          {"high_freq_factor", shortest_decimal(c.llama3_high_freq_factor)},
          {"original_max_position_embeddings", c.rope_orig_ctx}};
  } else if (c.rope_scaling == RopeScaling::Linear) {
    rs = {{"type", "linear"}, {"factor", shortest_decimal(c.rope_factor)}};
  } else if (c.rope_scaling == RopeScaling::Yarn) {
    // GGUF's yarn_log_multiplier is 0.1 * mscale_all_dim; mscale = mscale_all_dim leaves cos/sin unscaled,
    // which is what llama.cpp computes from the GGUF.
    const double mscale_all_dim =
        shortest_decimal(static_cast<float>(static_cast<double>(c.yarn_log_multiplier) / 0.1));
    rs = {{"type", "yarn"},
          {"factor", shortest_decimal(c.rope_factor)},
          {"original_max_position_embeddings", c.rope_orig_ctx},
          {"beta_fast", shortest_decimal(c.yarn_beta_fast)},
          {"beta_slow", shortest_decimal(c.yarn_beta_slow)},
          {"mscale", mscale_all_dim},
          {"mscale_all_dim", mscale_all_dim}};
  }
  j["rope_scaling"] = rs.is_null() ? json(nullptr) : rs;
  family.write_hf(c, src, j);
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
