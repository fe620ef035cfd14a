// safetensors: the Hugging Face twins parse; sharded checkpoints resolve;
// hostile headers are clean errors that say what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "base/error.h"
#include "formats/safetensors.h"
#include "test_util.h"

using namespace owl;
using namespace owl::safetensors;

namespace {

// A safetensors file from a header text and a data section.
std::string make_file(const std::string& header, const std::string& data) {
  std::string b(8, '\0');
  uint64_t n = header.size();
  std::memcpy(&b[0], &n, 8);
  return b + header + data;
}

std::string parse_error(const std::string& bytes) {
  try {
    File::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& bytes, const std::string& needle) {
  std::string err = parse_error(bytes);
  ASSERT_FALSE(err.empty()) << "expected an error mentioning '" << needle << "'";
  EXPECT_NE(err.find(needle), std::string::npos) << err;
  EXPECT_NE(err.find("mem.safetensors"), std::string::npos) << err;
}

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

}  // namespace

TEST(Safetensors, HuggingFaceTwinsParse) {
  struct Case {
    const char* dir;
    size_t n_tensors;
  };
  // llama: 2 layers x 9 + 3; qwen3: 2 x 11 + 2 (tied: no lm_head);
  // deepseek-v3: 12 (dense layer 0: 9 attention/norms + 3 MLP) + 2 x (9 + router + bias + 3 shared + 16 x 3
  // experts) + embeddings, final norm, lm_head.
  for (Case c : {Case{"llama", 21}, Case{"qwen3", 24}, Case{"deepseek-v3", 12 + 2 * (9 + 2 + 3 + 48) + 3}}) {
    std::string path = test::shared_path(std::string("golden/") + c.dir + "/hf/model.safetensors");
    auto f = File::open(path);
    EXPECT_EQ(f->tensors().size(), c.n_tensors) << c.dir;
    EXPECT_EQ(f->metadata().at("format"), "pt");
    EXPECT_EQ(f->data_offset() % 8, 0u);
    const TensorInfo* emb = f->find("model.embed_tokens.weight");
    ASSERT_TRUE(emb) << c.dir;
    EXPECT_EQ(emb->dtype, DType::F32);
    EXPECT_EQ(emb->shape, (std::vector<int64_t>{512, 256}));
    TensorView v = f->view(*emb);
    EXPECT_EQ(v.ne[0], 256);
    EXPECT_EQ(v.ne[1], 512);
    EXPECT_EQ(v.n_bytes(), emb->n_bytes());
    for (const auto& t : f->tensors()) EXPECT_EQ(t.begin % 8, 0u) << t.name;
  }
  auto f = File::open(test::shared_path("golden/deepseek-v3/hf/model.safetensors"));
  const TensorInfo* kvb = f->find("model.layers.0.self_attn.kv_b_proj.weight");
  ASSERT_TRUE(kvb);
  EXPECT_EQ(kvb->shape, (std::vector<int64_t>{4 * (64 + 64), 256}));
  EXPECT_TRUE(f->find("model.layers.2.mlp.experts.15.down_proj.weight"));
  EXPECT_TRUE(f->find("model.layers.1.mlp.gate.e_score_correction_bias"));
}

TEST(Safetensors, CheckpointFolderSingleFile) {
  auto c = Checkpoint::open_folder(test::shared_path("golden/llama/hf"));
  EXPECT_EQ(c->files().size(), 1u);
  EXPECT_EQ(c->tensors().size(), 21u);
  auto e = c->find("lm_head.weight");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->info->shape, (std::vector<int64_t>{512, 256}));
  EXPECT_FALSE(c->find("nope"));
}

TEST(Safetensors, ShardedCheckpointWithIndex) {
  std::string dir = test::temp_dir();
  std::string a_data(16, '\x01'), b_data(8, '\x02');
  write(dir + "/model-00001-of-00002.safetensors",
        make_file(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", a_data));
  write(dir + "/model-00002-of-00002.safetensors",
        make_file(R"({"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}})", b_data));
  write(
      dir + "/model.safetensors.index.json",
      R"({"metadata":{"total_size":24},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto c = Checkpoint::open_folder(dir);
  EXPECT_EQ(c->files().size(), 2u);
  ASSERT_EQ(c->tensors().size(), 2u);
  auto b = c->find("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->info->dtype, DType::BF16);
  EXPECT_EQ(b->file->data(*b->info)[0], 2);
  EXPECT_EQ(c->find("a")->file->data(*c->find("a")->info)[15], 1);

  // The index names a tensor the shard lacks.
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"zz":"model-00001-of-00002.safetensors"}})");
  try {
    Checkpoint::open_folder(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'zz' is listed in the index"), std::string::npos) << e.what();
  }
  // A missing shard.
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"model-00009.safetensors"}})");
  try {
    Checkpoint::open_folder(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lacks shard 'model-00009.safetensors'"), std::string::npos) << e.what();
  }
  // A shard path outside the folder.
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"../../etc/passwd"}})");
  EXPECT_THROW(Checkpoint::open_folder(dir), Error);
  write(dir + "/model.safetensors.index.json", R"({"weight_map": [})");
  EXPECT_THROW(Checkpoint::open_folder(dir), Error);
}

