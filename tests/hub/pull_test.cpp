// End-to-end tests of `owl pull`, `owl list` and `owl rm` against the loopback
// fixture hub (fixture_server.h): real processes, real files, real sockets.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "fixture_server.h"
#include "hub/hash.h"
#include "hub/http.h"
#include "hub/resolve.h"
#include "test_util.h"

namespace fs = std::filesystem;
using owl::test::FixtureFile;
using owl::test::FixtureRepo;
using owl::test::random_bytes;
using owl::test::read_file;
using owl::test::RunResult;
using owl::test::shell_quote;

namespace {

const std::string kCommit = "5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f";
const std::string kHfCommit = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

class HubPull : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = owl::test::temp_dir();
    cache_ = dir_ + "/hf-cache";
    ms_cache_ = dir_ + "/ms-cache";
    ::setenv("HF_HUB_CACHE", cache_.c_str(), 1);
    ::setenv("OWL_MODELSCOPE_CACHE", ms_cache_.c_str(), 1);
    ::setenv("HF_ENDPOINT", server_.url().c_str(), 1);
    ::setenv("MODELSCOPE_ENDPOINT", server_.url().c_str(), 1);
    for (const char* v :
         {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_TOKEN_PATH", "MODELSCOPE_API_TOKEN"})
      ::unsetenv(v);
    // HF_HOME holds the saved token: never the user's real one.
    ::setenv("HF_HOME", (dir_ + "/hf-home").c_str(), 1);

    q4_ = random_bytes(300000, 1);
    q8_ = random_bytes(500000, 2);
    f16a_ = random_bytes(200000, 3);
    f16b_ = random_bytes(150000, 4);
    server_.add_repo("acme/tiny-GGUF", FixtureRepo{kCommit,
                                                   {{"README.md", "# tiny\n", false},
                                                    {"tiny-Q4_K_M.gguf", q4_},
                                                    {"tiny-Q8_0.gguf", q8_},
                                                    {"F16/tiny-F16-00001-of-00002.gguf", f16a_},
                                                    {"F16/tiny-F16-00002-of-00002.gguf", f16b_},
                                                    {"mmproj-tiny-f16.gguf", random_bytes(10000, 5)}}});
    weights_ = random_bytes(120000, 6);
    server_.add_repo("acme/tiny-hf", FixtureRepo{kHfCommit,
                                                 {{"config.json", R"({"model_type": "llama"})", false},
                                                  {"generation_config.json", R"({"eos_token_id": 2})", false},
                                                  {"tokenizer.json", R"({"model": {}})", false},
                                                  {"tokenizer_config.json", R"({})", false},
                                                  {"model.safetensors", weights_},
                                                  {"README.md", "# hf\n", false},
                                                  {"original/consolidated.00.pth", random_bytes(1000, 7)}}});
    server_.add_repo("acme/gated-GGUF", FixtureRepo{kCommit, {{"gated-Q4_K_M.gguf", random_bytes(50000, 8)}}, true});
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs owl through sh, with `prefix` (environment assignments, ulimit...) in front.
  RunResult owl_sh(const std::vector<std::string>& args, const std::string& prefix = "", const std::string& tag = "") {
    std::string out = dir_ + "/out" + tag, err = dir_ + "/err" + tag;
    std::string cmd = prefix + " exec " + shell_quote(OWL_BINARY);
    for (const auto& a : args) cmd += " " + shell_quote(a);
    cmd = "sh -c " + shell_quote(cmd) + " </dev/null >" + shell_quote(out) + " 2>" + shell_quote(err);
    int st = std::system(cmd.c_str());
    RunResult r;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }
  RunResult owl(const std::vector<std::string>& args, const std::string& prefix = "") { return owl_sh(args, prefix); }

  std::string repo_dir(const std::string& folder) const { return cache_ + "/" + folder; }
  std::string snapshot(const std::string& file, const std::string& commit = kCommit,
                       const std::string& folder = "models--acme--tiny-GGUF") const {
    return repo_dir(folder) + "/snapshots/" + commit + "/" + file;
  }
  std::string blob(const std::string& content, const std::string& folder = "models--acme--tiny-GGUF") const {
    return repo_dir(folder) + "/blobs/" + owl::hub::sha256_hex(content);
  }
  int downloads_of(const std::string& content) {
    int n = 0;
    for (const auto& r : server_.requests_for("/cdn/" + owl::hub::sha256_hex(content)))
      n += r.status == 200 || r.status == 206;
    return n;
  }
  std::vector<std::string> ranges_of(const std::string& content) {
    std::vector<std::string> out;
    for (const auto& r : server_.requests_for("/cdn/" + owl::hub::sha256_hex(content))) out.push_back(r.range);
    return out;
  }
  // The error line: owl may print progress lines before it.
  static std::string last_line(const std::string& s) {
    auto end = s.size() && s.back() == '\n' ? s.size() - 1 : s.size();
    auto start = s.rfind('\n', end - 1);
    return s.substr(start == std::string::npos ? 0 : start + 1);
  }
  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  // Every regular file under the cache whose name contains `needle`.
  std::vector<std::string> cache_files_containing(const std::string& needle) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_))
      if (e.path().filename().string().find(needle) != std::string::npos) out.push_back(e.path().string());
    return out;
  }

  owl::test::FixtureServer server_;
  std::string dir_, cache_, ms_cache_;
  std::string q4_, q8_, f16a_, f16b_, weights_;
};

