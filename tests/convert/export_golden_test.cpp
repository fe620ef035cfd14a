// owl export on every golden model: the Hugging Face folder it writes runs in
// owl with the same logits as the GGUF it came from, maps back (owl convert)
// to the same tensors bit for bit, and for the three models with a shared HF
// twin equals that twin tensor for tensor.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/convert_test_util.h"
#include "formats/config_compare.h"
#include "model/hf_config.h"

namespace owl::test {
namespace {

std::string param_name(const std::string& m) {
  std::string s = m;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

class ExportGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportGolden, FolderRunsLikeTheGguf) {
  const std::string model = GetParam();
  const std::string gguf_path = golden_file(model);
  const std::string dir = temp_dir() + "/hf";
  owl_ok({"export", gguf_path, dir});

  // config.json maps back to the GGUF's ModelConfig. The one intended difference: llama3 rope
  // scaling is a tensor in GGUF and rope_scaling in config.json (golden README: x32, low 1, high 4, orig 8192).
  ModelConfig want = open_gguf_source(gguf_path)->config();
  const ModelConfig got = load_hf_config(dir);
  if (model == "llama-rope-scaled") {
    want.rope_scaling = RopeScaling::Llama3;
    want.rope_factor = 32;
    want.rope_orig_ctx = 8192;
    EXPECT_EQ(got.llama3_low_freq_factor, 1.0f);
    EXPECT_EQ(got.llama3_high_freq_factor, 4.0f);
  }
  expect_same_hparams(got, want, model);

  // Same logits from the folder as from the GGUF: bit-identical (F32 weights, same kernels),
  // except llama-rope-scaled, whose rope frequencies owl computes from config.json instead of
  // reading the GGUF's rope_freqs divisors (float rounding of the same formula).
  const double bound = model == "llama-rope-scaled" ? 1e-4 : 0.0;
  const Golden g = load_golden(model, "f32");
  const auto from_gguf = run_cases(gguf_path, g);
  const auto from_hf = run_cases(dir, g);
  for (size_t i = 0; i < g.cases.size(); ++i) {
    const std::string what = model + " " + g.cases[i].name;
    const double d = max_abs_diff(from_hf[i].logits, from_gguf[i].logits);
    const double df = max_abs_diff(from_hf[i].forced, from_gguf[i].forced);
    EXPECT_LE(d, bound) << what << ": prompt logits, HF folder vs GGUF";
    EXPECT_LE(df, bound) << what << ": teacher-forced rows, HF folder vs GGUF";
    EXPECT_EQ(from_hf[i].greedy, from_gguf[i].greedy) << what;
    const Agreement a = compare(from_hf[i].logits, g.cases[i].logits, g.n_vocab);
    EXPECT_LE(a.max_abs, 1e-3) << what << ": " << describe(a);
    std::printf("[export %s %s] HF folder vs GGUF max|d| %.3g (forced %.3g); vs golden: %s\n", model.c_str(),
                g.cases[i].name.c_str(), d, df, describe(a).c_str());
  }
}

// GGUF -> HF -> GGUF gives back every tensor bit for bit (rope_freqs recomputed from config.json included).
TEST_P(ExportGolden, RoundTripIsByteIdentical) {
  const std::string model = GetParam();
  const std::string dir = temp_dir() + "/hf", back = temp_dir() + "/back.gguf";
  owl_ok({"export", golden_file(model), dir});
  owl_ok({"convert", dir, back});
  auto got = gguf::File::open(back);
  auto want = gguf::File::open(golden_file(model));
  expect_same_hparams(config_from_gguf(got->metadata()), config_from_gguf(want->metadata()), model);
  expect_same_tensors(*got, *want, model);
}

INSTANTIATE_TEST_SUITE_P(All, ExportGolden, ::testing::ValuesIn(golden_models()),
                         [](const auto& p) { return param_name(p.param); });

// A file with a NextN layer (DeepSeek-V3's layout): export writes it as model.layers.3.* after
// the three trunk layers with num_nextn_predict_layers 1, the folder runs the MTP head exactly as
// the GGUF does, and convert gives back every tensor bit for bit.
TEST(ExportNextn, LayerSurvivesExportAndConvert) {
  const std::string gguf_path = golden_file("deepseek-v3-mtp");
  const std::string dir = temp_dir() + "/hf", back = temp_dir() + "/back.gguf";
  owl_ok({"export", gguf_path, dir});
  const auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
  EXPECT_EQ(cfg["num_hidden_layers"], 3);
  EXPECT_EQ(cfg["num_nextn_predict_layers"], 1);
  const ModelConfig hf = load_hf_config(dir);
  EXPECT_EQ(hf.n_layer, 4);
  EXPECT_EQ(hf.n_nextn_layers, 1);

  // The head over the short prompt, from either source: bit-identical (F32 weights).
  auto head = [](const std::string& path) {
    auto src = open_model_source(path);
    auto m = Model::load(*src);
    const std::vector<int32_t> tokens{439, 422, 263, 225, 138, 149, 448, 474};
    KVCache kv(m->kv_shape(), {.type = DType::F32, .n_ctx = 16, .n_seq_max = 1, .page_tokens = 16});
    Batch b;
    for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int64_t>(i), 0, true);
    m->forward(b, kv);
    const int64_t d = m->config().n_embd;
    std::vector<float> h(m->last_hidden().size(), 0.0f);
    std::copy(m->last_hidden().begin(), m->last_hidden().end() - d, h.begin() + d);
    KVCache mkv(m->mtp_kv_shape(), {.type = DType::F32, .n_ctx = 16, .n_seq_max = 1, .page_tokens = 16});
    auto l = m->mtp_forward(b, h.data(), mkv);
    return std::vector<float>(l.begin(), l.end());
  };
  const auto want = head(gguf_path);
  const auto got = head(dir);
  EXPECT_EQ(max_abs_diff(got, want), 0.0);
  const Agreement a = compare(want, read_f32(shared_path("golden/deepseek-v3-mtp/f32.short.mtp.f32")), 512);
  EXPECT_LE(a.max_abs, 1e-3) << describe(a);

