#include "model/config_keys.h"

#include <charconv>

#include "base/error.h"
#include "formats/gguf.h"

namespace owl {

using json = nlohmann::json;

int64_t GgufKeys::required(const std::string& key) const {
  auto v = m_.get_int(prefix_ + key);
  if (!v) throw Error("GGUF metadata lacks required key '" + prefix_ + key + "'");
  if (*v < 0) throw Error("GGUF metadata key '" + prefix_ + key + "' is negative");
  return *v;
}
int64_t GgufKeys::integer(const std::string& key, int64_t def) const { return m_.get_int(prefix_ + key).value_or(def); }
float GgufKeys::real(const std::string& key, float def) const {
  return static_cast<float>(m_.get_float(prefix_ + key).value_or(def));
}
bool GgufKeys::boolean(const std::string& key, bool def) const { return m_.get_bool(prefix_ + key).value_or(def); }
std::string GgufKeys::string(const std::string& key, const std::string& def) const {
  return m_.get_string(prefix_ + key).value_or(def);
}

bool GgufKeys::has(const std::string& key) const { return m_.has(prefix_ + key); }

void GgufKeyWriter::u32(const std::string& key, int64_t v) {
  if (v < 0 || v > 0xffffffffLL) throw Error("cannot write " + prefix_ + key + " = " + std::to_string(v) + " as a u32");
  m_.set(prefix_ + key, gguf::Value::u32(static_cast<uint32_t>(v)));
}
void GgufKeyWriter::f32(const std::string& key, float v) { m_.set(prefix_ + key, gguf::Value::f32(v)); }
void GgufKeyWriter::boolean(const std::string& key, bool v) { m_.set(prefix_ + key, gguf::Value::boolean(v)); }
void GgufKeyWriter::string(const std::string& key, const std::string& v) { m_.set(prefix_ + key, gguf::Value::str(v)); }

const json* HfKeys::get(const char* k) const {
  auto it = j_.find(k);
  return (it == j_.end() || it->is_null()) ? nullptr : &*it;
}
void HfKeys::bad(const char* k, const char* want) const {
  throw Error(where_ + ": key '" + k + "' must be " + want + "; the config is damaged, download it again");
}
int64_t HfKeys::integer(const char* k, int64_t def) const {
  const json* v = get(k);
  if (!v) return def;
  if (!v->is_number_integer() || v->get<int64_t>() < 0) bad(k, "a non-negative integer");
  return v->get<int64_t>();
}
int64_t HfKeys::required(const char* k) const {
  if (!get(k)) throw Error(where_ + " lacks required key '" + std::string(k) + "'; the config is incomplete");
  int64_t v = integer(k, 0);
  if (v <= 0) bad(k, "a positive integer");
  return v;
}
double HfKeys::number(const char* k, double def) const {
  const json* v = get(k);
  if (!v) return def;
  if (!v->is_number()) bad(k, "a number");
  return v->get<double>();
}
bool HfKeys::boolean(const char* k, bool def) const {
  const json* v = get(k);
  if (!v) return def;
  if (!v->is_boolean()) bad(k, "true or false");
  return v->get<bool>();
}
std::string HfKeys::string(const char* k, const std::string& def) const {
  const json* v = get(k);
  if (!v) return def;
  if (!v->is_string()) bad(k, "a string");
  return v->get<std::string>();
}

double shortest_decimal(float f) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

}  // namespace owl
