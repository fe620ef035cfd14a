// `owl pull`: fetch a model from a hub into the cache and say where it is.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "hub/download.h"
#include "hub/spec.h"

namespace owl::hub {

struct PullOptions {
  std::string revision;  // empty: main (Hugging Face) / master (ModelScope)
  DownloadOptions download;
};

struct PullResult {
  std::string path;  // the GGUF file (first part) or the snapshot folder
  std::string snapshot_dir;
  std::string commit;
  std::vector<std::string> files;  // relative to the snapshot
  int files_downloaded = 0;
  uint64_t bytes_downloaded = 0;
  double seconds = 0;
};

// HF_HUB_OFFLINE=1 (or true/yes): never touch the network.
bool hub_offline();

// Lists the repository, picks the files (see select.h), downloads the missing
// ones and links them into snapshots/<commit>. Offline, answers from the cache
// only. Throws owl::Error with one clear line on failure.
PullResult pull(const HubSpec& spec, const PullOptions& opt);

// The cached model for `spec` at `revision` (empty: default), chosen the way a
// pull would choose among the cached files; std::nullopt when absent.
std::optional<PullResult> find_cached(const HubSpec& spec, const std::string& revision = "");

}  // namespace owl::hub
