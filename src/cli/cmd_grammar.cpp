// owl grammar check|bench: the constrained-decoding engine (src/grammar) on MaskBench-format
// cases (../shared/jsonschema/README.md).
//   owl grammar check --schema S.json --instance I.json --model M   (or --gbnf G with a text instance)
//     prints {"compiled", "error", "accepted", "rejected_at"}: rejected_at is the byte of the
//     compact instance text where the mask stopped it (null when accepted or merely incomplete).
//   owl grammar bench DIR --model M [--json] [--limit N]
//     runs every case of DIR; --json ends with one line {"cases", "passing", "compile_errors",
//     "invalid_accepted", "valid_rejected", "mask_us": {p50..p999}, "compile_us": {...}}.
//     --cpu-time times by the thread's CPU time (steadier on a shared machine than wall time).
//     --slowest N prints the N slowest masks to stderr: time, case, instance, byte and the text
//     before that byte (where to look when the tail percentiles grow).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/command.h"
#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "grammar/maskbench.h"
#include "hub/resolve.h"
#include "runtime/grammar_vocab.h"
#include "text/tokenizer.h"

namespace {

using owl::grammar::Vocabulary;

struct Options {
  std::string model, schema, gbnf, instance, dir;
  bool json = false;
  size_t limit = 0;
  size_t slowest = 0;
  bool cpu_time = false;
};

std::string read_all(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw owl::Error(std::string("cannot read ") + what + " " + path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

struct LoadedVocab {
  std::unique_ptr<owl::Tokenizer> tok;
  Vocabulary vocab;
};

std::unique_ptr<LoadedVocab> load_vocab(const std::string& model) {
  auto lv = std::make_unique<LoadedVocab>();
  lv->tok = owl::Tokenizer::open(owl::hub::resolve_model(model, true));
  lv->vocab = owl::runtime::grammar_vocabulary(*lv->tok);
  return lv;
}

void check(const Options& o) {
  if (o.schema.empty() == o.gbnf.empty()) throw owl::UsageError("give one of --schema or --gbnf");
  auto lv = load_vocab(o.model);
  nlohmann::ordered_json out;
  std::shared_ptr<const owl::grammar::Grammar> g;
  std::string text = read_all(o.instance, "--instance");
  try {
    if (!o.schema.empty()) {
      std::string schema_text = read_all(o.schema, "--schema");
      g = owl::grammar::compile_json_schema_text(schema_text);
      nlohmann::ordered_json instance;
      try {
        instance = nlohmann::ordered_json::parse(text);
      } catch (const nlohmann::json::exception& e) {
        throw owl::Error("--instance " + o.instance + " is not JSON: " + e.what());
      }
      text = owl::grammar::serialize_for_schema(instance, nlohmann::ordered_json::parse(schema_text));
    } else {
      g = owl::grammar::compile_gbnf(read_all(o.gbnf, "--gbnf"));
    }
    out["compiled"] = true;
    out["error"] = nullptr;
  } catch (const owl::grammar::CompileError& e) {
    out["compiled"] = false;
    out["error"] = e.what();
    out["accepted"] = false;
    out["rejected_at"] = nullptr;
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  owl::grammar::InstanceResult r = owl::grammar::check_text(g, text, lv->vocab, nullptr);
  out["accepted"] = r.accepted;
  out["rejected_at"] = r.rejected_at >= 0 ? nlohmann::ordered_json(r.rejected_at) : nlohmann::ordered_json(nullptr);
  std::printf("%s\n", out.dump().c_str());
}

nlohmann::ordered_json percentiles(std::vector<double>& v) {
  using owl::grammar::percentile;
  auto r = [](double x) { return static_cast<double>(static_cast<int64_t>(x * 10 + 0.5)) / 10; };
  return {{"p50", r(percentile(v, 50))},
          {"p75", r(percentile(v, 75))},
          {"p90", r(percentile(v, 90))},
          {"p99", r(percentile(v, 99))},
          {"p999", r(percentile(v, 99.9))}};
}

// One mask of the bench, for --slowest.
struct SlowMask {
  double us;
  size_t file;
  owl::grammar::CaseResult::Where at;
};

// The N slowest masks to stderr, with the text that led to each.
void print_slowest(std::vector<SlowMask>& slow, size_t n, const std::vector<std::filesystem::path>& files) {
  n = std::min(n, slow.size());
  std::partial_sort(slow.begin(), slow.begin() + static_cast<std::ptrdiff_t>(n), slow.end(),
                    [](const SlowMask& a, const SlowMask& b) { return a.us > b.us; });
  for (size_t i = 0; i < n; ++i) {
    const SlowMask& s = slow[i];
    auto c = nlohmann::ordered_json::parse(read_all(files[s.file].string(), "case"));
    std::string text = owl::grammar::serialize_for_schema(c["tests"][s.at.instance]["data"], c["schema"]);
    const size_t from = s.at.byte > 60 ? s.at.byte - 60 : 0;
    std::fprintf(stderr, "%10.1f us  %s  instance %u byte %u  ...%s\n", s.us, files[s.file].filename().c_str(),
                 s.at.instance, s.at.byte, text.substr(from, s.at.byte - from).c_str());
  }
}

void bench(const Options& o) {
  if (!std::filesystem::is_directory(o.dir)) throw owl::UsageError("not a folder: " + o.dir);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(o.dir))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (o.limit && files.size() > o.limit) files.resize(o.limit);
  auto lv = load_vocab(o.model);
  size_t passing = 0, compile_errors = 0, invalid_accepted = 0, valid_rejected = 0, mismatches = 0;
  std::vector<double> mask_us, compile_us;
  std::vector<SlowMask> slow;
  for (const auto& f : files) {
    nlohmann::ordered_json c;
    try {
      c = nlohmann::ordered_json::parse(read_all(f.string(), "case"));
    } catch (const nlohmann::json::exception& e) {
      throw owl::Error("case " + f.string() + " is not JSON: " + e.what());
    }
    owl::grammar::CaseResult r =
        owl::grammar::run_case(f.filename().string(), c, lv->vocab,
                               o.cpu_time ? owl::grammar::BenchClock::kThreadCpu : owl::grammar::BenchClock::kWall);
    passing += r.passing();
    compile_errors += !r.compiled;
    invalid_accepted += r.invalid_accepted;
    valid_rejected += r.valid_rejected;
    mismatches += r.mask_mismatches;
    compile_us.push_back(r.compile_us);
    mask_us.insert(mask_us.end(), r.mask_us.begin(), r.mask_us.end());
    if (o.slowest)
      for (size_t i = 0; i < r.mask_us.size(); ++i)
        slow.push_back({r.mask_us[i], static_cast<size_t>(&f - files.data()), r.mask_at[i]});
    if (!o.json || !r.passing()) {
      std::printf("%s %s", r.passing() ? "pass" : "FAIL", r.name.c_str());
      if (!r.compiled) std::printf(" compile error: %s", r.error.c_str());
      if (r.valid_rejected) std::printf(" valid rejected: %zu/%zu", r.valid_rejected, r.valid);
      if (r.invalid_accepted) std::printf(" invalid accepted: %zu/%zu", r.invalid_accepted, r.invalid);
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  if (o.slowest) print_slowest(slow, o.slowest, files);
  if (mismatches)
    throw owl::Error("internal error: " + std::to_string(mismatches) + " masks disagree with the matcher");
  nlohmann::ordered_json sum = {{"cases", files.size()},
                                {"passing", passing},
                                {"compile_errors", compile_errors},
                                {"invalid_accepted", invalid_accepted},
                                {"valid_rejected", valid_rejected},
                                {"masks", mask_us.size()},
                                {"mask_us", percentiles(mask_us)},
                                {"compile_us", percentiles(compile_us)}};
  if (o.json) {
    std::printf("%s\n", sum.dump().c_str());
  } else {
    std::printf("passing %zu/%zu, compile errors %zu, invalid accepted %zu, valid rejected %zu\n", passing,
                files.size(), compile_errors, invalid_accepted, valid_rejected);
    std::printf("mask us %s\ncompile us %s\n", sum["mask_us"].dump().c_str(), sum["compile_us"].dump().c_str());
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* g = app.add_subcommand("grammar", "Constrained decoding: check or benchmark JSON Schema / GBNF grammars");
  g->require_subcommand(1);
  auto* c = g->add_subcommand("check", "Compile a schema (or GBNF) and feed one instance token by token");
  c->add_option("--schema", o->schema, "JSON Schema file");
  c->add_option("--gbnf", o->gbnf, "GBNF grammar file (the instance is then plain text)");
  c->add_option("--instance", o->instance, "instance file (JSON for --schema)")->required();
  c->add_option("--model", o->model, "tokenizer: a GGUF file, a folder with tokenizer.json or a hub id")->required();
  c->callback([o] { check(*o); });
  auto* b = g->add_subcommand("bench", "Score every MaskBench case of a folder and time the masks");
  b->add_option("dir", o->dir, "folder of MaskBench case files (*.json)")->required();
  b->add_option("--model", o->model, "tokenizer: a GGUF file, a folder with tokenizer.json or a hub id")->required();
  b->add_flag("--json", o->json, "print only failing cases, then one JSON summary line");
  b->add_option("--limit", o->limit, "only the first N cases in name order");
  b->add_flag("--cpu-time", o->cpu_time,
              "time masks and compiles by the thread's CPU time instead of wall-clock time (a loaded machine)");
  b->add_option("--slowest", o->slowest, "print the N slowest masks (case, instance, byte, text before) to stderr");
  b->callback([o] { bench(*o); });
}

}  // namespace

OWL_COMMAND(setup);
