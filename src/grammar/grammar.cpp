#include "grammar/grammar.h"

#include <functional>

namespace owl::grammar {

namespace {
ExprPool::Expr make(ExprPool::Kind k) {
  ExprPool::Expr e;
  e.kind = k;
  return e;
}
}  // namespace

ExprPool::ExprPool() {
  exprs_.push_back(make(Kind::Nothing));
  exprs_.push_back(make(Kind::Empty));
}

ExprId ExprPool::push(Expr e) {
  exprs_.push_back(std::move(e));
  return static_cast<ExprId>(exprs_.size() - 1);
}

ExprId ExprPool::bytes(const ByteSet& s) {
  if (s.empty()) return nothing();
  Expr e = make(Kind::Bytes);
  e.bytes = s;
  return push(std::move(e));
}

ExprId ExprPool::literal(std::string_view s) {
  std::vector<ExprId> kids;
  for (char c : s) kids.push_back(byte(static_cast<uint8_t>(c)));
  return seq(std::move(kids));
}

ExprId ExprPool::seq(std::vector<ExprId> kids) {
  std::vector<ExprId> flat;
  for (ExprId k : kids) {
    const Expr& e = exprs_[k];
    if (e.kind == Kind::Nothing) return nothing();
    if (e.kind == Kind::Empty) continue;
    if (e.kind == Kind::Seq) {
      flat.insert(flat.end(), e.kids.begin(), e.kids.end());
    } else {
      flat.push_back(k);
    }
  }
  if (flat.empty()) return empty();
  if (flat.size() == 1) return flat[0];
  Expr e = make(Kind::Seq);
  e.kids = std::move(flat);
  return push(std::move(e));
}

ExprId ExprPool::alt(std::vector<ExprId> kids) {
  std::vector<ExprId> live;
  for (ExprId k : kids) {
    if (exprs_[k].kind == Kind::Nothing) continue;
    if (exprs_[k].kind == Kind::Alt) {
      live.insert(live.end(), exprs_[k].kids.begin(), exprs_[k].kids.end());
    } else {
      live.push_back(k);
    }
  }
  if (live.empty()) return nothing();
  if (live.size() == 1) return live[0];
  Expr e = make(Kind::Alt);
  e.kids = std::move(live);
  return push(std::move(e));
}

ExprId ExprPool::repeat(ExprId e, uint32_t min, uint32_t max) {
  if (max != kUnbounded && max < min) return nothing();
  if (max == 0) return empty();
  if (exprs_[e].kind == Kind::Nothing) return min == 0 ? empty() : nothing();
  if (exprs_[e].kind == Kind::Empty) return empty();
  if (min == 1 && max == 1) return e;
  Expr r = make(Kind::Repeat);
  r.kids = {e};
  r.min = min;
  r.max = max;
  return push(std::move(r));
}

ExprId ExprPool::ref(RuleId r) {
  Expr e = make(Kind::Ref);
  e.rule = r;
  return push(std::move(e));
}

RuleId ExprPool::add_rule(std::string name) {
  Rule r;
  r.name = std::move(name);
  rules_.push_back(std::move(r));
  return static_cast<RuleId>(rules_.size() - 1);
}

void ExprPool::set_rule(RuleId r, ExprId body) { rules_[r].body = body; }

namespace {

constexpr size_t kMaxNodes = size_t{1} << 22;

class Lowering {
 public:
  Lowering(const ExprPool& pool, Grammar& g) : pool_(pool), g_(g) {}

  uint32_t node() {
    if (g_.nodes.size() >= kMaxNodes)
      throw CompileError("grammar too large (more than " + std::to_string(kMaxNodes) +
                         " states): lower the repetition counts or lengths");
    g_.nodes.emplace_back();
    return static_cast<uint32_t>(g_.nodes.size() - 1);
  }
  void eps(uint32_t a, uint32_t b) { g_.nodes[a].eps.push_back(b); }

  // Lowers `e` between fresh nodes; returns {start, end}.
  std::pair<uint32_t, uint32_t> lower(ExprId id) {
    const ExprPool::Expr& e = pool_.get(id);
    uint32_t s = node();
    switch (e.kind) {
      case ExprPool::Kind::Nothing:
        return {s, node()};  // no path from s to the end
      case ExprPool::Kind::Empty:
        return {s, s};
      case ExprPool::Kind::Bytes: {
        uint32_t t = node();
        g_.nodes[s].edges.push_back({e.bytes, t});
        return {s, t};
      }
      case ExprPool::Kind::Seq: {
        uint32_t cur = s;
        for (ExprId k : e.kids) {
          auto [a, b] = lower(k);
          eps(cur, a);
          cur = b;
        }
        return {s, cur};
      }
      case ExprPool::Kind::Alt: {
        uint32_t t = node();
        for (ExprId k : e.kids) {
          auto [a, b] = lower(k);
          eps(s, a);
          eps(b, t);
        }
        return {s, t};
      }
      case ExprPool::Kind::Ref: {
        uint32_t t = node();
        g_.nodes[s].call = e.rule;
        g_.nodes[s].ret = t;
        return {s, t};
      }
      case ExprPool::Kind::Repeat: {
        ExprId k = e.kids[0];
        uint32_t cur = s;
        const auto first_required = static_cast<uint32_t>(g_.nodes.size());
        for (uint32_t i = 0; i < e.min; ++i) {
          auto [a, b] = lower(k);
          eps(cur, a);
          cur = b;
        }
        add_chain(first_required, e.min);
        if (e.max == kUnbounded) {
          // cur -> body -> back to loop; loop -> out
          uint32_t loop = node();
          eps(cur, loop);
          auto [a, b] = lower(k);
          eps(loop, a);
          eps(b, loop);
          return {s, loop};
        }
        // Nested optionals (x (x (x)?)?)? keep the network unambiguous.
        uint32_t end = node();
        eps(cur, end);
        const auto first = static_cast<uint32_t>(g_.nodes.size());
        for (uint32_t i = e.min; i < e.max; ++i) {
          auto [a, b] = lower(k);
          eps(cur, a);
          eps(b, end);
          cur = b;
        }
        add_chain(first, e.max - e.min);
        return {s, end};
      }
    }
    return {s, s};
  }

