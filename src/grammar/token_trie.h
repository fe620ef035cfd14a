// The model's vocabulary as a byte trie in preorder, so that a token mask is one walk
// that skips every subtree whose prefix the grammar rejects.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace owl::grammar {

class TokenTrie {
 public:
  // token_bytes[id] is what token `id` appends to the text; ids in `excluded` (special and
  // control tokens, empty tokens) are never allowed by a mask. `eos` are the end-of-generation
  // ids a mask allows once the grammar is complete.
  TokenTrie(const std::vector<std::string>& token_bytes, const std::vector<int32_t>& eos,
            const std::vector<bool>& excluded);

  struct Node {
    uint32_t skip;          // index just past this node's subtree
    uint32_t tokens_begin;  // range in token_ids() of tokens that end here
    uint32_t tokens_end;
    uint32_t subtree_end;  // end in token_ids() of the tokens of the whole subtree
    uint8_t byte;
    uint8_t depth;   // 1 for children of the root
    uint8_t height;  // the most bytes below this node (0 for a leaf)
  };
  const std::vector<Node>& nodes() const { return nodes_; }  // nodes_[0] is the root
  const std::vector<int32_t>& token_ids() const { return ids_; }
  // Bit `id` set for every id in token_ids() (ceil(n_vocab / 64) words): a mask that allows
  // most of the vocabulary starts from it and clears the few ids it leaves out.
  const std::vector<uint64_t>& all_ids_mask() const { return all_ids_; }
  const std::vector<int32_t>& eos() const { return eos_; }
  size_t n_vocab() const { return n_vocab_; }
  size_t max_depth() const { return max_depth_; }
  // Unique per trie built in this process: caches key on it (an address may be reused).
  uint64_t serial() const { return serial_; }

 private:
  std::vector<Node> nodes_;
  std::vector<int32_t> ids_;
  std::vector<int32_t> eos_;
  std::vector<uint64_t> all_ids_;
  size_t n_vocab_ = 0;
  size_t max_depth_ = 0;
  uint64_t serial_ = 0;
};

}  // namespace owl::grammar
