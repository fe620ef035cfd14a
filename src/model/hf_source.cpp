// Hugging Face folders (config.json + safetensors) as a ModelSource: tensors
// appear under their GGUF names and in the GGUF layout, as llama.cpp's
// converter would write them (golden/README.md "Hugging Face twins"):
//   - Llama q_proj/k_proj rows are permuted per head from rotate-half order to
//     interleaved pairs, so families always apply NORM rope to llama;
//   - DeepSeek kv_b_proj is split into attn_k_b {nope, kv_lora, n_head}
//     (per-head W_k transposed) and attn_v_b {kv_lora, v, n_head};
//   - per-expert matrices are stacked into ffn_{gate,up,down}_exps {in, out, n_expert};
//   - mlp.gate.e_score_correction_bias becomes exp_probs_b.bias;
//   - tied models have no lm_head and hence no output.weight (families reuse token_embd).
// Tensors used as stored stay memory-mapped views; those that need a new
// layout (permuted, split, stacked, converted) are built once at open time
// into buffers owned by the source.
//
// FP8 (F8_E4M3) weights, as DeepSeek-V3/R1 and Kimi K2 ship them, are
// dequantized at load to BF16 (value = fp8 * weight_scale_inv of its 128x128
// block, rounded to BF16); without a scale tensor they convert exactly.
// This doubles their memory; a native FP8 kernel would avoid it.
//
// With a quantisation target (--quant q8_0 ...), the tensors the shared plan
// (formats/quant_plan.h) converts are quantised once the names are mapped, each
// into its own buffer (any converted copy it replaces is freed), so norms stay
// as stored and the output head follows the same rules as `owl quantize`.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <list>
#include <map>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/quant_plan.h"
#include "formats/safetensors.h"
#include "model/family.h"
#include "model/hf_config.h"
#include "model/source.h"
#include "tensor/fp16.h"

namespace owl {

namespace {

using safetensors::Checkpoint;

float fp8_e4m3_to_f32(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  float v;
  if (exp == 15 && man == 7)
    v = NAN;  // e4m3fn has no infinities, only this NaN
  else if (exp == 0)
    v = std::ldexp(static_cast<float>(man), -9);  // subnormal: man/8 * 2^-6
  else
    v = std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return sign ? -v : v;
}

size_t elem_size(DType t) {
  const DTypeInfo& i = info(t);
  return i.block_size == 1 ? i.type_size : 0;  // 0: a block type, no element access
}

class HfSource : public ModelSource {
 public:
  HfSource(const std::string& folder, const std::string& quant) {
    path_ = folder;
    folder_ = folder;
    std::optional<QuantTarget> target;
    if (!quant.empty()) target = parse_quant_target(quant);  // a bad name fails before any loading
    config_ = load_hf_config(folder);
    ckpt_ = Checkpoint::open_folder(folder);
    drop_missing_nextn();
    map_all();
    if (target) quantize_all(*target);
  }

  std::optional<TensorView> find(const std::string& name) const override {
    auto it = index_.find(name);
    if (it == index_.end()) return std::nullopt;
    return tensors_[it->second];
  }
  std::vector<TensorView> tensors() const override { return tensors_; }
  std::string hf_folder() const override { return folder_; }

 private:
  struct Loaded {
    TensorView view;
    std::vector<uint8_t> converted;  // holds the data when view does not point into the file
  };

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("Hugging Face model '" + folder_ + "': " + what);
  }

  // An HF tensor as a ggml-order view: memory-mapped when usable in place,
  // converted (FP8 -> BF16) or copied (misaligned) otherwise.
  Loaded load(const std::string& hf_name) const {
    auto e = ckpt_->find(hf_name);
    if (!e) fail("lacks tensor '" + hf_name + "'");
    Loaded l;
    l.view = e->file->view(*e->info);
    if (l.view.type == DType::F8_E4M3) {
      dequantize_fp8(l, hf_name);
    } else if (size_t es = elem_size(l.view.type); es > 1 && reinterpret_cast<uintptr_t>(l.view.data) % es != 0) {
      l.converted.assign(static_cast<const uint8_t*>(l.view.data),
                         static_cast<const uint8_t*>(l.view.data) + l.view.n_bytes());
      l.view.data = l.converted.data();
    }
    return l;
  }

