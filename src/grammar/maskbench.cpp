#include "grammar/maskbench.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "grammar/json_schema.h"
#include "grammar/matcher.h"

namespace owl::grammar {

namespace {
double now_us(BenchClock clock) {
  if (clock == BenchClock::kThreadCpu) {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
  }
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

InstanceResult check_text(const std::shared_ptr<const Grammar>& g, std::string_view text, const Vocabulary& vocab,
                          std::vector<double>* mask_us) {
  return check_text(std::make_shared<MaskCache>(g, vocab.trie), text, vocab, mask_us);
}

InstanceResult check_text(const std::shared_ptr<MaskCache>& cache, std::string_view text, const Vocabulary& vocab,
                          std::vector<double>* mask_us, std::vector<uint32_t>* mask_at, BenchClock clock) {
  InstanceResult r;
  Matcher m(cache);
  std::vector<uint64_t> mask;
  size_t at = 0;
  for (int32_t id : vocab.encode(text)) {
    const double t0 = now_us(clock);
    m.fill_mask(mask);
    if (mask_us) mask_us->push_back(now_us(clock) - t0);
    if (mask_at) mask_at->push_back(static_cast<uint32_t>(at));
    bool allowed = (mask[static_cast<uint32_t>(id) >> 6] >> (id & 63)) & 1;
    const std::string& bytes = vocab.token_bytes[static_cast<size_t>(id)];
    if (allowed != m.allows(bytes)) ++r.mask_mismatches;
    if (!allowed) {
      // The exact byte: feed the token one byte at a time.
      size_t k = 0;
      while (k < bytes.size() && m.advance(bytes.substr(k, 1))) ++k;
      r.rejected_at = static_cast<int64_t>(at + k);
      return r;
    }
    m.advance(bytes);
    at += bytes.size();
  }
  r.accepted = m.accepting();
  return r;
}

CaseResult run_case(const std::string& name, const nlohmann::ordered_json& c, const Vocabulary& vocab,
                    BenchClock clock) {
  CaseResult res;
  res.name = name;
  std::shared_ptr<const Grammar> g;
  const double t0 = now_us(clock);
  try {
    g = compile_json_schema(c.at("schema"));
    res.compiled = true;
  } catch (const Error& e) {
    res.error = e.what();
  }
  res.compile_us = now_us(clock) - t0;
  if (!res.compiled) return res;
  if (!c.contains("tests")) return res;
  auto cache = std::make_shared<MaskCache>(g, vocab.trie);
  std::vector<uint32_t> at;
  for (const auto& t : c["tests"]) {
    bool valid = t.at("valid").get<bool>();
    std::string text = serialize_for_schema(t.at("data"), c["schema"]);
    at.clear();
    InstanceResult ir = check_text(cache, text, vocab, &res.mask_us, &at, clock);
    for (uint32_t b : at) res.mask_at.push_back({static_cast<uint32_t>(res.valid + res.invalid), b});
    res.mask_mismatches += ir.mask_mismatches;
    if (valid) {
      ++res.valid;
      if (!ir.accepted) ++res.valid_rejected;
    } else {
      ++res.invalid;
      if (ir.accepted) ++res.invalid_accepted;
    }
  }
  return res;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace owl::grammar
