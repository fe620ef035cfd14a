// Runs a compiled Grammar over bytes. A configuration is a node of the network plus a stack
// of return nodes (a tail call, whose return only ends the caller, pushes none: it runs in the
// caller's frame); stacks are hash-consed into frames, so a state (the set of live
// configurations) is a short sorted list of integers, interned with a lazily filled
// 256-entry transition row: after warm-up, following a byte is one table lookup.
//
// A token mask splits the state by frame. Inside one rule instance (the configurations that
// share a frame) what a token does until the rule ends does not depend on the stack below:
// for each such group of nodes the engine walks the vocabulary trie once and remembers the
// tokens consumed without leaving the rule and the trie nodes where the rule can end
// (MaskCache, shared by every matcher of the grammar). A mask is then those token sets plus
// one walk, in the caller's real state, of the bytes that follow the recorded ends (merged
// into an ExitTail); inside a JSON string that is a few hundred table lookups instead of a
// walk over all 128k tokens.
//
// The first walk of a group skips whole trie subtrees where a state loops: the states of a
// loop (a string's characters, escapes and UTF-8 sequences) form a region whose per-trie-node
// purity is precomputed once per process (loop_region.h). States that differ only by a shift
// along a bounded repetition (a string with maxLength) share one region while they have
// copies to spare, so a long bounded string is walked like an unbounded one. A region is
// explored once per process for each loop shape: its states inside one rule instance are
// also keyed by the shape of the network they reach, so the string loop behind every key
// prefix of an object, and every grammar's copy of it, finds the region without exploring.
// The walk below a trie node from such a loop state is also remembered process-wide, by the
// shape of the state's network: every key position of an object with free keys leaves its
// names for the same string loop, and walks the subtrees below it once per process.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "grammar/exit_tail.h"
#include "grammar/grammar.h"
#include "grammar/token_trie.h"

namespace owl::grammar {

// What a walk of the vocabulary trie below one node records, for a local walk (under the exit
// frame): the tokens consumed without leaving the rule, as ranges of positions in
// TokenTrie::token_ids() (contiguous runs merged), and the trie nodes where the rule ends.
struct TrieWalk {
  std::vector<std::pair<uint32_t, uint32_t>> inside;
  std::vector<uint32_t> ends;
  void keep(uint32_t begin, uint32_t end) {
    if (begin == end) return;
    if (!inside.empty() && inside.back().second == begin) {
      inside.back().second = end;
    } else {
      inside.emplace_back(begin, end);
    }
  }
};

// What a group of nodes of one rule does with every token: shared by all matchers of one
// grammar and one vocabulary (thread-safe).
class MaskCache {
 public:
  MaskCache(std::shared_ptr<const Grammar> g, std::shared_ptr<const TokenTrie> trie)
      : grammar(std::move(g)), trie(std::move(trie)) {}
  struct Local {
    std::vector<uint64_t> inside;  // bitset: tokens consumed without leaving the rule
    // The tokens that run past an end of the rule, by their bytes after it: one tail, or two
    // for a group derived from a reference (Matcher::derived_local): the reference's tail less
    // the diverging subtrees' tokens, and the tail of those subtrees' own ends.
    std::vector<std::shared_ptr<const ExitTail>> tails;
  };
  std::shared_ptr<const Local> find(const std::string& key);
  void put(const std::string& key, std::shared_ptr<const Local> v);
  // Loop regions found by any matcher, by the nodes of a state inside one rule instance
  // (Matcher::class_key): the region's purity and the state's number in it.
  struct RegionMember {
    std::shared_ptr<const std::vector<uint32_t>> purity;
    uint8_t slot = 0;
  };
  bool find_region(const std::string& key, RegionMember& out);
  void put_region(const std::string& key, RegionMember m);

