// llama.cpp's side of the quantised-KV-cache table in docs/BENCHMARKS.md: the mean KL of a
// golden model's logits with a quantised K/V cache against those with an F16 cache, over the
// same token ids owl's CliKvType test feeds (llama-perplexity cannot: the golden models have no
// tokenizer). Uses only llama.cpp's public API; not part of owl's build:
//
//   g++ -O2 -std=c++17 scripts/llama_kv_kl.cpp -I$LLAMA/include -I$LLAMA/ggml/include \
//       -L$LLAMA/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$LLAMA/build/bin -o /tmp/llama_kv_kl
//   /tmp/llama_kv_kl MODEL.gguf 1,2,3,... [threads] [dump_prefix]
//
// Settings as owl's: F32 weights (the golden f32.gguf), the whole prompt in one decode with the
// logits of every row, flash attention on (llama.cpp needs it for a quantised V cache), weight
// repacking off. Prints "q8_0 mean_kl argmax_agree" and the same for q4_0. With dump_prefix, also
// writes each run's logits (raw float32 [n_tokens][n_vocab]) to dump_prefix.{f16,q8_0,q4_0}.f32,
// for comparing them with owl's row by row.
#include <llama.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

std::vector<float> logits_with(llama_model* model, const std::vector<llama_token>& ids, ggml_type type, int threads) {
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = 512;
  cp.n_threads = cp.n_threads_batch = threads;
  cp.type_k = cp.type_v = type;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "cannot create a context with cache type %s\n", ggml_type_name(type));
    std::exit(1);
  }
  llama_batch b = llama_batch_init(static_cast<int32_t>(ids.size()), 0, 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    b.token[i] = ids[i];
    b.pos[i] = static_cast<llama_pos>(i);
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = 1;
  }
  b.n_tokens = static_cast<int32_t>(ids.size());
  if (llama_decode(ctx, b) != 0) {
    std::fprintf(stderr, "llama_decode failed\n");
    std::exit(1);
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::vector<float> out(ids.size() * static_cast<size_t>(n_vocab));
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* row = llama_get_logits_ith(ctx, static_cast<int32_t>(i));
    std::copy(row, row + n_vocab, out.begin() + static_cast<std::ptrdiff_t>(i * n_vocab));
  }
  llama_batch_free(b);
  llama_free(ctx);
  return out;
}

// Mean over rows of KL(base || other), and the share of rows whose argmax agrees.
void compare(const std::vector<float>& base, const std::vector<float>& other, int n_vocab, const char* name) {
  const size_t rows = base.size() / static_cast<size_t>(n_vocab);
  double kl_sum = 0;
  size_t agree = 0;
  for (size_t r = 0; r < rows; ++r) {
    const float* p = base.data() + r * n_vocab;
    const float* q = other.data() + r * n_vocab;
    const double mp = *std::max_element(p, p + n_vocab), mq = *std::max_element(q, q + n_vocab);
    double zp = 0, zq = 0;
    for (int i = 0; i < n_vocab; ++i) {
      zp += std::exp(p[i] - mp);
      zq += std::exp(q[i] - mq);
    }
    const double lzp = std::log(zp) + mp, lzq = std::log(zq) + mq;
    double kl = 0;
    for (int i = 0; i < n_vocab; ++i) {
      const double lp = p[i] - lzp, lq = q[i] - lzq;
      kl += std::exp(lp) * (lp - lq);
    }
    kl_sum += kl;
    agree += (std::max_element(p, p + n_vocab) - p) == (std::max_element(q, q + n_vocab) - q);
  }
  std::printf("%s mean_kl %.3g argmax_agree %.1f%%\n", name, kl_sum / static_cast<double>(rows),
              100.0 * static_cast<double>(agree) / static_cast<double>(rows));
}

void dump(const std::string& prefix, const char* name, const std::vector<float>& logits) {
  if (prefix.empty()) return;
  const std::string path = prefix + "." + name + ".f32";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(logits.data(), sizeof(float), logits.size(), f) != logits.size()) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf ID,ID,... [threads] [dump_prefix]\n", argv[0]);
    return 2;
  }
  std::vector<llama_token> ids;
  std::stringstream ss(argv[2]);
  for (std::string t; std::getline(ss, t, ',');) ids.push_back(std::stoi(t));
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const std::string prefix = argc > 4 ? argv[4] : "";
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.use_extra_bufts = false;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  const std::vector<float> f16 = logits_with(model, ids, GGML_TYPE_F16, threads);
  dump(prefix, "f16", f16);
  for (const auto& [type, name] : {std::pair{GGML_TYPE_Q8_0, "q8_0"}, std::pair{GGML_TYPE_Q4_0, "q4_0"}}) {
    const std::vector<float> q = logits_with(model, ids, type, threads);
    dump(prefix, name, q);
    compare(f16, q, n_vocab, name);
  }
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
