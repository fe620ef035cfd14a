#include "runtime/grammar_vocab.h"

namespace owl::runtime {

grammar::Vocabulary grammar_vocabulary(const Tokenizer& tok) {
  grammar::Vocabulary v;
  std::vector<bool> excluded;
  std::vector<int32_t> eos;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    v.token_bytes.push_back(tok.token_bytes(id));
    excluded.push_back(tok.is_special(id));
    if (tok.is_eog(id)) eos.push_back(id);
  }
  v.trie = std::make_shared<grammar::TokenTrie>(v.token_bytes, eos, excluded);
  v.encode = [&tok](std::string_view s) { return tok.encode(s, false, false); };
  return v;
}

}  // namespace owl::runtime
