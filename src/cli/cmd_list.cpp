// owl list: the models in the cache (Hugging Face, then ModelScope) with their sizes.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "hub/cache.h"

namespace {

struct Options {
  bool json = false;
};

void run(const Options& o) {
  using owl::hub::Source;
  std::vector<owl::hub::CachedRepo> repos = owl::hub::list_cached(Source::HuggingFace);
  for (auto& r : owl::hub::list_cached(Source::ModelScope)) repos.push_back(std::move(r));
  auto name = [](const owl::hub::CachedRepo& r) {
    return (r.source == Source::ModelScope ? "modelscope:" : "") + r.repo;
  };
  if (o.json) {
    auto arr = nlohmann::json::array();
    for (const auto& r : repos)
      arr.push_back({{"model", name(r)},
                     {"size_bytes", r.size_bytes},
                     {"files", r.files},
                     {"commit", r.commit},
                     {"path", r.dir}});
    std::printf("%s\n", arr.dump(2).c_str());
    return;
  }
  if (repos.empty()) {
    std::printf("no models in %s; 'owl pull ORG/NAME' downloads one\n",
                owl::hub::cache_root(Source::HuggingFace).c_str());
    return;
  }
  std::printf("%-50s %10s  %s\n", "MODEL", "SIZE", "FILES");
  for (const auto& r : repos) {
    std::string files;
    for (const auto& f : r.files) files += (files.empty() ? "" : ", ") + f;
    if (files.size() > 80) files = std::to_string(r.files.size()) + " files";
    std::printf("%-50s %10s  %s\n", name(r).c_str(), owl::hub::human_size(r.size_bytes).c_str(), files.c_str());
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("list", "List the models in the local cache");
  sub->add_flag("--json", o->json, "print a JSON array");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
