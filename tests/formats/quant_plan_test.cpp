// The shared quantisation plan (formats/quant_plan.h): target names, the
// per-tensor type rules, and the row conversion. The end-to-end check is that
// `owl quantize f32.gguf OUT q4_k_m` gives every tensor of every golden model
// the type llama.cpp's llama-quantize gave it in the golden q4_k_m.gguf.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/quant_plan.h"
#include "kernels/kernels.h"
#include "convert/quantize_test_util.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

using namespace owl;
using namespace owl::test;
using namespace owl::test::quant;

namespace {

TensorView tv(const std::string& name, std::vector<int64_t> ne) {
  TensorView t;
  t.name = name;
  t.n_dims = static_cast<int>(ne.size());
  for (size_t i = 0; i < ne.size(); ++i) t.ne[i] = ne[i];
  return t;
}

QuantModelInfo dense(int64_t n_layer) {
  QuantModelInfo m;
  m.arch = "llama";
  m.n_layer = n_layer;
  m.n_head = 8;
  m.n_head_kv = 2;
  return m;
}

std::optional<DType> type_of(const std::string& target, const QuantModelInfo& m, const std::vector<TensorView>& ts,
                             const std::string& name) {
  const auto plan = plan_tensor_types(parse_quant_target(target), m, ts);
  for (size_t i = 0; i < ts.size(); ++i)
    if (ts[i].name == name) return plan[i];
  ADD_FAILURE() << "no tensor " << name;
  return std::nullopt;
}

}  // namespace

TEST(QuantPlan, TargetNamesAndFileTypes) {
  EXPECT_EQ(parse_quant_target("q4_k_m").base, DType::Q4_K);
  EXPECT_EQ(parse_quant_target("Q4_K_M").file_type, 15u);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  EXPECT_EQ(parse_quant_target("q8_0").file_type, 7u);
  EXPECT_EQ(parse_quant_target("q5_k_m").file_type, 17u);
  EXPECT_EQ(parse_quant_target("q6_k").base, DType::Q6_K);
  EXPECT_EQ(parse_quant_target("bf16").file_type, 32u);
  EXPECT_EQ(parse_quant_target("f32").file_type, 0u);
  try {
    parse_quant_target("q3_k_xl");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'q3_k_xl'"), std::string::npos) << msg;
    for (const char* t : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q4_k_m", "q5_k", "q5_k_m", "q6_k"})
      EXPECT_NE(msg.find(t), std::string::npos) << t << " missing from: " << msg;
  }
}

TEST(QuantPlan, KeepsNormsBiasesRoutersAndVectors) {
  const std::vector<TensorView> ts = {
      tv("token_embd.weight", {256, 512}),       tv("output_norm.weight", {256}),
      tv("output.weight", {256, 512}),           tv("rope_freqs.weight", {32}),
      tv("blk.0.attn_norm.weight", {256}),       tv("blk.0.attn_q.bias", {256}),
      tv("blk.0.ffn_gate_inp.weight", {256, 8}), tv("blk.0.exp_probs_b.bias", {8}),
      tv("blk.0.attn_q.weight", {256, 256}),     tv("blk.0.attn_q_norm.weight", {128}),
  };
  const auto plan = plan_tensor_types(parse_quant_target("q4_k_m"), dense(1), ts);
  for (size_t i = 0; i < ts.size(); ++i) {
    const bool converted =
        ts[i].name == "token_embd.weight" || ts[i].name == "output.weight" || ts[i].name == "blk.0.attn_q.weight";
    EXPECT_EQ(plan[i].has_value(), converted) << ts[i].name;
  }
  // F16: every converted tensor F16, the same ones kept.
  const auto f16 = plan_tensor_types(parse_quant_target("f16"), dense(1), ts);
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(f16[i].has_value(), plan[i].has_value()) << ts[i].name;
    if (f16[i]) {
      EXPECT_EQ(*f16[i], DType::F16) << ts[i].name;
    }
  }
}

