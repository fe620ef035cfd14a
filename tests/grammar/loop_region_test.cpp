// Loop-region purity (loop_region.h) against brute force: on a small random vocabulary and
// random region tables, a node's bit r is set exactly when every token below it, read from
// region state r after the node's bytes, stays in the region at every byte.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "grammar/loop_region.h"
#include "grammar/token_trie.h"

namespace {

using owl::grammar::RegionTable;
using owl::grammar::TokenTrie;

// Stays in the region along bytes[from..]: each byte leads to a region state.
bool stays(const RegionTable& t, uint32_t r, const std::string& bytes, size_t from) {
  for (size_t k = from; k < bytes.size(); ++k) {
    uint8_t d = t.next[r * 256 + static_cast<uint8_t>(bytes[k])];
    if (d == RegionTable::kOut) return false;
    r = d;
  }
  return true;
}

TEST(LoopRegion, PurityMatchesBruteForceOnRandomTables) {
  std::mt19937 rng(7);
  const std::string alphabet = "ab\"\\\xc3\xa9";  // letters, a quote, a backslash, UTF-8 bytes
  std::vector<std::string> vocab;
  for (int i = 0; i < 600; ++i) {
    std::string s;
    size_t len = 1 + rng() % 6;
    for (size_t k = 0; k < len; ++k) s.push_back(alphabet[rng() % alphabet.size()]);
    vocab.push_back(s);
  }
  TokenTrie trie(vocab, {}, std::vector<bool>(vocab.size(), false));
  const auto& nodes = trie.nodes();
  // The bytes leading to each node (the path from the root), from the preorder.
  std::vector<std::string> path(nodes.size());
  std::vector<uint32_t> stack{0};
  for (uint32_t i = 1; i < nodes.size(); ++i) {
    while (nodes[stack.back()].skip <= i) stack.pop_back();
    path[i] = path[stack.back()] + static_cast<char>(nodes[i].byte);
    stack.push_back(i);
  }
  for (int round = 0; round < 20; ++round) {
    RegionTable t;
    t.size = 1 + rng() % 5;
    t.next.assign(t.size * 256, RegionTable::kOut);
    for (uint32_t r = 0; r < t.size; ++r)
      for (char c : alphabet)
        if (rng() % 4 != 0) t.next[r * 256 + static_cast<uint8_t>(c)] = static_cast<uint8_t>(rng() % t.size);
    auto pure = owl::grammar::region_purity(trie, t);
    ASSERT_EQ(pure->size(), nodes.size());
    size_t set = 0;
    for (uint32_t i = 0; i < nodes.size(); ++i) {
      for (uint32_t r = 0; r < t.size; ++r) {
        bool expect = true;
        for (const std::string& tok : vocab)
          if (tok.size() > path[i].size() && tok.compare(0, path[i].size(), path[i]) == 0)
            expect = expect && stays(t, r, tok, path[i].size());
        ASSERT_EQ(((*pure)[i] >> r) & 1, expect ? 1u : 0u) << "round " << round << " node " << i << " state " << r;
        set += expect;
      }
    }
    EXPECT_GT(set, nodes.size() / 4);  // the tables keep a fair share of subtrees
  }
}

}  // namespace
