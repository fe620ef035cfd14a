// A 512-token byte-level BPE vocabulary whose added tokens are a chat family's markers, to pair
// with stories260K (512 logits) where a test needs a model that *generates* DeepSeek's or Kimi's
// tool-call markers as single tokens. Ids 0-255 are the bytes (GPT-2's byte-to-character map,
// no merges, so plain text is one token per byte and a marker spelled as text is split even
// inside its UTF-8 characters); then the family's added tokens, as its real tokenizer marks
// them (DeepSeek-V3's tool markers are added but not special, Kimi K2's and Llama 3.1's are
// special); then
// special padding tokens up to 512.
#pragma once
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace owl::test {

struct MarkerVocab {
  std::vector<std::string> special;  // control tokens (hidden from text unless kept as markers)
  std::vector<std::string> added;    // added tokens that are text
  std::string bos, eos;              // among the above; "" for none
};

// DeepSeek-V3/R1/V3.1 as in its tokenizer.json: BOS/EOS special, the tool markers and the role
// tags added but not special; with `think` R1's <think> tags as non-special added tokens.
inline MarkerVocab deepseek_vocab(bool think) {
  MarkerVocab v{{"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"},
                {"<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
                 "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
                 "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"},
                "<｜begin▁of▁sentence｜>",
                "<｜end▁of▁sentence｜>"};
  if (think) v.added.insert(v.added.end(), {"<think>", "</think>"});
  return v;
}

// Kimi K2: every chat and tool-call marker a special token; a turn ends with <|im_end|>.
inline MarkerVocab kimi_vocab() {
  return {{"<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>",
           "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
           "<|tool_call_argument_begin|>", "<|tool_call_end|>"},
          {},
          "",
          "<|im_end|>"};
}

// GLM-4.5/4.6: the role tags special, the tool-call and argument tags added tokens that are text
// (the <think> tags left out: a random model that opened one would never close it).
inline MarkerVocab glm_vocab() {
  return {{"<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"},
          {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>", "</arg_key>",
           "<arg_value>", "</arg_value>"},
          "",
          "<|endoftext|>"};
}

// Llama 3.1: every header and end marker special, <|python_tag|> (which opens a call) too.
inline MarkerVocab llama31_vocab() {
  return {{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
           "<|eom_id|>", "<|python_tag|>"},
          {},
          "<|begin_of_text|>",
          "<|eot_id|>"};
}

// Writes DIR/tokenizer.json and DIR/tokenizer_config.json and loads them.
inline std::unique_ptr<Tokenizer> marker_tokenizer(const MarkerVocab& v, const std::string& dir) {
  using json = nlohmann::ordered_json;
  // GPT-2's map: printable Latin-1 bytes stand for themselves, the others for U+0100 onwards.
  json vocab = json::object();
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const unsigned cp = printable ? static_cast<unsigned>(b) : 256u + static_cast<unsigned>(next++);
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = b;
  }
  json added = json::array();
  int id = 256;
  auto add = [&](const std::string& text, bool special) {
    vocab[text] = id;
    added.push_back({{"id", id},
                     {"content", text},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
    ++id;
  };
  for (const auto& s : v.special) add(s, true);
  for (const auto& s : v.added) add(s, false);
  for (int pad = 0; id < 512; ++pad) add("<|pad_" + std::to_string(pad) + "|>", true);
  const json tokenizer = {{"version", "1.0"},
                          {"added_tokens", added},
                          {"normalizer", nullptr},
                          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                          {"post_processor", nullptr},
                          {"decoder", {{"type", "ByteLevel"}}},
                          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  json config = {{"clean_up_tokenization_spaces", false}};
  if (!v.bos.empty()) config["bos_token"] = v.bos;
  if (!v.eos.empty()) config["eos_token"] = v.eos;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json") << tokenizer.dump();
  std::ofstream(dir + "/tokenizer_config.json") << config.dump();
  return Tokenizer::from_hf_dir(dir);
}

}  // namespace owl::test