TEST_F(HubPull, DefaultPullLandsInTheHuggingFaceCacheLayout) {
  auto r = owl({"pull", "acme/tiny-GGUF"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(trim(r.out), snapshot("tiny-Q4_K_M.gguf"));
  std::string sha = owl::hub::sha256_hex(q4_);
  EXPECT_EQ(fs::read_symlink(snapshot("tiny-Q4_K_M.gguf")).string(), "../../blobs/" + sha);
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);
  EXPECT_EQ(read_file(repo_dir("models--acme--tiny-GGUF") + "/refs/main"), kCommit);
  EXPECT_TRUE(fs::exists(cache_ + "/.locks/models--acme--tiny-GGUF/" + sha + ".lock"));
  EXPECT_TRUE(cache_files_containing(".incomplete").empty());
  // Only the chosen variant: no other GGUF, no README.
  std::set<std::string> in_snapshot;
  for (const auto& e : fs::directory_iterator(snapshot(""))) in_snapshot.insert(e.path().filename().string());
  EXPECT_EQ(in_snapshot, std::set<std::string>{"tiny-Q4_K_M.gguf"});
  // The download followed the hub's redirect for LFS files.
  EXPECT_EQ(server_.requests_for("/acme/tiny-GGUF/resolve/" + kCommit + "/tiny-Q4_K_M.gguf").size(), 1u);
  EXPECT_EQ(downloads_of(q4_), 1);
  EXPECT_NE(r.err.find("owl: downloading tiny-Q4_K_M.gguf (300.0 KB)"), std::string::npos) << r.err;

  // A second pull checks the listing and downloads nothing.
  auto again = owl({"pull", "acme/tiny-GGUF"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(trim(again.out), snapshot("tiny-Q4_K_M.gguf"));
  EXPECT_NE(again.err.find("owl: acme/tiny-GGUF is up to date (1 files)"), std::string::npos) << again.err;
  EXPECT_EQ(downloads_of(q4_), 1);
  EXPECT_EQ(server_.requests_for("/resolve/").size(), 1u);
}

TEST_F(HubPull, QuantSelectionAndSplitFiles) {
  auto q8 = owl({"pull", "acme/tiny-GGUF:q8_0"});
  ASSERT_EQ(q8.exit_code, 0) << q8.err;
  EXPECT_EQ(trim(q8.out), snapshot("tiny-Q8_0.gguf"));
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);

  auto f16 = owl({"pull", "acme/tiny-GGUF:F16"});
  ASSERT_EQ(f16.exit_code, 0) << f16.err;
  EXPECT_EQ(trim(f16.out), snapshot("F16/tiny-F16-00001-of-00002.gguf"));
  EXPECT_EQ(read_file(snapshot("F16/tiny-F16-00001-of-00002.gguf")), f16a_);
  EXPECT_EQ(read_file(snapshot("F16/tiny-F16-00002-of-00002.gguf")), f16b_);
  EXPECT_EQ(fs::read_symlink(snapshot("F16/tiny-F16-00002-of-00002.gguf")).string(),
            "../../../blobs/" + owl::hub::sha256_hex(f16b_));

  auto file = owl({"pull", "acme/tiny-GGUF:tiny-Q4_K_M.gguf"});
  ASSERT_EQ(file.exit_code, 0) << file.err;
  EXPECT_EQ(trim(file.out), snapshot("tiny-Q4_K_M.gguf"));

  auto none = owl({"pull", "acme/tiny-GGUF:Q3_K_S"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_EQ(none.err, "owl: error: no GGUF for Q3_K_S in acme/tiny-GGUF; available: F16, Q4_K_M, Q8_0\n");
}

TEST_F(HubPull, SafetensorsRepositoryGetsWeightsConfigAndTokenizer) {
  auto r = owl({"pull", "acme/tiny-hf"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string snap = repo_dir("models--acme--tiny-hf") + "/snapshots/" + kHfCommit;
  EXPECT_EQ(trim(r.out), snap);
  std::set<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(snap))
    if (!e.is_directory()) names.insert(e.path().lexically_relative(snap).string());
  EXPECT_EQ(names, (std::set<std::string>{"config.json", "generation_config.json", "tokenizer.json",
                                          "tokenizer_config.json", "model.safetensors"}));
  EXPECT_EQ(read_file(snap + "/model.safetensors"), weights_);
  // Small files are stored under their Git blob id, as huggingface_hub does.
  std::string cfg = R"({"model_type": "llama"})";
  EXPECT_EQ(fs::read_symlink(snap + "/config.json").string(), "../../blobs/" + owl::hub::git_blob_sha1(cfg));
  EXPECT_EQ(read_file(snap + "/config.json"), cfg);

  auto q = owl({"pull", "acme/tiny-hf:Q4_K_M"});
  EXPECT_EQ(q.exit_code, 1);
  EXPECT_NE(q.err.find("acme/tiny-hf has no GGUF files, so there is no quantisation Q4_K_M"), std::string::npos)
      << q.err;
}

TEST_F(HubPull, InterruptedDownloadResumesWithARangeRequest) {
  server_.drop_after("tiny-Q8_0.gguf", 200000, 1);
  auto first = owl({"pull", "acme/tiny-GGUF:Q8_0", "--retries", "0"});
  EXPECT_EQ(first.exit_code, 1);
  EXPECT_NE(first.err.find("download of tiny-Q8_0.gguf failed"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("run the pull again to resume (200.0 KB kept)"), std::string::npos) << first.err;
  // The partial file is kept as .incomplete and never taken for the blob.
  std::string partial = blob(q8_) + ".incomplete";
  ASSERT_TRUE(fs::exists(partial));
  EXPECT_EQ(fs::file_size(partial), 200000u);
  EXPECT_EQ(read_file(partial), q8_.substr(0, 200000));
  EXPECT_FALSE(fs::exists(blob(q8_)));
  EXPECT_FALSE(fs::exists(fs::symlink_status(snapshot("tiny-Q8_0.gguf"))));
  auto offline = owl({"pull", "acme/tiny-GGUF:Q8_0"}, "HF_HUB_OFFLINE=1");
  EXPECT_EQ(offline.exit_code, 1) << offline.out;

  auto second = owl({"pull", "acme/tiny-GGUF:Q8_0", "--retries", "0"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.err.find("resuming at 200.0 KB"), std::string::npos) << second.err;
  EXPECT_EQ(ranges_of(q8_), (std::vector<std::string>{"", "bytes=200000-"}));
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);
  EXPECT_FALSE(fs::exists(partial));
}

TEST_F(HubPull, DroppedConnectionsAreResumedWithinOnePull) {
  server_.drop_after("tiny-Q8_0.gguf", 100000, 2);
  auto r = owl({"pull", "acme/tiny-GGUF:Q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ranges_of(q8_), (std::vector<std::string>{"", "bytes=100000-", "bytes=200000-"}));
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);
}

TEST_F(HubPull, SeveralConnectionsSplitTheFile) {
  auto r = owl({"pull", "acme/tiny-GGUF:Q8_0", "--connections", "4", "--min-split-size", "65536"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ranges = ranges_of(q8_);
  std::sort(ranges.begin(), ranges.end());
  EXPECT_EQ(ranges, (std::vector<std::string>{"bytes=0-124999", "bytes=125000-249999", "bytes=250000-374999",
                                              "bytes=375000-"}));
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);
  EXPECT_TRUE(cache_files_containing(".incomplete").empty());
}

TEST_F(HubPull, SplitDownloadInterruptedResumesEachRange) {
  server_.drop_after("tiny-Q8_0.gguf", 20000, 4);
  std::vector<std::string> args = {
      "pull", "acme/tiny-GGUF:Q8_0", "--connections", "4", "--min-split-size", "65536", "--retries", "0"};
  auto first = owl(args);
  EXPECT_EQ(first.exit_code, 1);
  std::string ranges_file = blob(q8_) + ".incomplete.ranges";
  ASSERT_TRUE(fs::exists(ranges_file));
  EXPECT_EQ(read_file(ranges_file), "0 125000 20000\n125000 250000 20000\n250000 375000 20000\n375000 500000 20000\n");
  EXPECT_FALSE(fs::exists(blob(q8_)));

  size_t before = ranges_of(q8_).size();
  auto second = owl(args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto all = ranges_of(q8_);
  std::vector<std::string> resumed(all.begin() + static_cast<long>(before), all.end());
  std::sort(resumed.begin(), resumed.end());
  EXPECT_EQ(resumed, (std::vector<std::string>{"bytes=145000-249999", "bytes=20000-124999", "bytes=270000-374999",
                                               "bytes=395000-"}));
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);
  EXPECT_TRUE(cache_files_containing(".incomplete").empty());
}

TEST_F(HubPull, ServerWithoutRangeSupportFallsBackToOneConnection) {
  server_.ignore_ranges(true);
  auto r = owl({"pull", "acme/tiny-GGUF:Q8_0", "--connections", "4", "--min-split-size", "65536"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);
  EXPECT_EQ(ranges_of(q8_).back(), "");  // the final, whole-file request
  EXPECT_TRUE(cache_files_containing(".incomplete").empty());
}

TEST_F(HubPull, ChecksumMismatchIsAnErrorAndLeavesNoBlob) {
  server_.corrupt("tiny-Q4_K_M.gguf");
  auto r = owl({"pull", "acme/tiny-GGUF"});
  EXPECT_EQ(r.exit_code, 1);
  std::string sha = owl::hub::sha256_hex(q4_);
  EXPECT_NE(r.err.find("owl: error: checksum mismatch for tiny-Q4_K_M.gguf: expected sha256 " + sha + ", got "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("; the download was discarded, run the pull again"), std::string::npos);
  EXPECT_FALSE(fs::exists(blob(q4_)));
  EXPECT_TRUE(cache_files_containing(".incomplete").empty());
  EXPECT_FALSE(fs::exists(fs::symlink_status(snapshot("tiny-Q4_K_M.gguf"))));
}

// Issue #19: a mirror whose listing ignores ?blobs=true gives names only. Each file's size and
// hash then come from a HEAD (X-Linked-Size/X-Linked-Etag on the hub's redirect for LFS files,
// Content-Length/ETag for small ones), and the bytes are checked against them; owl used to
// write a 0-byte "nohash-" blob and report success.
TEST_F(HubPull, ListingWithoutBlobsDataIsCompletedFromHead) {
  server_.bare_listing(true);
  auto r = owl({"pull", "acme/tiny-GGUF"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(trim(r.out), snapshot("tiny-Q4_K_M.gguf"));
  EXPECT_EQ(fs::read_symlink(snapshot("tiny-Q4_K_M.gguf")).string(), "../../blobs/" + owl::hub::sha256_hex(q4_));
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);
  EXPECT_TRUE(cache_files_containing("nohash").empty());
  int heads = 0;
  for (const auto& q : server_.requests_for("/resolve/" + kCommit + "/tiny-Q4_K_M.gguf")) heads += q.method == "HEAD";
  EXPECT_EQ(heads, 1);

  // Small (non-LFS) files: their git blob id from the ETag.
  auto hf = owl({"pull", "acme/tiny-hf"});
  ASSERT_EQ(hf.exit_code, 0) << hf.err;
  const std::string snap = repo_dir("models--acme--tiny-hf") + "/snapshots/" + kHfCommit;
  const std::string cfg = R"({"model_type": "llama"})";
  EXPECT_EQ(fs::read_symlink(snap + "/config.json").string(), "../../blobs/" + owl::hub::git_blob_sha1(cfg));
  EXPECT_EQ(read_file(snap + "/model.safetensors"), weights_);
}

TEST_F(HubPull, ListingWithoutBlobsDataStillChecksTheBytes) {
  server_.bare_listing(true);
  server_.corrupt("tiny-Q4_K_M.gguf");
  auto r = owl({"pull", "acme/tiny-GGUF"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(
      r.err.find("owl: error: checksum mismatch for tiny-Q4_K_M.gguf: expected sha256 " + owl::hub::sha256_hex(q4_)),
      std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(fs::symlink_status(snapshot("tiny-Q4_K_M.gguf"))));
}

TEST_F(HubPull, FileOfUnknownSizeIsNeverReportedAsPulled) {
  server_.bare_listing(true);
  server_.head_without_size(true);
  auto r = owl({"pull", "acme/tiny-GGUF"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(last_line(r.err),
            "owl: error: the hub lists file tiny-Q4_K_M.gguf of acme/tiny-GGUF without a size, and its HEAD gives "
            "none (no Content-Length); the download could not be checked, so it is not made\n")
      << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_FALSE(fs::exists(fs::symlink_status(snapshot("tiny-Q4_K_M.gguf"))));
  EXPECT_TRUE(cache_files_containing("nohash").empty());
}

TEST_F(HubPull, GatedRepositoryNeedsAToken) {
  auto anon = owl({"pull", "acme/gated-GGUF"});
  EXPECT_EQ(anon.exit_code, 1);
  EXPECT_EQ(last_line(anon.err), "owl: error: acme/gated-GGUF is gated or private (HTTP 401): accept its license at " +
                                     server_.url() + "/acme/gated-GGUF and set HF_TOKEN to an access token\n");
  auto wrong = owl({"pull", "acme/gated-GGUF"}, "HF_TOKEN=hf_wrong");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("acme/gated-GGUF refused the token in HF_TOKEN (HTTP 403): accept the license at"),
            std::string::npos)
      << wrong.err;
  auto good = owl({"pull", "acme/gated-GGUF"}, "HF_TOKEN=hf_good_token");
  ASSERT_EQ(good.exit_code, 0) << good.err;
  auto reqs = server_.requests_for("/acme/gated-GGUF/resolve/");
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs.back().authorization, "Bearer hf_good_token");
  EXPECT_EQ(reqs.back().status, 302);
}

TEST_F(HubPull, TokenSavedByHuggingfaceCliLoginIsUsed) {
  fs::create_directories(dir_ + "/hf-home");
  { std::ofstream(dir_ + "/hf-home/token") << "hf_good_token\n"; }
  auto r = owl({"pull", "acme/gated-GGUF"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server_.requests_for("/acme/gated-GGUF/resolve/").back().authorization, "Bearer hf_good_token");
}

TEST_F(HubPull, MissingRepositoryOrFile) {
  auto repo = owl({"pull", "acme/nope"});
  EXPECT_EQ(repo.exit_code, 1);
  EXPECT_EQ(repo.err, "owl: error: repository acme/nope not found on " + server_.url() +
                          "; check the name (for a private repository set HF_TOKEN)\n");
  server_.hide("tiny-Q8_0.gguf");
  auto file = owl({"pull", "acme/tiny-GGUF:Q8_0"});
  EXPECT_EQ(file.exit_code, 1);
  EXPECT_EQ(last_line(file.err),
            "owl: error: file tiny-Q8_0.gguf of acme/tiny-GGUF not found on " + server_.url() + "\n");
  auto named = owl({"pull", "acme/tiny-GGUF:nothere.gguf"});
  EXPECT_EQ(named.exit_code, 1);
  EXPECT_EQ(named.err,
            "owl: error: file nothere.gguf not found in acme/tiny-GGUF; its GGUF files: F16, Q4_K_M, Q8_0\n");
  auto rev = owl({"pull", "acme/tiny-GGUF", "--revision", "v9"});
  EXPECT_EQ(rev.exit_code, 1);
  EXPECT_NE(rev.err.find("revision not found for repository acme/tiny-GGUF"), std::string::npos) << rev.err;
}

TEST_F(HubPull, RateLimitIsRetriedAfterRetryAfter) {
  server_.rate_limit("tiny-Q4_K_M.gguf", 2, 1);
  auto t0 = std::chrono::steady_clock::now();
  auto r = owl({"pull", "acme/tiny-GGUF"});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int> statuses;
  for (const auto& q : server_.requests_for("/resolve/")) statuses.push_back(q.status);
  EXPECT_EQ(statuses, (std::vector<int>{429, 429, 302}));
  EXPECT_GE(secs, 2.0);  // waited Retry-After (1 s) twice
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);
}

TEST_F(HubPull, RateLimitedListingIsRetried) {
  server_.rate_limit(owl::test::FixtureServer::kListing, 1, 1);
  auto r = owl({"pull", "acme/tiny-GGUF"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int> statuses;
  for (const auto& q : server_.requests_for("/api/models/acme/tiny-GGUF/revision/main")) statuses.push_back(q.status);
  EXPECT_EQ(statuses, (std::vector<int>{429, 200}));
}

TEST_F(HubPull, GarbledListingIsAClearError) {
  server_.garble_listing(R"({"id": "acme/tiny-GGUF", "siblings": "oops"})");
  auto r = owl({"pull", "acme/tiny-GGUF"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("owl: error: unexpected answer from " + server_.url() + " listing acme/tiny-GGUF: "),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(repo_dir("models--acme--tiny-GGUF") + "/refs/main"));
}

TEST_F(HubPull, StalePartialFilesAreNeverTakenForTheBlob) {
  // A partial file longer than the blob cannot be a prefix of it: start over.
  fs::create_directories(repo_dir("models--acme--tiny-GGUF") + "/blobs");
  { std::ofstream(blob(q4_) + ".incomplete", std::ios::binary) << random_bytes(400000, 99); }
  auto longer = owl({"pull", "acme/tiny-GGUF"});
  ASSERT_EQ(longer.exit_code, 0) << longer.err;
  EXPECT_EQ(ranges_of(q4_), (std::vector<std::string>{""}));
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);

  // A partial file with wrong bytes is resumed, fails verification and is discarded.
  { std::ofstream(blob(q8_) + ".incomplete", std::ios::binary) << random_bytes(1000, 98); }
  auto wrong = owl({"pull", "acme/tiny-GGUF:Q8_0"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("checksum mismatch for tiny-Q8_0.gguf"), std::string::npos) << wrong.err;
  EXPECT_FALSE(fs::exists(blob(q8_)));
  EXPECT_FALSE(fs::exists(blob(q8_) + ".incomplete"));
  auto retry = owl({"pull", "acme/tiny-GGUF:Q8_0"});
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  EXPECT_EQ(read_file(snapshot("tiny-Q8_0.gguf")), q8_);
}

TEST_F(HubPull, RateLimitRetriesAreBounded) {
  server_.rate_limit("tiny-Q4_K_M.gguf", 100, 1);
  auto r = owl({"pull", "acme/tiny-GGUF", "--retries", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(server_.requests_for("/resolve/").size(), 2u);
  EXPECT_NE(r.err.find("rate limited by " + server_.url() + " for file tiny-Q4_K_M.gguf of acme/tiny-GGUF (HTTP 429)"),
            std::string::npos)
      << r.err;
}

// A full disk, simulated with RLIMIT_FSIZE (`ulimit -f`, counted in 512-byte
// blocks by dash and 1024 by bash: 100 or 200 KB, under the 300 KB file).
// SIGXFSZ is ignored so that the write fails with EFBIG instead of killing owl.
TEST_F(HubPull, FullDiskKeepsThePartialFileForLater) {
  auto r = owl({"pull", "acme/tiny-GGUF"}, "ulimit -f 200; trap '' XFSZ;");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("owl: error: disk full while writing " + blob(q4_) + ".incomplete (File too large)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("free space and run the pull again, it resumes"), std::string::npos);
  EXPECT_FALSE(fs::exists(blob(q4_)));
  uint64_t kept = fs::file_size(blob(q4_) + ".incomplete");
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, q4_.size());

  auto again = owl({"pull", "acme/tiny-GGUF"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(ranges_of(q4_).back(), "bytes=" + std::to_string(kept) + "-");
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);
}

TEST_F(HubPull, ConcurrentPullsOfTheSameFileDownloadItOnce) {
  server_.throttle(1000000);  // 0.3 s for the file: the two processes overlap
  std::string cmd;
  for (int i = 0; i < 2; ++i) {
    std::string tag = std::to_string(i);
    cmd += shell_quote(OWL_BINARY) + " pull acme/tiny-GGUF >" + shell_quote(dir_ + "/cout" + tag) + " 2>" +
           shell_quote(dir_ + "/cerr" + tag) + " & p" + tag + "=$!; ";
  }
  cmd += "wait $p0; echo $? >" + shell_quote(dir_ + "/rc0") + "; wait $p1; echo $? >" + shell_quote(dir_ + "/rc1");
  ASSERT_EQ(std::system(("sh -c " + shell_quote(cmd)).c_str()), 0);
  for (int i = 0; i < 2; ++i) {
    std::string tag = std::to_string(i);
    EXPECT_EQ(read_file(dir_ + "/rc" + tag), "0\n") << read_file(dir_ + "/cerr" + tag);
    EXPECT_EQ(trim(read_file(dir_ + "/cout" + tag)), snapshot("tiny-Q4_K_M.gguf"));
  }
  EXPECT_EQ(downloads_of(q4_), 1);  // the second waited on the lock, then found the blob
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);
  EXPECT_TRUE(cache_files_containing(".incomplete").empty());
}

TEST_F(HubPull, OfflineModeUsesTheCacheOnly) {
  auto missing = owl({"pull", "acme/tiny-GGUF"}, "HF_HUB_OFFLINE=1");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "owl: error: acme/tiny-GGUF is not in the cache (" + cache_ +
                             ") and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE and run 'owl pull acme/tiny-GGUF'\n");
  EXPECT_TRUE(server_.requests().empty());

  ASSERT_EQ(owl({"pull", "acme/tiny-GGUF"}).exit_code, 0);
  size_t seen = server_.requests().size();
  auto cached = owl({"pull", "acme/tiny-GGUF"}, "HF_HUB_OFFLINE=1");
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_EQ(trim(cached.out), snapshot("tiny-Q4_K_M.gguf"));
  auto other = owl({"pull", "acme/tiny-GGUF:Q8_0"}, "HF_HUB_OFFLINE=1");
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_EQ(server_.requests().size(), seen);
}

TEST_F(HubPull, ModelScopeSource) {
  auto r = owl({"pull", "modelscope:acme/tiny-GGUF:Q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string path = ms_cache_ + "/models--acme--tiny-GGUF/snapshots/master/tiny-Q8_0.gguf";
  EXPECT_EQ(trim(r.out), path);
  EXPECT_EQ(read_file(path), q8_);
  EXPECT_EQ(server_.requests_for("/api/v1/models/acme/tiny-GGUF/repo/files?Revision=master&Recursive=true").size(), 1u);
  EXPECT_EQ(server_.requests_for("/api/v1/models/acme/tiny-GGUF/repo?Revision=master&FilePath=tiny-Q8_0.gguf").size(),
            1u);
  EXPECT_FALSE(fs::exists(cache_ + "/models--acme--tiny-GGUF"));  // not mixed into the HF cache
  EXPECT_EQ(read_file(ms_cache_ + "/models--acme--tiny-GGUF/refs/master"), "master");
  auto again = owl({"pull", "modelscope:acme/tiny-GGUF:Q8_0"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("is up to date"), std::string::npos) << again.err;
  auto cached = owl({"pull", "modelscope:acme/tiny-GGUF:Q8_0"}, "HF_HUB_OFFLINE=1");
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_EQ(trim(cached.out), path);

  auto missing = owl({"pull", "modelscope:acme/nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("repository acme/nope not found on " + server_.url()), std::string::npos) << missing.err;
}

TEST_F(HubPull, ListAndRemove) {
  auto empty = owl({"list"});
  ASSERT_EQ(empty.exit_code, 0);
  EXPECT_EQ(empty.out, "no models in " + cache_ + "; 'owl pull ORG/NAME' downloads one\n");

  ASSERT_EQ(owl({"pull", "acme/tiny-GGUF"}).exit_code, 0);
  ASSERT_EQ(owl({"pull", "acme/tiny-GGUF:Q8_0"}).exit_code, 0);
  ASSERT_EQ(owl({"pull", "acme/tiny-hf"}).exit_code, 0);
  ASSERT_EQ(owl({"pull", "modelscope:acme/tiny-GGUF:Q8_0"}).exit_code, 0);
  auto list = owl({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  char line[256];
  std::string expected;
  std::snprintf(line, sizeof line, "%-50s %10s  %s\n", "MODEL", "SIZE", "FILES");
  expected += line;
  std::snprintf(line, sizeof line, "%-50s %10s  %s\n", "acme/tiny-GGUF", "800.0 KB",
                "tiny-Q4_K_M.gguf, tiny-Q8_0.gguf");
  expected += line;
  std::snprintf(line, sizeof line, "%-50s %10s  %s\n", "acme/tiny-hf", "120.1 KB", "5 files");
  expected += line;
  std::snprintf(line, sizeof line, "%-50s %10s  %s\n", "modelscope:acme/tiny-GGUF", "500.0 KB", "tiny-Q8_0.gguf");
  expected += line;
  EXPECT_EQ(list.out, expected);

  auto json = nlohmann::json::parse(owl({"list", "--json"}).out);
  ASSERT_EQ(json.size(), 3u);
  EXPECT_EQ(json[0]["model"], "acme/tiny-GGUF");
  EXPECT_EQ(json[0]["size_bytes"], 800000);
  EXPECT_EQ(json[0]["commit"], kCommit);

  // Removing one variant drops its link and its blob, keeps the rest.
  auto rm8 = owl({"rm", "acme/tiny-GGUF:Q8_0"});
  ASSERT_EQ(rm8.exit_code, 0) << rm8.err;
  EXPECT_EQ(rm8.out, "removed acme/tiny-GGUF:Q8_0 (500.0 KB freed)\n");
  EXPECT_FALSE(fs::exists(blob(q8_)));
  EXPECT_FALSE(fs::exists(fs::symlink_status(snapshot("tiny-Q8_0.gguf"))));
  EXPECT_EQ(read_file(snapshot("tiny-Q4_K_M.gguf")), q4_);

  auto rm = owl({"rm", "acme/tiny-GGUF"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(rm.out, "removed acme/tiny-GGUF (300.0 KB freed)\n");
  EXPECT_FALSE(fs::exists(repo_dir("models--acme--tiny-GGUF")));
  EXPECT_TRUE(fs::exists(repo_dir("models--acme--tiny-hf")));

  auto gone = owl({"rm", "acme/tiny-GGUF"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_EQ(gone.err, "owl: error: acme/tiny-GGUF is not in the cache (" + cache_ + "); 'owl list' shows what is\n");
}

TEST_F(HubPull, ResolveModel) {
  // Local paths pass through unchanged.
  std::string local = dir_ + "/model.gguf";
  { std::ofstream(local) << "x"; }
  EXPECT_EQ(owl::hub::resolve_model(local, false), local);
  try {
    owl::hub::resolve_model("acme/tiny-GGUF:Q8_0", false);
    FAIL() << "expected an error";
  } catch (const owl::Error& e) {
    EXPECT_EQ(std::string(e.what()), "acme/tiny-GGUF:Q8_0 is not downloaded; run 'owl pull acme/tiny-GGUF:Q8_0' first");
  }
  EXPECT_THROW(owl::hub::resolve_model(dir_ + "/missing.gguf", true), owl::Error);
  try {
    owl::hub::resolve_model("models/missing.gguf", true);
    FAIL() << "expected an error";
  } catch (const owl::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "model 'models/missing.gguf' does not exist (no such file or folder, and not a hub id ORG/NAME[:QUANT])");
  }
  EXPECT_TRUE(server_.requests().empty());
  EXPECT_EQ(owl::hub::resolve_model("acme/tiny-GGUF:Q8_0", true), snapshot("tiny-Q8_0.gguf"));
  EXPECT_EQ(owl::hub::resolve_model("acme/tiny-hf", true),
            repo_dir("models--acme--tiny-hf") + "/snapshots/" + kHfCommit);
  // Cached now: answered without the network.
  size_t seen = server_.requests().size();
  EXPECT_EQ(owl::hub::resolve_model("acme/tiny-GGUF:q8_0", false), snapshot("tiny-Q8_0.gguf"));
  EXPECT_EQ(server_.requests().size(), seen);
}

TEST_F(HubPull, UnreachableHubFailsAtOnceAndNamesTheLocalFileWay) {
  // No network (here: a host DNS cannot resolve) is not retried with backoff: one request,
  // then an error that says how to run a local file instead.
  owl::hub::HttpResponse r = owl::hub::http_get("http://owl-test.invalid/api/models/x", {}, owl::hub::RetryPolicy{});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.host_unresolved) << r.network_error;
  EXPECT_EQ(r.attempts, 1);

  auto run = owl({"run", "acme/tiny-GGUF", "hello"}, "HF_ENDPOINT=http://owl-test.invalid");
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const std::string line = last_line(run.err);
  EXPECT_EQ(line.rfind("owl: error: cannot reach http://owl-test.invalid for repository acme/tiny-GGUF: ", 0), 0u)
      << line;
  EXPECT_NE(line.find("give owl a local file instead: owl run /path/to/model.gguf"), std::string::npos) << line;
  EXPECT_TRUE(cache_files_containing("tiny").empty());
}

TEST_F(HubPull, UsageErrors) {
  auto bad = owl({"pull", "justaname"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err,
            "owl: usage error: 'justaname' is not a hub id; expected ORG/NAME[:QUANT|:FILE] or "
            "modelscope:ORG/NAME[:QUANT|:FILE]\n");
  EXPECT_EQ(owl({"pull", "acme/tiny-GGUF", "--connections", "0"}).exit_code, 2);
  EXPECT_EQ(owl({"rm"}).exit_code, 2);
}

}  // namespace
