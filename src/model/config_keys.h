// Typed access to the keys a config is read from and written to, with the errors a damaged
// file deserves: GGUF metadata ("<arch>.<key>") and Hugging Face config.json. Families read
// and write their own keys through these (family.h).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace owl {

namespace gguf {
struct Metadata;
}

// Reads "<arch>.<key>" from GGUF metadata.
class GgufKeys {
 public:
  GgufKeys(const gguf::Metadata& m, const std::string& arch) : m_(m), prefix_(arch + ".") {}
  // Throws when the key is missing or negative.
  int64_t required(const std::string& key) const;
  int64_t integer(const std::string& key, int64_t def) const;
  float real(const std::string& key, float def) const;
  bool boolean(const std::string& key, bool def) const;
  std::string string(const std::string& key, const std::string& def) const;
  bool has(const std::string& key) const;

 private:
  const gguf::Metadata& m_;
  std::string prefix_;
};

// Writes "<arch>.<key>" into GGUF metadata, in the value types llama.cpp's converter uses.
class GgufKeyWriter {
 public:
  GgufKeyWriter(gguf::Metadata& m, const std::string& arch) : m_(m), prefix_(arch + ".") {}
  void u32(const std::string& key, int64_t v);  // throws when v does not fit
  void f32(const std::string& key, float v);
  void boolean(const std::string& key, bool v);
  void string(const std::string& key, const std::string& v);

 private:
  gguf::Metadata& m_;
  std::string prefix_;
};

// Reads config.json keys; null counts as absent (HF writes "rope_scaling": null).
class HfKeys {
 public:
  HfKeys(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}
  const nlohmann::json* get(const char* k) const;
  [[noreturn]] void bad(const char* k, const char* want) const;
  int64_t integer(const char* k, int64_t def) const;  // non-negative
  int64_t required(const char* k) const;              // positive
  double number(const char* k, double def) const;
  bool boolean(const char* k, bool def) const;
  std::string string(const char* k, const std::string& def) const;

 private:
  const nlohmann::json& j_;
  std::string where_;
};

// The shortest decimal that reads back as the same float (1e-05, not 9.99999974e-06), for
// config.json values written from float hyperparameters.
double shortest_decimal(float f);

}  // namespace owl
