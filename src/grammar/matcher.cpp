#include "grammar/matcher.h"

#include <algorithm>
#include <cstring>

#include "grammar/loop_region.h"

namespace owl::grammar {

namespace {
constexpr uint32_t kMaxStackDepth = 100000;
constexpr uint32_t kExitRet = 0xFFFFFFFFu;  // return node of the exit frame
constexpr size_t kMaxStates = 200000;       // beyond this the tables start over
constexpr size_t kMaskCacheEntries = 256;
// A byte moves a state at most one copy along a chain, and the last copy is wired apart: states
// that differ by a shift agree on the next byte while both have this many copies to spare.
constexpr uint32_t kMinBudget = 3;

uint64_t pack(uint32_t node, uint32_t frame) { return (uint64_t{node} << 32) | frame; }
uint32_t node_of(uint64_t c) { return static_cast<uint32_t>(c >> 32); }
uint32_t frame_of(uint64_t c) { return static_cast<uint32_t>(c); }

std::string key_of(const std::vector<uint64_t>& configs, bool accept, bool exit) {
  std::string k(reinterpret_cast<const char*>(configs.data()), configs.size() * 8);
  k.push_back(static_cast<char>((accept ? 1 : 0) | (exit ? 2 : 0)));
  return k;
}

// Groups whose reachable network is small (a string, a number, a pattern) behave the same in
// every grammar that contains them: their walks are shared process-wide, keyed by the shape of
// that network and the vocabulary.
class SharedLocals {
 public:
  static SharedLocals& get() {
    static SharedLocals s;
    return s;
  }
  std::shared_ptr<const MaskCache::Local> find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }
  void put(const std::string& key, std::shared_ptr<const MaskCache::Local> v) {
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kEntries) map_.clear();
    map_.emplace(key, std::move(v));
  }

 private:
  static constexpr size_t kEntries = 1024;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const MaskCache::Local>> map_;
};

constexpr size_t kMaxShapeNodes = 400;
// A loop region's members are keyed by shape up to this size (a JSON string's character loop,
// with its UTF-8 sequences and escapes, reaches a few hundred nodes).
constexpr size_t kMaxRegionShapeNodes = 1024;

// The network reachable from `nodes` (rule ends included, callers excluded) in a canonical
// numbering; empty when it is larger than kMaxShapeNodes.
std::string shape_of(const Grammar& g, const std::vector<uint32_t>& nodes, const TokenTrie* trie,
                     size_t max_nodes = kMaxShapeNodes) {
  std::unordered_map<uint32_t, uint32_t> num;
  std::vector<uint32_t> order;
  auto id = [&](uint32_t n) -> uint32_t {
    auto it = num.find(n);
    if (it != num.end()) return it->second;
    uint32_t k = static_cast<uint32_t>(order.size());
    num.emplace(n, k);
    order.push_back(n);
    return k;
  };
  const uint64_t serial = trie->serial();
  std::string out(reinterpret_cast<const char*>(&serial), sizeof(serial));
  auto put32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  for (uint32_t n : nodes) put32(id(n));
  for (size_t i = 0; i < order.size(); ++i) {
    if (order.size() > max_nodes) return {};
    const Grammar::Node& nd = g.nodes[order[i]];
    put32(0xF0000000u | (nd.final ? 1 : 0));
    for (const Grammar::Edge& e : nd.edges) {
      out.append(reinterpret_cast<const char*>(e.bytes.w.data()), 32);
      put32(id(e.to));
    }
    put32(0xE0000000u);
    for (uint32_t x : nd.eps) put32(id(x));
    if (nd.call != Grammar::Node::kNoCall) {
      put32(0xD0000000u);
      put32(id(g.rule_start[nd.call]));
      put32(id(nd.ret));
    }
  }
  return out;
}

// Loop regions by the shape of a member state's network (shape_of of its nodes, one frame):
// a region is explored once per process for each loop shape, not once per copy of the loop
// in a grammar (every property's own string rule, every key position of an object).
class SharedRegions {
 public:
  static SharedRegions& get() {
    static SharedRegions s;
    return s;
  }
  bool find(const std::string& shape, MaskCache::RegionMember& out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(shape);
    if (it == map_.end()) return false;
    out = it->second;
    return true;
  }
  void put(const std::string& shape, MaskCache::RegionMember m) {
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kEntries) map_.clear();
    map_.emplace(shape, std::move(m));
  }

 private:
  static constexpr size_t kEntries = 4096;
  std::mutex mu_;
  std::unordered_map<std::string, MaskCache::RegionMember> map_;
};

// Walks of one trie subtree by the shape of the state they start from (Matcher::subtree_walk).
// Shapes are numbered once (a shape is kilobytes; a walk looks subtrees up by the thousand);
// numbers are never reused, so a matcher holding the number of a forgotten shape only misses.
class SharedSubtrees {
 public:
  static SharedSubtrees& get() {
    static SharedSubtrees s;
    return s;
  }
  uint64_t shape_id(const std::string& shape) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = shapes_.emplace(shape, next_id_);
    if (fresh) ++next_id_;
    return it->second;
  }
  std::shared_ptr<const TrieWalk> find(uint64_t shape, uint32_t node) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = walks_.find(Key{shape, node});
    return it == walks_.end() ? nullptr : it->second;
  }
  void put(uint64_t shape, uint32_t node, std::shared_ptr<const TrieWalk> v) {
    std::lock_guard<std::mutex> lock(mu_);
    if (walks_.size() >= kEntries || shapes_.size() >= kShapes) {
      walks_.clear();
      shapes_.clear();
    }
    walks_.emplace(Key{shape, node}, std::move(v));
  }

 private:
  struct Key {
    uint64_t shape;
    uint32_t node;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.shape * 0x9E3779B97F4A7C15ull ^ k.node); }
  };
  // The full MaskBench run keeps 568 shapes (10 MB) and 5,004 walks (1.1 MB of ranges and ends).
  static constexpr size_t kEntries = 32768;
  static constexpr size_t kShapes = 1024;
  std::mutex mu_;
  uint64_t next_id_ = 1;  // 0: no shape
  std::unordered_map<std::string, uint64_t> shapes_;
  std::unordered_map<Key, std::shared_ptr<const TrieWalk>, KeyHash> walks_;
};

