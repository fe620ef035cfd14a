// owl info MODEL [--ctx N] [--tensors] [--json]: what a model is and what it costs to run.
//
// Parameters: total = every tensor element; active per token (MoE) counts the
// routed experts (*_exps tensors) at n_expert_used / n_expert and everything
// else in full (attention, norms, embeddings and output, router, dense layers,
// shared experts). Memory = weight bytes + an F16 KV cache at --ctx: MLA caches
// the latent and the rope key (kv_lora_rank + qk_rope_dim values per token per
// layer), other models K and V for each KV head. Bits per weight: 8 x bytes / elements, overall
// and per tensor class (tensor_class: routed experts, shared experts, attention, dense FFN,
// embeddings and output head, the rest), the figure that sizes a low-bit recipe.
// Under the memory budget (--mem, default what the process may use): what stays resident and
// what streams (model/residency.h).
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/command.h"
#include "cli/load_options.h"
#include "hub/resolve.h"
#include "kernels/kernels.h"
#include "tensor/quants.h"
#include "formats/gguf.h"
#include "base/memory_budget.h"
#include "model/residency.h"
#include "model/source.h"

namespace {

using json = nlohmann::json;

struct Options {
  std::string model, quant, mem;
  int64_t ctx = 0;  // 0: the training context
  bool tensors = false;
  bool json_out = false;
};

// The KV cache types of --kv-type, in the order info lists them; F16 is the default.
struct KvTypeName {
  const char* name;
  owl::DType type;
};
constexpr KvTypeName kKvTypes[] = {
    {"f16", owl::DType::F16}, {"q8_0", owl::DType::Q8_0}, {"q4_0", owl::DType::Q4_0}, {"f32", owl::DType::F32}};

// Bytes of a KV cache of type t for ctx tokens, or 0 when the model's rows do not fit t's
// 32-value blocks. MLA caches one latent row (kv_lora + rope values) per token and layer; other
// models K and V for each KV head.
uint64_t kv_cache_bytes(const owl::ModelConfig& c, owl::DType t, int64_t ctx) {
  const int64_t k_width = c.is_mla() ? c.kv_lora_rank + c.qk_rope_dim : c.n_head_kv * c.head_dim_k;
  const int64_t v_width = c.is_mla() ? 0 : c.n_head_kv * c.head_dim_v;
  const bool blocks = t == owl::DType::Q8_0 || t == owl::DType::Q4_0;
  if (blocks && (k_width % owl::kQK != 0 || v_width % owl::kQK != 0)) return 0;
  const size_t row = owl::kernels::kv_bytes(t, k_width) + owl::kernels::kv_bytes(t, v_width);
  return static_cast<uint64_t>(row) * static_cast<uint64_t>(c.n_layer) * static_cast<uint64_t>(ctx);
}

bool is_routed_expert(const std::string& name) { return name.find("_exps.") != std::string::npos; }

// The class a tensor's bits are reported under.
const char* tensor_class(const std::string& name) {
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (is_routed_expert(name)) return "experts";
  if (has("_shexp.")) return "shared";
  if (name == "token_embd.weight" || name == "output.weight") return "embeddings";
  if (has("_norm.") || has("ffn_gate_inp") || has("exp_probs_b")) return "other";
  if (has(".attn_")) return "attention";
  if (has(".ffn_")) return "ffn";
  return "other";
}

double bits_per_weight(uint64_t bytes, int64_t params) {
  return params > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
}

std::string human(double n, const char* unit) {
  const char* prefixes[] = {"", " K", " M", " G", " T"};
  int i = 0;
  while (n >= 1000 && i < 4) {
    n /= 1000;
    ++i;
  }
  char b[64];
  std::snprintf(b, sizeof b, i == 0 ? "%.0f%s%s" : "%.2f%s%s", n, prefixes[i], unit);
  return b;
}

void run(const Options& o) {
  auto src = owl::cli::open_source(owl::hub::resolve_model(o.model, /*pull_if_missing=*/true), o.quant, o.mem);
  const owl::ModelConfig& c = src->config();
  const auto tensors = src->tensors();
  const int64_t ctx = o.ctx > 0 ? o.ctx : c.n_ctx_train;
  if (o.ctx < 0) throw owl::UsageError("--ctx must be positive");

  int64_t total = 0, routed = 0;
  uint64_t weight_bytes = 0;
  struct Mix {
    int64_t tensors = 0, params = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, Mix> mix, classes;
  for (const auto& t : tensors) {
    Mix& k = classes[tensor_class(t.name)];
    k.tensors++;
    k.params += t.n_elements();
    k.bytes += t.n_bytes();
    total += t.n_elements();
    if (is_routed_expert(t.name)) routed += t.n_elements();
    weight_bytes += t.n_bytes();
    Mix& m = mix[owl::dtype_name(t.type)];
    m.tensors++;
    m.params += t.n_elements();
    m.bytes += t.n_bytes();
  }
  const int64_t active = c.n_expert > 0 ? total - routed + routed / c.n_expert * c.n_expert_used : total;
  const uint64_t kv_bytes = kv_cache_bytes(c, owl::DType::F16, ctx);
  const bool is_gguf = src->gguf_file() != nullptr;
  const owl::ResidencyPlan plan = owl::plan_residency(*src);
  const uint64_t resident = plan.stream ? plan.fixed_bytes + plan.cache_bytes : plan.fixed_bytes + plan.expert_bytes;

  if (o.json_out) {
    json j;
    j["path"] = o.model;
    j["format"] = is_gguf ? "gguf" : "hf";
    j["arch"] = c.arch;
    j["name"] = c.name;
    j["n_layer"] = c.n_layer;
    j["n_embd"] = c.n_embd;
    j["n_head"] = c.n_head;
    j["n_head_kv"] = c.n_head_kv;
    j["head_dim_k"] = c.head_dim_k;
    j["head_dim_v"] = c.head_dim_v;
    j["n_ff"] = c.n_ff;
    j["n_vocab"] = c.n_vocab;
    j["context_length"] = c.n_ctx_train;
    j["n_expert"] = c.n_expert;
    j["n_expert_used"] = c.n_expert_used;
    j["n_expert_shared"] = c.n_expert_shared;
    j["mla"] = c.is_mla();
    j["nextn_layers"] = c.n_nextn_layers;
    j["params_total"] = total;
    j["params_active"] = active;
    j["tensor_count"] = tensors.size();
    j["weights_bytes"] = weight_bytes;
    j["bits_per_weight"] = bits_per_weight(weight_bytes, total);
    for (const auto& [name, k] : classes)
      j["bits_per_weight_by_class"][name] = {
          {"tensors", k.tensors}, {"params", k.params}, {"bits_per_weight", bits_per_weight(k.bytes, k.params)}};
    for (const auto& [name, m] : mix)
      j["type_mix"][name] = {{"tensors", m.tensors}, {"params", m.params}, {"bytes", m.bytes}};
    j["tokenizer"] = {{"model", c.tokenizer_model}, {"size", c.tokenizer_vocab}};
    j["chat_template"] = c.has_chat_template;
    j["ctx"] = ctx;
    j["kv_cache_type"] = "F16";
    j["kv_cache_bytes"] = kv_bytes;
    for (const KvTypeName& k : kKvTypes)
      if (const uint64_t b = kv_cache_bytes(c, k.type, ctx)) j["kv_cache_bytes_by_type"][k.name] = b;
    j["memory_bytes"] = weight_bytes + kv_bytes;
    j["mem_budget"] = {{"bytes", plan.budget}, {"source", src->mem_budget_source}};
    j["resident_bytes"] = resident;
    j["fixed_bytes"] = plan.fixed_bytes;
    j["routed_expert_bytes"] = plan.expert_bytes;
    j["experts_stream"] = plan.stream;
    j["expert_cache_bytes"] = plan.cache_bytes;
    j["expert_cache_experts"] = plan.cache_experts();
    j["routed_experts"] = plan.n_experts;
    if (!plan.note.empty()) j["mem_note"] = plan.note;
    if (o.tensors) {
      j["tensors"] = json::array();
      for (const auto& t : tensors) {
        std::vector<int64_t> shape(t.ne.begin(), t.ne.begin() + t.n_dims);
        j["tensors"].push_back({{"name", t.name},
                                {"type", owl::dtype_name(t.type)},
                                {"shape", shape},
                                {"bytes", t.n_bytes()},
                                {"class", tensor_class(t.name)},
                                {"bits_per_weight", bits_per_weight(t.n_bytes(), t.n_elements())}});
      }
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  std::printf("model      %s (%s)\n", o.model.c_str(),
              is_gguf ? ("GGUF v" + std::to_string(src->gguf_file()->version())).c_str() : "Hugging Face folder");
  std::printf("arch       %s  name \"%s\"\n", c.arch.c_str(), c.name.c_str());
  std::printf("shape      %lld layers, width %lld, heads %lld/%lld x %lld, ff %lld, vocab %lld\n", (long long)c.n_layer,
              (long long)c.n_embd, (long long)c.n_head, (long long)c.n_head_kv, (long long)c.head_dim_k,
              (long long)c.n_ff, (long long)c.n_vocab);
  if (c.is_mla())
    std::printf("mla        q_lora %lld, kv_lora %lld, nope/rope/v %lld/%lld/%lld\n", (long long)c.q_lora_rank,
                (long long)c.kv_lora_rank, (long long)c.qk_nope_dim, (long long)c.qk_rope_dim, (long long)c.v_head_dim);
  if (c.is_moe())
    std::printf("experts    %lld (%lld used, ff %lld), %lld shared, %lld leading dense layers\n", (long long)c.n_expert,
                (long long)c.n_expert_used, (long long)c.n_ff_exp, (long long)c.n_expert_shared,
                (long long)c.n_leading_dense);
  if (c.n_nextn_layers > 0)
    std::printf(
        "nextn      %lld NextN (multi-token prediction) layer%s after %lld trunk layers: --spec mtp drafts with it\n",
        (long long)c.n_nextn_layers, c.n_nextn_layers == 1 ? "" : "s", (long long)(c.n_layer - c.n_nextn_layers));
  std::printf("params     %s total, %s active per token\n", human(static_cast<double>(total), "").c_str(),
              human(static_cast<double>(active), "").c_str());
  std::printf("context    %lld (training)\n", (long long)c.n_ctx_train);
  std::printf("weights    %s in %zu tensors:", human(static_cast<double>(weight_bytes), "B").c_str(), tensors.size());
  for (const auto& [name, m] : mix)
    std::printf(" %s %.1f%%", name.c_str(), weight_bytes ? 100.0 * static_cast<double>(m.bytes) / weight_bytes : 0.0);
  std::printf("\n");
  std::printf("bits/wt    %.2f overall;", bits_per_weight(weight_bytes, total));
  for (const auto& [name, k] : classes) std::printf(" %s %.2f", name.c_str(), bits_per_weight(k.bytes, k.params));
  std::printf("\n");
  std::printf("tokenizer  %s, %lld tokens; chat template: %s\n", c.tokenizer_model.c_str(),
              (long long)c.tokenizer_vocab, c.has_chat_template ? "yes" : "no");
  std::printf("memory     at ctx %lld: weights %s + KV cache (F16) %s = %s\n", (long long)ctx,
              human(static_cast<double>(weight_bytes), "B").c_str(), human(static_cast<double>(kv_bytes), "B").c_str(),
              human(static_cast<double>(weight_bytes + kv_bytes), "B").c_str());
  std::printf("kv cache   at ctx %lld (--kv-type):", (long long)ctx);
  for (const KvTypeName& k : kKvTypes)
    if (const uint64_t b = kv_cache_bytes(c, k.type, ctx))
      std::printf("%s %s %s", &k == kKvTypes ? "" : ",", k.name, owl::format_memory_size(b).c_str());
  std::printf("\n");
  const std::string budget =
      plan.budget ? owl::format_memory_size(plan.budget) + " (" + src->mem_budget_source + ")" : "none";
  if (plan.stream) {
    std::printf(
        "budget     %s: resident %s (attention, norms, routers, shared experts, embeddings, output, dense "
        "layers) + expert cache %s (%lld of %lld routed experts); routed experts stream from the file\n",
        budget.c_str(), owl::format_memory_size(plan.fixed_bytes).c_str(),
        owl::format_memory_size(plan.cache_bytes).c_str(), (long long)plan.cache_experts(), (long long)plan.n_experts);
  } else {
    std::printf("budget     %s: all resident (%s)%s\n", budget.c_str(), owl::format_memory_size(resident).c_str(),
                plan.note.empty() ? "" : ("; " + plan.note).c_str());
  }
  if (o.tensors)
    for (const auto& t : tensors)
      std::printf("  %-44s %-7s %-22s %llu bytes, %.2f bits/wt\n", t.name.c_str(), owl::dtype_name(t.type),
                  t.shape_str().c_str(), static_cast<unsigned long long>(t.n_bytes()),
                  bits_per_weight(t.n_bytes(), t.n_elements()));
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("info", "Show a model's architecture, parameters, weight types and memory needs");
  sub->add_option("model", o->model, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--ctx", o->ctx, "context length for the KV cache estimate (default: the training context)");
  sub->add_flag("--tensors", o->tensors, "list every tensor");
  sub->add_flag("--json", o->json_out, "print JSON");
  owl::cli::add_quant_option(sub, o->quant);
  owl::cli::add_mem_option(sub, o->mem);
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