  void dequantize_fp8(Loaded& l, const std::string& hf_name) const {
    const int64_t cols = l.view.ne[0], rows = l.view.rows();
    std::vector<float> scale;
    int64_t scale_cols = 1;
    if (auto s = ckpt_->find(hf_name + "_scale_inv")) {  // "x.weight" -> "x.weight_scale_inv"
      TensorView sv = s->file->view(*s->info);
      const int64_t want_r = (rows + 127) / 128, want_c = (cols + 127) / 128;
      if (sv.ne[0] != want_c || sv.rows() != want_r)
        fail("'" + hf_name + "_scale_inv' has shape " + sv.shape_str() + ", expected one scale per 128x128 block");
      scale.resize(static_cast<size_t>(want_r * want_c));
      for (size_t i = 0; i < scale.size(); ++i) {
        if (sv.type == DType::F32)
          std::memcpy(&scale[i], static_cast<const uint8_t*>(sv.data) + 4 * i, 4);
        else if (sv.type == DType::BF16) {
          uint16_t h;
          std::memcpy(&h, static_cast<const uint8_t*>(sv.data) + 2 * i, 2);
          scale[i] = bf16_to_f32(h);
        } else
          fail("'" + hf_name + "_scale_inv' must be F32 or BF16");
      }
      scale_cols = want_c;
    }
    const uint8_t* src = static_cast<const uint8_t*>(l.view.data);
    l.converted.resize(static_cast<size_t>(rows * cols) * 2);
    uint16_t* dst = reinterpret_cast<uint16_t*>(l.converted.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float v = fp8_e4m3_to_f32(src[r * cols + c]);
        if (!scale.empty()) v *= scale[static_cast<size_t>((r / 128) * scale_cols + c / 128)];
        dst[r * cols + c] = f32_to_bf16(v);
      }
    l.view.type = DType::BF16;
    l.view.data = l.converted.data();
  }

  void add(const std::string& name, Loaded l) {
    if (index_.count(name)) fail("two tensors map onto '" + name + "'");
    l.view.name = name;
    if (!l.converted.empty()) {
      owned_.push_back(std::move(l.converted));
      l.view.data = owned_.back().data();
    }
    index_[name] = tensors_.size();
    tensors_.push_back(l.view);
  }

  uint8_t* new_buffer(size_t n) {
    owned_.emplace_back(n);
    return owned_.back().data();
  }

  void add_owned(const std::string& name, DType type, int n_dims, std::array<int64_t, 4> ne, const uint8_t* data) {
    Loaded l;
    l.view.type = type;
    l.view.n_dims = n_dims;
    l.view.ne = ne;
    l.view.data = data;
    add(name, std::move(l));
  }

  // Llama: GGUF row h*D + 2j + t = HF row h*D + t*D/2 + j (rotate-half -> interleaved pairs).
  void add_permuted(const std::string& name, Loaded src, int64_t n_heads) {
    const int64_t rows = src.view.n_dims == 1 ? src.view.ne[0] : src.view.rows();
    const size_t row_bytes = src.view.n_dims == 1 ? elem_size(src.view.type) : src.view.row_size();
    if (row_bytes == 0 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0)
      fail("tensor for '" + name + "' has " + std::to_string(rows) + " rows, not " + std::to_string(n_heads) +
           " heads of an even size");
    const int64_t d = rows / n_heads;
    uint8_t* out = new_buffer(row_bytes * static_cast<size_t>(rows));
    const uint8_t* in = static_cast<const uint8_t*>(src.view.data);
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t w = 0; w < d; ++w) {
        const int64_t from = h * d + (w % 2) * (d / 2) + w / 2;
        std::memcpy(out + (h * d + w) * row_bytes, in + from * row_bytes, row_bytes);
      }
    add_owned(name, src.view.type, src.view.n_dims, src.view.ne, out);
  }