  // Records the copies just lowered from `first` on as a chain (long ones only: the matcher
  // gains nothing from short ones), replacing the chains nested in them.
  void add_chain(uint32_t first, uint32_t count) {
    constexpr uint32_t kMinChain = 8;
    const auto total = static_cast<uint32_t>(g_.nodes.size()) - first;
    if (count < kMinChain || total % count != 0) return;
    while (!g_.chains.empty() && g_.chains.back().first >= first) g_.chains.pop_back();
    g_.chains.push_back({first, total / count, count});
  }

 private:
  const ExprPool& pool_;
  Grammar& g_;
};

void compute_closures(Grammar& g) {
  g.closure.assign(g.nodes.size(), {});
  std::vector<uint32_t> mark(g.nodes.size(), UINT32_MAX);
  std::vector<uint32_t> todo;
  for (uint32_t n = 0; n < g.nodes.size(); ++n) {
    Grammar::Closure& c = g.closure[n];
    todo.assign(1, n);
    mark[n] = n;
    while (!todo.empty()) {
      uint32_t m = todo.back();
      todo.pop_back();
      const Grammar::Node& nd = g.nodes[m];
      if (!nd.edges.empty()) c.consuming.push_back(m);
      if (nd.call != Grammar::Node::kNoCall) c.calls.push_back(m);
      if (nd.final) c.final = true;
      for (uint32_t x : nd.eps) {
        if (mark[x] != n) {
          mark[x] = n;
          todo.push_back(x);
        }
      }
    }
  }
}

// Left recursion would make the matcher push frames forever; reject it with the rule's name.
void check_left_recursion(const Grammar& g) {
  size_t nr = g.rule_start.size();
  std::vector<char> nullable(nr, 0);
  // A rule is nullable when its end is reachable through eps and calls of nullable rules.
  auto left_reach = [&](RuleId r, const std::function<void(RuleId)>& on_call) {
    std::vector<uint32_t> todo{g.rule_start[r]};
    std::vector<uint32_t> visited;
    bool fin = false;
    while (!todo.empty()) {
      uint32_t n = todo.back();
      todo.pop_back();
      bool dup = false;
      for (uint32_t v : visited) dup = dup || v == n;
      if (dup) continue;
      visited.push_back(n);
      for (uint32_t c : g.closure[n].calls) {
        RuleId callee = g.nodes[c].call;
        on_call(callee);
        if (nullable[callee]) todo.push_back(g.nodes[c].ret);
      }
      if (g.closure[n].final) fin = true;
    }
    return fin;
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (RuleId r = 0; r < nr; ++r) {
      if (!nullable[r] && left_reach(r, [](RuleId) {})) {
        nullable[r] = 1;
        changed = true;
      }
    }
  }
  std::vector<std::vector<RuleId>> left(nr);
  for (RuleId r = 0; r < nr; ++r) left_reach(r, [&](RuleId c) { left[r].push_back(c); });
  std::vector<uint8_t> state(nr, 0);  // 0 new, 1 on stack, 2 done
  std::function<void(RuleId)> dfs = [&](RuleId r) {
    state[r] = 1;
    for (RuleId c : left[r]) {
      if (state[c] == 1) throw CompileError("left recursion through rule '" + g.rule_names[c] + "'");
      if (state[c] == 0) dfs(c);
    }
    state[r] = 2;
  };
  for (RuleId r = 0; r < nr; ++r)
    if (state[r] == 0) dfs(r);
}

}  // namespace

std::shared_ptr<const Grammar> compile(const ExprPool& pool, RuleId root) {
  auto g = std::make_shared<Grammar>();
  Lowering low(pool, *g);
  g->rule_start.resize(pool.n_rules());
  for (RuleId r = 0; r < pool.n_rules(); ++r) {
    g->rule_names.push_back(pool.rule_name(r));
    if (pool.rule_body(r) == std::numeric_limits<ExprId>::max())
      throw CompileError("rule '" + pool.rule_name(r) + "' is used but never defined");
  }
  for (RuleId r = 0; r < pool.n_rules(); ++r) {
    auto [s, e] = low.lower(pool.rule_body(r));
    g->nodes[e].final = true;
    g->rule_start[r] = s;
  }
  g->root = root;
  compute_closures(*g);
  check_left_recursion(*g);
  return g;
}

}  // namespace owl::grammar
