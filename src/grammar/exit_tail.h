// What a mask needs from the tokens that run past the end of a rule instance: the rule can end
// at several trie nodes (inside a JSON string, at every closing quote a token may hold), and
// the bytes after that end are read in the caller's state. Many ends share the same bytes
// after them (`"`, `",`, `"}`), so the tokens below all ends are merged into one small trie of
// those bytes: the caller's state walks it once instead of once per end.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "grammar/token_trie.h"

namespace owl::grammar {

struct ExitTail {
  struct Node {
    uint32_t skip;                // index just past this node's subtree
    uint32_t ids_begin, ids_end;  // tokens whose bytes after the end are the path to this node
    uint8_t byte;
    uint8_t depth;  // bytes after the end; 0 only for nodes[0], the tokens that end with the rule
  };
  std::vector<Node> nodes;  // preorder; empty when no end is past the first byte
  std::vector<int32_t> ids;
  size_t max_depth = 0;
};

// The tail of the tokens below the trie nodes `ends` (each end past the root).
ExitTail build_exit_tail(const TokenTrie& trie, const std::vector<uint32_t>& ends);
// The same, remembered process-wide by the trie and the ends: the walks of many rules end at
// the same nodes (every string and key ends at the closing quotes of the same tokens).
std::shared_ptr<const ExitTail> shared_exit_tail(const TokenTrie& trie, const std::vector<uint32_t>& ends);

}  // namespace owl::grammar
