#include "model/hf_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mapped_file.h"
#include "model/family.h"

namespace owl {

namespace {

using json = nlohmann::json;

void apply_rope_scaling(ModelConfig& c, const HfKeys& top) {
  const json* rs = top.get("rope_scaling");
  if (!rs) return;
  if (!rs->is_object()) top.bad("rope_scaling", "an object or null");
  HfKeys k(*rs, "config.json rope_scaling");
  // transformers renamed "type" to "rope_type"; both occur in the wild.
  std::string type = k.string("rope_type", k.string("type", "default"));
  c.rope_factor = static_cast<float>(k.number("factor", 1.0));
  c.rope_orig_ctx = k.integer("original_max_position_embeddings", c.n_ctx_train);
  if (type == "default") {
    c.rope_factor = 1.0f;
  } else if (type == "linear") {
    c.rope_scaling = RopeScaling::Linear;
  } else if (type == "yarn") {
    c.rope_scaling = RopeScaling::Yarn;
    c.yarn_beta_fast = static_cast<float>(k.number("beta_fast", 32.0));
    c.yarn_beta_slow = static_cast<float>(k.number("beta_slow", 1.0));
    // What convert_hf_to_gguf.py stores; the attention scale grows by (1 + this * ln(factor))^2.
    c.yarn_log_multiplier = static_cast<float>(0.1 * k.number("mscale_all_dim", 0.0));
  } else if (type == "llama3") {
    c.rope_scaling = RopeScaling::Llama3;
    c.llama3_low_freq_factor = static_cast<float>(k.number("low_freq_factor", 1.0));
    c.llama3_high_freq_factor = static_cast<float>(k.number("high_freq_factor", 4.0));
    if (c.llama3_high_freq_factor <= c.llama3_low_freq_factor)
      throw Error("config.json rope_scaling: high_freq_factor must exceed low_freq_factor");
  } else {
    throw Error("config.json rope_scaling type '" + type + "' is not supported (supported: linear, yarn, llama3)");
  }
}

std::optional<json> read_json(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) return std::nullopt;
  MappedFile m(p.string());
  const char* b = reinterpret_cast<const char*>(m.data());
  try {
    return json::parse(b, b + m.size());
  } catch (const json::exception& e) {
    throw Error("'" + p.string() + "' is not valid JSON (" + e.what() + "); download it again");
  }
}

// bos/eos ids: a single integer or a list.
void read_special_ids(ModelConfig& c, const json& j) {
  if (auto it = j.find("bos_token_id"); it != j.end() && it->is_number_integer()) c.bos_id = it->get<int64_t>();
  auto it = j.find("eos_token_id");
  if (it == j.end()) return;
  std::vector<int64_t> ids;
  if (it->is_number_integer()) ids.push_back(it->get<int64_t>());
  if (it->is_array())
    for (const auto& v : *it)
      if (v.is_number_integer()) ids.push_back(v.get<int64_t>());
  if (!ids.empty()) {
    c.eos_ids = ids;
    c.eos_id = ids.front();
  }
}

}  // namespace

std::vector<std::string> supported_hf_model_types() {
  std::vector<std::string> r;
  for (const Family* f : families())
    for (const auto& t : f->hf_model_types()) r.push_back(t);
  return r;
}

ModelConfig config_from_hf(const json& j) {
  if (!j.is_object()) throw Error("config.json is not a JSON object");
  HfKeys k(j, "config.json");
  ModelConfig c;
  const std::string type = k.string("model_type", "");
  const Family* family = family_for_hf_model_type(type);
  if (!family) {
    std::string list;
    for (const auto& t : supported_hf_model_types()) list += (list.empty() ? "" : ", ") + t;
    throw Error("config.json model_type '" + type + "' is not supported (supported: " + list + ")");
  }
  c.arch = family->arch();
  c.name = k.string("_name_or_path", "");

  c.n_vocab = k.required("vocab_size");
  c.n_ctx_train = k.integer("max_position_embeddings", 4096);
  c.n_embd = k.required("hidden_size");
  c.n_layer = k.required("num_hidden_layers");  // the trunk; a family adds NextN layers after these
  c.n_head = k.required("num_attention_heads");
  c.n_head_kv = k.integer("num_key_value_heads", c.n_head);
  c.n_ff = k.integer("intermediate_size", 0);
  c.rms_eps = static_cast<float>(k.number("rms_norm_eps", 1e-6));
  c.head_dim_k = k.integer("head_dim", c.n_embd / c.n_head);
  c.head_dim_v = c.head_dim_k;
  c.rope_theta = static_cast<float>(k.number("rope_theta", 10000.0));
  c.n_rot = c.head_dim_k;
  c.rope_orig_ctx = c.n_ctx_train;
  apply_rope_scaling(c, k);

  family->read_hf(c, k);
  if (c.n_expert > 0 && c.n_expert_used > c.n_expert)
    throw Error("config.json: num_experts_per_tok exceeds the number of experts");

  c.tokenizer_model = "none";
  read_special_ids(c, j);
  return c;
}

ModelConfig load_hf_config(const std::string& folder) {
  namespace fs = std::filesystem;
  const fs::path dir(folder);
  auto cfg = read_json(dir / "config.json");
  if (!cfg)
    throw Error("folder '" + folder +
                "' has no config.json; a Hugging Face model folder needs config.json and "
                "*.safetensors (or give a GGUF file)");
  ModelConfig c;
  try {
    c = config_from_hf(*cfg);
  } catch (const Error& e) {
    throw Error("'" + (dir / "config.json").string() + "': " + e.what());
  }
  if (c.name.empty()) c.name = fs::path(folder).filename().string();

  if (auto gen = read_json(dir / "generation_config.json")) {
    c.has_generation_config = true;
    read_special_ids(c, *gen);
  }
  if (auto tc = read_json(dir / "tokenizer_config.json")) {
    c.has_tokenizer_config = true;
    if (tc->contains("chat_template")) c.has_chat_template = true;
  }
  std::error_code ec;
  if (fs::exists(dir / "chat_template.jinja", ec) || fs::exists(dir / "chat_template.json", ec))
    c.has_chat_template = true;
  if (auto tok = read_json(dir / "tokenizer.json")) {
    c.tokenizer_model = "hf";
    // Vocabulary size = highest id + 1 over the model vocabulary and the added tokens.
    int64_t max_id = -1;
    if (tok->contains("model") && (*tok)["model"].contains("vocab")) {
      const json& v = (*tok)["model"]["vocab"];
      if (v.is_object())
        for (const auto& [piece, id] : v.items())
          if (id.is_number_integer()) max_id = std::max(max_id, id.get<int64_t>());
      if (v.is_array()) max_id = static_cast<int64_t>(v.size()) - 1;  // Unigram: [piece, score] pairs
    }
    if (tok->contains("added_tokens") && (*tok)["added_tokens"].is_array())
      for (const auto& t : (*tok)["added_tokens"])
        if (t.contains("id") && t["id"].is_number_integer()) max_id = std::max(max_id, t["id"].get<int64_t>());
    c.tokenizer_vocab = max_id + 1;
  }
  return c;
}

}  // namespace owl
