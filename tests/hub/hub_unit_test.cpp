// In-process tests of the hub library: hub ids, file selection, hashes, cache paths.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "hub/cache.h"
#include "hub/hash.h"
#include "hub/select.h"
#include "hub/spec.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace owl::hub;

TEST(HubSpec, ParsesRepoQuantFileAndSource) {
  auto a = parse_hub_spec("Qwen/Qwen3-0.6B-GGUF:q8_0");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->source, Source::HuggingFace);
  EXPECT_EQ(a->repo, "Qwen/Qwen3-0.6B-GGUF");
  EXPECT_EQ(a->variant, "q8_0");
  EXPECT_FALSE(a->variant_is_file);

  auto b = parse_hub_spec("modelscope:Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->source, Source::ModelScope);
  EXPECT_EQ(b->variant, "Qwen3-0.6B-Q8_0.gguf");
  EXPECT_TRUE(b->variant_is_file);
  EXPECT_EQ(b->display(), "modelscope:Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf");

  auto c = parse_hub_spec("hf:meta-llama/Llama-3.2-1B");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->repo, "meta-llama/Llama-3.2-1B");
  EXPECT_TRUE(c->variant.empty());
}

TEST(HubSpec, RejectsWhatIsNotAHubId) {
  EXPECT_FALSE(parse_hub_spec("model.gguf"));
  EXPECT_FALSE(parse_hub_spec("/abs/path/model.gguf"));
  EXPECT_FALSE(parse_hub_spec("a/b/c"));
  EXPECT_FALSE(parse_hub_spec("org/name:"));
  EXPECT_FALSE(parse_hub_spec("org/../x"));
  EXPECT_THROW(parse_hub_spec("gitlab:org/name"), owl::UsageError);
  EXPECT_THROW(parse_hub_spec_or_throw("justaname"), owl::UsageError);
}

std::vector<RepoFile> gguf_repo() {
  return {{"README.md", 10, "", "aa"},
          {"tiny-Q2_K.gguf", 100, "s1", ""},
          {"tiny-Q4_K_M.gguf", 200, "s2", ""},
          {"tiny-Q4_K_M_L.gguf", 210, "s3", ""},
          {"tiny-Q8_0.gguf", 400, "s4", ""},
          {"BF16/tiny-BF16-00002-of-00002.gguf", 500, "s6", ""},
          {"BF16/tiny-BF16-00001-of-00002.gguf", 500, "s5", ""},
          {"mmproj-tiny-f16.gguf", 50, "s7", ""}};
}

TEST(HubSelect, DefaultPrefersQ4KM) {
  auto s = select_files(gguf_repo(), "", false, "acme/tiny");
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_EQ(s.primary, "tiny-Q4_K_M.gguf");
  EXPECT_TRUE(s.gguf);
}

TEST(HubSelect, QuantIsCaseInsensitiveAndWholeWord) {
  EXPECT_EQ(select_files(gguf_repo(), "q8_0", false, "r").primary, "tiny-Q8_0.gguf");
  EXPECT_EQ(select_files(gguf_repo(), "Q4_K_M_L", false, "r").primary, "tiny-Q4_K_M_L.gguf");
  // "Q4_K" is not a word of "tiny-Q4_K_M.gguf".
  try {
    select_files(gguf_repo(), "Q4_K", false, "acme/tiny");
    FAIL() << "expected an error";
  } catch (const owl::Error& e) {
    EXPECT_EQ(std::string(e.what()), "no GGUF for Q4_K in acme/tiny; available: BF16, Q2_K, Q4_K_M, Q4_K_M_L, Q8_0");
  }
}

TEST(HubSelect, SplitGgufTakesAllPartsInOrder) {
  auto s = select_files(gguf_repo(), "bf16", false, "r");
  ASSERT_EQ(s.files.size(), 2u);
  EXPECT_EQ(s.files[0].path, "BF16/tiny-BF16-00001-of-00002.gguf");
  EXPECT_EQ(s.files[1].path, "BF16/tiny-BF16-00002-of-00002.gguf");
  EXPECT_EQ(s.primary, "BF16/tiny-BF16-00001-of-00002.gguf");
  // Naming one part selects the whole split file.
  auto p = select_files(gguf_repo(), "tiny-BF16-00002-of-00002.gguf", true, "r");
  EXPECT_EQ(p.files.size(), 2u);
}

TEST(HubSelect, MissingSplitPartIsAnError) {
  auto files = gguf_repo();
  files.erase(files.begin() + 5);  // part 2 of BF16
  EXPECT_THROW(select_files(files, "BF16", false, "r"), owl::Error);
}

TEST(HubSelect, FallbacksThenSmallest) {
  std::vector<RepoFile> f = {
      {"m-Q8_0.gguf", 800, "a", ""}, {"m-Q4_0.gguf", 400, "b", ""}, {"m-Q5_K_S.gguf", 500, "c", ""}};
  EXPECT_EQ(select_files(f, "", false, "r").primary, "m-Q4_0.gguf");
  f.erase(f.begin() + 1);
  EXPECT_EQ(select_files(f, "", false, "r").primary, "m-Q8_0.gguf");
  f.erase(f.begin());
  f.push_back({"m-IQ2_XS.gguf", 300, "d", ""});
  EXPECT_EQ(select_files(f, "", false, "r").primary, "m-IQ2_XS.gguf");
}

