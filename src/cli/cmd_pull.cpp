// owl pull [modelscope:]ORG/NAME[:QUANT|:FILE]: downloads a model into the
// Hugging Face cache and prints its local path (GGUF file or snapshot folder).
#include <csignal>
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "cli/command.h"
#include "hub/cache.h"
#include "hub/pull.h"

namespace {

struct Options {
  std::string model;
  owl::hub::PullOptions pull;
  bool quiet = false;
};

void run(Options& o) {
  // Past a file-size limit, writes must fail with EFBIG (reported as a full
  // disk, the download kept for resuming) rather than kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  if (o.pull.download.connections < 1) throw owl::UsageError("--connections must be at least 1");
  if (o.pull.download.retry.max_retries < 0) throw owl::UsageError("--retries must not be negative");
  o.pull.download.quiet = o.quiet;
  auto spec = owl::hub::parse_hub_spec_or_throw(o.model);
  auto r = owl::hub::pull(spec, o.pull);
  if (!o.quiet) {
    if (r.files_downloaded == 0)
      std::fprintf(stderr, "owl: %s is up to date (%zu files)\n", spec.display().c_str(), r.files.size());
    else
      std::fprintf(stderr, "owl: pulled %s: %d of %zu files, %s in %.2f s\n", spec.display().c_str(),
                   r.files_downloaded, r.files.size(), owl::hub::human_size(r.bytes_downloaded).c_str(), r.seconds);
  }
  std::printf("%s\n", r.path.c_str());
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("pull", "Download a model from Hugging Face or ModelScope into the cache");
  sub->add_option("model", o->model, "ORG/NAME[:QUANT|:FILE], or modelscope:ORG/NAME[...]")->required();
  sub->add_option("--revision", o->pull.revision, "branch, tag or commit (default main; master on ModelScope)");
  sub->add_option("--connections", o->pull.download.connections, "parallel connections for one large file")
      ->capture_default_str();
  sub->add_option("--min-split-size", o->pull.download.min_split_bytes,
                  "files smaller than this many bytes use one connection")
      ->capture_default_str();
  sub->add_option("--retries", o->pull.download.retry.max_retries, "attempts after a dropped connection, 429 or 5xx")
      ->capture_default_str();
  sub->add_flag("-q,--quiet", o->quiet, "no progress output");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
