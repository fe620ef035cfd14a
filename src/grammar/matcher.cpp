#include "grammar/matcher.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace owl::grammar {

namespace {
constexpr uint32_t kMaxStackDepth = 100000;
constexpr uint32_t kExitRet = 0xFFFFFFFFu;  // return node of the exit frame
constexpr size_t kMaxStates = 200000;       // beyond this the tables start over
constexpr size_t kMaskCacheEntries = 256;

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

// For a byte class: per trie node, 1 when every byte below it is in the class (so a state that
// loops on the class keeps every token of the subtree). Shared per (trie, class).
std::shared_ptr<const std::vector<uint8_t>> pure_below_class(const TokenTrie& trie, const ByteSet& c) {
  static std::mutex mu;
  static std::map<std::pair<const TokenTrie*, std::array<uint64_t, 4>>, std::shared_ptr<const std::vector<uint8_t>>>
      cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(&trie, c.w);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const auto& nodes = trie.nodes();
  auto out = std::make_shared<std::vector<uint8_t>>(nodes.size(), 1);
  for (size_t i = nodes.size(); i-- > 0;) {
    uint8_t pure = 1;
    for (uint32_t j = static_cast<uint32_t>(i) + 1; j < nodes[i].skip && pure; j = nodes[j].skip)
      pure = c.has(nodes[j].byte) && (*out)[j];
    (*out)[i] = pure;
  }
  if (cache.size() > 64) cache.clear();
  cache.emplace(key, out);
  return out;
}

// The network reachable from `nodes` (rule ends included, callers excluded) in a canonical
// numbering; empty when it is larger than kMaxShapeNodes.
std::string shape_of(const Grammar& g, const std::vector<uint32_t>& nodes, const TokenTrie* trie) {
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
  std::string out(reinterpret_cast<const char*>(&trie), sizeof(trie));
  auto put32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  for (uint32_t n : nodes) put32(id(n));
  for (size_t i = 0; i < order.size(); ++i) {
    if (order.size() > kMaxShapeNodes) return {};
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

Matcher::Matcher(std::shared_ptr<const Grammar> g) : g_(std::move(g)) { reset(); }

Matcher::Matcher(std::shared_ptr<MaskCache> cache) : g_(cache->grammar), cache_(std::move(cache)) { reset(); }

void Matcher::reset() {
  frame_ret_.assign(1, 0);
  frame_parent_.assign(1, 0);
  frame_depth_.assign(1, 0);
  frame_ids_.clear();
  states_.clear();
  loop_.clear();
  trans_.clear();
  state_ids_.clear();
  mask_cache_.clear();
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
      uint32_t f2 = push_frame(call.ret, f);
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
  loop_.push_back(-1);
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
  for (uint64_t cfg : states_[s].configs) {
    uint32_t n = node_of(cfg), f = frame_of(cfg);
    for (const Grammar::Edge& e : g_->nodes[n].edges)
      if (e.bytes.has(b)) close(e.to, f, to);
  }
  if (to.configs.size() > 1) {
    std::sort(to.configs.begin(), to.configs.end());
    to.configs.erase(std::unique(to.configs.begin(), to.configs.end()), to.configs.end());
  }
  t = intern(std::move(to));
  trans_[s][b] = t;
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

void Matcher::set_tokens(uint32_t trie_node, std::vector<uint64_t>& mask) const {
  const TokenTrie& trie = *cache_->trie;
  const TokenTrie::Node& nd = trie.nodes()[trie_node];
  const auto& ids = trie.token_ids();
  for (uint32_t t = nd.tokens_begin; t < nd.tokens_end; ++t) {
    uint32_t id = static_cast<uint32_t>(ids[t]);
    mask[id >> 6] |= uint64_t{1} << (id & 63);
  }
}

// The tokens below trie node `node` (whose bytes are consumed already) from state s.
void Matcher::walk_subtree(int32_t s, uint32_t node, std::vector<uint64_t>& mask) {
  const auto& nodes = cache_->trie->nodes();
  uint32_t end = nodes[node].skip;
  uint32_t base = nodes[node].depth;
  walk_stack_.resize(cache_->trie->max_depth() + 2);
  walk_stack_[base] = s;
  for (uint32_t i = node + 1; i < end;) {
    const TokenTrie::Node& nd = nodes[i];
    int32_t t = next(walk_stack_[nd.depth - 1], nd.byte);
    if (t == kDead) {
      i = nd.skip;
      continue;
    }
    walk_stack_[nd.depth] = t;
    set_tokens(i, mask);
    ++i;
  }
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
  auto out = std::make_shared<MaskCache::Local>();
  const TokenTrie& trie = *cache_->trie;
  out->inside.assign((trie.n_vocab() + 63) / 64, 0);
  State s;
  for (uint32_t n : nodes) s.configs.push_back(pack(n, exit_frame_));
  int32_t s0 = intern(std::move(s));
  const auto& tn = trie.nodes();
  std::vector<int32_t> stack(trie.max_depth() + 2);
  stack[0] = s0;
  for (uint32_t i = 1; i < tn.size();) {
    const TokenTrie::Node& nd = tn[i];
    int32_t t = stack[nd.depth - 1] == kDead ? kDead : next(stack[nd.depth - 1], nd.byte);
    if (t == kDead) {
      i = nd.skip;
      continue;
    }
    const bool exit = states_[t].exit, inside = !states_[t].configs.empty();
    if (exit) out->exits.push_back(i);
    if (inside) {
      set_tokens(i, out->inside);
      // A state that loops on this byte keeps every token below whose bytes all loop too.
      if (!exit && t == stack[nd.depth - 1] && pure_below(t)[i]) {
        const auto& ids = trie.token_ids();
        for (uint32_t k = nd.tokens_begin; k < nd.subtree_end; ++k) {
          uint32_t id = static_cast<uint32_t>(ids[k]);
          out->inside[id >> 6] |= uint64_t{1} << (id & 63);
        }
        i = nd.skip;
        continue;
      }
      stack[nd.depth] = t;
      ++i;
    } else {
      i = nd.skip;  // only the exit path remains: the runtime continues it from the caller
    }
  }
  std::shared_ptr<const MaskCache::Local> r = out;
  cache_->put(key, r);
  if (!shape.empty()) SharedLocals::get().put(shape, r);
  return r;
}

const std::vector<uint8_t>& Matcher::pure_below(int32_t state) {
  if (loop_[state] < 0) {
    ByteSet c;
    for (unsigned b = 0; b < 256; ++b)
      if (next(state, static_cast<uint8_t>(b)) == state) c.add(static_cast<uint8_t>(b));
    loop_sets_.push_back(pure_below_class(*cache_->trie, c));
    loop_[state] = static_cast<int32_t>(loop_sets_.size() - 1);
  }
  return *loop_sets_[static_cast<size_t>(loop_[state])];
}

void Matcher::mask_of(int32_t s, std::vector<uint64_t>& mask, int depth) {
  const State& st = states_[s];
  if (depth > 64) {  // deep chains of rule ends: walk the trie directly
    walk_subtree(s, 0, mask);
    return;
  }
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
    if (loc->exits.empty()) continue;
    // Where the rule ends, the caller's state continues.
    if (f == 0) {  // the root rule ended: the token must end there
      for (uint32_t e : loc->exits) set_tokens(e, mask);
      continue;
    }
    State after;
    entered_.clear();
    close(frame_ret_[f], frame_parent_[f], after);
    std::sort(after.configs.begin(), after.configs.end());
    after.configs.erase(std::unique(after.configs.begin(), after.configs.end()), after.configs.end());
    int32_t q = intern(std::move(after));
    if (q == kDead) continue;
    for (uint32_t e : loc->exits) {
      if (e == 0) {
        mask_of(q, mask, depth + 1);
        continue;
      }
      set_tokens(e, mask);
      walk_subtree(q, e, mask);
    }
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
    states_.clear();
    loop_.clear();
    trans_.clear();
    state_ids_.clear();
    mask_cache_.clear();
    cur_ = intern(std::move(keep));
  }
  mask.assign(words, 0);
  mask_of(cur_, mask, 0);
  if (states_[cur_].accept)
    for (int32_t id : trie.eos()) mask[static_cast<uint32_t>(id) >> 6] |= uint64_t{1} << (id & 63);
  if (mask_cache_.size() >= kMaskCacheEntries) mask_cache_.clear();
  mask_cache_.emplace(cur_, mask);
}

}  // namespace owl::grammar