  owl_ok({"convert", dir, back});
  auto g = gguf::File::open(back);
  auto w = gguf::File::open(gguf_path);
  expect_same_hparams(config_from_gguf(g->metadata()), config_from_gguf(w->metadata()), "deepseek-v3-mtp");
  expect_same_tensors(*g, *w, "deepseek-v3-mtp");
}

// config.json may count a NextN layer the checkpoint leaves out (re-uploads, fine-tunes of
// DeepSeek-V3 without model.layers.61): the folder loads as the trunk alone.
TEST(ExportNextn, ConfigCountingAMissingLayerLoadsTheTrunk) {
  const std::string dir = temp_dir() + "/hf";
  owl_ok({"export", golden_file("deepseek-v3"), dir});
  auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
  cfg["num_nextn_predict_layers"] = 1;
  std::ofstream(dir + "/config.json") << cfg.dump(1);
  auto src = open_model_source(dir);
  EXPECT_EQ(src->config().n_layer, 3);
  EXPECT_EQ(src->config().n_nextn_layers, 0);
  EXPECT_FALSE(Model::load(*src)->has_mtp());
}

// The exported folder of a model with a shared twin equals the twin: same tensor names,
// dtypes, shapes and bytes, and a config.json that reads to the same ModelConfig.
class ExportTwin : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportTwin, EqualsTheSharedTwin) {
  const std::string model = GetParam();
  const std::string dir = temp_dir() + "/hf";
  owl_ok({"export", golden_file(model), dir});
  const std::string twin = shared_path("golden/" + model + "/hf");
  ModelConfig got = load_hf_config(dir), want = load_hf_config(twin);
  expect_same_hparams(got, want, model);

