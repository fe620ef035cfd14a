// Loop regions: a few states of a matcher that lead back to one another (the characters of a
// JSON string with its escapes and UTF-8 sequences, the body of a regex `[a-z]+`), written as
// a transition table over bytes. For one table and one vocabulary trie, region_purity() gives
// per trie node the region states from which every token below stays inside the region: a
// mask walk that reaches such a node in such a state keeps the whole subtree at once, so the
// walk only descends where a token can leave the region (a closing quote, a control byte).
// The answer depends on the table alone, not on the grammar, and is shared process-wide.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "grammar/token_trie.h"

namespace owl::grammar {

struct RegionTable {
  static constexpr uint32_t kMaxStates = 32;  // purity is a bitmask of region states
  static constexpr uint8_t kOut = 0xFF;       // the byte leaves the region
  uint32_t size = 0;
  std::vector<uint8_t> next;  // next[state * 256 + byte]: a region state or kOut
};

// Bit r of element i: from region state r at trie node i (its bytes consumed), every token
// of the subtree below i stays in the region at every byte.
std::shared_ptr<const std::vector<uint32_t>> region_purity(const TokenTrie& trie, const RegionTable& table);

}  // namespace owl::grammar