TEST(QuantPlan, RowLengthFallbacks) {
  // 64-element rows: K-quants fall back as llama.cpp does; 48 fits no 32-block: F16.
  const std::vector<TensorView> ts = {tv("output.weight", {256, 512}), tv("blk.0.attn_k.weight", {64, 64}),
                                      tv("blk.0.attn_q.weight", {48, 64})};
  const QuantModelInfo m = dense(1);
  EXPECT_EQ(type_of("q4_k", m, ts, "blk.0.attn_k.weight"), DType::Q5_0);
  EXPECT_EQ(type_of("q5_k", m, ts, "blk.0.attn_k.weight"), DType::Q5_1);
  EXPECT_EQ(type_of("q6_k", m, ts, "blk.0.attn_k.weight"), DType::Q8_0);
  EXPECT_EQ(type_of("q8_0", m, ts, "blk.0.attn_k.weight"), DType::Q8_0);
  for (const char* t : {"q4_k_m", "q6_k", "q8_0", "q4_0"})
    EXPECT_EQ(type_of(t, m, ts, "blk.0.attn_q.weight"), DType::F16) << t;
}

TEST(QuantPlan, OutputHeadAndTiedEmbeddings) {
  const std::vector<TensorView> untied = {tv("token_embd.weight", {256, 512}), tv("output.weight", {256, 512})};
  const std::vector<TensorView> tied = {tv("token_embd.weight", {256, 512})};
  const QuantModelInfo m = dense(2);
  for (const char* t : {"q4_0", "q4_k", "q4_k_m", "q5_k_m", "q6_k"}) {
    EXPECT_EQ(type_of(t, m, untied, "output.weight"), DType::Q6_K) << t;
    EXPECT_EQ(type_of(t, m, untied, "token_embd.weight"), parse_quant_target(t).base) << t;
    EXPECT_EQ(type_of(t, m, tied, "token_embd.weight"), DType::Q6_K) << t;
  }
  EXPECT_EQ(type_of("q8_0", m, untied, "output.weight"), DType::Q8_0);
  // A head whose rows do not fit 256-blocks: Q8_0.
  EXPECT_EQ(type_of("q4_k_m", m, {tv("output.weight", {96, 512})}, "output.weight"), DType::Q8_0);
}

TEST(QuantPlan, KmMixGivesMoreBitsToSomeLayers) {
  // 16 layers: use_more_bits is true for layers 0, 1, 4, 7, 10, 13, 14, 15.
  std::vector<TensorView> ts;
  for (int il = 0; il < 16; ++il) {
    ts.push_back(tv("blk." + std::to_string(il) + ".attn_v.weight", {256, 256}));
    ts.push_back(tv("blk." + std::to_string(il) + ".ffn_down.weight", {512, 256}));
    ts.push_back(tv("blk." + std::to_string(il) + ".ffn_up.weight", {256, 512}));
  }
  const std::set<int> more = {0, 1, 4, 7, 10, 13, 14, 15};
  for (const char* t : {"q4_k_m", "q5_k_m"}) {
    for (int il = 0; il < 16; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      const DType want = more.count(il) ? DType::Q6_K : parse_quant_target(t).base;
      EXPECT_EQ(type_of(t, dense(16), ts, b + "attn_v.weight"), want) << t << " layer " << il;
      EXPECT_EQ(type_of(t, dense(16), ts, b + "ffn_down.weight"), want) << t << " layer " << il;
      EXPECT_EQ(type_of(t, dense(16), ts, b + "ffn_up.weight"), parse_quant_target(t).base) << t << " layer " << il;
    }
  }
  // q4_k (Q4_K_S): Q5_K for the first 4 attn_v and the first eighth of ffn_down.
  for (int il = 0; il < 16; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    EXPECT_EQ(type_of("q4_k", dense(16), ts, b + "attn_v.weight"), il < 4 ? DType::Q5_K : DType::Q4_K) << il;
    EXPECT_EQ(type_of("q4_k", dense(16), ts, b + "ffn_down.weight"), il < 2 ? DType::Q5_K : DType::Q4_K) << il;
  }
  // Plain types have no mix.
  EXPECT_EQ(type_of("q6_k", dense(16), ts, "blk.0.attn_v.weight"), DType::Q6_K);
  EXPECT_EQ(type_of("q4_0", dense(16), ts, "blk.0.attn_v.weight"), DType::Q4_0);
}

