#include "formats/quant_plan.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "tensor/quants.h"

namespace owl {

namespace {

using Mix = QuantTarget::Mix;

// file_type values are llama.cpp's llama_ftype (LLAMA_FTYPE_MOSTLY_*).
const QuantTarget kTargets[] = {
    {"f32", DType::F32, 0},
    {"f16", DType::F16, 1},
    {"bf16", DType::BF16, 32},
    {"q8_0", DType::Q8_0, 7},
    {"q4_0", DType::Q4_0, 2},
    {"q4_1", DType::Q4_1, 3},
    {"q5_0", DType::Q5_0, 8},
    {"q5_1", DType::Q5_1, 9},
    {"q4_k", DType::Q4_K, 14, Mix::KS},
    {"q4_k_s", DType::Q4_K, 14, Mix::KS},
    {"q4_k_m", DType::Q4_K, 15, Mix::KM},
    {"q5_k", DType::Q5_K, 16, Mix::KS},
    {"q5_k_s", DType::Q5_K, 16, Mix::KS},
    {"q5_k_m", DType::Q5_K, 17, Mix::KM},
    {"q6_k", DType::Q6_K, 18},
    // The low-bit targets (importance matrix: see needs_importance); their mix is lowbit_type's.
    {"q2_k", DType::Q2_K, 10, Mix::Low},
    {"q3_k_m", DType::Q3_K, 12, Mix::Low},
    {"iq3_s", DType::IQ3_S, 26, Mix::Low},
    {"iq3_xxs", DType::IQ3_XXS, 23, Mix::Low},
    {"iq2_s", DType::IQ2_XS, 28, Mix::Low},  // llama.cpp's IQ2_S file: IQ2_XS with IQ3_S for some tensors
    {"iq2_xs", DType::IQ2_XS, 20, Mix::Low},
    {"iq2_xxs", DType::IQ2_XXS, 19, Mix::Low},
    {"iq1_m", DType::IQ1_M, 31, Mix::Low},
    {"iq1_s", DType::IQ1_S, 24, Mix::Low},
};

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Layer number of "blk.N....", or -1.
int64_t layer_of(const std::string& name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  int64_t il = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i) il = il * 10 + (name[i] - '0');
  return il;
}

// llama.cpp converts only these (see the header): weights of 2+ dims that are not norms,
// routers or a few tiny named tensors.
bool convertible(const TensorView& t) {
  const std::string& n = t.name;
  if (!ends_with(n, "weight") || t.n_dims < 2) return false;
  if (t.type == DType::I8 || t.type == DType::I16 || t.type == DType::I32 || t.type == DType::I64) return false;
  for (const char* keep : {"_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
                           "ssm_conv1d.weight", "shortconv.conv.weight", "attn_rel_b.weight", "time_mix_"})
    if (contains(n, keep)) return false;
  return n != "position_embd.weight" && n != "token_types.weight";
}

// More bits for the first and last eighth of the layers and every third one in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A type whose blocks fit a row of `row` elements, as llama.cpp falls back.
DType fit_row(DType t, int64_t row) {
  if (row % info(t).block_size == 0) return t;
  DType f = t == DType::Q4_K                                             ? DType::Q5_0
            : t == DType::Q5_K                                           ? DType::Q5_1
            : t == DType::Q6_K                                           ? DType::Q8_0
            : t == DType::Q2_K || t == DType::Q3_K || t == DType::IQ4_XS ? DType::Q4_0
            : is_codebook_type(t)                                        ? DType::IQ4_NL
                                                                         : DType::F16;
  return row % info(f).block_size == 0 ? f : DType::F16;
}

struct Counters {
  int64_t n_attn_v = 0;  // tensors named attn_v / attn_qkv / attn_kv_b (llama.cpp's n_attention_wv)
  bool has_output = false;
  std::map<size_t, int64_t> attn_v_rank;    // tensor index -> its rank among the attn_v tensors
  std::map<size_t, int64_t> ffn_down_rank;  // tensor index -> its rank among the ffn_down tensors
};

// llama.cpp counts in its own tensor order (by layer number, then name), which may
// differ from the file order.
Counters count(const std::vector<TensorView>& ts) {
  Counters c;
  std::vector<size_t> order(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t la = layer_of(ts[a].name), lb = layer_of(ts[b].name);
    return la != lb ? la < lb : ts[a].name < ts[b].name;
  });
  int64_t n_v = 0, n_down = 0;
  for (size_t i : order) {
    const std::string& n = ts[i].name;
    if (contains(n, "attn_v.weight") || contains(n, "attn_qkv.weight") || contains(n, "attn_kv_b.weight")) ++c.n_attn_v;
    if (n == "output.weight") c.has_output = true;
    if (!convertible(ts[i])) continue;
    if (n == "output.weight" || n == "token_embd.weight") continue;
    if (contains(n, "attn_v.weight"))
      c.attn_v_rank[i] = n_v++;
    else if (contains(n, "ffn_down"))
      c.ffn_down_rank[i] = n_down++;
  }
  return c;
}

