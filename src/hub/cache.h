// The on-disk model cache, in the Hugging Face hub layout so that files are
// shared with the Python tools:
//   <root>/models--ORG--NAME/blobs/<sha256 or git oid>      the content
//   <root>/models--ORG--NAME/snapshots/<commit>/<file>      symlink -> ../../blobs/<id>
//   <root>/models--ORG--NAME/refs/<revision>                the commit id
//   <root>/.locks/models--ORG--NAME/<id>.lock               one writer per blob
// An unfinished download is blobs/<id>.incomplete (never a complete blob).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hub/spec.h"

namespace owl::hub {

// An environment variable's value; "" when it is unset or empty.
std::string env(const char* name);

// Hugging Face: $HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub or
// ~/.cache/huggingface/hub. ModelScope repos (the same layout, written by owl):
// $OWL_MODELSCOPE_CACHE or ~/.cache/owl/modelscope.
std::string cache_root(Source source);

struct RepoPaths {
  std::string dir;       // <root>/models--ORG--NAME
  std::string lock_dir;  // <root>/.locks/models--ORG--NAME
  std::string blob(const std::string& id) const { return dir + "/blobs/" + id; }
  std::string snapshot(const std::string& commit) const { return dir + "/snapshots/" + commit; }
  std::string ref(const std::string& revision) const { return dir + "/refs/" + revision; }
  std::string lock(const std::string& id) const { return lock_dir + "/" + id + ".lock"; }
};
RepoPaths repo_paths(Source source, const std::string& repo);

// The commit refs/<revision> points at, if the ref exists.
std::optional<std::string> read_ref(const RepoPaths& p, const std::string& revision);
// Writes refs/<revision> atomically (no trailing newline, like huggingface_hub).
void write_ref(const RepoPaths& p, const std::string& revision, const std::string& commit);
// Points snapshots/<commit>/<file> at blobs/<id> with a relative symlink, atomically.
void link_snapshot_file(const RepoPaths& p, const std::string& commit, const std::string& file,
                        const std::string& blob_id);

// A file of a snapshot whose blob is really there (dangling links are skipped).
struct CachedFile {
  std::string path;  // relative to the snapshot folder
  uint64_t size = 0;
};
std::vector<CachedFile> snapshot_files(const std::string& snapshot_dir);

struct CachedRepo {
  Source source = Source::HuggingFace;
  std::string repo;  // ORG/NAME
  std::string dir;
  std::string commit;              // refs/main (or the only snapshot) if known
  uint64_t size_bytes = 0;         // blobs on disk (each counted once)
  size_t n_files = 0;              // files across snapshots
  std::vector<std::string> files;  // of the snapshot `commit`
};
std::vector<CachedRepo> list_cached(Source source);

// Removes a repository from the cache: everything when `files` is empty, else
// those snapshot files (each path, or every file under a folder of that name);
// then every blob no snapshot links to any more. Returns the bytes freed.
// Throws owl::Error when the repository is not cached.
uint64_t remove_cached(Source source, const std::string& repo, const std::vector<std::string>& files);

std::string human_size(uint64_t bytes);

}  // namespace owl::hub
