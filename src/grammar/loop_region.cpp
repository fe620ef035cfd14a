#include "grammar/loop_region.h"

#include <map>
#include <mutex>
#include <string>

namespace owl::grammar {

namespace {

// A region's purity is ~4 bytes per trie node (0.5-2 MB for a 128k vocabulary); the few
// distinct tables of a process (string characters, a handful of regex loops) fit many times.
constexpr size_t kCachedTables = 48;

std::vector<uint32_t> compute(const TokenTrie& trie, const RegionTable& t) {
  const auto& nodes = trie.nodes();
  const uint32_t all = t.size == 32 ? 0xFFFFFFFFu : (uint32_t{1} << t.size) - 1;
  std::vector<uint32_t> pure(nodes.size(), all);
  // Children come after their parent in preorder: fill bottom-up.
  for (size_t i = nodes.size(); i-- > 0;) {
    uint32_t keep = all;
    for (uint32_t j = static_cast<uint32_t>(i) + 1; j < nodes[i].skip && keep; j = nodes[j].skip) {
      const uint8_t* col = t.next.data() + nodes[j].byte;
      uint32_t ok = 0;
      for (uint32_t r = 0; r < t.size; ++r) {
        uint8_t d = col[r * 256];
        if (d != RegionTable::kOut && ((pure[j] >> d) & 1)) ok |= uint32_t{1} << r;
      }
      keep &= ok;
    }
    pure[i] = keep;
  }
  return pure;
}

}  // namespace

std::shared_ptr<const std::vector<uint32_t>> region_purity(const TokenTrie& trie, const RegionTable& table) {
  static std::mutex mu;
  static std::map<std::pair<uint64_t, std::vector<uint8_t>>, std::shared_ptr<const std::vector<uint32_t>>> cache;
  auto key = std::make_pair(trie.serial(), table.next);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  auto out = std::make_shared<const std::vector<uint32_t>>(compute(trie, table));
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= kCachedTables) cache.clear();
  cache.emplace(std::move(key), out);
  return out;
}

}  // namespace owl::grammar