  const std::shared_ptr<const Grammar> grammar;
  const std::shared_ptr<const TokenTrie> trie;

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Local>> locals_;
  std::unordered_map<std::string, RegionMember> regions_;
};

class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const Grammar> g);
  explicit Matcher(std::shared_ptr<MaskCache> cache);

  // Consumes `bytes` if the grammar allows them; returns false and keeps the state otherwise.
  bool advance(std::string_view bytes);
  bool allows(std::string_view bytes);
  // The input so far is a complete sentence of the grammar (end of generation is allowed).
  bool accepting() const { return states_[cur_].accept; }
  // Nothing may follow (accepting or dead).
  bool finished() const { return states_[cur_].configs.empty(); }
  // Sets bit `id` of `mask` (ceil(n_vocab / 64) words) for every token that may come next;
  // end-of-generation tokens only when accepting(). Needs the MaskCache constructor.
  void fill_mask(std::vector<uint64_t>& mask);
  // The same over a given trie (builds a private MaskCache on first use).
  void fill_mask(const TokenTrie& trie, std::vector<uint64_t>& mask);
  void reset();
  // Groups whose tokens this matcher took from a reference state's walk plus the subtrees
  // where the two differ (derived_local), rather than from a walk of the whole vocabulary.
  size_t derived_groups() const { return derived_groups_; }

 private:
  struct State {
    std::vector<uint64_t> configs;  // (node << 32 | frame), sorted, unique
    bool accept = false;            // the root rule ended
    bool exit = false;              // the rule under the exit frame ended (local walks)
  };
  static constexpr int32_t kDead = -1;
  static constexpr int32_t kUnknown = -2;

  void close(uint32_t node, uint32_t frame, State& out);
  uint32_t push_frame(uint32_t ret, uint32_t parent);
  bool entered(uint32_t node, uint32_t frame);
  int32_t intern(State&& s);
  // Forgets every interned state and what was memoised of them (not the frames).
  void drop_interned_states();
  int32_t next(int32_t s, uint8_t b);
  std::shared_ptr<const MaskCache::Local> local(const std::vector<uint32_t>& nodes);
  // A walk that follows a reference state alongside (derived_local): where the two states agree
  // below a trie node, the reference's walk of that subtree is copied instead of walked.
  struct Reference {
    int32_t state;         // the reference's state at the walk's root
    const TrieWalk* walk;  // its walk of the whole trie
  };
  std::shared_ptr<const MaskCache::Local> derived_local(int32_t s);
  bool same_walk(int32_t a, int32_t b, uint32_t depth);
  std::unordered_map<uint64_t, bool> same_memo_;  // same_walk by (a, b)
  size_t derived_groups_ = 0;
  // Walks below trie node `root`, or only the subtree of its child `child` when nonzero.
  void walk_trie(int32_t s, uint32_t root, TrieWalk& out, const Reference* ref = nullptr, uint32_t child = 0);
  void copy_walk(const TrieWalk& walk, uint32_t node, TrieWalk& out) const;
  std::shared_ptr<const TrieWalk> subtree_walk(int32_t s, uint32_t node);
  uint64_t own_frame_shape(int32_t state);
  void mask_of(int32_t s, std::vector<uint64_t>& mask);
  void walk_tail(int32_t s, const ExitTail& tail, std::vector<uint64_t>& mask);

  std::shared_ptr<const Grammar> g_;
  std::shared_ptr<MaskCache> cache_;
  int32_t cur_ = 0;
  int32_t start_ = 0;
  uint32_t exit_frame_ = 0;
  std::vector<uint32_t> frame_ret_, frame_parent_, frame_depth_;  // frame 0: the bottom
  std::unordered_map<uint64_t, uint32_t> frame_ids_;
  std::vector<uint64_t> entered_;  // (node, frame) pairs entered during one step
  std::vector<std::pair<uint32_t, uint32_t>> work_;
  std::vector<State> states_;
  std::vector<std::array<int32_t, 256>> trans_;
  std::unordered_map<std::string, int32_t> state_ids_;
  std::unordered_map<int32_t, std::vector<uint64_t>> mask_cache_;
  std::vector<int32_t> walk_stack_;
  // Loop regions (loop_region.h) found during local walks. States are taken up to a shift
  // along the copies of a bounded repetition (Grammar::Chain): per state its class (the
  // shifted-to-the-front configurations, -1 until computed) and its budget (how many copies
  // lie beyond its furthest one); per class its region (kNoRegion while none is found) and
  // its number inside the region.
  static constexpr int32_t kNoRegion = -1;
  static constexpr uint32_t kNoLimit = 0xFFFFFFFFu;
  std::vector<int32_t> class_of_;
  std::vector<uint32_t> budget_;
  std::vector<uint8_t> region_tried_;  // per state: find_region ran from it
  // Per state, once computed (the *_tried_ flags): its single_frame_shape, and the number of
  // that shape when all its configurations are in the exit frame (0 when none).
  std::vector<std::string> frame_shape_;
  std::vector<uint8_t> shape_tried_;
  std::vector<uint64_t> own_shape_;
  std::vector<uint8_t> id_tried_;
  std::unordered_map<std::string, int32_t> class_ids_;
  std::vector<int32_t> region_of_;
  std::vector<uint8_t> region_slot_;
  std::vector<std::shared_ptr<const std::vector<uint32_t>>> region_purity_;
  int32_t class_of(int32_t state);
  std::vector<uint64_t> shifted_configs(int32_t state, uint32_t& budget) const;
  std::string class_key(int32_t state, uint32_t& budget, bool& shared) const;
  void find_region(int32_t state);
  const std::string& single_frame_shape(int32_t state);
  bool shared_region(int32_t state);
  // The subtree below trie node `node`, reached in `state`, stays in the state's loop region.
  bool pure_subtree(int32_t state, uint32_t node);
};

}  // namespace owl::grammar
