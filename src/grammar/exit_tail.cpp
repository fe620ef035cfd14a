#include "grammar/exit_tail.h"

#include <algorithm>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace owl::grammar {

ExitTail build_exit_tail(const TokenTrie& trie, const std::vector<uint32_t>& ends) {
  const auto& tn = trie.nodes();
  const auto& tids = trie.token_ids();
  // Every (bytes after the end, token) pair below every end.
  std::vector<std::pair<std::string, int32_t>> entries;
  std::string path;
  for (uint32_t e : ends) {
    for (uint32_t k = tn[e].tokens_begin; k < tn[e].tokens_end; ++k) entries.emplace_back(std::string(), tids[k]);
    const uint32_t base = tn[e].depth;
    for (uint32_t j = e + 1; j < tn[e].skip; ++j) {
      path.resize(tn[j].depth - base - 1);
      path.push_back(static_cast<char>(tn[j].byte));
      for (uint32_t k = tn[j].tokens_begin; k < tn[j].tokens_end; ++k) entries.emplace_back(path, tids[k]);
    }
  }
  ExitTail out;
  if (entries.empty()) return out;
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
  // Preorder construction as in TokenTrie: sorted strings, one path per new suffix.
  out.nodes.push_back(ExitTail::Node{0, 0, 0, 0, 0});
  std::vector<uint32_t> open{0};  // node per depth of the current path
  const std::string* prev = nullptr;
  for (const auto& [s, id] : entries) {
    size_t lcp = 0;
    if (prev)
      while (lcp < prev->size() && lcp < s.size() && (*prev)[lcp] == s[lcp]) ++lcp;
    while (open.size() > lcp + 1) {
      out.nodes[open.back()].skip = static_cast<uint32_t>(out.nodes.size());
      open.pop_back();
    }
    for (size_t d = lcp; d < s.size(); ++d) {
      const auto at = static_cast<uint32_t>(out.ids.size());
      out.nodes.push_back(ExitTail::Node{0, at, at, static_cast<uint8_t>(s[d]), static_cast<uint8_t>(d + 1)});
      open.push_back(static_cast<uint32_t>(out.nodes.size() - 1));
    }
    ExitTail::Node& n = out.nodes[open.back()];
    if (n.ids_end != out.ids.size()) n.ids_begin = n.ids_end = static_cast<uint32_t>(out.ids.size());
    out.ids.push_back(id);
    n.ids_end = static_cast<uint32_t>(out.ids.size());
    out.max_depth = std::max(out.max_depth, s.size());
    prev = &s;
  }
  while (!open.empty()) {
    out.nodes[open.back()].skip = static_cast<uint32_t>(out.nodes.size());
    open.pop_back();
  }
  return out;
}

std::shared_ptr<const ExitTail> shared_exit_tail(const TokenTrie& trie, const std::vector<uint32_t>& ends) {
  constexpr size_t kEntries = 1024;
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<const ExitTail>> cache;
  const uint64_t serial = trie.serial();
  std::string key(reinterpret_cast<const char*>(&serial), sizeof(serial));
  key.append(reinterpret_cast<const char*>(ends.data()), ends.size() * sizeof(uint32_t));
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  auto out = std::make_shared<const ExitTail>(build_exit_tail(trie, ends));
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= kEntries) cache.clear();
  cache.emplace(std::move(key), out);
  return out;
}

}  // namespace owl::grammar
