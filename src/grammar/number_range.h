// Decimal numbers between bounds as a byte expression: the digits of every integer in a
// range (no leading zeros), and for JSON numbers the fraction rules at the bounds
// (x <= 3 allows "3" and "3.0" but not "3.5"). Bounds must be integers (non-integer bounds
// on numbers are a CompileError); bounded numbers are written without an exponent.
#pragma once
#include <optional>

#include "grammar/grammar.h"

namespace owl::grammar {

struct NumberBounds {
  std::optional<double> lo, hi;
  bool lo_exclusive = false, hi_exclusive = false;
};

ExprId number_range_expr(ExprPool& pool, const NumberBounds& b, bool integer);

}  // namespace owl::grammar
