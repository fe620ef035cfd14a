// "A new family is one file plus a registry line": a toy architecture defined entirely in this
// file (its hyperparameter key, config.json mapping, tensor list and forward) and registered at
// run time works with the rest of owl untouched: synth writes it, the GGUF loader reads its own
// key, logits run, export writes a Hugging Face folder that loads to the same logits, and
// convert turns that folder back into a GGUF with the same tensors and metadata.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "convert/gguf_export.h"
#include "convert/hf_export.h"
#include "convert/synth.h"
#include "formats/gguf.h"
#include "model/blocks.h"
#include "model/family.h"
#include "model/model.h"
#include "model/source.h"
#include "runtime/kv_cache.h"
#include "test_util.h"

namespace owl {
namespace {

namespace tn = tensor_names;

// Qwen3-like attention whose per-head q/k norms are switched by a key of its own.
class ToyModel : public blocks::GqaDecoder {
 public:
  explicit ToyModel(const ModelSource& src) : GqaDecoder(src, src.config()) {
    for (int64_t il = 0; il < config_.n_layer; ++il) load_ffn(src, il, /*experts=*/false, tn::kFfnNorm);
    finish_loading(src);
  }
};

class ToyFamily : public Family {
 public:
  const char* arch() const override { return "owltoy"; }
  std::vector<std::string> hf_model_types() const override { return {"owl_toy"}; }
  HfClass hf_class(const ModelConfig&) const override { return {"owl_toy", "OwlToyForCausalLM"}; }
  void read_gguf(ModelConfig& c, const GgufKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qk_norm = k.boolean("attention.qk_norm", false);
  }
  void read_hf(ModelConfig& c, const HfKeys& k) const override {
    c.rope_type = RopeType::Neox;
    c.attn_qk_norm = k.boolean("use_qk_norm", false);
  }
  void write_gguf(const ModelConfig& c, GgufKeyWriter& w) const override {
    w.boolean("attention.qk_norm", c.attn_qk_norm);
  }
  void write_hf(const ModelConfig& c, const ModelSource&, nlohmann::json& j) const override {
    j["use_qk_norm"] = c.attn_qk_norm;
  }
  std::vector<TensorSpec> layer_tensors(const ModelConfig& c, int64_t il) const override {
    std::vector<TensorSpec> t;
    gqa_attention_tensors(c, t);
    ffn_tensors(c, il, tn::kFfnNorm, t);
    return t;
  }
  std::vector<SynthShape> synth_shapes() const override {
    ModelConfig c = synth_config("owltoy", 300, 128, 2, 4, 2, 32, 256, 4096, 1e4f, 1e-6f);
    c.attn_qk_norm = true;
    return {{"tiny-owltoy", c, /*tied=*/true}};
  }
  std::unique_ptr<Model> load(const ModelSource& src) const override { return std::make_unique<ToyModel>(src); }
};

void register_toy_once() {
  static const bool done = [] {
    register_family(std::make_unique<ToyFamily>());
    return true;
  }();
  (void)done;
}

std::vector<float> logits_of(const ModelSource& src, const std::vector<int32_t>& tokens) {
  auto m = Model::load(src);
  KVCache kv(m->kv_shape(), {.type = DType::F32, .n_ctx = 64, .n_seq_max = 1, .page_tokens = 16});
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int64_t>(i), 0, true);
  auto l = m->forward(b, kv);
  return {l.begin(), l.end()};
}

TEST(ToyFamily, SynthLoadExportConvertWithNoOtherFileTouched) {
  register_toy_once();
  const std::string dir = test::temp_dir();
  const std::string gguf_path = dir + "/toy.gguf", hf_dir = dir + "/toy-hf", back = dir + "/back.gguf";
  const std::vector<int32_t> tokens = {1, 17, 42, 299, 5, 8};

  // synth: the shape comes from the family, the tensors from its list.
  const SynthResult r = write_synth(find_synth_shape("tiny-owltoy"), gguf_path, "f32", 7);
  EXPECT_EQ(r.n_tensors, 2u + 2u * 11u);  // token_embd, output_norm; per layer 7 attention + 4 FFN

  // The loader reads the family's own key.
  auto src = open_model_source(gguf_path);
  const ModelConfig& c = src->config();
  EXPECT_EQ(c.arch, "owltoy");
  EXPECT_TRUE(c.attn_qk_norm);
  EXPECT_EQ(c.rope_type, RopeType::Neox);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_vocab, 300);
  ASSERT_TRUE(src->find("blk.1.attn_q_norm.weight").has_value());

  const std::vector<float> logits = logits_of(*src, tokens);
  ASSERT_EQ(logits.size(), tokens.size() * 300u);
  float spread = 0;
  for (float v : logits) spread = std::max(spread, std::fabs(v));
  EXPECT_GT(spread, 0.0f);

  // export: config.json through the family, tensors under HF names.
  export_hf(*src, hf_dir, {});
  const auto cfg = nlohmann::json::parse(test::read_file(hf_dir + "/config.json"));
  EXPECT_EQ(cfg["model_type"], "owl_toy");
  EXPECT_EQ(cfg["architectures"][0], "OwlToyForCausalLM");
  EXPECT_EQ(cfg["use_qk_norm"], true);
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  auto hf = open_model_source(hf_dir);
  EXPECT_EQ(hf->config().arch, "owltoy");
  EXPECT_TRUE(hf->config().attn_qk_norm);
  EXPECT_EQ(logits_of(*hf, tokens), logits);  // bit for bit

  // convert: back to a GGUF with the same tensors and the family's key.
  write_gguf(*hf, back, {});
  auto again = open_model_source(back);
  const gguf::File* f = again->gguf_file();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->metadata().get_bool("owltoy.attention.qk_norm"), std::optional<bool>(true));
  const auto original = src->tensors();
  ASSERT_EQ(original.size(), again->tensors().size());
  for (const TensorView& t : original) {
    auto same = again->find(t.name);
    ASSERT_TRUE(same.has_value()) << t.name;
    ASSERT_EQ(t.n_bytes(), same->n_bytes()) << t.name;
    EXPECT_EQ(std::memcmp(t.data, same->data, t.n_bytes()), 0) << t.name;
  }
  EXPECT_EQ(logits_of(*again, tokens), logits);
  std::filesystem::remove_all(dir);
}

TEST(ToyFamily, RegistryAnswersForIt) {
  register_toy_once();
  EXPECT_EQ(&family_of("owltoy"), find_family("owltoy"));
  EXPECT_EQ(family_for_hf_model_type("owl_toy"), find_family("owltoy"));
  EXPECT_THROW(register_family(std::make_unique<ToyFamily>()), Error);
  // An unknown architecture names the supported ones, the toy among them.
  try {
    family_of("nosuch");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("owltoy"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("deepseek2"), std::string::npos);
  }
}

}  // namespace
}  // namespace owl
