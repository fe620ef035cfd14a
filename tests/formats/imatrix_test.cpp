// Importance matrices in both of llama.cpp's formats: the golden legacy imatrix.dat files read
// with their entries, values and trailer; a GGUF imatrix written and read back unchanged; and
// bad input (a truncated file, sums without counts, an imatrix of another model: unknown tensor
// names, wrong column counts) is one clear error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/imatrix.h"
#include "test_util.h"

namespace owl {
namespace {

using test::shared_path;

std::vector<TensorView> model_tensors(const std::string& model, std::unique_ptr<gguf::File>& keep) {
  keep = gguf::File::open(shared_path("golden/" + model + "/f32.gguf"));
  std::vector<TensorView> v;
  for (const auto& ti : keep->tensor_infos()) v.push_back(keep->view(ti));
  return v;
}

std::string temp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("owl-imatrix-test-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Imatrix, ReadsTheGoldenLegacyFiles) {
  const Imatrix m = read_imatrix(shared_path("golden/qwen3moe/imatrix.dat"));
  EXPECT_EQ(m.entries.size(), 17u);
  EXPECT_EQ(m.chunk_count, 1);
  ASSERT_EQ(m.datasets.size(), 1u);
  EXPECT_EQ(m.datasets[0], "uniform-random");
  const ImatrixEntry& e = m.entries.at("blk.0.ffn_gate_exps.weight");
  EXPECT_EQ(e.sums.size(), 2048u);  // 8 experts x 256 columns
  ASSERT_EQ(e.counts.size(), 1u);
  EXPECT_EQ(e.counts[0], 1.0);
  // Expert 3's weights are its slice of the values (ncall 1: the values themselves).
  const std::vector<float> w = m.weights("blk.0.ffn_gate_exps.weight", 3, 256);
  ASSERT_EQ(w.size(), 256u);
  EXPECT_FLOAT_EQ(w[0], e.sums[3 * 256]);
  EXPECT_FLOAT_EQ(w[255], e.sums[3 * 256 + 255]);
  for (float v : w) EXPECT_TRUE(v > 0.09f && v < 2.01f) << v;
  EXPECT_TRUE(m.weights("token_embd.weight", 0, 256).empty());

  for (const char* model : {"qwen3", "qwen3moe", "deepseek-v3"}) {
    std::unique_ptr<gguf::File> f;
    EXPECT_NO_THROW(check_imatrix(read_imatrix(shared_path(std::string("golden/") + model + "/imatrix.dat")),
                                  model_tensors(model, f), "imatrix.dat"))
        << model;
  }
}

TEST(Imatrix, GgufRoundTrip) {
  Imatrix m;
  m.datasets = {"calibration.txt"};
  m.chunk_count = 7;
  m.chunk_size = 512;
  ImatrixEntry dense;
  dense.n_cols = 4;
  dense.sums = {1, 2, 3, 4};
  dense.counts = {2};
  m.entries["blk.0.attn_q.weight"] = dense;
  ImatrixEntry stack;
  stack.n_cols = 2;
  stack.sums = {1, 1, 0, 0, 6, 9};
  stack.counts = {1, 0, 3};  // expert 1 was never routed to
  m.entries["blk.0.ffn_up_exps.weight"] = stack;
  const std::string path = temp("rt.gguf");
  write_imatrix(m, path);

  auto f = gguf::File::open(path);
  EXPECT_EQ(f->metadata().get_string("general.type").value_or(""), "imatrix");
  EXPECT_EQ(f->metadata().get_int("imatrix.chunk_count").value_or(0), 7);
  EXPECT_EQ(f->metadata().get_int("imatrix.chunk_size").value_or(0), 512);
  const gguf::TensorInfo* s = f->find_info("blk.0.ffn_up_exps.weight.in_sum2");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ne[0], 2);
  EXPECT_EQ(s->ne[1], 3);
  const gguf::TensorInfo* c = f->find_info("blk.0.ffn_up_exps.weight.counts");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->ne[0], 1);
  EXPECT_EQ(c->ne[1], 3);

  const Imatrix back = read_imatrix(path);
  EXPECT_EQ(back.datasets, m.datasets);
  EXPECT_EQ(back.chunk_count, 7);
  EXPECT_EQ(back.entries.at("blk.0.ffn_up_exps.weight").sums, stack.sums);
  EXPECT_EQ(back.entries.at("blk.0.ffn_up_exps.weight").counts, stack.counts);
  EXPECT_EQ(back.weights("blk.0.attn_q.weight", 0, 4), (std::vector<float>{0.5f, 1, 1.5f, 2}));
  EXPECT_EQ(back.weights("blk.0.ffn_up_exps.weight", 1, 2), (std::vector<float>{1, 1}));  // nothing routed
  EXPECT_EQ(back.weights("blk.0.ffn_up_exps.weight", 2, 2), (std::vector<float>{2, 3}));
  std::filesystem::remove(path);
}

TEST(Imatrix, BadFilesAreOneClearError) {
  const std::string dat = test::read_file(shared_path("golden/qwen3/imatrix.dat"));
  const std::string cut = temp("cut.dat");
  std::ofstream(cut, std::ios::binary) << dat.substr(0, 300);
  expect_error([&] { read_imatrix(cut); }, "is truncated at byte");
  std::filesystem::remove(cut);

  gguf::Writer w;
  w.metadata().set("general.type", gguf::Value::str("imatrix"));
  const float sums[4] = {1, 2, 3, 4};
  w.add_tensor("blk.0.attn_q.weight.in_sum2", DType::F32, {4, 1}, sums);
  const std::string nocounts = temp("nocounts.gguf");
  w.write(nocounts);
  expect_error([&] { read_imatrix(nocounts); }, "'blk.0.attn_q.weight' has sums but no counts");
  std::filesystem::remove(nocounts);

  expect_error([&] { read_imatrix(shared_path("golden/qwen3/f32.gguf")); }, "holds no '*.in_sum2'");
}

TEST(Imatrix, AnotherModelsImatrixIsOneClearError) {
  std::unique_ptr<gguf::File> f;
  // qwen3moe's imatrix names expert stacks that the dense qwen3 does not have.
  expect_error(
      [&] {
        check_imatrix(read_imatrix(shared_path("golden/qwen3moe/imatrix.dat")), model_tensors("qwen3", f), "moe.dat");
      },
      "which is not a tensor of this model");
  // Same names, other column counts: qwen3's attn_q (256 columns) against an entry of 100 values.
  Imatrix m;
  ImatrixEntry e;
  e.sums.assign(100, 1.0f);
  e.counts = {1};
  m.entries["blk.0.attn_q.weight"] = e;
  expect_error([&] { check_imatrix(m, model_tensors("qwen3", f), "short.dat"); },
               "has 100 values for 'blk.0.attn_q.weight', but the model's 1 x 256 columns need 256");
}

}  // namespace
}  // namespace owl
