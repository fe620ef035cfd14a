// GGUF writer: byte-identical rewrites of every real file, and write -> read
// round trips of every metadata value type (nested arrays included), v2 and v3.
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

using namespace owl;
using namespace owl::gguf;

namespace {

std::vector<std::string> all_golden_ggufs() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(test::shared_path("golden")))
    if (e.path().extension() == ".gguf") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  files.push_back(test::shared_path("models/stories260K/stories260K-f32.gguf"));
  return files;
}

std::unique_ptr<File> parse_bytes(const std::string& b) {
  return File::parse(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "memory");
}

// Every value type once at top level and once inside arrays, with nested arrays.
Metadata every_type_metadata() {
  Metadata m;
  m.set("t.u8", {ValueType::UINT8, uint64_t{255}});
  m.set("t.i8", {ValueType::INT8, int64_t{-128}});
  m.set("t.u16", {ValueType::UINT16, uint64_t{65535}});
  m.set("t.i16", {ValueType::INT16, int64_t{-32768}});
  m.set("t.u32", Value::u32(4000000000u));
  m.set("t.i32", Value::i32(std::numeric_limits<int32_t>::min()));
  m.set("t.f32", Value::f32(3.25f));
  m.set("t.bool", Value::boolean(true));
  m.set("t.string", Value::str(std::string("h\xC3\xA9llo \n\0 world", 15)));
  m.set("t.u64", Value::u64(std::numeric_limits<uint64_t>::max()));
  m.set("t.i64", {ValueType::INT64, std::numeric_limits<int64_t>::min()});
  m.set("t.f64", {ValueType::FLOAT64, 1e-300});
  m.set("t.empty_string", Value::str(""));
  m.set("t.arr_u8", Value::array(ValueType::UINT8, {{ValueType::UINT8, uint64_t{1}}, {ValueType::UINT8, uint64_t{2}}}));
  m.set("t.arr_i8", Value::array(ValueType::INT8, {{ValueType::INT8, int64_t{-1}}}));
  m.set("t.arr_u16", Value::array(ValueType::UINT16, {{ValueType::UINT16, uint64_t{7}}}));
  m.set("t.arr_i16", Value::array(ValueType::INT16, {{ValueType::INT16, int64_t{-7}}}));
  m.set("t.arr_u32", Value::array(ValueType::UINT32, {Value::u32(1), Value::u32(2), Value::u32(3)}));
  m.set("t.arr_i32", Value::array(ValueType::INT32, {Value::i32(-5), Value::i32(6)}));
  m.set("t.arr_f32", Value::array(ValueType::FLOAT32, {Value::f32(0.5f), Value::f32(-1e30f)}));
  m.set("t.arr_bool", Value::array(ValueType::BOOL, {Value::boolean(false), Value::boolean(true)}));
  m.set("t.arr_string", Value::array(ValueType::STRING, {Value::str("a"), Value::str(""), Value::str("ccc")}));
  m.set("t.arr_u64", Value::array(ValueType::UINT64, {Value::u64(1ull << 63)}));
  m.set("t.arr_i64", Value::array(ValueType::INT64, {{ValueType::INT64, int64_t{-3}}}));
  m.set("t.arr_f64", Value::array(ValueType::FLOAT64, {{ValueType::FLOAT64, 2.5}}));
  m.set("t.arr_empty", Value::array(ValueType::FLOAT32, {}));
  Value inner1 = Value::array(ValueType::INT32, {Value::i32(1), Value::i32(2)});
  Value inner2 = Value::array(ValueType::STRING, {Value::str("x")});
  Value nested = Value::array(ValueType::ARRAY, {inner1, inner2, Value::array(ValueType::UINT8, {})});
  m.set("t.nested", nested);
  m.set("t.nested3", Value::array(ValueType::ARRAY, {Value::array(ValueType::ARRAY, {inner1})}));
  return m;
}

void expect_same_value(const Value& a, const Value& b, const std::string& key) {
  ASSERT_EQ(a.type, b.type) << key;
  ASSERT_EQ(a.v.index(), b.v.index()) << key;
  if (a.type == ValueType::ARRAY) {
    const Array& x = a.as_array();
    const Array& y = b.as_array();
    ASSERT_EQ(x.elem_type, y.elem_type) << key;
    ASSERT_EQ(x.items.size(), y.items.size()) << key;
    for (size_t i = 0; i < x.items.size(); ++i)
      expect_same_value(x.items[i], y.items[i], key + "[" + std::to_string(i) + "]");
  } else {
    bool same = false;
    if (auto* u = std::get_if<uint64_t>(&a.v)) same = *u == std::get<uint64_t>(b.v);
    if (auto* i = std::get_if<int64_t>(&a.v)) same = *i == std::get<int64_t>(b.v);
    if (auto* d = std::get_if<double>(&a.v)) same = *d == std::get<double>(b.v);
    if (auto* t = std::get_if<bool>(&a.v)) same = *t == std::get<bool>(b.v);
    if (auto* s = std::get_if<std::string>(&a.v)) same = *s == std::get<std::string>(b.v);
    EXPECT_TRUE(same) << key << ": " << a.to_string() << " vs " << b.to_string();
  }
}

}  // namespace

