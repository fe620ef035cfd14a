// MoE family files rewritten with changes: a GLM NextN/MTP layer (loaded, not run) and bad
// inputs that must give one clear error naming the problem.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/model.h"
#include "model/families.h"
#include "runtime/kv_cache.h"
#include "test_util.h"

namespace owl {
namespace {

// Copies a golden file to a temporary one: metadata edited by `meta`, each tensor kept or
// dropped by `keep`, plus the tensors `extra` adds (data must outlive the call).
std::string rewrite(const std::string& golden, const std::function<void(gguf::Metadata&)>& meta,
                    const std::function<bool(const std::string&)>& keep,
                    const std::function<void(const gguf::File&, gguf::Writer&)>& extra = nullptr) {
  auto f = gguf::File::open(test::shared_path(golden));
  gguf::Writer w;
  w.metadata() = f->metadata();
  meta(w.metadata());
  for (const auto& ti : f->tensor_infos()) {
    if (!keep(ti.name)) continue;
    const TensorView v = f->view(ti);
    w.add_tensor(ti.name, ti.type, std::vector<int64_t>(ti.ne.begin(), ti.ne.begin() + ti.n_dims), v.data);
  }
  if (extra) extra(*f, w);
  const std::string path = test::temp_dir() + "/model.gguf";
  w.write(path);
  return path;
}

// The error of opening and loading the file as that family's model.
std::string load_error(const Family& family, const std::string& path) {
  try {
    auto src = open_model_source(path);
    family.load(*src);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

auto keep_all = [](const std::string&) { return true; };
auto no_meta = [](gguf::Metadata&) {};

// The trunk is the golden model; blk.3 (a copy of blk.2 plus nextn.* tensors) is the MTP layer:
// it has its own cache (mtp_kv_shape) and leaves the trunk's logits as they were.
void check_nextn_layer_apart(const std::string& model, const std::string& arch, const Family& family) {
  const std::string path = rewrite(
      "golden/" + model + "/f32.gguf",
      [&](gguf::Metadata& m) {
        m.set(arch + ".block_count", gguf::Value::u32(4));
        m.set(arch + ".nextn_predict_layers", gguf::Value::u32(1));
      },
      keep_all,
      [](const gguf::File& f, gguf::Writer& w) {
        for (const auto& ti : f.tensor_infos()) {
          if (ti.name.rfind("blk.2.", 0) != 0) continue;
          w.add_tensor("blk.3." + ti.name.substr(6), ti.type,
                       std::vector<int64_t>(ti.ne.begin(), ti.ne.begin() + ti.n_dims), f.view(ti).data);
        }
        const TensorView norm = *f.tensor("output_norm.weight");
        w.add_tensor("blk.3.nextn.enorm.weight", DType::F32, {256}, norm.data);
        w.add_tensor("blk.3.nextn.hnorm.weight", DType::F32, {256}, norm.data);
        w.add_tensor("blk.3.nextn.shared_head_norm.weight", DType::F32, {256}, norm.data);
        // Any 512 x 256 values serve as eh_proj: the output matrix has as many.
        w.add_tensor("blk.3.nextn.eh_proj.weight", DType::F32, {512, 256}, f.tensor("output.weight")->data);
      });
  auto src = open_model_source(path);
  auto m = family.load(*src);
  EXPECT_EQ(m->kv_shape().size(), 3u);  // the MTP layer caches in its own store
  EXPECT_TRUE(m->has_mtp());
  EXPECT_EQ(m->mtp_kv_shape().size(), 1u);

  const auto meta = nlohmann::json::parse(test::read_file(test::shared_path("golden/" + model + "/f32.cases.json")));
  const auto& c = meta["cases"][1];  // medium
  const auto tokens = c["tokens"].get<std::vector<int32_t>>();
  const auto gold = test::read_f32(test::shared_path("golden/" + model + "/" + c["logits_file"].get<std::string>()));
  KVCache kv(m->kv_shape(), {.type = DType::F32, .n_ctx = 512, .n_seq_max = 1, .page_tokens = 32});
  Batch batch;
  for (size_t i = 0; i < tokens.size(); ++i) batch.add(tokens[i], static_cast<int64_t>(i), 0, true);
  auto logits = m->forward(batch, kv);
  ASSERT_EQ(logits.size(), gold.size());
  double max_abs = 0;
  for (size_t i = 0; i < gold.size(); ++i)
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(logits[i] - gold[i])));
  EXPECT_LE(max_abs, 1e-3) << model;

  // The head runs on the family's own attention (GQA for glm4moe, MLA for deepseek2): finite
  // logits for every row, its own cache holding the rows.
  const int64_t d = m->config().n_embd;
  std::vector<float> hidden(m->last_hidden().size(), 0.0f);
  std::copy(m->last_hidden().begin(), m->last_hidden().end() - d, hidden.begin() + d);
  KVCache mkv(m->mtp_kv_shape(), {.type = DType::F32, .n_ctx = 512, .n_seq_max = 1, .page_tokens = 32});
  auto head = m->mtp_forward(batch, hidden.data(), mkv);
  ASSERT_EQ(head.size(), gold.size());
  EXPECT_TRUE(std::all_of(head.begin(), head.end(), [](float v) { return std::isfinite(v); })) << model;
  EXPECT_EQ(mkv.seq_length(0), static_cast<int64_t>(tokens.size()));
}

TEST(Glm4MoeFile, NextNLayerLeavesTheTrunkAlone) { check_nextn_layer_apart("glm4moe", "glm4moe", glm4moe_family()); }

TEST(Deepseek2File, NextNLayerLeavesTheTrunkAlone) {
  check_nextn_layer_apart("deepseek-v3", "deepseek2", deepseek2_family());
}

TEST(Glm4MoeFile, NextNCountMustLeaveATrunk) {
  const std::string path = rewrite(
      "golden/glm4moe/f32.gguf", [](gguf::Metadata& m) { m.set("glm4moe.nextn_predict_layers", gguf::Value::u32(3)); },
      keep_all);
  EXPECT_NE(load_error(glm4moe_family(), path).find("nextn_predict_layers"), std::string::npos);
}

TEST(MoeFiles, MissingRoutingBiasIsNamed) {
  // glm4moe requires exp_probs_b in every MoE layer.
  const std::string path =
      rewrite("golden/glm4moe/f32.gguf", no_meta, [](const std::string& n) { return n != "blk.2.exp_probs_b.bias"; });
  const std::string err = load_error(glm4moe_family(), path);
  EXPECT_NE(err.find("blk.2.exp_probs_b.bias"), std::string::npos) << err;
}

TEST(MoeFiles, MissingExpertStackIsNamed) {
  const std::string path = rewrite("golden/qwen3moe/f32.gguf", no_meta,
                                   [](const std::string& n) { return n != "blk.1.ffn_up_exps.weight"; });
  const std::string err = load_error(qwen3moe_family(), path);
  EXPECT_NE(err.find("blk.1.ffn_up_exps.weight"), std::string::npos) << err;
}

TEST(MoeFiles, ExpertCountDisagreeingWithTensorsIsAClearError) {
  const std::string path = rewrite(
      "golden/qwen3moe/f32.gguf", [](gguf::Metadata& m) { m.set("qwen3moe.expert_count", gguf::Value::u32(6)); },
      keep_all);
  const std::string err = load_error(qwen3moe_family(), path);
  EXPECT_NE(err.find("ffn_gate_inp"), std::string::npos) << err;
}

TEST(MoeFiles, BadExpertGroupsAreAClearError) {
  const std::string path = rewrite(
      "golden/deepseek-v3/f32.gguf",
      [](gguf::Metadata& m) { m.set("deepseek2.expert_group_count", gguf::Value::u32(3)); }, keep_all);
  const std::string err = load_error(deepseek2_family(), path);
  EXPECT_NE(err.find("expert_group_count"), std::string::npos) << err;
}

TEST(MoeFiles, LegacyKvBLayoutIsAClearError) {
  // A file with one attn_kv_b instead of attn_k_b/attn_v_b (older converters).
  const std::string path = rewrite(
      "golden/deepseek-v3/f32.gguf", no_meta,
      [](const std::string& n) {
        return n.find("attn_k_b") == std::string::npos && n.find("attn_v_b") == std::string::npos;
      },
      [](const gguf::File& f, gguf::Writer& w) {
        for (int il = 0; il < 3; ++il) {
          const TensorView kb = *f.tensor("blk." + std::to_string(il) + ".attn_k_b.weight");
          w.add_tensor("blk." + std::to_string(il) + ".attn_kv_b.weight", DType::F32, {256, 256}, kb.data);
        }
      });
  const std::string err = load_error(deepseek2_family(), path);
  EXPECT_NE(err.find("attn_kv_b"), std::string::npos) << err;
}

}  // namespace
}  // namespace owl