// The low-bit targets' mix, as llama-quantize chose it for the golden files of these types (the
// dense, 8-expert and 16-expert models there show each rule). "Lowest": IQ1_S .. IQ2_S.
DType lowbit_type(const QuantTarget& tg, const QuantModelInfo& m, const Counters& c, const TensorView& t,
                  size_t index) {
  const std::string& n = t.name;
  const std::string& tn = tg.name;
  const bool eight_experts = m.n_expert == 8;
  const bool iq1 = tn == "iq1_s" || tn == "iq1_m";
  const bool lowest = iq1 || tn == "iq2_xxs" || tn == "iq2_xs" || tn == "iq2_s";
  if (n == "output.weight" || (!c.has_output && n == "token_embd.weight"))
    return lowest || tn == "iq3_xxs" ? DType::Q5_K : DType::Q6_K;
  if (n == "token_embd.weight") {
    if (tn == "iq2_s" || tn == "iq3_xxs") return DType::IQ3_S;
    return lowest ? DType::Q2_K : tg.base;
  }
  if (contains(n, "attn_v.weight")) {
    if (eight_experts) return lowest ? DType::Q4_K : DType::Q8_0;
    if (tn == "iq2_s") return DType::IQ3_S;
    if (lowest) return DType::Q2_K;
    if (tn == "q2_k") return DType::Q3_K;
    if (tn == "q3_k_m") return c.attn_v_rank.at(index) < 2 ? DType::Q5_K : DType::Q4_K;
    return tg.base;
  }
  if (contains(n, "attn_k.weight")) {
    if (eight_experts) return lowest ? DType::Q4_K : DType::Q8_0;
    return tn == "iq3_xxs" ? DType::IQ2_S : tg.base;
  }
  if (contains(n, "attn_q.weight")) return tn == "iq3_xxs" ? DType::IQ2_S : tg.base;
  if (contains(n, "attn_output.weight")) {
    if (eight_experts) return DType::Q5_K;
    if (iq1) return DType::IQ2_XXS;
    if (tn == "iq2_s" || tn == "iq3_xxs") return DType::IQ3_S;
    if (tn == "q2_k") return DType::Q3_K;
    if (tn == "q3_k_m") return DType::Q4_K;
    return tg.base;
  }
  if (contains(n, "ffn_down")) {
    if (tn == "q2_k") return DType::Q3_K;
    if (tn == "q3_k_m") return DType::Q4_K;
  }
  return tg.base;
}

