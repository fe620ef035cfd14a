// The MoE families against llama.cpp's logits for the tiny random-weight models in
// ../shared/golden (see its README for what each file holds and how the bounds were measured).
//
// Per model file, all three prompts (short 8, medium 64, long 256 ids):
//  * the whole prompt in one forward call, logits of every position;
//  * teacher-forced decoding: the 16 golden greedy ids fed one token at a time through the KV
//    cache, compared with the .gen.f32 rows, and our argmax at each step compared with the
//    golden greedy id (= free-running greedy) up to the first step whose golden top-2 margin is
//    too small for the bound to decide it.
// F32 files (semantic test, F32 KV cache): max |Δ| <= 1e-3 everywhere, mean KL <= 1e-8, every
// argmax equal where the golden top-2 margin exceeds 2e-3 (twice the |Δ| bound).
// Quantised files (kernel test, statistical, over all rows of the three prompts): mean KL <= 0.03,
// argmax agreement >= 90%, 99th percentile of |Δ| <= 2, at most 10% of rows with some |Δ| > 1;
// greedy ids equal up to the first step with a golden margin below 0.5.
// deepseek-v3/hf (the Hugging Face twin of f32.gguf) must meet the F32 bounds.
// deepseek-v3 also runs with the absorbed MLA form forced for prompts (by default a fresh prompt
// uses the expanded form, decode steps the absorbed one).
// F32 files with an F16 KV cache: max |Δ| <= 0.05, mean KL <= 2e-5, argmax agreement >= 99%,
// greedy ids equal up to the first step with a golden margin below 0.05.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/mla.h"
#include "model/model.h"
#include "model/source.h"
#include "runtime/kv_cache.h"
#include "test_util.h"

namespace owl {
namespace {

struct Bounds {
  bool exact;                                                   // F32: per-position bounds; otherwise statistical
  bool f16_kv;                                                  // F32 weights, F16 KV cache: looser per-position bounds
  double max_abs = 1e-3, mean_kl = 1e-8, argmax_margin = 2e-3;  // exact
  double f16_max_abs = 0.05, f16_mean_kl = 2e-5, f16_argmax = 0.99, f16_greedy_margin = 0.05;
  double q_mean_kl = 0.03, q_argmax = 0.90, q_p99 = 2.0, q_frac_over_1 = 0.10, q_greedy_margin = 0.5;
};

// Differences between our rows and the golden rows, accumulated over many rows.
struct Stats {
  int64_t rows = 0, argmax_equal = 0, argmax_checked = 0, rows_over_1 = 0;
  double max_abs = 0, kl_sum = 0;
  std::vector<float> abs_diffs;
  std::string first_argmax_miss;

  void add(const float* ours, const float* gold, int64_t n_vocab, double argmax_margin, const std::string& where) {
    ++rows;
    double row_max = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double d = std::fabs(static_cast<double>(ours[i]) - gold[i]);
      row_max = std::max(row_max, d);
      abs_diffs.push_back(static_cast<float>(d));
    }
    max_abs = std::max(max_abs, row_max);
    if (row_max > 1.0) ++rows_over_1;
    kl_sum += kl(ours, gold, n_vocab);
    // Argmax: rows whose golden top-2 margin is below `argmax_margin` may legitimately flip.
    const int64_t a = argmax(ours, n_vocab), b = argmax(gold, n_vocab);
    if (margin(gold, n_vocab) >= argmax_margin) {
      ++argmax_checked;
      if (a == b)
        ++argmax_equal;
      else if (first_argmax_miss.empty())
        first_argmax_miss = where + ": ours " + std::to_string(a) + ", golden " + std::to_string(b);
    }
  }
  double mean_kl() const { return rows ? kl_sum / static_cast<double>(rows) : 0; }
  double argmax_agreement() const {
    return argmax_checked ? static_cast<double>(argmax_equal) / static_cast<double>(argmax_checked) : 1.0;
  }
  double percentile(double p) {
    if (abs_diffs.empty()) return 0;
    size_t k = static_cast<size_t>(p * static_cast<double>(abs_diffs.size() - 1));
    std::nth_element(abs_diffs.begin(), abs_diffs.begin() + static_cast<long>(k), abs_diffs.end());
    return abs_diffs[k];
  }

  static int64_t argmax(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }
  static double margin(const float* x, int64_t n) {
    std::vector<float> v(x, x + n);
    std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
    return v[0] - v[1];
  }
  // KL(ours || golden) of the softmax distributions.
  static double kl(const float* ours, const float* gold, int64_t n) {
    auto logsumexp = [n](const float* x) {
      double m = *std::max_element(x, x + n), s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
      return m + std::log(s);
    };
    const double lp = logsumexp(ours), lq = logsumexp(gold);
    double k = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = ours[i] - lp, b = gold[i] - lq;
      k += std::exp(a) * (a - b);
    }
    return std::max(0.0, k);
  }
};