// A subtree walk is shared when at least this many tokens lie below its node: smaller ones are
// cheaper to walk than to remember (16 and 1024 measured slower on the 60 slowest MaskBench cases).
constexpr uint32_t kSharedSubtreeTokens = 256;

}  // namespace

std::shared_ptr<const MaskCache::Local> MaskCache::find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = locals_.find(key);
  return it == locals_.end() ? nullptr : it->second;
}

void MaskCache::put(const std::string& key, std::shared_ptr<const Local> v) {
  std::lock_guard<std::mutex> lock(mu_);
  locals_.emplace(key, std::move(v));
}

bool MaskCache::find_region(const std::string& key, RegionMember& out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(key);
  if (it == regions_.end()) return false;
  out = it->second;
  return true;
}

void MaskCache::put_region(const std::string& key, RegionMember m) {
  std::lock_guard<std::mutex> lock(mu_);
  regions_.emplace(key, std::move(m));
}

Matcher::Matcher(std::shared_ptr<const Grammar> g) : g_(std::move(g)) { reset(); }

Matcher::Matcher(std::shared_ptr<MaskCache> cache) : g_(cache->grammar), cache_(std::move(cache)) { reset(); }

void Matcher::drop_interned_states() {
  states_.clear();
  class_of_.clear();
  budget_.clear();
  region_tried_.clear();
  own_shape_.clear();
  id_tried_.clear();
  frame_shape_.clear();
  shape_tried_.clear();
  class_ids_.clear();
  region_of_.clear();
  region_slot_.clear();
  region_purity_.clear();
  trans_.clear();
  state_ids_.clear();
  mask_cache_.clear();
  same_memo_.clear();
}

void Matcher::reset() {
  frame_ret_.assign(1, 0);
  frame_parent_.assign(1, 0);
  frame_depth_.assign(1, 0);
  frame_ids_.clear();
  drop_interned_states();
  exit_frame_ = push_frame(kExitRet, 0);
  State s;
  entered_.clear();
  close(g_->rule_start[g_->root], 0, s);
  std::sort(s.configs.begin(), s.configs.end());
  s.configs.erase(std::unique(s.configs.begin(), s.configs.end()), s.configs.end());
  start_ = cur_ = intern(std::move(s));
}

uint32_t Matcher::push_frame(uint32_t ret, uint32_t parent) {
  uint64_t key = pack(ret, parent);
  auto it = frame_ids_.find(key);
  if (it != frame_ids_.end()) return it->second;
  if (frame_depth_[parent] >= kMaxStackDepth) throw CompileError("grammar nesting deeper than 100000");
  uint32_t id = static_cast<uint32_t>(frame_ret_.size());
  frame_ret_.push_back(ret);
  frame_parent_.push_back(parent);
  frame_depth_.push_back(frame_depth_[parent] + 1);
  frame_ids_.emplace(key, id);
  return id;
}

bool Matcher::entered(uint32_t node, uint32_t frame) {
  uint64_t k = pack(node, frame);
  for (uint64_t e : entered_)
    if (e == k) return true;
  entered_.push_back(k);
  return false;
}

// Adds every consuming configuration reachable from (node, frame) without input: through
// epsilon moves, rule calls (push) and rule ends (pop; the end of the root rule accepts, the
// end of a rule called under the exit frame marks the exit).
void Matcher::close(uint32_t node, uint32_t frame, State& out) {
  if (entered(node, frame)) return;
  work_.clear();
  work_.emplace_back(node, frame);
  while (!work_.empty()) {
    auto [n, f] = work_.back();
    work_.pop_back();
    const Grammar::Closure& c = g_->closure[n];
    for (uint32_t m : c.consuming) out.configs.push_back(pack(m, f));
    for (uint32_t cn : c.calls) {
      const Grammar::Node& call = g_->nodes[cn];
      // A call whose return only ends the calling rule (a tail call) runs in the caller's
      // frame: its end is the caller's. The rest of a free key, shared by every name prefix
      // of every object, then gives the same configurations whichever prefix called it.
      const Grammar::Closure& after = g_->closure[call.ret];
      const bool tail = after.final && after.consuming.empty() && after.calls.empty();
      uint32_t f2 = tail ? f : push_frame(call.ret, f);
      uint32_t s = g_->rule_start[call.call];
      if (!entered(s, f2)) work_.emplace_back(s, f2);
    }
    if (c.final) {
      if (f == 0) {
        out.accept = true;
      } else if (f == exit_frame_) {
        out.exit = true;
      } else if (!entered(frame_ret_[f], frame_parent_[f])) {
        work_.emplace_back(frame_ret_[f], frame_parent_[f]);
      }
    }
  }
}

