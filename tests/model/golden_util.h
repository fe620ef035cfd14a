// Helpers for comparing owl's logits with the golden llama.cpp logits in
// ../shared/golden (see its README for the file layout and the bounds).
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/model.h"
#include "model/source.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "test_util.h"

namespace owl::test {

struct GoldenCase {
  std::string name;
  std::vector<int32_t> tokens;
  std::vector<int32_t> greedy;
  std::vector<float> margins;     // greedy_top2_margins
  std::vector<float> logits;      // [n_tokens][n_vocab]
  std::vector<float> gen_logits;  // [16][n_vocab]
};

struct Golden {
  std::string dir;
  int64_t n_vocab = 0;
  std::vector<GoldenCase> cases;
};

inline Golden load_golden(const std::string& model, const std::string& quant) {
  Golden g;
  g.dir = shared_path("golden/" + model);
  auto j = nlohmann::json::parse(read_file(g.dir + "/" + quant + ".cases.json"));
  g.n_vocab = j.at("n_vocab").get<int64_t>();
  for (const auto& c : j.at("cases")) {
    GoldenCase gc;
    gc.name = c.at("name").get<std::string>();
    gc.tokens = c.at("tokens").get<std::vector<int32_t>>();
    gc.greedy = c.at("greedy").get<std::vector<int32_t>>();
    gc.margins = c.at("greedy_top2_margins").get<std::vector<float>>();
    gc.logits = read_f32(g.dir + "/" + c.at("logits_file").get<std::string>());
    gc.gen_logits = read_f32(g.dir + "/" + c.at("greedy_logits_file").get<std::string>());
    g.cases.push_back(std::move(gc));
  }
  return g;
}

// Agreement between two [rows][n_vocab] logit tables.
struct Agreement {
  double max_abs = 0;
  double p99_abs = 0;       // 99th percentile of |Δ| over all elements
  double mean_kl = 0;       // mean over rows of KL(golden ‖ ours)
  double argmax_agree = 0;  // share of rows whose argmax agree
  int64_t rows = 0;
};

inline std::vector<double> log_softmax(const float* x, int64_t n) {
  double mx = *std::max_element(x, x + n), sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  std::vector<double> l(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) l[i] = x[i] - mx - std::log(sum);
  return l;
}

// KL(golden ‖ ours) per row, averaged (the direction llama.cpp's perplexity tool reports).
inline Agreement compare(const std::vector<float>& ours, const std::vector<float>& golden, int64_t n_vocab) {
  Agreement a;
  EXPECT_EQ(ours.size(), golden.size());
  const size_t n = std::min(ours.size(), golden.size());
  a.rows = static_cast<int64_t>(n) / n_vocab;
  std::vector<double> diffs(n);
  for (size_t i = 0; i < n; ++i) {
    diffs[i] = std::fabs(static_cast<double>(ours[i]) - golden[i]);
    if (!(diffs[i] <= a.max_abs)) a.max_abs = std::isnan(diffs[i]) ? INFINITY : diffs[i];
  }
  if (n > 0) {
    size_t k = static_cast<size_t>(0.99 * static_cast<double>(n - 1));
    std::nth_element(diffs.begin(), diffs.begin() + static_cast<std::ptrdiff_t>(k), diffs.end());
    a.p99_abs = diffs[k];
  }
  int64_t agree = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* o = ours.data() + r * n_vocab;
    const float* g = golden.data() + r * n_vocab;
    auto lo = log_softmax(o, n_vocab), lg = log_softmax(g, n_vocab);
    double kl = 0;
    for (int64_t i = 0; i < n_vocab; ++i) kl += std::exp(lg[i]) * (lg[i] - lo[i]);
    a.mean_kl += kl;
    agree += std::max_element(o, o + n_vocab) - o == std::max_element(g, g + n_vocab) - g;
  }
  if (a.rows > 0) {
    a.mean_kl /= static_cast<double>(a.rows);
    a.argmax_agree = static_cast<double>(agree) / static_cast<double>(a.rows);
  }
  return a;
}