// Every golden model: the types of `owl quantize f32.gguf OUT q4_k_m` are those of llama.cpp's
// q4_k_m.gguf, tensor by tensor; tensors keep the input's order; metadata is copied.
TEST(QuantizeGolden, Q4KMTypesEqualLlamaCpp) {
  for (const auto& model : all_models()) {
    SCOPED_TRACE(model);
    auto in = gguf::File::open(test::shared_path("golden/" + model + "/f32.gguf"));
    auto ours = gguf::File::open(quantized(model, "q4_k_m"));
    auto gold = gguf::File::open(test::shared_path("golden/" + model + "/q4_k_m.gguf"));
    ASSERT_EQ(ours->tensor_infos().size(), gold->tensor_infos().size());
    int differ = 0;
    for (const auto& g : gold->tensor_infos()) {
      const gguf::TensorInfo* o = ours->find_info(g.name);
      ASSERT_TRUE(o) << g.name;
      EXPECT_EQ(o->ne, g.ne) << g.name;
      if (o->type != g.type) ++differ;
      EXPECT_EQ(o->type, g.type) << g.name << ": owl " << dtype_name(o->type) << ", llama.cpp " << dtype_name(g.type);
    }
    EXPECT_EQ(differ, 0);
    for (size_t i = 0; i < in->tensor_infos().size(); ++i)
      EXPECT_EQ(ours->tensor_infos()[i].name, in->tensor_infos()[i].name) << "tensor order changed at " << i;
    EXPECT_EQ(ours->metadata().get_int("general.file_type"), 15);
    EXPECT_EQ(ours->metadata().get_int("general.file_type"), gold->metadata().get_int("general.file_type"));
    for (const auto& [k, v] : in->metadata().items) {
      if (k == "general.file_type") continue;
      const gguf::Value* o = ours->metadata().find(k);
      ASSERT_TRUE(o) << "metadata key " << k << " not copied";
      EXPECT_EQ(o->to_string(1000000), v.to_string(1000000)) << k;
    }
  }
}

// convert_tensor: F32 rows quantise exactly as quantize_weight_row does; F16/BF16 sources convert
// through float; quantised sources dequantise first; the thread count changes nothing.
TEST(QuantPlan, ConvertTensorMatchesRowQuantisation) {
  const int64_t row = 256, rows = 37;
  std::vector<float> x(static_cast<size_t>(row * rows));
  uint64_t s = 7;
  for (auto& v : x) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(static_cast<int64_t>(s >> 40) - (1 << 23)) / static_cast<float>(1 << 23);
  }
  TensorView src = tv("w", {row, rows});
  src.data = x.data();
  ThreadPool one(1), four(4);
  for (DType to : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(to));
    const size_t rb = row_bytes(to, row);
    std::vector<uint8_t> want(rb * rows), a(rb * rows), b(rb * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_weight_row(to, x.data() + r * row, want.data() + r * rb, row);
    convert_tensor(src, to, a.data(), one);
    convert_tensor(src, to, b.data(), four);
    EXPECT_EQ(a, want);
    EXPECT_EQ(b, want);
    // From that type to Q8_0: the same as quantising its dequantised floats.
    TensorView q = tv("q", {row, rows});
    q.type = to;
    q.data = want.data();
    std::vector<float> deq(x.size());
    for (int64_t r = 0; r < rows; ++r) dequantize_row_ref(to, want.data() + r * rb, deq.data() + r * row, row);
    const size_t rb8 = row_bytes(DType::Q8_0, row);
    std::vector<uint8_t> re(rb8 * rows), want8(rb8 * rows);
    convert_tensor(q, DType::Q8_0, re.data(), four);
    for (int64_t r = 0; r < rows; ++r)
      quantize_weight_row(DType::Q8_0, deq.data() + r * row, want8.data() + r * rb8, row);
    EXPECT_EQ(re, want8);
  }
  std::vector<uint8_t> out(4096);
  TensorView odd = tv("odd", {48, 2});
  odd.data = x.data();
  EXPECT_THROW(convert_tensor(odd, DType::Q4_K, out.data(), one), Error);
}
