// The mapping of this process that holds an address, as /proc/self/smaps reports it: tests of
// memory layouts check where a mapping ends and how much of it is resident, on which pages.
#pragma once
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace owl::test {

struct Mapping {
  uintptr_t start = 0, end = 0;  // [start, end); end == 0: no mapping holds the address
  size_t rss = 0;                // bytes resident
  size_t anon_huge = 0;          // of them, bytes on transparent huge pages (AnonHugePages)
};

inline Mapping mapping_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::ifstream in("/proc/self/smaps");
  std::string line;
  Mapping m;
  bool inside = false;
  while (std::getline(in, line)) {
    const size_t dash = line.find('-');
    const size_t space = line.find(' ');
    // A mapping's header line: "start-end perms ..." in hex; field lines start "Name:".
    if (dash != std::string::npos && space != std::string::npos && dash < space && line.find(':') > space) {
      if (inside) break;
      const uintptr_t s = std::stoull(line.substr(0, dash), nullptr, 16);
      const uintptr_t e = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
      inside = s <= a && a < e;
      if (inside) m = Mapping{s, e, 0, 0};
      continue;
    }
    if (!inside) continue;
    std::istringstream f(line);
    std::string key;
    size_t kb = 0;
    f >> key >> kb;
    if (key == "Rss:") m.rss = kb << 10;
    if (key == "AnonHugePages:") m.anon_huge = kb << 10;
  }
  return m;
}

}  // namespace owl::test
