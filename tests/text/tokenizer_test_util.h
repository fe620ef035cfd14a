// Shared helpers for the tokenizer tests: load each reference tokenizer once
// per test binary, and print compact diffs of id sequences.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {

// The tokenizer of a family folder in ../shared/tokenizers (qwen3, llama-3.1, ...), loaded once.
inline const Tokenizer& family_tokenizer(const std::string& family) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto& t = cache[family];
  if (!t) t = Tokenizer::from_hf_dir(shared_path("tokenizers/" + family));
  return *t;
}

inline std::string ids_str(const std::vector<int32_t>& v, size_t from, size_t count) {
  std::ostringstream os;
  os << "[";
  for (size_t i = from; i < v.size() && i < from + count; ++i) os << (i > from ? "," : "") << v[i];
  if (from + count < v.size()) os << ",...";
  os << "]";
  return os.str();
}

// "" when equal; else where they first differ and a few ids around it.
inline std::string diff_ids(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  if (i == got.size() && i == want.size()) return "";
  size_t from = i >= 2 ? i - 2 : 0;
  std::ostringstream os;
  os << "first difference at position " << i << " (lengths got " << got.size() << ", want " << want.size() << "): got "
     << ids_str(got, from, 8) << " want " << ids_str(want, from, 8) << " (from position " << from << ")";
  return os.str();
}

}  // namespace owl::test
