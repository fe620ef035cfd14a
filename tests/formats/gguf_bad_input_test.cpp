// Hostile and damaged GGUF files: each is a clean owl::Error whose message
// says what is wrong, never a crash or an out-of-bounds read.
#include <gtest/gtest.h>

#include <cstring>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

using namespace owl;
using namespace owl::gguf;

namespace {

// The parse error message, or "" when the bytes parse.
std::string parse_error(const std::string& bytes) {
  try {
    File::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& bytes, const std::string& needle) {
  std::string err = parse_error(bytes);
  ASSERT_FALSE(err.empty()) << "expected an error mentioning '" << needle << "'";
  EXPECT_NE(err.find(needle), std::string::npos) << err;
  EXPECT_NE(err.find("mem.gguf"), std::string::npos) << err;  // names the file
}

template <typename T>
void poke(std::string& b, size_t pos, T v) {
  ASSERT_LE(pos + sizeof(T), b.size());
  std::memcpy(&b[pos], &v, sizeof(T));
}

// Position of a tensor info's fields in a real file, found through its name.
struct InfoPos {
  size_t name_len, n_dims, dims, type, offset;
};
InfoPos find_info(const std::string& b, const std::string& name, uint32_t n_dims) {
  std::string needle(8, '\0');
  uint64_t len = name.size();
  std::memcpy(&needle[0], &len, 8);
  needle += name;
  size_t at = b.find(needle);
  EXPECT_NE(at, std::string::npos) << name;
  InfoPos p;
  p.name_len = at;
  p.n_dims = at + 8 + name.size();
  p.dims = p.n_dims + 4;
  p.type = p.dims + 8 * n_dims;
  p.offset = p.type + 4;
  return p;
}

std::string golden_bytes() { return test::read_file(test::shared_path("golden/llama/q4_k_m.gguf")); }

std::string small_file(Metadata m) {
  Writer w;
  w.metadata() = std::move(m);
  static const float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  w.add_tensor("a", DType::F32, {8}, data);
  return w.to_bytes();
}

}  // namespace

TEST(GgufBadInput, TruncationAtEveryPrefixIsACleanError) {
  const std::string full = golden_bytes();
  auto f = File::parse(reinterpret_cast<const uint8_t*>(full.data()), full.size(), "full");
  // The smallest length that still holds every tensor's bytes.
  uint64_t needed = 0;
  for (const auto& ti : f->tensor_infos()) needed = std::max(needed, f->data_offset() + ti.offset + ti.n_bytes);
  ASSERT_GT(full.size(), 100000u);

  std::vector<size_t> lengths;
  for (size_t n = 0; n <= f->data_offset() + 64; ++n) lengths.push_back(n);  // every byte of the header
  for (size_t n = f->data_offset(); n < full.size(); n += 4093) lengths.push_back(n);
  for (const auto& ti : f->tensor_infos())  // around each tensor's start and end
    for (int64_t d : {-1, 0, 1}) {
      lengths.push_back(f->data_offset() + ti.offset + d);
      lengths.push_back(f->data_offset() + ti.offset + ti.n_bytes + d);
    }
  size_t errors = 0;
  for (size_t n : lengths) {
    if (n > full.size()) continue;
    std::string err = parse_error(full.substr(0, n));
    if (n >= needed) {
      EXPECT_EQ(err, "") << "prefix " << n;  // trailing padding may be missing
      continue;
    }
    ASSERT_FALSE(err.empty()) << "prefix of " << n << " bytes parsed";
    EXPECT_TRUE(err.find("ends") != std::string::npos) << "prefix " << n << ": " << err;
    ++errors;
  }
  EXPECT_GT(errors, 2000u);
}

TEST(GgufBadInput, WrongMagicVersionOneAndBigEndian) {
  std::string b = golden_bytes();
  std::string m = b;
  std::memcpy(&m[0], "GGML", 4);
  expect_error(m, "bad magic 'GGML'");
  std::string v1 = b;
  poke<uint32_t>(v1, 4, 1);
  expect_error(v1, "version 1 is obsolete");
  std::string be = b;
  poke<uint32_t>(be, 4, 0x03000000);  // version 3 written big-endian
  expect_error(be, "big-endian");
  std::string v9 = b;
  poke<uint32_t>(v9, 4, 9);
  expect_error(v9, "unsupported GGUF version 9");
  expect_error(std::string("GG"), "too short");
}

TEST(GgufBadInput, CorruptedCounts) {
  std::string b = golden_bytes();
  std::string t = b;
  poke<uint64_t>(t, 8, 1ull << 40);
  expect_error(t, "tensor count 1099511627776 cannot fit");
  std::string k = b;
  poke<uint64_t>(k, 16, ~0ull);
  expect_error(k, "metadata count 18446744073709551615 cannot fit");
  // One tensor more than the file lists: the reader runs into the data section and fails cleanly.
  std::string t1 = b;
  poke<uint64_t>(t1, 8, 22);
  EXPECT_NE(parse_error(t1), "");
}

TEST(GgufBadInput, CorruptedOffsetsAndSizes) {
  const std::string b = golden_bytes();
  InfoPos p = find_info(b, "blk.1.ffn_down.weight", 2);
  std::string off = b;
  poke<uint64_t>(off, p.offset, 1ull << 40);
  expect_error(off, "ends inside the data of tensor 'blk.1.ffn_down.weight'");
  std::string mis = b;
  uint64_t o;
  std::memcpy(&o, &b[p.offset], 8);
  poke<uint64_t>(mis, p.offset, o + 4);
  expect_error(mis, "offset " + std::to_string(o + 4) + " is not aligned to 32");
  // Point it at another tensor's bytes: overlap.
  std::string ov = b;
  poke<uint64_t>(ov, p.offset, 0);
  expect_error(ov, "overlap");
  // Bigger dimensions than the data holds.
  std::string big = b;
  poke<uint64_t>(big, p.dims + 8, 1ull << 20);
  expect_error(big, "ends inside the data of tensor 'blk.1.ffn_down.weight'");
  // A string whose length runs past the end of the file.
  std::string s = b;
  poke<uint64_t>(s, 24, 1ull << 50);  // length of the first key
  expect_error(s, "file ends inside metadata key");
}

TEST(GgufBadInput, AbsurdDimsAndElementCountOverflow) {
  const std::string b = golden_bytes();
  InfoPos p = find_info(b, "blk.0.attn_norm.weight", 1);
  std::string zero = b;
  poke<uint64_t>(zero, p.dims, 0);
  expect_error(zero, "invalid dimension 0");
  std::string neg = b;
  poke<uint64_t>(neg, p.dims, ~0ull);
  expect_error(neg, "invalid dimension");
  std::string nd = b;
  poke<uint32_t>(nd, p.n_dims, 5);
  expect_error(nd, "has 5 dimensions (1 to 4 allowed)");
  std::string nd0 = b;
  poke<uint32_t>(nd0, p.n_dims, 0);
  expect_error(nd0, "has 0 dimensions");

  InfoPos q = find_info(b, "blk.0.ffn_gate.weight", 2);  // Q4_K, {256, 512}
  std::string ovf = b;
  poke<uint64_t>(ovf, q.dims, 1ull << 40);
  poke<uint64_t>(ovf, q.dims + 8, 1ull << 40);
  expect_error(ovf, "element count overflows");
  // 2^62 F32 elements: the element count fits, the byte count does not.
  std::string bytes_ovf = b;
  InfoPos n = find_info(b, "output_norm.weight", 1);
  poke<uint64_t>(bytes_ovf, n.dims, 1ull << 62);
  expect_error(bytes_ovf, "byte size overflows");
  // A row length that is not a multiple of the Q4_K block.
  std::string blk = b;
  poke<uint64_t>(blk, q.dims, 100);
  expect_error(blk, "not a multiple of the Q4_K block size 256");
  // The same for the low-bit codebook types (IQ1_S, type id 19).
  std::string iq = b;
  poke<uint32_t>(iq, q.type, 19);
  poke<uint64_t>(iq, q.dims, 100);
  expect_error(iq, "not a multiple of the IQ1_S block size 256");
}

TEST(GgufBadInput, UnknownTensorTypeIsNamed) {
  const std::string b = golden_bytes();
  InfoPos p = find_info(b, "blk.0.attn_q.weight", 2);
  std::string t = b;
  poke<uint32_t>(t, p.type, 77);
  expect_error(t, "tensor 'blk.0.attn_q.weight' has unknown type id 77");
  std::string f8 = b;
  poke<uint32_t>(f8, p.type, 1000);  // owl's internal FP8 id is not a GGUF type
  expect_error(f8, "unknown type id 1000");
}

TEST(GgufBadInput, DuplicateTensorNamesAndKeys) {
  const std::string b = golden_bytes();
  // attn_k and attn_v have names of equal length: rename one onto the other.
  InfoPos v = find_info(b, "blk.0.attn_v.weight", 2);
  std::string d = b;
  std::memcpy(&d[v.name_len + 8], "blk.0.attn_k.weight", 19);
  expect_error(d, "duplicate tensor name 'blk.0.attn_k.weight'");

  Metadata m;
  m.items.emplace_back("general.architecture", Value::str("llama"));
  m.items.emplace_back("general.architecture", Value::str("qwen2"));
  expect_error(small_file(m), "duplicate metadata key 'general.architecture'");
}

TEST(GgufBadInput, BadValues) {
  // The writer refuses bad alignments, so write another key and rename it in the bytes.
  auto with_alignment = [](Value v) {
    Metadata m;
    m.set("general.alignmenX", std::move(v));
    std::string b = small_file(m);
    b[b.find("general.alignmenX") + 16] = 't';
    return b;
  };
  expect_error(with_alignment(Value::u32(24)), "alignment 24 is not a power of two");
  expect_error(with_alignment(Value::u64(32)), "general.alignment must be a u32");
  Metadata m3;
  m3.set("x", Value::boolean(true));
  std::string b = small_file(m3);
  size_t at = b.find('x') + 1 + 4;  // key, value type, then the bool byte
  b[at] = 2;
  expect_error(b, "bool value 2 is not 0 or 1");
  Metadata m4;
  m4.set("x", Value::u32(1));
  std::string t = small_file(m4);
  poke<uint32_t>(t, t.find('x') + 1, 13);
  expect_error(t, "unknown value type 13");
  // Arrays nested 9 deep exceed the reader's limit.
  Value v = Value::array(ValueType::UINT8, {});
  for (int i = 0; i < 8; ++i) v = Value::array(ValueType::ARRAY, {v});
  Metadata m5;
  m5.set("deep", v);
  expect_error(small_file(m5), "nested deeper than 8");
  // An array claiming more elements than the file holds.
  Metadata m6;
  m6.set("arr", Value::array(ValueType::UINT32, {Value::u32(1)}));
  std::string a = small_file(m6);
  poke<uint64_t>(a, a.find("arr") + 3 + 4 + 4, 1ull << 40);
  expect_error(a, "file ends inside an array of 1099511627776 u32 elements");
  Metadata m7;
  m7.items.emplace_back("", Value::u32(1));
  expect_error(small_file(m7), "is empty");
}