  auto a = safetensors::File::open(dir + "/model.safetensors");
  auto b = safetensors::File::open(twin + "/model.safetensors");
  ASSERT_EQ(a->tensors().size(), b->tensors().size()) << model;
  for (size_t i = 0; i < b->tensors().size(); ++i) {
    const auto& ta = a->tensors()[i];
    const auto& tb = b->tensors()[i];
    ASSERT_EQ(ta.name, tb.name) << model;  // both sorted by name
    EXPECT_EQ(ta.dtype_name, tb.dtype_name) << tb.name;
    EXPECT_EQ(ta.shape, tb.shape) << tb.name;
    ASSERT_EQ(ta.n_bytes(), tb.n_bytes()) << tb.name;
    EXPECT_EQ(std::memcmp(a->data(ta), b->data(tb), tb.n_bytes()), 0) << model << ": " << tb.name << " differs";
  }
  // The twin's config.json keys that matter to transformers are all there with the same values.
  auto cj = nlohmann::json::parse(read_file(dir + "/config.json"));
  auto tj = nlohmann::json::parse(read_file(twin + "/config.json"));
  for (const char* k : {"model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                        "intermediate_size", "vocab_size", "tie_word_embeddings", "max_position_embeddings"})
    EXPECT_EQ(cj[k], tj[k]) << model << ": " << k;
  EXPECT_EQ(cj["architectures"], tj["architectures"]) << model;
}

INSTANTIATE_TEST_SUITE_P(Twins, ExportTwin, ::testing::ValuesIn(twin_models()),
                         [](const auto& p) { return param_name(p.param); });

// Quantised GGUFs export dequantised (F32 by default, or --dtype): the folder runs like a
// dequantising engine on that file, within the golden README's statistical bounds for it.
struct QuantCase {
  const char* model;
  const char* quant;
  const char* dtype;  // "" = default
  const char* st_dtype;
  double mean_kl, p99;
};

class ExportQuant : public ::testing::TestWithParam<QuantCase> {};

TEST_P(ExportQuant, DequantisedFolderMatchesTheQuantGolden) {
  const QuantCase q = GetParam();
  const std::string dir = temp_dir() + "/hf";
  std::vector<std::string> args = {"export", golden_file(q.model, q.quant), dir};
  if (*q.dtype) args.insert(args.end(), {"--dtype", q.dtype});
  owl_ok(args);
  auto st = safetensors::File::open(dir + "/model.safetensors");
  for (const auto& t : st->tensors()) EXPECT_EQ(t.dtype_name, q.st_dtype) << t.name;

  // Pooled over the three prompts, as the README's bounds are (8 rows alone are too few for a share).
  const Golden g = load_golden(q.model, q.quant);
  const auto runs = run_cases(dir, g);
  std::vector<float> ours, gold;
  for (size_t i = 0; i < g.cases.size(); ++i) {
    ours.insert(ours.end(), runs[i].logits.begin(), runs[i].logits.end());
    gold.insert(gold.end(), g.cases[i].logits.begin(), g.cases[i].logits.end());
  }
  const Agreement a = compare(ours, gold, g.n_vocab);
  const std::string what = std::string(q.model) + " " + q.quant;
  EXPECT_LE(a.mean_kl, q.mean_kl) << what << ": " << describe(a);
  EXPECT_LE(a.p99_abs, q.p99) << what << ": " << describe(a);
  EXPECT_GE(a.argmax_agree, 0.9) << what << ": " << describe(a);
  std::printf("[export %s %s --dtype '%s'] vs %s golden: %s\n", q.model, q.quant, q.dtype, q.quant,
              describe(a).c_str());
}

INSTANTIATE_TEST_SUITE_P(Quants, ExportQuant,
                         ::testing::Values(QuantCase{"llama", "q8_0", "", "F32", 0.02, 1.0},
                                           QuantCase{"deepseek-v3", "q4_k_m", "", "F32", 0.03, 2.0},
                                           QuantCase{"qwen3", "q8_0", "bf16", "BF16", 0.02, 1.0}),
                         [](const auto& p) { return param_name(std::string(p.param.model) + "_" + p.param.quant); });

}  // namespace
}  // namespace owl::test