TEST(GgufWrite, EveryRealFileRewritesByteIdentically) {
  auto files = all_golden_ggufs();
  ASSERT_GE(files.size(), 22u);  // 8 models x 2-3 quants + stories260K
  for (const auto& path : files) {
    std::string original = test::read_file(path);
    auto f = File::open(path);
    std::string rewritten = serialize(*f);
    ASSERT_EQ(rewritten.size(), original.size()) << path;
    EXPECT_TRUE(rewritten == original) << path << " differs after read -> write";
  }
}

TEST(GgufWrite, WriteFileMatchesSerialize) {
  std::string path = test::shared_path("golden/qwen3/q4_k_m.gguf");
  auto f = File::open(path);
  std::string out = test::temp_dir() + "/copy.gguf";
  write_file(*f, out);
  EXPECT_TRUE(test::read_file(out) == test::read_file(path));
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
}

TEST(GgufWrite, EveryValueTypeRoundTripsV2AndV3) {
  for (uint32_t version : {2u, 3u}) {
    Writer w(version);
    w.metadata() = every_type_metadata();
    std::string bytes = w.to_bytes();
    EXPECT_EQ(bytes.size(), w.file_size());
    auto f = parse_bytes(bytes);
    EXPECT_EQ(f->version(), version);
    const Metadata& want = every_type_metadata();
    ASSERT_EQ(f->metadata().items.size(), want.items.size());
    for (size_t i = 0; i < want.items.size(); ++i) {
      EXPECT_EQ(f->metadata().items[i].first, want.items[i].first);
      expect_same_value(f->metadata().items[i].second, want.items[i].second, want.items[i].first);
    }
    EXPECT_EQ(f->metadata().get_string("t.string")->size(), 15u);  // the embedded NUL survives
    EXPECT_TRUE(serialize(*f) == bytes);
  }
}

TEST(GgufWrite, TensorsFromScratchAreAlignedAndReadBack) {
  Writer w;
  w.metadata().set("general.architecture", Value::str("llama"));
  w.metadata().set("general.alignment", Value::u32(64));
  std::vector<float> a(3 * 5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  std::vector<uint16_t> b(7, 0x3C00);    // F16 ones
  std::vector<uint8_t> q(34 * 2, 0x11);  // two Q8_0 blocks
  w.add_tensor("a", DType::F32, {5, 3}, a.data());
  w.add_tensor("b", DType::F16, {7}, b.data());
  w.add_tensor("q", DType::Q8_0, {32, 1, 2}, [](uint8_t* dst, size_t n) { std::memset(dst, 0x11, n); });
  std::string bytes = w.to_bytes();
  auto f = parse_bytes(bytes);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  ASSERT_EQ(f->tensor_infos().size(), 3u);
  EXPECT_EQ(f->tensor_infos()[1].offset, 64u);   // 60 bytes of "a", padded
  EXPECT_EQ(f->tensor_infos()[2].offset, 128u);  // 14 bytes of "b", padded
  EXPECT_EQ(f->tensor_infos()[2].n_dims, 3u);
  EXPECT_EQ(bytes.size() - f->data_offset(), 256u);  // 128 + 68 bytes of "q", padded to the alignment
  EXPECT_EQ(std::memcmp(f->tensor("a")->data, a.data(), 60), 0);
  EXPECT_EQ(std::memcmp(f->tensor("b")->data, b.data(), 14), 0);
  EXPECT_EQ(std::memcmp(f->tensor("q")->data, q.data(), q.size()), 0);
  EXPECT_EQ(f->tensor("q")->ne[2], 2);
}

TEST(GgufWrite, RejectsBadTensorsAndValues) {
  Writer w;
  float x = 0;
  w.add_tensor("t", DType::F32, {1}, &x);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1}, &x), Error);    // duplicate
  EXPECT_THROW(w.add_tensor("u", DType::Q8_0, {31}, &x), Error);  // not a block multiple
  EXPECT_THROW(w.add_tensor("v", DType::F32, {1, 1, 1, 1, 1}, &x), Error);
  EXPECT_THROW(w.add_tensor("w", DType::F32, {0}, &x), Error);
  EXPECT_THROW(w.add_tensor_at("z", DType::F32, {8}, &x, 0), Error);   // overlaps "t"
  EXPECT_THROW(w.add_tensor_at("z", DType::F32, {8}, &x, 33), Error);  // misaligned
  EXPECT_EQ(w.tensor_count(), 1u);
  Writer w2;
  w2.metadata().set("bad", Value::array(ValueType::UINT32, {Value::str("x")}));
  EXPECT_THROW(w2.to_bytes(), Error);
  EXPECT_THROW(Writer(1), Error);
}
