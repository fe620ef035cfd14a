// --mem SIZE (model/residency.h): what `owl info` says will be resident and what will stream,
// bad sizes, and the proof under a real limit: a memory cgroup of 40% of a MoE file's size in
// which `owl logits` and a short `owl run` (default budget: read from the cgroup) give exactly
// the output of the unlimited runs. Memory cgroups (v2, else v1) are created below this
// process's own; where neither can be used the test fails saying so (it needs root in CI).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "streaming_model.h"
#include "test_util.h"

namespace owl {
namespace {

using test::run_owl;
using test::shared_path;
using test::streaming_model;

const std::string kQwen3Moe = "golden/qwen3moe/q4_k_m.gguf";

TEST(Mem, InfoSaysWhatIsResidentAndWhatStreams) {
  const std::string model = shared_path(kQwen3Moe);
  auto r = run_owl({"info", model, "--mem", "100G"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("budget     100.00 GiB (--mem): all resident"), std::string::npos) << r.out;

  r = run_owl({"info", model, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto all = nlohmann::json::parse(r.out);
  const uint64_t fixed = all.at("fixed_bytes"), experts = all.at("routed_expert_bytes");
  EXPECT_FALSE(all.at("experts_stream").get<bool>());  // the default budget holds a tiny model
  EXPECT_EQ(all.at("resident_bytes").get<uint64_t>(), fixed + experts);
  EXPECT_EQ(all.at("routed_experts").get<int64_t>(), 16);  // 2 layers x 8 experts

  // Room for the resident part and about 10 of the 16 experts.
  const uint64_t budget = fixed + experts * 10 / 16;
  r = run_owl({"info", model, "--mem", std::to_string(budget), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j.at("experts_stream").get<bool>());
  EXPECT_EQ(j.at("mem_budget").at("bytes").get<uint64_t>(), budget);
  EXPECT_EQ(j.at("mem_budget").at("source").get<std::string>(), "--mem");
  EXPECT_EQ(j.at("expert_cache_bytes").get<uint64_t>(), budget - fixed);
  EXPECT_GE(j.at("expert_cache_experts").get<int64_t>(), 8);
  EXPECT_LE(j.at("expert_cache_experts").get<int64_t>(), 10);
  r = run_owl({"info", model, "--mem", std::to_string(budget)});
  EXPECT_NE(r.out.find("routed experts stream from the file"), std::string::npos) << r.out;
}

TEST(Mem, BadSizesAndTooSmallBudgetsAreOneLineErrors) {
  const std::string model = shared_path(kQwen3Moe);
  const std::string out = test::temp_dir() + "/l.f32";
  auto r = run_owl({"logits", model, "--tokens", "1,2", "--out", out, "--mem", "12X"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--mem: '12X' is not a memory size"), std::string::npos) << r.err;
  r = run_owl({"run", model, "hi", "--mem", "-5G"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run_owl({"logits", model, "--tokens", "1,2", "--out", out, "--mem", "64K"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("--mem 64.00 KiB is too small for"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// ---- a memory cgroup below our own ----

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

// This process's cgroup path ("/a/b") in the v2 hierarchy ("0::") or the v1 memory one.
std::string own_cgroup(bool v2) {
  std::istringstream in(read_text("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    if (v2 ? controllers.empty() : ("," + controllers + ",").find(",memory,") != std::string::npos)
      return line.substr(b + 1);
  }
  return "";
}

class MemoryCgroup {
 public:
  // Throws std::runtime_error saying why when no memory cgroup can be made.
  explicit MemoryCgroup(uint64_t limit) {
    const std::string name = "/owl-test-" + std::to_string(::getpid());
    if (std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers")) {  // v2 (unified) at the root
      const std::string parent = "/sys/fs/cgroup" + own_cgroup(true);
      if (read_text(parent + "/cgroup.subtree_control").find("memory") == std::string::npos)
        write_text(parent + "/cgroup.subtree_control", "+memory");
      dir_ = parent + name;
      if (::mkdir(dir_.c_str(), 0755) != 0 || !write_text(dir_ + "/memory.max", std::to_string(limit)))
        fail("cgroup v2: cannot create " + dir_ + " with memory.max (the parent must delegate the memory controller)");
      write_text(dir_ + "/memory.swap.max", "0");
      version_ = "v2";
    } else if (std::filesystem::exists("/sys/fs/cgroup/memory")) {
      dir_ = "/sys/fs/cgroup/memory" + own_cgroup(false) + name;
      if (::mkdir(dir_.c_str(), 0755) != 0 || !write_text(dir_ + "/memory.limit_in_bytes", std::to_string(limit)))
        fail("cgroup v1: cannot create " + dir_ + " with memory.limit_in_bytes (run the tests as root)");
      if (std::filesystem::exists(dir_ + "/memory.memsw.limit_in_bytes"))
        write_text(dir_ + "/memory.memsw.limit_in_bytes", std::to_string(limit));  // no swapping around it
      version_ = "v1";
    } else {
      fail(
          "no memory cgroup hierarchy is mounted (neither /sys/fs/cgroup/cgroup.controllers nor "
          "/sys/fs/cgroup/memory)");
    }
  }
  ~MemoryCgroup() {
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;
  const std::string& version() const { return version_; }

  // Runs owl with args inside the cgroup.
  test::RunResult run_owl(const std::vector<std::string>& args) const {
    const std::string dir = test::temp_dir();
    std::string cmd = "sh -c 'echo $$ > \"$0\" && exec \"$@\"' " + test::shell_quote(dir_ + "/cgroup.procs") + " " +
                      test::shell_quote(OWL_BINARY);
    for (const auto& a : args) cmd += " " + test::shell_quote(a);
    cmd += " </dev/null >" + test::shell_quote(dir + "/cg.out") + " 2>" + test::shell_quote(dir + "/cg.err");
    const int st = std::system(cmd.c_str());
    test::RunResult r;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = test::read_file(dir + "/cg.out");
    r.err = test::read_file(dir + "/cg.err");
    return r;
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    if (!dir_.empty()) ::rmdir(dir_.c_str());
    dir_.clear();
    throw std::runtime_error(why);
  }
  std::string dir_, version_;
};

// Drops the file's pages from the page cache, so a run reads it from the disk.
void evict_from_page_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

TEST(Mem, LogitsAndRunInACgroupOf40PercentOfTheFileEqualTheUnlimitedRuns) {
  const std::string dir = test::temp_dir();
  const std::string model = streaming_model(dir);
  struct RemoveAtEnd {
    std::string path;
    ~RemoveAtEnd() { std::filesystem::remove(path); }
  } remove_model{model};  // 160 MB
  const uint64_t file_bytes = std::filesystem::file_size(model);
  const uint64_t limit = file_bytes * 2 / 5;
  const std::vector<std::string> logits_args = {
      "logits", model, "--tokens", "1,50,300,7,42,99,511,3", "--greedy", "8", "--ctx", "64", "-t", "2"};
  const std::vector<std::string> run_args = {"run", model, "Once upon a time", "-n", "12", "--temp", "0", "--ctx", "64",
                                             "-t",  "2"};
  auto with_out = [&](std::vector<std::string> a, const std::string& out) {
    a.insert(a.end(), {"--out", out});
    return a;
  };
  const auto free_logits = run_owl(with_out(logits_args, dir + "/free.f32"));
  ASSERT_EQ(free_logits.exit_code, 0) << free_logits.err;
  const auto free_run = run_owl(run_args);
  ASSERT_EQ(free_run.exit_code, 0) << free_run.err;
  ASSERT_FALSE(free_run.out.empty());

  std::unique_ptr<MemoryCgroup> cg;
  try {
    cg = std::make_unique<MemoryCgroup>(limit);
  } catch (const std::exception& e) {
    FAIL() << "memory cgroups are unavailable, so the memory-limit test cannot run: " << e.what();
  }
  evict_from_page_cache(model);
  const auto info = cg->run_owl({"info", model, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const auto plan = nlohmann::json::parse(info.out);
  EXPECT_EQ(plan.at("mem_budget").at("source").get<std::string>(), "cgroup limit");
  EXPECT_TRUE(plan.at("experts_stream").get<bool>()) << info.out;

  const auto cg_logits = cg->run_owl(with_out(logits_args, dir + "/cg.f32"));
  ASSERT_EQ(cg_logits.exit_code, 0) << "owl logits in a " << cg->version() << " memory cgroup of " << limit
                                    << " bytes (40% of " << file_bytes << "): " << cg_logits.err
                                    << (cg_logits.exit_code == 137 ? " (killed: out of memory)" : "");
  EXPECT_EQ(cg_logits.out, free_logits.out) << "greedy ids differ";
  EXPECT_TRUE(test::read_file(dir + "/cg.f32") == test::read_file(dir + "/free.f32")) << "logits differ";

  evict_from_page_cache(model);
  const auto cg_run = cg->run_owl(run_args);
  ASSERT_EQ(cg_run.exit_code, 0) << "owl run in a " << cg->version() << " memory cgroup of " << limit
                                 << " bytes: " << cg_run.err;
  EXPECT_EQ(cg_run.out, free_run.out);
}

}  // namespace
}  // namespace owl
