// Tokenizers exact to Hugging Face `tokenizers`: byte-level BPE (GPT-2 style:
// Qwen, DeepSeek, Llama 3, Mistral-Nemo) and SentencePiece-style BPE with
// byte fallback (Llama 2, Mistral 7B), loaded from tokenizer.json or from a
// GGUF vocabulary (tokenizer.ggml.*). Added/special tokens are always matched
// in the text before pre-tokenisation, as the HF reference does.
//
// Invalid UTF-8 input: encode() replaces every invalid byte sequence by U+FFFD
// (as a UTF-8 decoder with replacement would) before normalisation, so the
// pipeline only ever sees valid UTF-8.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace owl::gguf {
class File;
}

namespace owl {

class Tokenizer {
 public:
  virtual ~Tokenizer();

  // Builds from the tokenizer.ggml.* keys of a GGUF file; owl::Error if it has none.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& f);
  // Builds from DIR/tokenizer.json (+ DIR/tokenizer_config.json when present).
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);
  // Builds from a tokenizer.json file (+ tokenizer_config.json beside it when present).
  static std::unique_ptr<Tokenizer> from_tokenizer_json(const std::string& path);
  // GGUF file, folder holding tokenizer.json, or a tokenizer.json file.
  static std::unique_ptr<Tokenizer> open(const std::string& path);

  // add_special: add BOS/EOS as the post-processor (or GGUF add_bos/add_eos keys) says.
  // Special-token text in the input ("<|im_start|>") is encoded as that token,
  // as the HF reference does.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;
  // parse_special = false: text that spells a special token is encoded as plain
  // text (HF split_special_tokens=True, llama.cpp parse_special=false), e.g. for
  // untrusted user content; non-special added tokens (Qwen's <think>) still match.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // Decodes as HF decode(ids, skip_special_tokens, clean_up_tokenization_spaces=false).
  // Unknown ids decode to nothing; invalid UTF-8 becomes U+FFFD.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // The same, then transformers' clean_up_tokenization when clean_up_spaces (" ." -> ".", " 's" -> "'s", ...).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special, bool clean_up_spaces) const;
  // tokenizer_config.json's clean_up_tokenization_spaces (false for GGUF vocabularies).
  bool clean_up_tokenization_spaces() const;

  std::string token_text(int32_t id) const;  // vocabulary string (e.g. "Ġworld", "▁world"); "" if out of range
  std::optional<int32_t> token_id(std::string_view token) const;
  int32_t n_vocab() const;
  int32_t bos_id() const;             // -1 if none
  int32_t eos_id() const;             // -1 if none
  bool is_eog(int32_t id) const;      // end of generation (eos, eot, <|im_end|>, ...)
  bool is_special(int32_t id) const;  // control/special added token

  // The raw bytes one token contributes to decoded text (byte-level tokens map
  // back to bytes, "<0xE4>" to byte 0xE4, "▁" to space); may be a partial UTF-8
  // character. Leading-space stripping of the SentencePiece decoder is not applied.
  std::string token_bytes(int32_t id) const;

  struct Impl;

 protected:
  Tokenizer();
  std::unique_ptr<Impl> impl_;

  friend class IncrementalDecoder;
};

// Streaming detokenizer: push ids one at a time, get back only complete UTF-8.
// The concatenation of all push() results and flush() equals decode(all ids)
// whenever that decode is valid UTF-8.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& t, bool skip_special = false);
  std::string push(int32_t id);  // text that became complete with this token (maybe "")
  std::string flush();           // whatever remains (invalid bytes as U+FFFD)
  // Feeds a token of earlier text (a prompt) whose output is not wanted, special or not: what
  // follows is decoded as its continuation (no leading space stripped).
  void prime(int32_t id);
  // A special token that push() renders as text even when skipping special tokens (a marker
  // a parser downstream needs, such as a tool-call tag that is a control token).
  void keep_special(int32_t id) { kept_.push_back(id); }

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> kept_;  // special tokens rendered anyway
  bool first_ = true;          // SentencePiece decoders strip one leading space of the whole text
  size_t stripped_ = 0;        // leading characters stripped so far
  std::string pending_;        // bytes of an incomplete UTF-8 character
};

}  // namespace owl
