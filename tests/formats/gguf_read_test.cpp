#include <gtest/gtest.h>

#include "base/error.h"
#include "formats/gguf.h"
#include "test_util.h"

using owl::gguf::File;

TEST(GgufRead, GoldenDeepseekV3Metadata) {
  auto f = File::open(owl::test::shared_path("golden/deepseek-v3/q4_k_m.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().get_string("general.architecture"), "deepseek2");
  EXPECT_EQ(f->metadata().get_int("deepseek2.attention.kv_lora_rank"), 256);
  EXPECT_EQ(f->metadata().get_float("deepseek2.expert_weights_scale"), 2.5);
  EXPECT_EQ(f->tensor_infos().size(), 52u);
  auto t = f->tensor("blk.1.ffn_gate_exps.weight");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->type, owl::DType::Q4_K);
  EXPECT_EQ(t->ne[0], 256);
  EXPECT_EQ(t->ne[1], 64);
  EXPECT_EQ(t->ne[2], 16);
  EXPECT_EQ(t->n_bytes(), 147456u);
}

TEST(GgufRead, RejectsWrongMagic) {
  std::string bytes = "GGML0000000000000000000000000000";
  try {
    File::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
    FAIL() << "expected an error";
  } catch (const owl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos) << e.what();
  }
}