DType mixed_type(const QuantTarget& tg, const QuantModelInfo& m, const Counters& c, const TensorView& t, size_t index) {
  if (tg.mix == Mix::Low) return lowbit_type(tg, m, c, t, index);
  const std::string& n = t.name;
  DType type = tg.base;
  const bool km = tg.mix == Mix::KM, ks = tg.mix == Mix::KS;
  const bool eight_experts = m.n_expert == 8;
  if (n == "output.weight" || (!c.has_output && n == "token_embd.weight")) {
    if (t.ne[0] % info(type).block_size != 0)
      type = DType::Q8_0;
    else if (type != DType::Q8_0)
      type = DType::Q6_K;
  } else if (n == "token_embd.weight") {
    // stays the base type
  } else if (contains(n, "attn_v.weight")) {
    const int64_t i = c.attn_v_rank.at(index);
    if (km && use_more_bits(i, c.n_attn_v))
      type = DType::Q6_K;
    else if (ks && tg.base == DType::Q4_K && i < 4)
      type = DType::Q5_K;
    const bool class_70b = (m.arch == "llama" || m.arch == "qwen2") && m.n_layer == 80 && m.n_head != m.n_head_kv;
    if (class_70b && type == DType::Q4_K) type = DType::Q5_K;
    if (eight_experts) type = DType::Q8_0;
  } else if (contains(n, "attn_k.weight")) {
    if (eight_experts) type = DType::Q8_0;
  } else if (contains(n, "ffn_down")) {
    // MoE models: the layer comes from the name; dense ones: the tensor's rank.
    int64_t i = c.ffn_down_rank.at(index);
    const int64_t n_layer = m.n_layer;
    if (std::max<int64_t>(1, m.n_expert) > 1) {
      i = layer_of(n);
      if (i < 0 || i >= n_layer)
        throw Error("cannot tell the layer of tensor '" + n + "' (the model has " + std::to_string(n_layer) +
                    " layers)");
    }
    if (km && use_more_bits(i, n_layer))
      type = DType::Q6_K;
    else if (ks && tg.base == DType::Q4_K && i < n_layer / 8)
      type = DType::Q5_K;
  } else if (contains(n, "attn_output.weight")) {
    if (eight_experts && tg.base == DType::Q4_K) type = DType::Q5_K;
  } else if (contains(n, "attn_qkv.weight")) {
    if (km) type = tg.base == DType::Q4_K ? DType::Q5_K : DType::Q6_K;
  }
  return type;
}

}  // namespace

std::string quant_target_names() {
  std::string s;
  for (const auto& t : kTargets) s += (s.empty() ? "" : ", ") + t.name;
  return s;
}

QuantTarget parse_quant_target(const std::string& name) {
  std::string lower = name;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& t : kTargets)
    if (t.name == lower) return t;
  throw UsageError("unknown quantisation type '" + name + "'; use one of " + quant_target_names());
}

QuantModelInfo quant_model_info(const gguf::Metadata& meta) {
  QuantModelInfo m;
  m.arch = meta.get_string("general.architecture").value_or("");
  const std::string p = m.arch + ".";
  m.n_layer = meta.get_int(p + "block_count").value_or(0);
  m.n_expert = meta.get_int(p + "expert_count").value_or(0);
  // head counts may be per-layer arrays in some files; the mix only needs them for the 70B rule.
  auto head = [&](const std::string& key) -> int64_t {
    const gguf::Value* v = meta.find(key);
    if (!v) return 0;
    if (v->is_integer()) return v->as_int();
    if (v->type == gguf::ValueType::ARRAY && !v->as_array().items.empty() && v->as_array().items[0].is_integer())
      return v->as_array().items[0].as_int();
    return 0;
  };
  m.n_head = head(p + "attention.head_count");
  m.n_head_kv = head(p + "attention.head_count_kv");
  if (m.n_head_kv == 0) m.n_head_kv = m.n_head;
  return m;
}

std::vector<std::optional<DType>> plan_tensor_types(const QuantTarget& target, const QuantModelInfo& model,
                                                    const std::vector<TensorView>& tensors) {
  std::vector<std::optional<DType>> out(tensors.size());
  const bool quantized = info(target.base).quantized;
  const Counters c = count(tensors);
  QuantModelInfo m = model;
  if (m.n_layer <= 0)  // metadata without block_count: the layers the tensor names show
    for (const auto& t : tensors) m.n_layer = std::max(m.n_layer, layer_of(t.name) + 1);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    if (!convertible(t)) continue;
    const DType chosen = quantized ? mixed_type(target, m, c, t, i) : target.base;
    out[i] = fit_row(chosen, t.ne[0]);
  }
  return out;
}

