// MaskBench scoring (../shared/jsonschema/README.md): a case passes when its schema compiles,
// every valid instance is accepted and every invalid one rejected, each instance written as
// compact JSON (serialize_for_schema), tokenized, and fed token by token where every token
// must be allowed by the mask. Times every mask and every compile.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/matcher.h"
#include "grammar/token_trie.h"

namespace owl::grammar {

struct Vocabulary {
  std::vector<std::string> token_bytes;
  std::shared_ptr<const TokenTrie> trie;
  std::function<std::vector<int32_t>(std::string_view)> encode;  // no BOS/EOS
};

struct InstanceResult {
  bool accepted = false;
  int64_t rejected_at = -1;    // byte of the text where the grammar stopped it; -1 when accepted or incomplete
  size_t mask_mismatches = 0;  // tokens where the mask and the byte-level matcher disagree (must be 0)
};

// What the bench times with: wall-clock time (what a user waits), or the CPU time of the
// calling thread (steadier on a machine shared with other work: no time while descheduled).
enum class BenchClock { kWall, kThreadCpu };

// Feeds `text` token by token; mask_us (when given) receives the time of every mask, and
// mask_at (when given) the byte of `text` where each mask was taken.
InstanceResult check_text(const std::shared_ptr<const Grammar>& g, std::string_view text, const Vocabulary& vocab,
                          std::vector<double>* mask_us);
// The same with a mask cache shared by several texts of one grammar.
InstanceResult check_text(const std::shared_ptr<MaskCache>& cache, std::string_view text, const Vocabulary& vocab,
                          std::vector<double>* mask_us, std::vector<uint32_t>* mask_at = nullptr,
                          BenchClock clock = BenchClock::kWall);

struct CaseResult {
  std::string name;
  bool compiled = false;
  std::string error;
  double compile_us = 0;
  size_t valid = 0, invalid = 0, valid_rejected = 0, invalid_accepted = 0, mask_mismatches = 0;
  std::vector<double> mask_us;
  // Where each mask of mask_us was taken: the instance (index in the case's tests) and the
  // byte of its compact text (for tracing the slowest masks).
  struct Where {
    uint32_t instance, byte;
  };
  std::vector<Where> mask_at;
  bool passing() const { return compiled && valid_rejected == 0 && invalid_accepted == 0; }
};

CaseResult run_case(const std::string& name, const nlohmann::ordered_json& c, const Vocabulary& vocab,
                    BenchClock clock = BenchClock::kWall);

// p in [0, 100] of the values (sorted in place); 0 for none.
double percentile(std::vector<double>& v, double p);

}  // namespace owl::grammar