  // kv_b_proj (n_head*(nope+v), kv_lora) -> attn_k_b {nope, kv_lora, n_head} + attn_v_b {kv_lora, v, n_head}.
  void add_kv_b_split(int64_t il, Loaded src) {
    const std::string blk = "layer " + std::to_string(il);
    const ModelConfig& c = config_;
    const int64_t nope = c.qk_nope_dim, v = c.v_head_dim, lora = c.kv_lora_rank, nh = c.n_head;
    const size_t es = elem_size(src.view.type);
    if (es == 0 || src.view.ne[0] != lora || src.view.rows() != nh * (nope + v))
      fail("kv_b_proj of " + blk + " has shape " + src.view.shape_str() + ", expected [" + std::to_string(lora) + ", " +
           std::to_string(nh * (nope + v)) + "]");
    const uint8_t* in = static_cast<const uint8_t*>(src.view.data);
    uint8_t* kb = new_buffer(es * static_cast<size_t>(nope * lora * nh));
    uint8_t* vb = new_buffer(es * static_cast<size_t>(v * lora * nh));
    for (int64_t h = 0; h < nh; ++h) {
      const uint8_t* head = in + static_cast<size_t>(h * (nope + v) * lora) * es;
      for (int64_t l = 0; l < lora; ++l)  // k_b[h][l][n] = kv_b[h*(nope+v) + n][l]
        for (int64_t n = 0; n < nope; ++n)
          std::memcpy(kb + static_cast<size_t>((h * lora + l) * nope + n) * es,
                      head + static_cast<size_t>(n * lora + l) * es, es);
      std::memcpy(vb + static_cast<size_t>(h * v * lora) * es, head + static_cast<size_t>(nope * lora) * es,
                  static_cast<size_t>(v * lora) * es);
    }
    add_owned(layer_tensor(il, tensor_names::kAttnKB), src.view.type, 3, {nope, lora, nh, 1}, kb);
    add_owned(layer_tensor(il, tensor_names::kAttnVB), src.view.type, 3, {lora, v, nh, 1}, vb);
  }

  // Per-expert (out, in) matrices -> one {in, out, n_expert} stack. Experts are loaded one at a
  // time so FP8 conversion never holds more than one extra expert.
  void add_stacked(const std::string& name, const std::vector<std::string>& hf_names) {
    const Loaded first = load(hf_names[0]);
    const TensorView shape = first.view;
    if (shape.n_dims != 2) fail("expert tensor '" + hf_names[0] + "' is not a matrix");
    const size_t bytes = shape.n_bytes();
    uint8_t* out = new_buffer(bytes * hf_names.size());
    for (size_t e = 0; e < hf_names.size(); ++e) {
      const Loaded part = e == 0 ? Loaded{} : load(hf_names[e]);
      const TensorView& v = e == 0 ? first.view : part.view;
      if (v.type != shape.type || v.ne != shape.ne || v.n_dims != 2)
        fail("experts stacked into '" + name + "' differ in type or shape ('" + hf_names[e] + "')");
      std::memcpy(out + e * bytes, v.data, bytes);
    }
    add_owned(name, shape.type, 3, {shape.ne[0], shape.ne[1], static_cast<int64_t>(hf_names.size()), 1}, out);
  }

  // config.json counts NextN layers (num_nextn_predict_layers) that some checkpoints leave out
  // (fine-tunes, re-uploads): without the first one's eh_proj the model is the trunk alone.
  void drop_missing_nextn() {
    if (config_.n_nextn_layers == 0) return;
    const int64_t first = config_.n_layer - config_.n_nextn_layers;
    if (ckpt_->find(hf_layer_tensor(first, tensor_names::kNextnEhProj.hf))) return;
    config_.n_layer = first;
    config_.n_nextn_layers = 0;
  }