TEST(HubSelect, SafetensorsSetWhenNoGguf) {
  std::vector<RepoFile> f = {{"config.json", 1, "", "a"},
                             {"generation_config.json", 1, "", "b"},
                             {"tokenizer.json", 1, "", "c"},
                             {"tokenizer_config.json", 1, "", "d"},
                             {"model-00001-of-00002.safetensors", 9, "e", ""},
                             {"model-00002-of-00002.safetensors", 9, "f", ""},
                             {"model.safetensors.index.json", 1, "", "g"},
                             {"README.md", 1, "", "h"},
                             {"original/consolidated.00.pth", 9, "i", ""},
                             {".gitattributes", 1, "", "j"}};
  auto s = select_files(f, "", false, "acme/hf");
  EXPECT_FALSE(s.gguf);
  std::vector<std::string> names;
  for (const auto& x : s.files) names.push_back(x.path);
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "generation_config.json", "tokenizer.json",
                                             "tokenizer_config.json", "model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors", "model.safetensors.index.json"}));
  EXPECT_THROW(select_files(f, "Q4_K_M", false, "acme/hf"), owl::Error);
  std::vector<RepoFile> none = {{"README.md", 1, "", "h"}};
  EXPECT_THROW(select_files(none, "", false, "acme/empty"), owl::Error);
}

TEST(HubSelect, QuantTag) {
  EXPECT_EQ(quant_tag("Qwen3-0.6B-Q4_K_M.gguf"), "Q4_K_M");
  EXPECT_EQ(quant_tag("model.iq2_xxs.gguf"), "IQ2_XXS");
  EXPECT_EQ(quant_tag("BF16/m-BF16-00001-of-00003.gguf"), "BF16");
  EXPECT_EQ(quant_tag("m-UD-Q4_K_XL.gguf"), "UD-Q4_K_XL");
  EXPECT_EQ(quant_tag("plain.gguf"), "");
}

TEST(HubHash, KnownVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // `git hash-object` of a file holding "hello\n".
  EXPECT_EQ(git_blob_sha1("hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
  std::string dir = owl::test::temp_dir();
  { std::ofstream(dir + "/h", std::ios::binary) << "hello\n"; }
  EXPECT_EQ(git_blob_sha1_file(dir + "/h"), "ce013625030ba8dba906f756967f9e9ca394464a");
  EXPECT_EQ(sha256_file(dir + "/h"), "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  EXPECT_THROW(sha256_file(dir + "/missing"), owl::Error);
}

TEST(HubCache, RootFollowsTheEnvironmentLikeHuggingfaceHub) {
  ::unsetenv("HF_HUB_CACHE");
  ::unsetenv("HF_HOME");
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(cache_root(Source::HuggingFace), "/home/someone/.cache/huggingface/hub");
  EXPECT_EQ(cache_root(Source::ModelScope), "/home/someone/.cache/owl/modelscope");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(cache_root(Source::HuggingFace), "/xdg/huggingface/hub");
  ::setenv("HF_HOME", "/hfhome", 1);
  EXPECT_EQ(cache_root(Source::HuggingFace), "/hfhome/hub");
  ::setenv("HF_HUB_CACHE", "/hubcache", 1);
  EXPECT_EQ(cache_root(Source::HuggingFace), "/hubcache");
  auto p = repo_paths(Source::HuggingFace, "Qwen/Qwen3-0.6B");
  EXPECT_EQ(p.dir, "/hubcache/models--Qwen--Qwen3-0.6B");
  EXPECT_EQ(p.blob("abc"), "/hubcache/models--Qwen--Qwen3-0.6B/blobs/abc");
  EXPECT_EQ(p.lock("abc"), "/hubcache/.locks/models--Qwen--Qwen3-0.6B/abc.lock");
}

TEST(HubCache, SnapshotLinksAreRelativeToBlobs) {
  std::string dir = owl::test::temp_dir();
  ::setenv("HF_HUB_CACHE", dir.c_str(), 1);
  auto p = repo_paths(Source::HuggingFace, "a/b");
  fs::create_directories(p.dir + "/blobs");
  { std::ofstream(p.blob("id1")) << "x"; }
  link_snapshot_file(p, "c1", "sub/dir/f.gguf", "id1");
  link_snapshot_file(p, "c1", "top.json", "id1");
  EXPECT_EQ(fs::read_symlink(p.snapshot("c1") + "/sub/dir/f.gguf").string(), "../../../../blobs/id1");
  EXPECT_EQ(fs::read_symlink(p.snapshot("c1") + "/top.json").string(), "../../blobs/id1");
  EXPECT_EQ(owl::test::read_file(p.snapshot("c1") + "/sub/dir/f.gguf"), "x");
  write_ref(p, "main", "c1");
  EXPECT_EQ(owl::test::read_file(p.ref("main")), "c1");
  EXPECT_EQ(read_ref(p, "main").value_or(""), "c1");
  fs::remove_all(dir);
}

TEST(HubCache, HumanSize) {
  EXPECT_EQ(human_size(999), "999 B");
  EXPECT_EQ(human_size(1500), "1.5 KB");
  EXPECT_EQ(human_size(484200000), "484.2 MB");
}
