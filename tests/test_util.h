// Helpers shared by the tests: locating ../shared (missing data is a failure,
// never a skip), reading files, and running the owl binary.
#pragma once
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace owl::test {

// Path inside ../shared; fails the test (fatally, via exception) when it does not exist.
inline std::string shared_path(const std::string& rel) {
  std::filesystem::path p = std::filesystem::path(OWL_SOURCE_DIR) / ".." / "shared" / rel;
  if (!std::filesystem::exists(p)) {
    ADD_FAILURE() << "reference data missing: " << p << " (../shared must sit beside the repository)";
    throw std::runtime_error("reference data missing: " + p.string());
  }
  return std::filesystem::weakly_canonical(p).string();
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<float> read_f32(const std::string& path) {
  std::string s = read_file(path);
  std::vector<float> v(s.size() / 4);
  std::memcpy(v.data(), s.data(), v.size() * 4);
  return v;
}

// A scratch directory unique to the running test, removed at exit of the process.
inline std::string temp_dir() {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("owl-test-") +
                     (info ? info->test_suite_name() + std::string("-") + info->name() : "x") + "-" +
                     std::to_string(::getpid());
  auto p = std::filesystem::temp_directory_path() / name;
  std::filesystem::create_directories(p);
  return p.string();
}

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs the owl binary with args; captures stdout and stderr.
inline RunResult run_owl(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  std::string dir = temp_dir();
  std::string out = dir + "/stdout", err = dir + "/stderr", in = dir + "/stdin";
  { std::ofstream(in, std::ios::binary) << stdin_text; }
  std::string cmd = shell_quote(OWL_BINARY);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " <" + shell_quote(in) + " >" + shell_quote(out) + " 2>" + shell_quote(err);
  int st = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace owl::test