  // Maps every HF tensor onto its GGUF name and layout, as the family's tensor list says
  // (family.h: TensorSpec::hf_layout).
  void map_all() {
    namespace tn = tensor_names;
    const ModelConfig& c = config_;
    const Family& family = family_of(c.arch);
    // Per (layer, GGUF name): the HF expert tensor names by expert index.
    std::map<std::pair<int64_t, std::string>, std::map<int64_t, std::string>> experts;
    // Per layer: HF name (relative, "{e}" for experts) -> the first spec that reads it.
    std::vector<std::map<std::string, TensorSpec>> layer_specs(static_cast<size_t>(c.n_layer));
    for (int64_t il = 0; il < c.n_layer; ++il)
      for (const TensorSpec& t : family.layer_tensors(c, il))
        if (t.name.hf) layer_specs[static_cast<size_t>(il)].emplace(t.name.hf, t);
    auto ends_with = [](const std::string& s, const std::string& suf) {
      return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
    };

    for (const auto& e : ckpt_->tensors()) {
      const std::string& hf = e.info->name;
      if (ends_with(hf, "_scale_inv") || ends_with(hf, "rotary_emb.inv_freq")) continue;  // consumed / recomputed
      bool top = false;
      for (const TensorName& t : {tn::kTokenEmbd, tn::kOutputNorm, tn::kOutput})
        if (hf == t.hf) {
          add(t.gguf, load(hf));
          top = true;
        }
      if (top) continue;
      const std::string pre = "model.layers.";
      if (hf.compare(0, pre.size(), pre) != 0) fail("has unexpected tensor '" + hf + "'");
      size_t dot = hf.find('.', pre.size());
      int64_t il = -1;
      try {
        il = std::stoll(hf.substr(pre.size(), dot - pre.size()));
      } catch (...) {
        fail("has unexpected tensor '" + hf + "'");
      }
      if (il >= c.n_layer) continue;  // NextN layers the config does not count
      std::string rest = dot == std::string::npos ? "" : hf.substr(dot + 1);
      int64_t expert = -1;
      const std::string ex = "mlp.experts.";
      if (rest.compare(0, ex.size(), ex) == 0) {  // mlp.experts.E.<proj>  ->  mlp.experts.{e}.<proj>
        const size_t d2 = rest.find('.', ex.size());
        try {
          expert = std::stoll(rest.substr(ex.size(), d2 - ex.size()));
        } catch (...) {
          fail("has unexpected tensor '" + hf + "'");
        }
        rest = ex + "{e}" + (d2 == std::string::npos ? "" : rest.substr(d2));
      }
      const auto& specs = layer_specs[static_cast<size_t>(il)];
      auto it = specs.find(rest);
      if (it == specs.end() || (expert >= 0) != (it->second.hf_layout == HfLayout::ExpertStack))
        fail("has unexpected tensor '" + hf + "'");
      const TensorSpec& spec = it->second;
      const std::string gguf = layer_tensor(il, spec.name);
      switch (spec.hf_layout) {
        case HfLayout::Same:
          add(gguf, load(hf));
          break;
        case HfLayout::RopePairsQ:
          add_permuted(gguf, load(hf), c.n_head);
          break;
        case HfLayout::RopePairsK:
          add_permuted(gguf, load(hf), c.n_head_kv);
          break;
        case HfLayout::ExpertStack:
          experts[{il, gguf}][expert] = hf;
          break;
        case HfLayout::KvBSplitK:
        case HfLayout::KvBSplitV:
          add_kv_b_split(il, load(hf));
          break;
      }
    }

    for (const auto& [key, by_index] : experts) {
      const std::string& name = key.second;
      std::vector<std::string> names;
      for (int64_t i = 0; i < static_cast<int64_t>(by_index.size()); ++i) {
        auto it = by_index.find(i);
        if (it == by_index.end()) fail("lacks expert " + std::to_string(i) + " of '" + name + "'");
        names.push_back(it->second);
      }
      if (c.n_expert > 0 && static_cast<int64_t>(names.size()) != c.n_expert)
        fail("'" + name + "' has " + std::to_string(names.size()) + " experts, config.json says " +
             std::to_string(c.n_expert));
      add_stacked(name, names);
    }
    order_like_gguf();
  }

  void quantize_all(const QuantTarget& target) {
    const ModelConfig& c = config_;
    const QuantModelInfo m{c.arch, c.n_layer, c.n_expert, c.n_head, c.n_head_kv};
    const auto plan = plan_tensor_types(target, m, tensors_);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      TensorView& t = tensors_[i];
      const bool plain = t.type == DType::F32 || t.type == DType::F16 || t.type == DType::BF16;
      if (!plan[i] || *plan[i] == t.type || !plain) continue;
      std::vector<uint8_t> out(row_bytes(*plan[i], t.ne[0]) * static_cast<size_t>(t.rows()));
      convert_tensor(t, *plan[i], out.data(), default_pool());
      // Free the converted copy (permuted, stacked, FP8) the view pointed at, if any.
      owned_.remove_if([&](const std::vector<uint8_t>& b) { return b.data() == t.data; });
      owned_.push_back(std::move(out));
      t.data = owned_.back().data();
      t.type = *plan[i];
    }
  }

  // token_embd, then the layers in order, then output_norm and output.
  void order_like_gguf() {
    auto rank = [](const std::string& n) -> std::pair<int64_t, std::string> {
      if (n == tensor_names::kTokenEmbd.gguf) return {-1, n};
      if (n.compare(0, 4, "blk.") == 0) return {std::stoll(n.substr(4)), n.substr(n.find('.', 4) + 1)};
      return {1LL << 40, n};
    };
    std::stable_sort(tensors_.begin(), tensors_.end(),
                     [&](const TensorView& a, const TensorView& b) { return rank(a.name) < rank(b.name); });
    index_.clear();
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  }

  std::string folder_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::list<std::vector<uint8_t>> owned_;  // a list: buffers never move once handed out
};

}  // namespace

std::unique_ptr<ModelSource> open_hf_source(const std::string& folder, const std::string& quant) {
  return std::make_unique<HfSource>(folder, quant);
}

}  // namespace owl
