// owl rm ORG/NAME[:QUANT|:FILE]: removes a cached model (or one of its
// variants) and the blobs nothing else links to.
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "cli/command.h"
#include "hub/cache.h"
#include "hub/pull.h"

namespace {

struct Options {
  std::vector<std::string> models;
};

void run(const Options& o) {
  for (const auto& m : o.models) {
    auto spec = owl::hub::parse_hub_spec_or_throw(m);
    std::vector<std::string> files;
    if (!spec.variant.empty()) {
      auto cached = owl::hub::find_cached(spec);
      if (!cached) throw owl::Error(spec.display() + " is not in the cache; 'owl list' shows what is");
      files = cached->files;
    }
    uint64_t freed = owl::hub::remove_cached(spec.source, spec.repo, files);
    std::printf("removed %s (%s freed)\n", spec.display().c_str(), owl::hub::human_size(freed).c_str());
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("rm", "Remove models from the local cache");
  sub->add_option("models", o->models, "ORG/NAME[:QUANT|:FILE] ...")->required();
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
