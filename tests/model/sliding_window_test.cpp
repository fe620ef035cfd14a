// Sliding-window attention (a model's attention.sliding_window): each token
// attends to itself and the window-1 tokens before it. Checked on the golden
// llama weights with the key added:
//  * window 1: a token sees only itself, so (rope being relative) its logits
//    equal those of the token evaluated alone at position 0;
//  * a window as long as the prompt changes nothing;
//  * a window of 4 matches the full model on the first 4 positions and not after.
#include <gtest/gtest.h>

#include "golden_util.h"

namespace owl::test {
namespace {

std::vector<float> evaluate(const std::string& path, const std::vector<int32_t>& ids) {
  auto src = open_model_source(path);
  auto model = Model::load(*src);
  KVCacheOptions o;
  o.type = DType::F32;
  o.n_ctx = 512;
  KVCache kv(model->kv_shape(), o);
  Batch b;
  for (size_t i = 0; i < ids.size(); ++i) b.add(ids[i], int64_t(i), 0, true);
  auto l = model->forward(b, kv);
  return {l.begin(), l.end()};
}

std::string with_window(int64_t w) {
  return edited_golden_copy("llama", "window" + std::to_string(w),
                            [w](gguf::Metadata& m, const std::string&, std::vector<int64_t>&) {
                              m.set("llama.attention.sliding_window", gguf::Value::u32(uint32_t(w)));
                              return true;
                            });
}

double max_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

TEST(SlidingWindow, WindowOfOneSeesOnlyTheTokenItself) {
  Golden g = load_golden("llama", "f32");
  const auto& ids = g.cases[0].tokens;
  const std::string path = with_window(1);
  const auto all = evaluate(path, ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto alone = evaluate(path, {ids[i]});
    EXPECT_LE(max_diff(all.data() + i * 512, alone.data(), 512), 1e-4) << "position " << i;
  }
}

TEST(SlidingWindow, WindowLimitsHowFarBackTokensSee) {
  Golden g = load_golden("llama", "f32");
  const auto& ids = g.cases[0].tokens;  // 8 ids
  const auto full = evaluate(shared_path("golden/llama/f32.gguf"), ids);
  EXPECT_LE(max_diff(evaluate(with_window(8), ids).data(), full.data(), int64_t(full.size())), 1e-5);
  const auto w4 = evaluate(with_window(4), ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    const double d = max_diff(w4.data() + i * 512, full.data() + i * 512, 512);
    if (i < 4) {
      EXPECT_LE(d, 1e-5) << "position " << i;
    } else {
      EXPECT_GT(d, 1e-2) << "position " << i << " ignored the window";
    }
  }
}

}  // namespace
}  // namespace owl::test
