#include "grammar/number_range.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace owl::grammar {

namespace {

constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
constexpr double kLimit = 1e18;  // beyond this a bound is treated as no bound

enum class Frac { Any, Zero, NonZero };
struct Piece {
  int64_t lo, hi;  // integer part range, inclusive; hi may be kInf
  Frac frac;
};

ExprId digit_range(ExprPool& pool, char a, char b) {
  return pool.bytes(ByteSet::range(static_cast<uint8_t>(a), static_cast<uint8_t>(b)));
}

// Numbers of the same digit count between x and y (as strings, x <= y).
ExprId same_len(ExprPool& pool, const std::string& x, const std::string& y) {
  if (x.empty()) return pool.empty();
  size_t n = x.size() - 1;
  std::string xr = x.substr(1), yr = y.substr(1);
  if (x[0] == y[0]) return pool.seq({pool.byte(static_cast<uint8_t>(x[0])), same_len(pool, xr, yr)});
  if (xr == std::string(n, '0') && yr == std::string(n, '9'))
    return pool.seq({digit_range(pool, x[0], y[0]),
                     pool.repeat(digit_range(pool, '0', '9'), static_cast<uint32_t>(n), static_cast<uint32_t>(n))});
  std::vector<ExprId> alts;
  alts.push_back(pool.seq({pool.byte(static_cast<uint8_t>(x[0])), same_len(pool, xr, std::string(n, '9'))}));
  if (x[0] + 1 <= y[0] - 1)
    alts.push_back(
        pool.seq({digit_range(pool, static_cast<char>(x[0] + 1), static_cast<char>(y[0] - 1)),
                  pool.repeat(digit_range(pool, '0', '9'), static_cast<uint32_t>(n), static_cast<uint32_t>(n))}));
  alts.push_back(pool.seq({pool.byte(static_cast<uint8_t>(y[0])), same_len(pool, std::string(n, '0'), yr)}));
  return pool.alt(std::move(alts));
}

int64_t pow10(size_t n) {
  int64_t p = 1;
  for (size_t i = 0; i < n; ++i) p *= 10;
  return p;
}

// Non-negative integers lo..hi (hi may be kInf) in canonical decimal.
ExprId uint_range(ExprPool& pool, int64_t lo, int64_t hi) {
  if (hi != kInf && hi < lo) return pool.nothing();
  size_t llo = std::to_string(lo).size();
  std::vector<ExprId> alts;
  size_t lhi = hi == kInf ? llo : std::to_string(hi).size();
  for (size_t len = llo; len <= lhi; ++len) {
    int64_t a = std::max<int64_t>(lo, len == 1 ? 0 : pow10(len - 1));
    int64_t b = len >= 19 ? kInf : pow10(len) - 1;
    if (hi != kInf) b = std::min(b, hi);
    if (b == kInf) b = pow10(18) * 9;
    if (a <= b) alts.push_back(same_len(pool, std::to_string(a), std::to_string(b)));
  }
  if (hi == kInf)  // every number with more digits
    alts.push_back(pool.seq({digit_range(pool, '1', '9'),
                             pool.repeat(digit_range(pool, '0', '9'), static_cast<uint32_t>(llo), kUnbounded)}));
  return pool.alt(std::move(alts));
}

// Integer parts and fractions of u = I + f >= 0 with u >= L (or u > L).
std::vector<Piece> at_least(std::optional<int64_t> l, bool excl) {
  if (!l || *l < 0 || (*l == 0 && !excl)) return {{0, kInf, Frac::Any}};
  if (!excl) return {{*l, kInf, Frac::Any}};
  return {{*l + 1, kInf, Frac::Any}, {*l, *l, Frac::NonZero}};
}

// ... with u <= U (or u < U).
std::vector<Piece> at_most(std::optional<int64_t> u, bool excl) {
  if (!u) return {{0, kInf, Frac::Any}};
  if (*u < 0 || (*u == 0 && excl)) return {};
  if (excl) return {{0, *u - 1, Frac::Any}};
  std::vector<Piece> out;
  if (*u >= 1) out.push_back({0, *u - 1, Frac::Any});
  out.push_back({*u, *u, Frac::Zero});
  return out;
}

std::vector<Piece> intersect(const std::vector<Piece>& a, const std::vector<Piece>& b) {
  std::vector<Piece> out;
  for (const Piece& x : a) {
    for (const Piece& y : b) {
      int64_t lo = std::max(x.lo, y.lo), hi = std::min(x.hi, y.hi);
      if (lo > hi) continue;
      Frac f;
      if (x.frac == Frac::Any)
        f = y.frac;
      else if (y.frac == Frac::Any || y.frac == x.frac)
        f = x.frac;
      else
        continue;
      out.push_back({lo, hi, f});
    }
  }
  return out;
}

std::optional<int64_t> as_int(std::optional<double> v, bool negate) {
  if (!v || std::fabs(*v) > kLimit) return std::nullopt;
  if (std::floor(*v) != *v)
    throw CompileError("minimum/maximum " + std::to_string(*v) + " on a number: only integer bounds are supported");
  return static_cast<int64_t>(negate ? -*v : *v);
}

}  // namespace