int32_t Matcher::intern(State&& s) {
  if (s.configs.empty() && !s.accept && !s.exit) return kDead;
  std::string k = key_of(s.configs, s.accept, s.exit);
  auto it = state_ids_.find(k);
  if (it != state_ids_.end()) return it->second;
  int32_t id = static_cast<int32_t>(states_.size());
  states_.push_back(std::move(s));
  class_of_.push_back(-1);
  budget_.push_back(0);
  region_tried_.push_back(0);
  own_shape_.push_back(0);
  id_tried_.push_back(0);
  frame_shape_.emplace_back();
  shape_tried_.push_back(0);
  trans_.emplace_back();
  trans_.back().fill(kUnknown);
  state_ids_.emplace(std::move(k), id);
  return id;
}

int32_t Matcher::next(int32_t s, uint8_t b) {
  int32_t t = trans_[s][b];
  if (t != kUnknown) return t;
  State to;
  entered_.clear();
  // The bytes that take exactly the same edges as b lead to the same state: fill them all.
  std::array<uint64_t, 4> same{~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}};
  for (uint64_t cfg : states_[s].configs) {
    uint32_t n = node_of(cfg), f = frame_of(cfg);
    for (const Grammar::Edge& e : g_->nodes[n].edges) {
      const bool taken = e.bytes.has(b);
      for (int w = 0; w < 4; ++w) same[w] &= taken ? e.bytes.w[w] : ~e.bytes.w[w];
      if (taken) close(e.to, f, to);
    }
  }
  if (to.configs.size() > 1) {
    std::sort(to.configs.begin(), to.configs.end());
    to.configs.erase(std::unique(to.configs.begin(), to.configs.end()), to.configs.end());
  }
  t = intern(std::move(to));
  auto& row = trans_[static_cast<size_t>(s)];
  for (unsigned w = 0; w < 4; ++w)
    for (uint64_t bits = same[w]; bits; bits &= bits - 1)
      row[w * 64 + static_cast<unsigned>(__builtin_ctzll(bits))] = t;
  return t;
}

bool Matcher::allows(std::string_view bytes) {
  int32_t s = cur_;
  for (char c : bytes) {
    s = next(s, static_cast<uint8_t>(c));
    if (s == kDead) return false;
  }
  return true;
}

bool Matcher::advance(std::string_view bytes) {
  int32_t s = cur_;
  for (char c : bytes) {
    s = next(s, static_cast<uint8_t>(c));
    if (s == kDead) return false;
  }
  cur_ = s;
  return true;
}