TEST(Safetensors, FolderWithoutWeightsIsAClearError) {
  try {
    Checkpoint::open_folder(test::temp_dir());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds no *.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, DTypesAndSizes) {
  std::string h = R"({"f16":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},)"
                  R"("f8":{"dtype":"F8_E4M3","shape":[2,4],"data_offsets":[8,16]},)"
                  R"("i32":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},)"
                  R"("i64":{"dtype":"I64","shape":[],"data_offsets":[24,32]},)"
                  R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[32,32]}})";
  std::string b = make_file(h, std::string(32, '\0'));
  auto f = File::parse(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "mem");
  EXPECT_EQ(f->find("f16")->dtype, DType::F16);
  EXPECT_EQ(f->find("f8")->dtype, DType::F8_E4M3);
  EXPECT_EQ(f->view(*f->find("f8")).ne[0], 4);
  EXPECT_EQ(f->find("i32")->dtype, DType::I32);
  EXPECT_EQ(f->find("i64")->n_elements(), 1);
  EXPECT_EQ(f->view(*f->find("i64")).n_dims, 1);
  EXPECT_EQ(f->find("empty")->n_elements(), 0);

  std::string five =
      make_file(R"({"t":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  auto g = File::parse(reinterpret_cast<const uint8_t*>(five.data()), five.size(), "mem");
  try {
    g->view(*g->find("t"));
    FAIL() << "a 5-D tensor has no ggml view";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has 5 dimensions; owl handles at most 4"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, HostileHeaders) {
  const std::string ok_t = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  // The header length lies.
  std::string lie = make_file("{" + ok_t + "}", std::string(8, '\0'));
  uint64_t n = 1000;
  std::memcpy(&lie[0], &n, 8);
  expect_error(lie, "ends inside the header");
  std::string huge = lie;
  n = 1ull << 62;
  std::memcpy(&huge[0], &n, 8);
  expect_error(huge, "exceeds the 100 MB limit");
  expect_error(std::string("\x05\0\0", 3), "too short");
  // Truncated: the data section is shorter than the header says.
  expect_error(make_file("{" + ok_t + "}", std::string(4, '\0')), "extends past the data section");
  // JSON errors.
  expect_error(make_file(R"({"t":{"dtype":"F32",)", ""), "not valid JSON");
  expect_error(make_file("[1,2]", ""), "not a JSON object");
  expect_error(make_file(R"({"t":5})", ""), "tensor 't' is not an object");
  expect_error(make_file(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')), "no dtype");
  expect_error(make_file(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", std::string(4, '\0')), "no shape");
  expect_error(make_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", std::string(4, '\0')),
               "no data_offsets");
  // Sizes that lie.
  expect_error(make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(16, '\0')),
               "has 8 bytes of data but shape x F32 needs 12");
  expect_error(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(16, '\0')),
               "begin 8 > end 0");
  expect_error(make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
               "not a non-negative integer");
  expect_error(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", std::string(8, '\0')),
               "data_offsets that are not non-negative integers");
  expect_error(
      make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", std::string(8, '\0')),
      "element count that overflows");
  expect_error(
      make_file(R"({"t":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,8]}})", std::string(8, '\0')),
      "byte size that overflows");
  // Overlapping tensors.
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         std::string(12, '\0')),
               "tensors 'a' and 'b' overlap");
  // Unknown dtype, named.
  expect_error(make_file(R"({"t":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')),
               "unsupported dtype 'F8_E5M2'");
  // Duplicate tensor names, absurd nesting, bad metadata.
  expect_error(make_file("{" + ok_t + "," + ok_t + "}", std::string(8, '\0')), "tensor 't' appears twice");
  expect_error(make_file("{\"x\":" + std::string(100, '[') + std::string(100, ']') + "}", ""), "nests deeper");
  expect_error(make_file(R"({"__metadata__":{"format":1}})", ""), "__metadata__ value 'format' is not a string");
}