ExprId number_range_expr(ExprPool& pool, const NumberBounds& b, bool integer) {
  NumberBounds nb = b;
  if (integer) {  // integer bounds: round inward, inclusive
    if (nb.lo && std::fabs(*nb.lo) <= kLimit) {
      nb.lo = nb.lo_exclusive ? std::floor(*nb.lo) + 1 : std::ceil(*nb.lo);
      nb.lo_exclusive = false;
    }
    if (nb.hi && std::fabs(*nb.hi) <= kLimit) {
      nb.hi = nb.hi_exclusive ? std::ceil(*nb.hi) - 1 : std::floor(*nb.hi);
      nb.hi_exclusive = false;
    }
  }
  // v >= 0 written "I[.F]": u = v. v < 0 written "-I[.F]": u = -v, bounds swap and negate.
  std::vector<Piece> pos =
      intersect(at_least(as_int(nb.lo, false), nb.lo_exclusive), at_most(as_int(nb.hi, false), nb.hi_exclusive));
  std::vector<Piece> neg;
  {
    // u >= -hi (or >), u <= -lo (or <); negative numbers need u > 0.
    std::vector<Piece> lower = at_least(as_int(nb.hi, true), nb.hi_exclusive);
    std::vector<Piece> upper = at_most(as_int(nb.lo, true), nb.lo_exclusive);
    neg = intersect(intersect(lower, upper), {{1, kInf, Frac::Any}, {0, 0, Frac::NonZero}});
  }
  ExprId digits = pool.plus(digit_range(pool, '0', '9'));
  auto frac_expr = [&](Frac f) -> ExprId {
    if (integer) return f == Frac::NonZero ? pool.nothing() : pool.empty();
    switch (f) {
      case Frac::Any:
        return pool.opt(pool.seq({pool.byte('.'), digits}));
      case Frac::Zero:
        return pool.opt(pool.seq({pool.byte('.'), pool.plus(pool.byte('0'))}));
      case Frac::NonZero:
        return pool.seq({pool.byte('.'), pool.star(digit_range(pool, '0', '9')), digit_range(pool, '1', '9'),
                         pool.star(digit_range(pool, '0', '9'))});
    }
    return pool.empty();
  };
  std::vector<ExprId> alts;
  for (const Piece& p : pos) alts.push_back(pool.seq({uint_range(pool, p.lo, p.hi), frac_expr(p.frac)}));
  for (const Piece& p : neg)
    alts.push_back(pool.seq({pool.byte('-'), uint_range(pool, p.lo, p.hi), frac_expr(p.frac)}));
  return pool.alt(std::move(alts));
}

}  // namespace owl::grammar
