#include "model/trace.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <vector>

#include "base/error.h"

namespace owl::trace {

namespace {

struct State {
  std::mutex mu;
  bool all = false;
  std::set<std::string> names;
  std::string dir;
  int64_t counter = 0;
};

State& state() {
  static State s;
  return s;
}
// 0: not read yet, 1: off, 2: on. Read without the lock on every call.
std::atomic<int> g_mode{0};

void configure(const std::string& dir, const std::string& names) {
  State& s = state();
  s.names.clear();
  s.all = false;
  size_t start = 0;
  while (start <= names.size()) {
    const size_t comma = names.find(',', start);
    const std::string n = names.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (n == "all")
      s.all = true;
    else if (!n.empty())
      s.names.insert(n);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  s.dir = dir;
  s.counter = 0;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::is_directory(dir, ec))
    throw Error("trace: cannot create folder '" + dir + "'; give a writable folder (OWL_TRACE_DIR or --dump)");
}

int mode() {
  int m = g_mode.load(std::memory_order_acquire);
  if (m != 0) return m;
  std::lock_guard lock(state().mu);
  if (g_mode.load() != 0) return g_mode.load();
  const char* names = std::getenv("OWL_TRACE");
  if (names && *names) {
    const char* dir = std::getenv("OWL_TRACE_DIR");
    configure(dir && *dir ? dir : "owl-trace", names);
    g_mode.store(2);
  } else {
    g_mode.store(1);
  }
  return g_mode.load();
}

void write(const char* name, int64_t layer, const std::vector<float>& v, int64_t rows, int64_t cols) {
  State& s = state();
  std::lock_guard lock(s.mu);
  const long long n = s.counter++;
  char stem[96];
  std::snprintf(stem, sizeof stem, "%05lld-%s-%lld", n, name, static_cast<long long>(layer));
  const std::string path = s.dir + "/" + stem + ".f32";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error("trace: cannot write '" + path + "'");
  const size_t wrote = std::fwrite(v.data(), sizeof(float), v.size(), f);
  std::fclose(f);
  if (wrote != v.size()) throw Error("trace: writing '" + path + "' failed (disk full?)");
  double sum = 0;
  for (float x : v) sum += x;
  FILE* idx = std::fopen((s.dir + "/trace.txt").c_str(), "a");
  if (!idx) throw Error("trace: cannot append to '" + s.dir + "/trace.txt'");
  std::fprintf(idx, "%05lld %s-%lld [%lld, %lld] sum = %.6f  first:", n, name, static_cast<long long>(layer),
               static_cast<long long>(cols), static_cast<long long>(rows), sum);
  for (size_t i = 0; i < v.size() && i < 3; ++i) std::fprintf(idx, " %.6f", static_cast<double>(v[i]));
  std::fprintf(idx, "  last:");
  for (size_t i = v.size() >= 3 ? v.size() - 3 : 0; i < v.size(); ++i)
    std::fprintf(idx, " %.6f", static_cast<double>(v[i]));
  std::fprintf(idx, "\n");
  std::fclose(idx);
}

}  // namespace

void start(const std::string& dir, const std::string& names) {
  std::lock_guard lock(state().mu);
  configure(dir, names);
  g_mode.store(2);
}

void stop() { g_mode.store(1); }

bool on(const char* name) {
  if (mode() != 2) return false;
  State& s = state();
  std::lock_guard lock(s.mu);
  return s.all || s.names.count(name) > 0;
}

void tensor(const char* name, int64_t layer, const float* data, int64_t rows, int64_t cols) {
  if (!on(name)) return;
  write(name, layer, std::vector<float>(data, data + rows * cols), rows, cols);
}

void ids(const char* name, int64_t layer, const int32_t* data, int64_t rows, int64_t cols) {
  if (!on(name)) return;
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(data[i]);
  write(name, layer, v, rows, cols);
}

}  // namespace owl::trace