// The ids at the trie positions in `ranges` as a bitset. A string or key position keeps most
// of the vocabulary (~120k of 128k ids, one scattered bit each): then it is cheaper to start
// from every id and clear the positions between the ranges.
static std::vector<uint64_t> inside_mask(const TokenTrie& trie, std::vector<std::pair<uint32_t, uint32_t>> ranges) {
  const auto& ids = trie.token_ids();
  auto set = [&](std::vector<uint64_t>& m, uint32_t begin, uint32_t end, bool on) {
    for (uint32_t k = begin; k < end; ++k) {
      auto id = static_cast<uint32_t>(ids[k]);
      if (on) {
        m[id >> 6] |= uint64_t{1} << (id & 63);
      } else {
        m[id >> 6] &= ~(uint64_t{1} << (id & 63));
      }
    }
  };
  size_t covered = 0;
  for (auto [begin, end] : ranges) covered += end - begin;
  if (covered * 2 <= ids.size()) {
    std::vector<uint64_t> m((trie.n_vocab() + 63) / 64, 0);
    for (auto [begin, end] : ranges) set(m, begin, end, true);
    return m;
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<uint64_t> m = trie.all_ids_mask();
  uint32_t pos = 0;  // trie positions below pos are covered or cleared
  for (auto [begin, end] : ranges) {
    if (begin > pos) set(m, pos, begin, false);
    pos = std::max(pos, end);
  }
  set(m, pos, static_cast<uint32_t>(ids.size()), false);
  return m;
}

// What the rule instance made of `nodes` (one frame) does with every token, from the cache
// or by one walk of the trie under the exit frame.
std::shared_ptr<const MaskCache::Local> Matcher::local(const std::vector<uint32_t>& nodes) {
  std::string key(reinterpret_cast<const char*>(nodes.data()), nodes.size() * 4);
  if (auto hit = cache_->find(key)) return hit;
  std::string shape = shape_of(*g_, nodes, cache_->trie.get());
  if (!shape.empty()) {
    if (auto hit = SharedLocals::get().find(shape)) {
      cache_->put(key, hit);
      return hit;
    }
  }
  const TokenTrie& trie = *cache_->trie;
  State s;
  for (uint32_t n : nodes) s.configs.push_back(pack(n, exit_frame_));
  const int32_t start = intern(std::move(s));
  std::shared_ptr<const MaskCache::Local> r = derived_local(start);
  if (!r) {
    auto out = std::make_shared<MaskCache::Local>();
    TrieWalk walk;
    walk_trie(start, 0, walk);
    out->inside = inside_mask(trie, std::move(walk.inside));
    out->tails.push_back(shared_exit_tail(trie, walk.ends));
    r = out;
  }
  cache_->put(key, r);
  if (!shape.empty()) SharedLocals::get().put(shape, r);
  return r;
}

// States a and b lead every token to the same outcome until their rule ends: the same state,
// or states that agree on the end of the rule and on what is left inside it, and go to such
// states on every byte, within kSameDepth bytes. A key's first byte that is not one of its
// names' is its own copy of the string's characters (a UTF-8 lead byte, an escape) until
// the character is complete, and then the same string loop as the plain string's.
bool Matcher::same_walk(int32_t a, int32_t b, uint32_t depth) {
  constexpr uint32_t kSameDepth = 6;  // \uXXXX, then the loop
  if (a == b) return true;
  if (a == kDead || b == kDead || depth >= kSameDepth) return false;
  {
    const State& x = states_[static_cast<size_t>(a)];
    const State& y = states_[static_cast<size_t>(b)];
    if (x.exit != y.exit || x.accept != y.accept || x.configs.empty() != y.configs.empty()) return false;
  }
  const uint64_t key = (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
  if (auto it = same_memo_.find(key); it != same_memo_.end()) return it->second;
  same_memo_[key] = false;  // met again on a cycle: counted as different (costs a walk, never a wrong mask)
  bool same = true;
  for (unsigned c = 0; c < 256 && same; ++c) {
    const int32_t ta = next(a, static_cast<uint8_t>(c)), tb = next(b, static_cast<uint8_t>(c));
    same = same_walk(ta, tb, depth + 1);
  }
  same_memo_[key] = same;
  return same;
}

namespace {
// A tail without the tokens whose bits are set in `cut` (ids as a bitset); nodes left empty
// stay (a walk reads them and sets nothing).
std::shared_ptr<const ExitTail> tail_without(const std::shared_ptr<const ExitTail>& tail,
                                             const std::vector<uint64_t>& cut) {
  auto is_cut = [&](int32_t id) { return (cut[static_cast<uint32_t>(id) >> 6] >> (id & 63)) & 1; };
  if (std::none_of(tail->ids.begin(), tail->ids.end(), is_cut)) return tail;
  auto out = std::make_shared<ExitTail>(*tail);
  out->ids.clear();
  for (ExitTail::Node& n : out->nodes) {
    const auto begin = static_cast<uint32_t>(out->ids.size());
    for (uint32_t k = n.ids_begin; k < n.ids_end; ++k)
      if (!is_cut(tail->ids[k])) out->ids.push_back(tail->ids[k]);
    n.ids_begin = begin;
    n.ids_end = static_cast<uint32_t>(out->ids.size());
  }
  return out;
}
}  // namespace

// A group whose state, after most first bytes, is where another state (the reference) goes
// after the same byte: a key inside an object with free keys is the plain string loop after
// every byte but its names' next characters. Its tokens are the reference's (one walk per
// process for the string loop, by shape) except below the first bytes where the two differ;
// only those subtrees are walked, and below them too whatever subtree the two states agree on
// is copied from the reference's walk. Null where no reference covers at least half of the
// vocabulary; the caller walks the whole trie.
std::shared_ptr<const MaskCache::Local> Matcher::derived_local(int32_t s) {
  const TokenTrie& trie = *cache_->trie;
  const auto& tn = trie.nodes();
  // The reference: the state most first bytes lead to (one whole frame under the exit frame).
  std::vector<std::pair<int32_t, uint32_t>> counts;
  for (uint32_t i = 1; i < tn[0].skip; i = tn[i].skip) {
    const int32_t t = next(s, tn[i].byte);
    if (t == kDead || t == s) continue;
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == t; });
    if (it == counts.end()) {
      counts.emplace_back(t, tn[i].subtree_end - tn[i].tokens_begin);
    } else {
      it->second += tn[i].subtree_end - tn[i].tokens_begin;
    }
  }
  if (counts.empty()) return nullptr;
  const auto best =
      std::max_element(counts.begin(), counts.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  if (best->second * 2 < trie.token_ids().size()) return nullptr;
  const State& rs = states_[static_cast<size_t>(best->first)];
  if (rs.configs.empty()) return nullptr;
  std::vector<uint32_t> ref_nodes;
  for (uint64_t c : rs.configs) {
    if (frame_of(c) != exit_frame_) return nullptr;
    ref_nodes.push_back(node_of(c));
  }
  State r0;
  r0.configs = rs.configs;
  const int32_t ref = intern(std::move(r0));  // as a walk starts: no end reached yet
  if (own_frame_shape(ref) == 0) return nullptr;
  // The diverging first bytes: a different state first (cheap), then, where those leave few
  // tokens, states that differ only until a character is complete.
  std::vector<uint32_t> diverging;
  size_t diverging_tokens = 0;
  for (uint32_t i = 1; i < tn[0].skip; i = tn[i].skip) {
    if (next(s, tn[i].byte) == next(ref, tn[i].byte)) continue;
    diverging.push_back(i);
    diverging_tokens += tn[i].subtree_end - tn[i].tokens_begin;
  }
  if (diverging_tokens * 2 > trie.token_ids().size()) return nullptr;
  std::erase_if(diverging, [&](uint32_t i) { return same_walk(next(s, tn[i].byte), next(ref, tn[i].byte), 0); });
  // The reference's walk, once per process for its shape, and its mask, once per grammar.
  std::shared_ptr<const TrieWalk> base_walk = subtree_walk(ref, 0);
  if (!base_walk) return nullptr;
  const std::string ref_key(reinterpret_cast<const char*>(ref_nodes.data()), ref_nodes.size() * 4);
  std::shared_ptr<const MaskCache::Local> base = cache_->find(ref_key);
  if (!base) {
    auto b = std::make_shared<MaskCache::Local>();
    b->inside = inside_mask(trie, base_walk->inside);
    b->tails.push_back(shared_exit_tail(trie, base_walk->ends));
    base = b;
    cache_->put(ref_key, base);
  }
  // The reference's mask less the diverging subtrees, plus their own walk.
  const auto& ids = trie.token_ids();
  auto out = std::make_shared<MaskCache::Local>();
  out->inside = base->inside;
  std::vector<uint64_t> cut(out->inside.size(), 0);
  TrieWalk walk;
  const Reference r{ref, base_walk.get()};
  for (uint32_t i : diverging) {
    for (uint32_t k = tn[i].tokens_begin; k < tn[i].subtree_end; ++k) {
      const auto id = static_cast<uint32_t>(ids[k]);
      out->inside[id >> 6] &= ~(uint64_t{1} << (id & 63));
      cut[id >> 6] |= uint64_t{1} << (id & 63);
    }
    // The walk of node i's subtree, node i included: from its parent, the root.
    walk_trie(s, 0, walk, &r, i);
  }
  for (auto [begin, end] : walk.inside)
    for (uint32_t k = begin; k < end; ++k) {
      const auto id = static_cast<uint32_t>(ids[k]);
      out->inside[id >> 6] |= uint64_t{1} << (id & 63);
    }
  for (const auto& t : base->tails) out->tails.push_back(tail_without(t, cut));
  if (!walk.ends.empty()) out->tails.push_back(shared_exit_tail(trie, walk.ends));
  ++derived_groups_;
  return out;
}

// Walks the trie below node `root` (the whole trie for node 0) from state `s`, the state
// after root's bytes, under the exit frame: a subtree is skipped where the state is dead,
// where only the exit path remains (the runtime continues it from the caller), and kept
// whole where the state stays in its loop region.
void Matcher::walk_trie(int32_t s, uint32_t root, TrieWalk& out, const Reference* ref, uint32_t child) {
  const TokenTrie& trie = *cache_->trie;
  const auto& tn = trie.nodes();
  std::vector<int32_t> stack(trie.max_depth() + 2);
  std::vector<int32_t> ref_stack(ref ? trie.max_depth() + 2 : 0);
  stack[tn[root].depth] = s;
  if (ref) ref_stack[tn[root].depth] = ref->state;
  const uint32_t first = child ? child : root + 1, last = child ? tn[child].skip : tn[root].skip;
  for (uint32_t i = first; i < last;) {
    const TokenTrie::Node& nd = tn[i];
    const int32_t parent = stack[nd.depth - 1];
    const int32_t t = next(parent, nd.byte);
    if (ref) {
      const int32_t rp = ref_stack[nd.depth - 1];
      const int32_t u = rp == kDead ? kDead : next(rp, nd.byte);
      // Different copies of one network are compared only below the root (kilobytes each to
      // build): deeper, the two walks have met again in the same state or not at all.
      if (u != kDead && (t == u || (nd.depth == 1 && same_walk(t, u, 0)))) {
        copy_walk(*ref->walk, i, out);
        i = nd.skip;
        continue;
      }
      ref_stack[nd.depth] = u;
    }
    if (t == kDead) {
      i = nd.skip;
      continue;
    }
    const auto ts = static_cast<size_t>(t);
    const bool exit = states_[ts].exit, inside = !states_[ts].configs.empty();
    if (exit) out.ends.push_back(i);
    if (!inside) {
      i = nd.skip;
      continue;
    }
    out.keep(nd.tokens_begin, nd.tokens_end);
    // A state that loops on this byte is in a loop region: keep every subtree that stays there.
    // (Once per state: one near the end of its copies finds none, and would retry at every node.)
    if (!exit && !region_tried_[ts] && region_of_[static_cast<size_t>(class_of(t))] == kNoRegion &&
        class_of(t) == class_of(parent)) {
      region_tried_[ts] = 1;
      if (!shared_region(t)) find_region(t);
    }
    if (!exit && pure_subtree(t, i)) {
      out.keep(nd.tokens_end, nd.subtree_end);
      i = nd.skip;
      continue;
    }
    // Subtrees that leave a loop region (a string's closing quote below them) are shared.
    if (nd.subtree_end - nd.tokens_end >= kSharedSubtreeTokens &&
        region_of_[static_cast<size_t>(class_of(t))] != kNoRegion) {
      if (auto sub = subtree_walk(t, i)) {
        for (auto [begin, end] : sub->inside) out.keep(begin, end);
        out.ends.insert(out.ends.end(), sub->ends.begin(), sub->ends.end());
        i = nd.skip;
        continue;
      }
    }
    stack[nd.depth] = t;
    ++i;
  }
}

// What `walk` (of the whole trie) holds for the subtree of trie node `node`, node included.
void Matcher::copy_walk(const TrieWalk& walk, uint32_t node, TrieWalk& out) const {
  const TokenTrie::Node& nd = cache_->trie->nodes()[node];
  const uint32_t begin = nd.tokens_begin, end = nd.subtree_end;
  auto it = std::upper_bound(walk.inside.begin(), walk.inside.end(), begin,
                             [](uint32_t b, const std::pair<uint32_t, uint32_t>& r) { return b < r.second; });
  for (; it != walk.inside.end() && it->first < end; ++it)
    out.keep(std::max(it->first, begin), std::min(it->second, end));
  auto e = std::lower_bound(walk.ends.begin(), walk.ends.end(), node);
  for (; e != walk.ends.end() && *e < nd.skip; ++e) out.ends.push_back(*e);
}

// The walk below trie node `node` from `state`, shared process-wide by the shape of the
// state's network: what the tokens below do until the rule ends depends on that network
// alone. Every key position of an object with free keys leaves its listed names after a byte
// or two for the same string loop; its subtrees are walked once per process, not once per
// object. Null for a state whose network is not small or not all in the exit frame.
std::shared_ptr<const TrieWalk> Matcher::subtree_walk(int32_t state, uint32_t node) {
  const uint64_t shape = own_frame_shape(state);
  if (shape == 0) return nullptr;
  if (auto hit = SharedSubtrees::get().find(shape, node)) return hit;
  auto out = std::make_shared<TrieWalk>();
  walk_trie(state, node, *out);
  SharedSubtrees::get().put(shape, node, out);
  return out;
}

// The number of the shape of the network of a state whose configurations are all in the exit
// frame (the rule instance of a local walk), when small; else 0. Once per state.
uint64_t Matcher::own_frame_shape(int32_t state) {
  const auto s = static_cast<size_t>(state);
  if (!id_tried_[s]) {
    id_tried_[s] = 1;
    const auto& configs = states_[s].configs;
    if (!configs.empty() && frame_of(configs[0]) == exit_frame_) {
      const std::string& shape = single_frame_shape(state);
      if (!shape.empty()) own_shape_[s] = SharedSubtrees::get().shape_id(shape);
    }
  }
  return own_shape_[s];
}

// The loop region of `state`: the states reachable from it that lead back to it, numbered in
// breadth-first order so that one loop shape gives one table whatever the grammar. The search
// stays cheap in large grammars: it never leaves the rule instances `state` is in (a
// transition that returns from them or calls another rule leaves the region), never passes
// an exit of the local walk, and stops at kExploreDepth bytes (a JSON string's longest loop,
// \u00XX, is 6) and RegionTable::kMaxStates states.
void Matcher::find_region(int32_t state) {
  constexpr uint32_t kExploreDepth = 6;
  class_of(state);
  std::vector<uint32_t> frames;
  for (uint64_t c : states_[static_cast<size_t>(state)].configs) frames.push_back(frame_of(c));
  std::sort(frames.begin(), frames.end());
  frames.erase(std::unique(frames.begin(), frames.end()), frames.end());
  auto same_frames = [&](int32_t u) {
    for (uint64_t c : states_[static_cast<size_t>(u)].configs)
      if (!std::binary_search(frames.begin(), frames.end(), frame_of(c))) return false;
    return true;
  };
  // Members' transitions stand for those of every state of their class: only where the
  // members are far enough from the end of their copies.
  auto far_from_end = [&](int32_t u) { return budget_[static_cast<size_t>(u)] >= kMinBudget + kExploreDepth; };
  if (!far_from_end(state)) return;
  std::vector<int32_t> seen{state};
  std::vector<uint32_t> depth{0};
  std::unordered_map<int32_t, uint32_t> index{{class_of(state), 0}};
  std::vector<std::array<int32_t, 256>> succ;  // per seen state, -1 where the byte leaves
  for (size_t k = 0; k < seen.size(); ++k) {
    succ.emplace_back();
    succ[k].fill(-1);
    if (depth[k] >= kExploreDepth) continue;
    int32_t prev_u = kUnknown;  // runs of bytes lead to one state: look each up once
    for (unsigned b = 0; b < 256; ++b) {
      int32_t u = next(seen[k], static_cast<uint8_t>(b));
      if (u == prev_u && b > 0) {
        succ[k][b] = succ[k][b - 1];
        continue;
      }
      prev_u = u;
      if (u == kDead || states_[static_cast<size_t>(u)].exit || states_[static_cast<size_t>(u)].configs.empty())
        continue;
      auto it = index.find(class_of(u));
      if (it == index.end()) {
        if (seen.size() >= RegionTable::kMaxStates || !same_frames(u) || !far_from_end(u)) continue;
        it = index.emplace(class_of(u), static_cast<uint32_t>(seen.size())).first;
        seen.push_back(u);
        depth.push_back(depth[k] + 1);
      }
      succ[k][b] = static_cast<int32_t>(it->second);
    }
  }
  // Keep the states that lead back to `state` (backwards from it).
  std::vector<uint8_t> back(seen.size(), 0);
  back[0] = 1;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t k = 0; k < seen.size(); ++k) {
      if (back[k]) continue;
      for (int32_t to : succ[k]) {
        if (to >= 0 && back[static_cast<size_t>(to)]) {
          back[k] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  std::vector<int32_t> slot(seen.size(), -1);
  RegionTable table;
  // The whole loop, members with a region already included: a table missing some of the
  // loop would keep fewer subtrees whole, and is shared by shape with other grammars.
  for (size_t k = 0; k < seen.size(); ++k)
    if (back[k]) slot[k] = static_cast<int32_t>(table.size++);
  table.next.assign(size_t{table.size} * 256, RegionTable::kOut);
  for (size_t k = 0; k < seen.size(); ++k) {
    if (slot[k] < 0) continue;
    for (unsigned b = 0; b < 256; ++b) {
      int32_t to = succ[k][b];
      if (to >= 0 && slot[static_cast<size_t>(to)] >= 0)
        table.next[static_cast<size_t>(slot[k]) * 256 + b] = static_cast<uint8_t>(slot[static_cast<size_t>(to)]);
    }
  }
  const int32_t id = static_cast<int32_t>(region_purity_.size());
  region_purity_.push_back(region_purity(*cache_->trie, table));
  for (size_t k = 0; k < seen.size(); ++k) {
    if (slot[k] < 0) continue;
    const std::string& shape = single_frame_shape(seen[k]);
    if (!shape.empty()) SharedRegions::get().put(shape, {region_purity_.back(), static_cast<uint8_t>(slot[k])});
    if (region_of_[static_cast<size_t>(class_of(seen[k]))] != kNoRegion) continue;
    region_of_[static_cast<size_t>(class_of(seen[k]))] = id;
    region_slot_[static_cast<size_t>(class_of(seen[k]))] = static_cast<uint8_t>(slot[k]);
    uint32_t budget = 0;
    bool shared = false;
    std::string key = class_key(seen[k], budget, shared);
    if (shared) cache_->put_region(key, {region_purity_.back(), static_cast<uint8_t>(slot[k])});
  }
}

// The shape of the network a state inside one rule instance reaches (empty for a state over
// several frames, or a large network): until the rule returns, which leaves any loop region,
// the state behaves as any other with that shape. Once per state (kilobytes to build).
const std::string& Matcher::single_frame_shape(int32_t state) {
  const auto s = static_cast<size_t>(state);
  if (shape_tried_[s]) return frame_shape_[s];
  shape_tried_[s] = 1;
  const auto& configs = states_[s].configs;
  if (configs.empty()) return frame_shape_[s];
  std::vector<uint32_t> nodes;
  for (uint64_t c : configs) {
    if (frame_of(c) != frame_of(configs[0])) return frame_shape_[s];
    nodes.push_back(node_of(c));
  }
  frame_shape_[s] = shape_of(*g_, nodes, cache_->trie.get(), kMaxRegionShapeNodes);
  return frame_shape_[s];
}

// A region explored from a state of the same shape, here or in another grammar.
bool Matcher::shared_region(int32_t state) {
  const std::string& shape = single_frame_shape(state);
  MaskCache::RegionMember m;
  if (shape.empty() || !SharedRegions::get().find(shape, m)) return false;
  const auto c = static_cast<size_t>(class_of(state));
  region_of_[c] = static_cast<int32_t>(region_purity_.size());
  region_slot_[c] = m.slot;
  region_purity_.push_back(std::move(m.purity));
  return true;
}

// The configurations of `state` with every chain's copies shifted back to the front (the
// nearest copy in use becomes copy 0), sorted; `budget` gets the copies left beyond the
// furthest one in use (kNoLimit outside chains).
std::vector<uint64_t> Matcher::shifted_configs(int32_t state, uint32_t& budget) const {
  const auto& chains = g_->chains;
  std::vector<uint64_t> out = states_[static_cast<size_t>(state)].configs;
  budget = kNoLimit;
  if (chains.empty()) return out;
  auto chain_of = [&](uint32_t node) -> int64_t {
    auto it = std::upper_bound(chains.begin(), chains.end(), node,
                               [](uint32_t n, const Grammar::Chain& ch) { return n < ch.first; });
    if (it == chains.begin()) return -1;
    --it;
    return node - it->first < it->stride * it->count ? it - chains.begin() : -1;
  };
  struct Span {
    int64_t chain;
    uint32_t nearest, furthest;
  };
  std::vector<Span> spans;
  auto span_of = [&](int64_t ci) {
    return std::find_if(spans.begin(), spans.end(), [&](const Span& x) { return x.chain == ci; });
  };
  for (uint64_t cfg : out) {
    int64_t ci = chain_of(node_of(cfg));
    if (ci < 0) continue;
    const Grammar::Chain& ch = chains[static_cast<size_t>(ci)];
    uint32_t copy = (node_of(cfg) - ch.first) / ch.stride;
    auto it = span_of(ci);
    if (it == spans.end()) {
      spans.push_back({ci, copy, copy});
    } else {
      it->nearest = std::min(it->nearest, copy);
      it->furthest = std::max(it->furthest, copy);
    }
  }
  if (spans.empty()) return out;
  for (const Span& sp : spans) budget = std::min(budget, chains[static_cast<size_t>(sp.chain)].count - 1 - sp.furthest);
  for (uint64_t& cfg : out) {
    int64_t ci = chain_of(node_of(cfg));
    if (ci >= 0)
      cfg = pack(node_of(cfg) - span_of(ci)->nearest * chains[static_cast<size_t>(ci)].stride, frame_of(cfg));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The key of a state's class: its shifted configurations. A state inside one rule instance
// (one frame) is keyed by its nodes alone: until that rule returns, which leaves any loop
// region, it behaves the same whatever the stack below, so such keys are shared with the
// other matchers of the grammar (`shared`).
std::string Matcher::class_key(int32_t state, uint32_t& budget, bool& shared) const {
  std::vector<uint64_t> configs = shifted_configs(state, budget);
  const State& st = states_[static_cast<size_t>(state)];
  shared = !configs.empty();
  for (uint64_t cfg : configs) shared = shared && frame_of(cfg) == frame_of(configs[0]);
  if (!shared) return key_of(configs, st.accept, st.exit);
  std::string key;
  for (uint64_t cfg : configs) {
    uint32_t n = node_of(cfg);
    key.append(reinterpret_cast<const char*>(&n), 4);
  }
  key.push_back(static_cast<char>(4 | (st.accept ? 1 : 0) | (st.exit ? 2 : 0)));
  return key;
}

int32_t Matcher::class_of(int32_t state) {
  const auto s = static_cast<size_t>(state);
  if (class_of_[s] >= 0) return class_of_[s];
  uint32_t budget = kNoLimit;
  bool shared = false;
  std::string key = class_key(state, budget, shared);
  auto [it, fresh] = class_ids_.emplace(key, static_cast<int32_t>(class_ids_.size()));
  const int32_t c = it->second;
  class_of_[s] = c;
  budget_[s] = budget;
  if (region_of_.size() <= static_cast<size_t>(c)) {
    region_of_.resize(static_cast<size_t>(c) + 1, kNoRegion);
    region_slot_.resize(static_cast<size_t>(c) + 1, 0);
  }
  // A region another matcher of this grammar found.
  MaskCache::RegionMember m;
  if (fresh && shared && cache_ && cache_->find_region(key, m)) {
    region_of_[static_cast<size_t>(c)] = static_cast<int32_t>(region_purity_.size());
    region_slot_[static_cast<size_t>(c)] = m.slot;
    region_purity_.push_back(std::move(m.purity));
  }
  return c;
}

bool Matcher::pure_subtree(int32_t state, uint32_t node) {
  const auto c = static_cast<size_t>(class_of(state));
  const int32_t r = region_of_[c];
  if (r < 0 || !(((*region_purity_[static_cast<size_t>(r)])[node] >> region_slot_[c]) & 1)) return false;
  // Shifted states agree with the region's members while they have copies to spare.
  const uint32_t budget = budget_[static_cast<size_t>(state)];
  return budget == kNoLimit || budget >= cache_->trie->nodes()[node].height + kMinBudget;
}

void Matcher::mask_of(int32_t s, std::vector<uint64_t>& mask) {
  const State& st = states_[s];
  // Group the configurations by frame: one rule instance each.
  std::vector<uint64_t> configs = st.configs;
  std::sort(configs.begin(), configs.end(), [](uint64_t a, uint64_t b) {
    return frame_of(a) != frame_of(b) ? frame_of(a) < frame_of(b) : node_of(a) < node_of(b);
  });
  for (size_t i = 0; i < configs.size();) {
    uint32_t f = frame_of(configs[i]);
    std::vector<uint32_t> nodes;
    for (; i < configs.size() && frame_of(configs[i]) == f; ++i) nodes.push_back(node_of(configs[i]));
    std::shared_ptr<const MaskCache::Local> loc = local(nodes);
    for (size_t w = 0; w < mask.size(); ++w) mask[w] |= loc->inside[w];
    int32_t q = kUnknown;  // the caller's state after the rule ends, once needed
    for (const auto& tail : loc->tails) {
      if (tail->nodes.empty()) continue;
      // Where the rule ends, the caller's state continues.
      if (f == 0) {  // the root rule ended: the token must end there
        const ExitTail::Node& root = tail->nodes[0];
        for (uint32_t k = root.ids_begin; k < root.ids_end; ++k) {
          auto id = static_cast<uint32_t>(tail->ids[k]);
          mask[id >> 6] |= uint64_t{1} << (id & 63);
        }
        continue;
      }
      if (q == kUnknown) {
        State after;
        entered_.clear();
        close(frame_ret_[f], frame_parent_[f], after);
        std::sort(after.configs.begin(), after.configs.end());
        after.configs.erase(std::unique(after.configs.begin(), after.configs.end()), after.configs.end());
        q = intern(std::move(after));
      }
      if (q == kDead) break;
      walk_tail(q, *tail, mask);
    }
  }
}

// The tokens that run past a rule's end: the tail's bytes read in the caller's state s.
void Matcher::walk_tail(int32_t s, const ExitTail& tail, std::vector<uint64_t>& mask) {
  auto set_ids = [&](const ExitTail::Node& n) {
    for (uint32_t k = n.ids_begin; k < n.ids_end; ++k) {
      auto id = static_cast<uint32_t>(tail.ids[k]);
      mask[id >> 6] |= uint64_t{1} << (id & 63);
    }
  };
  set_ids(tail.nodes[0]);
  walk_stack_.resize(std::max(walk_stack_.size(), tail.max_depth + 1));
  walk_stack_[0] = s;
  for (uint32_t i = 1; i < tail.nodes.size();) {
    const ExitTail::Node& n = tail.nodes[i];
    int32_t t = next(walk_stack_[n.depth - 1], n.byte);
    if (t == kDead) {
      i = n.skip;
      continue;
    }
    walk_stack_[n.depth] = t;
    set_ids(n);
    ++i;
  }
}

void Matcher::fill_mask(const TokenTrie& trie, std::vector<uint64_t>& mask) {
  if (!cache_ || cache_->trie.get() != &trie) {
    // A private cache over a borrowed trie (the caller keeps it alive).
    cache_ = std::make_shared<MaskCache>(g_, std::shared_ptr<const TokenTrie>(&trie, [](const TokenTrie*) {}));
  }
  fill_mask(mask);
}

void Matcher::fill_mask(std::vector<uint64_t>& mask) {
  const TokenTrie& trie = *cache_->trie;
  size_t words = (trie.n_vocab() + 63) / 64;
  auto it = mask_cache_.find(cur_);
  if (it != mask_cache_.end()) {
    mask = it->second;
    return;
  }
  if (states_.size() > kMaxStates) {
    // Keep the frames (the current state refers to them), drop the interned states.
    State keep = states_[cur_];
    drop_interned_states();
    cur_ = intern(std::move(keep));
  }
  mask.assign(words, 0);
  mask_of(cur_, mask);
  if (states_[cur_].accept)
    for (int32_t id : trie.eos()) mask[static_cast<uint32_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  if (mask_cache_.size() >= kMaskCacheEntries) mask_cache_.clear();
  mask_cache_.emplace(cur_, mask);
}

}  // namespace owl::grammar
