#include "chat/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "chat/jinja.h"
#include "text/utf8.h"

namespace owl::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

class Lexer {
 public:
  Lexer(std::string src, const Options& o) : s_(std::move(src)), o_(o) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool strip_next = false;  // the previous tag ended with '-'
    while (pos < s_.size()) {
      size_t start = find_tag(pos);
      std::string text = s_.substr(pos, start - pos);
      size_t text_pos = pos;
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
        text_pos += k;
        strip_next = false;
      }
      if (start == s_.size()) {
        emit_text(text, text_pos);
        break;
      }
      char kind = s_[start + 1];  // '{', '%' or '#'
      char mod = start + 2 < s_.size() ? s_[start + 2] : '\0';
      if (mod == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if ((kind == '%' || kind == '#') && o_.lstrip_blocks && mod != '+') {
        // Strip spaces/tabs between the start of the line and the tag.
        size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        size_t abs = text_pos + k;  // where the whitespace run begins in the source
        if (abs == 0 || s_[abs - 1] == '\n') text.erase(k);
      }
      emit_text(text, text_pos);
      size_t body = start + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        size_t end = s_.find("#}", body);
        if (end == std::string::npos) fail(start, "unterminated comment");
        bool minus = end > body && s_[end - 1] == '-';
        pos = after_tag(end + 2, minus, s_[end - 1] == '+', strip_next, true);
        continue;
      }
      pos = lex_tag(start, body, kind == '%', strip_next);
    }
    Token end{Token::Type::End, "", 0, 0};
    locate(s_.size(), end);
    out_.push_back(end);
    return std::move(out_);
  }

 private:
  std::string s_;
  const Options& o_;
  std::vector<Token> out_;
  mutable std::vector<size_t> line_starts_;

  [[noreturn]] void fail(size_t pos, const std::string& msg) {
    Token t{};
    locate(pos, t);
    throw TemplateError(t.line, t.col, msg);
  }

  void locate(size_t pos, Token& t) const {
    if (line_starts_.empty()) {
      line_starts_.push_back(0);
      for (size_t i = 0; i < s_.size(); ++i)
        if (s_[i] == '\n') line_starts_.push_back(i + 1);
    }
    size_t line =
        static_cast<size_t>(std::upper_bound(line_starts_.begin(), line_starts_.end(), pos) - line_starts_.begin());
    int col = 1;
    for (size_t i = line_starts_[line - 1]; i < pos && i < s_.size(); ++i)
      if ((static_cast<unsigned char>(s_[i]) & 0xc0) != 0x80) ++col;
    t.line = static_cast<int>(line);
    t.col = col;
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = pos; i + 1 < s_.size(); ++i)
      if (s_[i] == '{' && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return s_.size();
  }

  void emit_text(const std::string& text, size_t pos) {
    if (text.empty()) return;
    Token t{Token::Type::Text, text};
    locate(pos, t);
    out_.push_back(std::move(t));
  }

  // After a tag closes at `pos`: '-' strips all following whitespace; otherwise a block
  // tag under trim_blocks eats one newline (unless closed with '+').
  size_t after_tag(size_t pos, bool minus, bool plus, bool& strip_next, bool is_block) {
    if (minus) {
      strip_next = true;
    } else if (is_block && o_.trim_blocks && !plus && pos < s_.size() && s_[pos] == '\n') {
      ++pos;
    }
    return pos;
  }

  void push(Token::Type type, std::string text, size_t pos) {
    Token t{type, std::move(text)};
    locate(pos, t);
    out_.push_back(std::move(t));
  }

  // Lexes the inside of {{ }} or {% %}; returns the position after the closing tag.
  size_t lex_tag(size_t start, size_t i, bool block, bool& strip_next) {
    push(block ? Token::Type::BlockBegin : Token::Type::VarBegin, block ? "{%" : "{{", start);
    size_t first_token = out_.size();
    const char close = block ? '%' : '}';
    while (true) {
      while (i < s_.size() && is_space(s_[i])) ++i;
      if (i >= s_.size()) fail(start, block ? "unterminated block tag '{%'" : "unterminated expression '{{'");
      // Closing tag, optionally with '-' or '+'.
      char c = s_[i];
      if ((c == '-' || c == '+') && i + 2 < s_.size() && s_[i + 1] == close && s_[i + 2] == '}') {
        push(block ? Token::Type::BlockEnd : Token::Type::VarEnd, "", i);
        return finish_tag(i + 3, c == '-', c == '+', strip_next, block, first_token);
      }
      if (c == close && i + 1 < s_.size() && s_[i + 1] == '}') {
        push(block ? Token::Type::BlockEnd : Token::Type::VarEnd, "", i);
        return finish_tag(i + 2, false, false, strip_next, block, first_token);
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i;
        while (j < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_')) ++j;
        push(Token::Type::Name, s_.substr(i, j - i), i);
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        i = lex_number(i);
      } else if (c == '\'' || c == '"') {
        i = lex_string(i);
      } else {
        static const char* two[] = {"**", "//", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : two)
          if (s_.compare(i, 2, t) == 0) op = t;
        if (op.empty()) {
          if (!std::strchr("+-*/%~<>=()[]{},.:|", c)) fail(i, std::string("unexpected character '") + c + "'");
          op = std::string(1, c);
        }
        push(Token::Type::Op, op, i);
        i += op.size();
      }
    }
  }

  size_t finish_tag(size_t pos, bool minus, bool plus, bool& strip_next, bool block, size_t first_token) {
    pos = after_tag(pos, minus, plus, strip_next, block);
    // {% raw %}: everything up to {% endraw %} is text.
    if (block && out_.size() == first_token + 2 && out_[first_token].type == Token::Type::Name &&
        out_[first_token].text == "raw") {
      out_.resize(first_token - 1);  // drop the raw tag itself
      size_t search = pos;
      while (true) {
        size_t t = s_.find("{%", search);
        if (t == std::string::npos) fail(pos, "missing {% endraw %}");
        size_t k = t + 2;
        bool lminus = k < s_.size() && s_[k] == '-';
        if (lminus || (k < s_.size() && s_[k] == '+')) ++k;
        while (k < s_.size() && is_space(s_[k])) ++k;
        if (s_.compare(k, 6, "endraw") != 0) {
          search = t + 2;
          continue;
        }
        k += 6;
        while (k < s_.size() && is_space(s_[k])) ++k;
        bool rminus = k < s_.size() && s_[k] == '-';
        if (rminus || (k < s_.size() && s_[k] == '+')) ++k;
        if (s_.compare(k, 2, "%}") != 0) fail(t, "malformed {% endraw %}");
        std::string text = s_.substr(pos, t - pos);
        if (strip_next) {
          size_t a = 0;
          while (a < text.size() && is_space(text[a])) ++a;
          text.erase(0, a);
          strip_next = false;
        }
        if (lminus)
          while (!text.empty() && is_space(text.back())) text.pop_back();
        emit_text(text, pos);
        return after_tag(k + 2, rminus, false, strip_next, true);
      }
    }
    return pos;
  }

  size_t lex_number(size_t i) {
    size_t j = i;
    auto digits = [&] {
      while (j < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[j])) || s_[j] == '_')) ++j;
    };
    digits();
    bool is_float = false;
    if (j + 1 < s_.size() && s_[j] == '.' && std::isdigit(static_cast<unsigned char>(s_[j + 1]))) {
      is_float = true;
      ++j;
      digits();
    }
    if (j < s_.size() && (s_[j] == 'e' || s_[j] == 'E')) {
      size_t k = j + 1;
      if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
      if (k < s_.size() && std::isdigit(static_cast<unsigned char>(s_[k]))) {
        is_float = true;
        j = k;
        digits();
      }
    }
    std::string text;
    for (size_t k = i; k < j; ++k)
      if (s_[k] != '_') text += s_[k];
    push(is_float ? Token::Type::Float : Token::Type::Int, text, i);
    return j;
  }

  // Python string literal escapes (Jinja decodes literals with unicode-escape).
  size_t lex_string(size_t i) {
    char q = s_[i];
    std::string v;
    size_t j = i + 1;
    while (true) {
      if (j >= s_.size()) fail(i, "unterminated string literal");
      char c = s_[j];
      if (c == q) break;
      if (c != '\\') {
        v += c;
        ++j;
        continue;
      }
      if (j + 1 >= s_.size()) fail(i, "unterminated string literal");
      char e = s_[j + 1];
      j += 2;
      switch (e) {
        case 'n':
          v += '\n';
          break;
        case 't':
          v += '\t';
          break;
        case 'r':
          v += '\r';
          break;
        case '\\':
          v += '\\';
          break;
        case '\'':
          v += '\'';
          break;
        case '"':
          v += '"';
          break;
        case 'a':
          v += '\a';
          break;
        case 'b':
          v += '\b';
          break;
        case 'f':
          v += '\f';
          break;
        case 'v':
          v += '\v';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (j + n > s_.size()) fail(j, "truncated \\" + std::string(1, e) + " escape");
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            char h = s_[j + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) fail(j, "bad \\" + std::string(1, e) + " escape");
            cp = cp * 16 + static_cast<uint32_t>(
                               std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          if (cp > 0x10ffff) fail(j, "escape outside the Unicode range");
          text::utf8_append(v, cp);
          j += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && j < s_.size() && s_[j] >= '0' && s_[j] <= '7'; ++k)
              cp = cp * 8 + static_cast<uint32_t>(s_[j++] - '0');
            text::utf8_append(v, cp);
          } else {
            v += '\\';
            v += e;
          }
      }
    }
    push(Token::Type::String, v, i);
    return j + 1;
  }
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const Options& options) {
  // Jinja normalises newlines to "\n" and drops one trailing newline.
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!options.keep_trailing_newline && !s.empty() && s.back() == '\n') s.pop_back();
  return Lexer(std::move(s), options).run();
}

}  // namespace owl::jinja
