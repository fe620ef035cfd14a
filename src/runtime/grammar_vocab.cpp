#include "runtime/grammar_vocab.h"

#include <algorithm>

namespace owl::runtime {

grammar::Vocabulary grammar_vocabulary(const Tokenizer& tok, const std::vector<int32_t>& allowed_special) {
  grammar::Vocabulary v;
  std::vector<bool> excluded;
  std::vector<int32_t> eos;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    v.token_bytes.push_back(tok.token_bytes(id));
    excluded.push_back(tok.is_special(id) &&
                       std::find(allowed_special.begin(), allowed_special.end(), id) == allowed_special.end());
    if (tok.is_eog(id)) eos.push_back(id);
  }
  v.trie = std::make_shared<grammar::TokenTrie>(v.token_bytes, eos, excluded);
  v.encode = [&tok](std::string_view s) { return tok.encode(s, false, false); };
  return v;
}

}  // namespace owl::runtime