struct Param {
  const char* model;
  const char* quant;
  bool f16_kv = false;
  MlaForm mla = MlaForm::Auto;  // deepseek2: force one form of MLA attention
};

// Through the registry, as every command loads a model.
std::unique_ptr<Model> load_family(const ModelSource& src) {
  auto model = Model::load(src);
  EXPECT_EQ(model->config().arch, src.config().arch);
  return model;
}

class MoeGolden : public ::testing::TestWithParam<Param> {};

TEST_P(MoeGolden, MatchesLlamaCpp) {
  const Param prm = GetParam();
  const std::string dir = std::string("golden/") + prm.model + "/";
  // "hf": the Hugging Face twin of f32.gguf (same weights), checked against the F32 golden.
  const bool hf = std::string(prm.quant) == "hf";
  const std::string quant = hf ? "f32" : prm.quant;
  const Bounds bounds{quant == "f32" && !prm.f16_kv, prm.f16_kv};
  const auto meta = nlohmann::json::parse(test::read_file(test::shared_path(dir + quant + ".cases.json")));
  auto src = open_model_source(test::shared_path(dir + (hf ? "hf" : quant + ".gguf")));
  src->mla_form = prm.mla;
  std::unique_ptr<Model> model = load_family(*src);
  const int64_t n_vocab = model->n_vocab();
  ASSERT_EQ(n_vocab, meta["n_vocab"].get<int64_t>());

  Stats prompt, gen;
  for (const auto& c : meta["cases"]) {
    const std::string name = c["name"];
    const auto tokens = c["tokens"].get<std::vector<int32_t>>();
    const auto greedy = c["greedy"].get<std::vector<int32_t>>();
    const auto margins = c["greedy_top2_margins"].get<std::vector<double>>();
    const auto gold = test::read_f32(test::shared_path(dir + c["logits_file"].get<std::string>()));
    const auto gold_gen = test::read_f32(test::shared_path(dir + c["greedy_logits_file"].get<std::string>()));
    const int64_t n = static_cast<int64_t>(tokens.size());
    ASSERT_EQ(static_cast<int64_t>(gold.size()), n * n_vocab);

    // Small pages so that the long prompt spans many of them.
    KVCache kv(model->kv_shape(),
               {.type = prm.f16_kv ? DType::F16 : DType::F32, .n_ctx = 512, .n_seq_max = 1, .page_tokens = 16});
    Batch batch;
    for (int64_t i = 0; i < n; ++i) batch.add(tokens[i], i, 0, true);
    auto logits = model->forward(batch, kv);
    ASSERT_EQ(static_cast<int64_t>(logits.size()), n * n_vocab);
    const double prompt_margin = bounds.exact ? bounds.argmax_margin : 0.0;
    for (int64_t i = 0; i < n; ++i)
      prompt.add(logits.data() + i * n_vocab, gold.data() + i * n_vocab, n_vocab, prompt_margin,
                 name + " position " + std::to_string(i));
    std::vector<float> row(logits.begin() + (n - 1) * n_vocab, logits.end());

    // Greedy steps, teacher-forced with the golden ids.
    const double greedy_margin = bounds.exact    ? bounds.argmax_margin
                                 : bounds.f16_kv ? bounds.f16_greedy_margin
                                                 : bounds.q_greedy_margin;
    bool free_running = true;  // still before the first step with a deciding margin too small
    for (size_t j = 0; j < greedy.size(); ++j) {
      if (j > 0) {
        batch.clear();
        batch.add(greedy[j - 1], n + static_cast<int64_t>(j) - 1, 0, true);
        auto step = model->forward(batch, kv);
        row.assign(step.begin(), step.end());
      }
      gen.add(row.data(), gold_gen.data() + j * n_vocab, n_vocab, prompt_margin,
              name + " greedy step " + std::to_string(j));
      if (margins[j] < greedy_margin) free_running = false;
      if (free_running) {
        EXPECT_EQ(Stats::argmax(row.data(), n_vocab), greedy[j]) << name << ": greedy step " << j;
      }
    }
  }

  for (Stats* s : {&prompt, &gen}) {
    const char* what = s == &prompt ? "prompt rows" : "greedy-step rows";
    std::printf("[ %s %s%s%s %s ] max|d| %.3g  mean KL %.3g  argmax %.4f  p99|d| %.3g  rows with |d|>1: %.3f\n",
                prm.model, prm.quant, prm.f16_kv ? " (F16 KV)" : "", prm.mla == MlaForm::Absorbed ? " (absorbed)" : "",
                what, s->max_abs, s->mean_kl(), s->argmax_agreement(), s->percentile(0.99),
                static_cast<double>(s->rows_over_1) / static_cast<double>(s->rows));
    if (bounds.exact) {
      EXPECT_LE(s->max_abs, bounds.max_abs) << what;
      EXPECT_LE(s->mean_kl(), bounds.mean_kl) << what;
      EXPECT_EQ(s->argmax_equal, s->argmax_checked) << what << ", first miss at " << s->first_argmax_miss;
    } else if (bounds.f16_kv) {
      EXPECT_LE(s->max_abs, bounds.f16_max_abs) << what;
      EXPECT_LE(s->mean_kl(), bounds.f16_mean_kl) << what;
      EXPECT_GE(s->argmax_agreement(), bounds.f16_argmax) << what;
    } else {
      EXPECT_LE(s->mean_kl(), bounds.q_mean_kl) << what;
      EXPECT_GE(s->argmax_agreement(), bounds.q_argmax) << what;
      EXPECT_LE(s->percentile(0.99), bounds.q_p99) << what;
      EXPECT_LE(static_cast<double>(s->rows_over_1) / static_cast<double>(s->rows), bounds.q_frac_over_1) << what;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Files, MoeGolden,
                         ::testing::Values(Param{"deepseek-v3", "f32"}, Param{"deepseek-v3", "f32", true},
                                           Param{"deepseek-v3", "f32", false, MlaForm::Absorbed},
                                           Param{"deepseek-v3", "q8_0", false, MlaForm::Absorbed},
                                           Param{"deepseek-v3", "hf"}, Param{"deepseek-v3", "q8_0"},
                                           Param{"deepseek-v3", "q4_k_m"}, Param{"deepseek-v2-lite", "f32"},
                                           Param{"deepseek-v2-lite", "q4_k_m"}, Param{"qwen3moe", "f32"},
                                           Param{"qwen3moe", "q4_k_m"}, Param{"glm4moe", "f32"},
                                           Param{"glm4moe", "f32", true}, Param{"glm4moe", "q4_k_m"}),
                         [](const ::testing::TestParamInfo<Param>& i) {
                           std::string s = std::string(i.param.model) + "_" + i.param.quant +
                                           (i.param.f16_kv ? "_f16kv" : "") +
                                           (i.param.mla == MlaForm::Absorbed ? "_absorbed" : "");
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace owl

namespace owl {
namespace {

// Several sequences in one batch: the short and medium prompts interleaved row by row, then one
// decode step of each in a single batch; every row must match its own sequence's golden row.
class MoeBatch : public ::testing::TestWithParam<const char*> {};

TEST_P(MoeBatch, InterleavedSequencesMatchTheirGoldenRows) {
  const std::string dir = std::string("golden/") + GetParam() + "/";
  const auto meta = nlohmann::json::parse(test::read_file(test::shared_path(dir + "f32.cases.json")));
  auto src = open_model_source(test::shared_path(dir + "f32.gguf"));
  auto model = load_family(*src);
  const int64_t nv = model->n_vocab();
  struct Seq {
    std::vector<int32_t> tokens, greedy;
    std::vector<float> gold, gen;
  };
  std::vector<Seq> seqs;
  for (int c : {0, 1}) {
    const auto& cs = meta["cases"][c];
    seqs.push_back({cs["tokens"].get<std::vector<int32_t>>(), cs["greedy"].get<std::vector<int32_t>>(),
                    test::read_f32(test::shared_path(dir + cs["logits_file"].get<std::string>())),
                    test::read_f32(test::shared_path(dir + cs["greedy_logits_file"].get<std::string>()))});
  }
  KVCache kv(model->kv_shape(), {.type = DType::F32, .n_ctx = 512, .n_seq_max = 2, .page_tokens = 16});
  Batch batch;
  std::vector<std::pair<int, int64_t>> who;  // (sequence, position) of each row
  for (size_t i = 0; i < seqs[1].tokens.size(); ++i)
    for (int s : {0, 1})
      if (i < seqs[s].tokens.size()) {
        batch.add(seqs[s].tokens[i], static_cast<int64_t>(i), s, true);
        who.emplace_back(s, static_cast<int64_t>(i));
      }
  auto logits = model->forward(batch, kv);
  double max_abs = 0;
  for (size_t r = 0; r < who.size(); ++r)
    for (int64_t v = 0; v < nv; ++v)
      max_abs = std::max(max_abs, static_cast<double>(
                                      std::fabs(logits[r * nv + v] - seqs[who[r].first].gold[who[r].second * nv + v])));
  EXPECT_LE(max_abs, 1e-3) << "prompt rows";

  batch.clear();
  for (int s : {0, 1}) batch.add(seqs[s].greedy[0], static_cast<int64_t>(seqs[s].tokens.size()), s, true);
  logits = model->forward(batch, kv);
  max_abs = 0;
  for (int s : {0, 1})
    for (int64_t v = 0; v < nv; ++v)
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(logits[s * nv + v] - seqs[s].gen[nv + v])));
  EXPECT_LE(max_abs, 1e-3) << "decode step";
}

INSTANTIATE_TEST_SUITE_P(Files, MoeBatch, ::testing::Values("deepseek-v3", "qwen3moe", "glm4moe"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string s = i.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace owl