inline std::string describe(const Agreement& a) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "max|d| %.3g, p99|d| %.3g, mean KL %.3g, argmax %.1f%% of %lld rows", a.max_abs,
                a.p99_abs, a.mean_kl, 100 * a.argmax_agree, static_cast<long long>(a.rows));
  return buf;
}

// The model evaluated on one case: prompt logits in one forward call, then
// 16 greedy ids through the KV cache, and teacher-forced rows (prompt +
// golden greedy[:15] fed one token at a time after the prompt).
struct CaseRun {
  std::vector<float> logits;
  std::vector<int32_t> greedy;
  std::vector<float> forced;  // [16][n_vocab], row 0 = last prompt row
};

inline CaseRun run_case(Model& model, const GoldenCase& c, DType kv_type) {
  const int64_t V = model.n_vocab();
  CaseRun out;
  KVCacheOptions opt;
  opt.type = kv_type;
  opt.n_ctx = 512;
  opt.n_seq_max = 2;
  KVCache kv(model.kv_shape(), opt);
  Batch b;
  for (size_t i = 0; i < c.tokens.size(); ++i) b.add(c.tokens[i], static_cast<int64_t>(i), 0, true);
  auto l = model.forward(b, kv);
  out.logits.assign(l.begin(), l.end());
  std::vector<float> last(l.end() - V, l.end());

  // Free-running greedy on sequence 0, teacher-forced on sequence 1 (same prompt, forced ids).
  b.clear();
  for (size_t i = 0; i < c.tokens.size(); ++i) b.add(c.tokens[i], static_cast<int64_t>(i), 1, i + 1 == c.tokens.size());
  auto l1 = model.forward(b, kv);
  out.forced.assign(l1.begin(), l1.end());
  int32_t next = argmax(last);
  int64_t pos = static_cast<int64_t>(c.tokens.size());
  for (size_t step = 0; step < 16; ++step) {
    out.greedy.push_back(next);
    if (step == 15) break;
    b.clear();
    b.add(next, pos, 0, true);
    auto lg = model.forward(b, kv);
    next = argmax(lg);
    b.clear();
    b.add(c.greedy[step], pos, 1, true);
    auto lf = model.forward(b, kv);
    out.forced.insert(out.forced.end(), lf.begin(), lf.end());
    ++pos;
  }
  return out;
}

// Greedy ids agree up to the first step whose golden top-2 margin is below min_margin.
inline void expect_greedy_equal(const GoldenCase& c, const std::vector<int32_t>& ours, float min_margin,
                                const std::string& what) {
  for (size_t j = 0; j < c.greedy.size(); ++j) {
    if (c.margins[j] < min_margin) break;
    ASSERT_LT(j, ours.size());
    EXPECT_EQ(ours[j], c.greedy[j]) << what << ": greedy step " << j << " (margin " << c.margins[j] << ")";
    if (ours[j] != c.greedy[j]) break;
  }
}

// Writes a copy of golden/<model>/f32.gguf to a temp file and returns its path; `edit` may
// change the metadata and returns false for tensors to leave out (it may also change their
// shape, keeping the element count).
inline std::string edited_golden_copy(
    const std::string& model, const std::string& name,
    const std::function<bool(gguf::Metadata&, const std::string&, std::vector<int64_t>&)>& edit) {
  auto f = gguf::File::open(shared_path("golden/" + model + "/f32.gguf"));
  gguf::Writer w;
  for (const auto& [k, v] : f->metadata().items) w.metadata().set(k, v);
  for (const auto& ti : f->tensor_infos()) {
    TensorView t = f->view(ti);
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    if (!edit(w.metadata(), ti.name, ne)) continue;
    w.add_tensor(ti.name, t.type, ne, t.data);
  }
  const std::string path = temp_dir() + "/" + name + ".gguf";
  w.write(path);
  return path;
}

}  // namespace owl::test
