// The engine with `--spec mtp:2` on the DeepSeek-V3 file with a NextN layer: three greedy
// requests decoded together (their drafts share each step's verify batch, the MTP head keeps one
// cache row set per sequence) produce exactly the ids of plain one-token-per-forward decoding,
// and a sampled request runs to its length. The ids are read through a TokenHook.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "model/model.h"
#include "model/source.h"
#include "runtime/engine.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl {
namespace {

class RecordIds : public TokenHook {
 public:
  std::vector<int32_t> on_token(int32_t id, std::string_view) override {
    ids.push_back(id);
    return {};
  }
  std::vector<int32_t> ids;
};

std::vector<int32_t> plain_greedy(Model& m, const std::vector<int32_t>& prompt, int n) {
  KVCache kv(m.kv_shape(), {.type = DType::F32, .n_ctx = 256, .n_seq_max = 1, .page_tokens = 16});
  Batch b;
  for (size_t i = 0; i < prompt.size(); ++i) b.add(prompt[i], static_cast<int64_t>(i), 0, i + 1 == prompt.size());
  std::vector<int32_t> out{argmax(m.forward(b, kv))};
  while (static_cast<int>(out.size()) < n) {
    b.clear();
    b.add(out.back(), static_cast<int64_t>(prompt.size() + out.size()) - 1, 0, true);
    out.push_back(argmax(m.forward(b, kv)));
  }
  return out;
}

void wait_all(const std::vector<std::shared_ptr<GenerationStream>>& streams) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (const auto& s : streams)
    while (!s->finished() && std::chrono::steady_clock::now() < deadline) s->wait(std::chrono::milliseconds(20));
}

TEST(EngineSpec, MtpDraftsOfSeveralSequencesKeepGreedyIds) {
  auto src = open_model_source(test::shared_path("golden/deepseek-v3-mtp/f32.gguf"));
  auto model = Model::load(*src);
  // The golden file has no tokenizer; the engine only detokenizes, and stories260K's has 512 tokens too.
  auto tok = Tokenizer::open(test::shared_path("models/stories260K/stories260K-f32.gguf"));
  const std::vector<std::vector<int32_t>> prompts = {
      {439, 422, 263, 225, 138, 149, 448, 474}, {72, 234, 192, 267, 339, 398}, {5, 6, 7, 5, 6, 7, 5, 6}};
  constexpr int kN = 20;
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(plain_greedy(*model, p, kN));

  EngineOptions eo;
  eo.n_parallel = 3;
  eo.n_ctx = 256;
  eo.kv_type = DType::F32;
  eo.spec = parse_spec("mtp:2");
  Engine engine(*model, *tok, eo);
  std::vector<std::shared_ptr<RecordIds>> hooks;
  std::vector<std::shared_ptr<GenerationStream>> streams;
  for (const auto& p : prompts) {
    GenerationRequest r;
    r.prompt = p;
    r.sampling.temperature = 0;
    r.max_tokens = kN;
    r.ignore_eos = true;
    hooks.push_back(std::make_shared<RecordIds>());
    r.hook = hooks.back();
    streams.push_back(engine.submit(std::move(r)));
  }
  // A sampled request beside them: rejection sampling, run to its length.
  GenerationRequest sampled;
  sampled.prompt = prompts[0];
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.seed = 42;
  sampled.max_tokens = kN;
  sampled.ignore_eos = true;
  auto sampled_ids = std::make_shared<RecordIds>();
  sampled.hook = sampled_ids;
  streams.push_back(engine.submit(std::move(sampled)));
  wait_all(streams);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(hooks[i]->ids, expected[i]) << "request " << i;
  EXPECT_EQ(sampled_ids->ids.size(), static_cast<size_t>(kN));
  const EngineStats s = engine.stats();
  EXPECT_GT(s.spec_drafted_total, 0);
  EXPECT_GT(s.spec_verify_total, 0);
  EXPECT_EQ(s.generated_tokens_total, 4 * kN);
  std::printf("[ engine mtp:2 ] %lld drafted, %lld accepted, %lld verify rows\n",
              static_cast<long long>(s.spec_drafted_total), static_cast<long long>(s.spec_accepted_total),
              static_cast<long long>(s.spec_verify_total));
}

}  // namespace
}  // namespace owl
