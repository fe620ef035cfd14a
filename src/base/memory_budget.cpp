#include "base/memory_budget.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace owl {

uint64_t parse_memory_size(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return UsageError(option + ": '" + text +
                      "' is not a memory size; give bytes or a number with K, M, G or T (e.g. 48G)");
  };
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = text.substr(used);
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'i') unit.pop_back();
  double scale = 1;
  if (unit == "k") {
    scale = 1024.0;
  } else if (unit == "m") {
    scale = 1024.0 * 1024;
  } else if (unit == "g") {
    scale = 1024.0 * 1024 * 1024;
  } else if (unit == "t") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else if (!unit.empty() && unit != "b") {
    throw bad();
  }
  const double bytes = v * scale;
  if (!std::isfinite(bytes) || bytes < 1 || bytes > 1e19) throw bad();
  return static_cast<uint64_t>(bytes);
}

std::string format_memory_size(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  char b[48];
  std::snprintf(b, sizeof b, i == 0 ? "%.0f %s" : "%.2f %s", v, units[i]);
  return b;
}

namespace {

std::optional<uint64_t> read_limit_file(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return std::nullopt;
  try {
    const unsigned long long v = std::stoull(s);
    if (v >= (1ULL << 60)) return std::nullopt;  // v1's "unlimited" is a page-rounded INT64_MAX
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The lowest limit in `file` from the cgroup `rel` (e.g. "/a/b") up to the mount's root.
std::optional<uint64_t> lowest_limit(const std::string& mount, std::string rel, const std::string& file) {
  std::optional<uint64_t> best;
  while (true) {
    if (auto v = read_limit_file(mount + rel + "/" + file)) best = best ? std::min(*best, *v) : *v;
    if (rel.empty() || rel == "/") break;
    rel = rel.substr(0, rel.rfind('/'));
  }
  return best;
}

}  // namespace

std::optional<uint64_t> cgroup_memory_limit() {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  std::optional<uint64_t> best;
  const auto take = [&](std::optional<uint64_t> v) {
    if (v) best = best ? std::min(*best, *v) : *v;
  };
  while (std::getline(f, line)) {
    // "hierarchy-id:controllers:path"; v2 is "0::path", v1's memory line names "memory".
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), rel = line.substr(b + 1);
    if (controllers.empty()) {
      take(lowest_limit("/sys/fs/cgroup", rel, "memory.max"));
    } else {
      std::stringstream ss(controllers);
      std::string c;
      while (std::getline(ss, c, ','))
        if (c == "memory") take(lowest_limit("/sys/fs/cgroup/memory", rel, "memory.limit_in_bytes"));
    }
  }
  return best;
}

uint64_t memory_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

MemoryBudget default_memory_budget() {
  MemoryBudget b;
  b.bytes = memory_available();
  b.source = "MemAvailable";
  if (auto limit = cgroup_memory_limit(); limit && (b.bytes == 0 || *limit < b.bytes)) {
    b.bytes = *limit;
    b.source = "cgroup limit";
  }
  // The margin: the KV cache, activations, tokenizer and program are outside the weight budget.
  const uint64_t margin = std::min<uint64_t>((32ULL << 20) + b.bytes / 16, 4ULL << 30);
  b.bytes = b.bytes > margin ? b.bytes - margin : 0;
  return b;
}

}  // namespace owl
