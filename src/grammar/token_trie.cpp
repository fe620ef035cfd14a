#include "grammar/token_trie.h"

#include <algorithm>
#include <atomic>
#include <numeric>

namespace owl::grammar {

namespace {
constexpr size_t kMaxTokenBytes = 255;  // depth is stored in a byte
}

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes, const std::vector<int32_t>& eos,
                     const std::vector<bool>& excluded)
    : eos_(eos), n_vocab_(token_bytes.size()) {
  static std::atomic<uint64_t> built{0};
  serial_ = ++built;
  std::vector<int32_t> order;
  for (size_t i = 0; i < token_bytes.size(); ++i) {
    if (excluded[i] || token_bytes[i].empty() || token_bytes[i].size() > kMaxTokenBytes) continue;
    order.push_back(static_cast<int32_t>(i));
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return token_bytes[a] < token_bytes[b]; });
  nodes_.push_back(Node{0, 0, 0, 0, 0, 0, 0});
  std::vector<uint32_t> path{0};  // node index per depth of the current path
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = token_bytes[id];
    size_t lcp = 0;
    if (prev) {
      while (lcp < prev->size() && lcp < s.size() && (*prev)[lcp] == s[lcp]) ++lcp;
    }
    // Close the nodes of the previous path below the common prefix.
    while (path.size() > lcp + 1) {
      nodes_[path.back()].skip = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    for (size_t d = lcp; d < s.size(); ++d) {
      uint32_t tb = static_cast<uint32_t>(ids_.size());
      nodes_.push_back(Node{0, tb, tb, 0, static_cast<uint8_t>(s[d]), static_cast<uint8_t>(d + 1), 0});
      path.push_back(static_cast<uint32_t>(nodes_.size() - 1));
    }
    // Tokens ending at the same node are consecutive in `order`, so the range grows in place.
    Node& end = nodes_[path.back()];
    if (end.tokens_end != ids_.size()) end.tokens_begin = end.tokens_end = static_cast<uint32_t>(ids_.size());
    ids_.push_back(id);
    end.tokens_end = static_cast<uint32_t>(ids_.size());
    max_depth_ = std::max(max_depth_, s.size());
    prev = &s;
  }
  while (!path.empty()) {
    nodes_[path.back()].skip = static_cast<uint32_t>(nodes_.size());
    path.pop_back();
  }
  // Tokens are in preorder, so a subtree's tokens end where its last node's do.
  for (Node& n : nodes_) n.subtree_end = n.skip > 0 ? nodes_[n.skip - 1].tokens_end : n.tokens_end;
  // Children follow their parent in preorder: heights bottom-up.
  for (size_t i = nodes_.size(); i-- > 0;)
    for (uint32_t j = static_cast<uint32_t>(i) + 1; j < nodes_[i].skip; j = nodes_[j].skip)
      nodes_[i].height = std::max<uint8_t>(nodes_[i].height, static_cast<uint8_t>(nodes_[j].height + 1));
  all_ids_.assign((n_vocab_ + 63) / 64, 0);
  for (int32_t id : ids_) all_ids_[static_cast<uint32_t>(id) >> 6] |= uint64_t{1} << (id & 63);
}

}  // namespace owl::grammar
