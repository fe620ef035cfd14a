#include "hub/pull.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <strings.h>

#include "base/error.h"
#include "hub/api.h"
#include "hub/cache.h"
#include "hub/hash.h"
#include "hub/select.h"

namespace fs = std::filesystem;

namespace owl::hub {

bool hub_offline() {
  const char* v = std::getenv("HF_HUB_OFFLINE");
  if (!v) return false;
  return !strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on");
}

std::optional<PullResult> find_cached(const HubSpec& spec, const std::string& revision) {
  RepoPaths paths = repo_paths(spec.source, spec.repo);
  std::string rev = revision.empty() ? default_revision(spec.source) : revision;
  // A revision may be a commit id itself (a snapshot folder without a ref).
  std::string commit = read_ref(paths, rev).value_or(rev);
  std::string snap = paths.snapshot(commit);
  auto cached = snapshot_files(snap);
  if (cached.empty()) return std::nullopt;
  std::vector<RepoFile> files;
  for (const auto& f : cached) files.push_back(RepoFile{f.path, f.size, "", ""});
  Selection sel;
  try {
    sel = select_files(files, spec.variant, spec.variant_is_file, spec.repo_display());
  } catch (const Error&) {
    return std::nullopt;  // the cache holds other files of this repository
  }
  // A safetensors snapshot is only usable once config.json is there.
  if (!sel.gguf && !spec.variant_is_file && !fs::exists(snap + "/config.json")) return std::nullopt;
  PullResult r;
  r.snapshot_dir = snap;
  r.commit = commit;
  r.path = sel.gguf || spec.variant_is_file ? snap + "/" + sel.primary : snap;
  for (const auto& f : sel.files) r.files.push_back(f.path);
  return r;
}

PullResult pull(const HubSpec& spec, const PullOptions& opt) {
  std::string revision = opt.revision.empty() ? default_revision(spec.source) : opt.revision;
  if (hub_offline()) {
    if (auto r = find_cached(spec, revision)) return *r;
    throw Error(spec.display() + " is not in the cache (" + cache_root(spec.source) +
                ") and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE and run 'owl pull " + spec.display() + "'");
  }
  auto t0 = std::chrono::steady_clock::now();
  RepoListing listing = fetch_listing(spec, revision, opt.download.retry);
  Selection sel = select_files(listing.files, spec.variant, spec.variant_is_file, spec.repo_display());
  RepoPaths paths = repo_paths(spec.source, spec.repo);

  PullResult result;
  result.commit = listing.commit;
  result.snapshot_dir = paths.snapshot(listing.commit);
  for (auto& f : sel.files) {
    if (f.blob_id().empty()) describe_from_head(spec, listing.commit, f, opt.download.retry);
    std::string id = f.blob_id();
    // Without any hash from the hub the blob is named after what it is (commit and path).
    if (id.empty()) id = "nohash-" + sha256_hex(listing.commit + "/" + f.path);
    BlobDownload d;
    d.url = file_url(spec, listing.commit, f.path);
    d.headers = auth_headers(spec.source);
    d.blob_path = paths.blob(id);
    d.lock_path = paths.lock(id);
    d.size = f.size;
    d.sha256 = f.sha256;
    d.git_oid = f.git_oid;
    d.display_name = f.path;
    d.describe_error = [&spec, path = f.path](long status, const std::string& code, const std::string& body) {
      return http_error_message(spec, "file " + path + " of " + spec.repo_display(), status, code, body);
    };
    DownloadStats st = download_blob(d, opt.download);
    if (st.downloaded) ++result.files_downloaded;
    result.bytes_downloaded += st.bytes;
    link_snapshot_file(paths, listing.commit, f.path, id);
    result.files.push_back(f.path);
  }
  write_ref(paths, revision, listing.commit);
  result.path = sel.gguf || spec.variant_is_file ? result.snapshot_dir + "/" + sel.primary : result.snapshot_dir;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace owl::hub