TensorTypeRule parse_tensor_type_rule(const std::string& spec) {
  const size_t eq = spec.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    throw UsageError("--tensor-type '" + spec + "' is not REGEX=TYPE (e.g. 'ffn_.*_exps=iq2_xxs')");
  TensorTypeRule r;
  r.pattern = spec.substr(0, eq);
  const std::string type = spec.substr(eq + 1);
  const auto t = dtype_from_name(type);
  if (!t || !can_quantize(*t) || *t == DType::Q8_K)
    throw UsageError("--tensor-type '" + spec + "': '" + type + "' is not a type owl writes");
  r.type = *t;
  try {
    (void)std::regex(r.pattern);
  } catch (const std::regex_error& e) {
    throw UsageError("--tensor-type '" + spec + "': bad regular expression (" + e.what() + ")");
  }
  return r;
}

std::vector<TensorTypeRule> dynamic_moe_rules(DType low) {
  const DType down = low == DType::IQ1_S || low == DType::IQ1_M ? DType::IQ2_XXS : low;
  return {{"ffn_(gate|up)_exps\\.weight$", low}, {"ffn_down_exps\\.weight$", down}, {"^output\\.weight$", DType::Q6_K}};
}

std::vector<std::optional<DType>> plan_tensor_types(const QuantTarget& target, const QuantModelInfo& model,
                                                    const std::vector<TensorView>& tensors,
                                                    const std::vector<TensorTypeRule>& rules) {
  auto plan = plan_tensor_types(target, model, tensors);
  std::vector<std::regex> res;
  for (const auto& r : rules) res.emplace_back(r.pattern);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!plan[i]) continue;
    for (size_t k = 0; k < rules.size(); ++k)
      if (std::regex_search(tensors[i].name, res[k])) {
        plan[i] = fit_row(rules[k].type, tensors[i].ne[0]);
        break;
      }
  }
  return plan;
}

void quantize_rows(DType to, const float* src, int64_t n_rows, int64_t row_len, uint8_t* dst, ThreadPool& pool) {
  const size_t rb = row_bytes(to, row_len);  // throws for a row length `to` cannot hold
  pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      quantize_weight_row(to, src + r * row_len, dst + static_cast<size_t>(r) * rb, row_len);
  });
}

void convert_tensor(const TensorView& src, DType to, uint8_t* dst, ThreadPool& pool,
                    const std::vector<std::vector<float>>& importance) {
  const int64_t row_len = src.ne[0], n_rows = src.rows();
  const size_t out_rb = row_bytes(to, row_len);
  if (!can_quantize(to)) throw Error(std::string("cannot convert tensor '") + src.name + "' to " + dtype_name(to));
  if (n_rows == 0) return;
  // Dequantise one row up front on this thread so an unsupported source type is one clear error.
  std::vector<float> probe(static_cast<size_t>(row_len));
  try {
    dequantize_row_ref(src.type, src.row(0), probe.data(), row_len);
  } catch (const Error& e) {
    throw Error("cannot convert tensor '" + src.name + "' from " + dtype_name(src.type) + ": " + e.what());
  }
  // Chunks of rows so each task amortises its row buffer; the split does not change the bytes.
  const int64_t rows_per_task = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, row_len));
  const int64_t n_tasks = (n_rows + rows_per_task - 1) / rows_per_task;
  std::vector<std::vector<float>> bufs(static_cast<size_t>(pool.size()));
  for (int64_t t0 = 0; t0 < n_tasks; t0 += int64_t{1} << 30) {  // ThreadPool::run takes an int count
    const int n = static_cast<int>(std::min<int64_t>(n_tasks - t0, int64_t{1} << 30));
    pool.run(n, [&](int task, int thread) {
      std::vector<float>& buf = bufs[static_cast<size_t>(thread)];
      buf.resize(static_cast<size_t>(row_len));
      const int64_t r0 = (t0 + task) * rows_per_task, r1 = std::min(n_rows, r0 + rows_per_task);
      for (int64_t r = r0; r < r1; ++r) {
        dequantize_row_ref(src.type, src.row(r), buf.data(), row_len);
        const float* imp = nullptr;
        if (!importance.empty()) {
          const auto mat = static_cast<size_t>((r / src.ne[1]) % static_cast<int64_t>(importance.size()));
          imp = importance[mat].data();
        }
        quantize_weight_row(to, buf.data(), dst + static_cast<size_t>(r) * out_rb, row_len, imp);
      }
    });
  }
}

}  // namespace owl
