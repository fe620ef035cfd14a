// The hubs' HTTP APIs: which files a repository holds at a revision, and the
// URL each file downloads from.
//   Hugging Face: GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true
//     -> {"sha": commit, "siblings": [{"rfilename", "size", "blobId", "lfs": {"sha256", "size"}}]}
//     file: {endpoint}/{repo}/resolve/{commit}/{path}
//   ModelScope: GET {endpoint}/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=true
//     -> {"Code": 200, "Data": {"Files": [{"Path", "Size", "Sha256", "Type", "Revision"}]}}
//     (no repository commit: the snapshot is named after the revision, "master")
//     file: {endpoint}/api/v1/models/{repo}/repo?Revision={rev}&FilePath={path}
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hub/http.h"
#include "hub/spec.h"

namespace owl::hub {

struct RepoFile {
  std::string path;  // relative to the repository root
  uint64_t size = 0;
  std::string sha256;   // LFS oid / ModelScope Sha256; empty when unknown
  std::string git_oid;  // Git blob id (Hugging Face), for small non-LFS files
  // The blob file name in the cache, as huggingface_hub names it (its etag).
  std::string blob_id() const { return !sha256.empty() ? sha256 : git_oid; }
};

struct RepoListing {
  std::string commit;
  std::vector<RepoFile> files;
};

// HF_ENDPOINT (default https://huggingface.co) or MODELSCOPE_ENDPOINT
// (default https://www.modelscope.cn), without a trailing slash.
std::string endpoint(Source source);
// Authorization headers: HF_TOKEN (or HUGGING_FACE_HUB_TOKEN, or the token file
// `huggingface-cli login` writes) / MODELSCOPE_API_TOKEN.
std::vector<std::string> auth_headers(Source source);
std::string default_revision(Source source);  // "main" / "master"

// Throws owl::Error with a clear line for a missing or gated repository.
RepoListing fetch_listing(const HubSpec& spec, const std::string& revision, const RetryPolicy& retry);
std::string file_url(const HubSpec& spec, const std::string& commit, const std::string& path);

// For a listing that gave a file no hash (a mirror that ignores ?blobs=true): its size and
// hash from a HEAD of its URL, as huggingface_hub takes them (X-Linked-Size, X-Linked-Etag
// on the hub's redirect, else Content-Length, ETag). Throws owl::Error when the HEAD fails or
// gives no size: a download that cannot be checked must not become the model.
void describe_from_head(const HubSpec& spec, const std::string& commit, RepoFile& f, const RetryPolicy& retry);

// The message for a failed request (gated, missing, rate limited...).
// `what` names the thing asked for ("repository X", "file F of X").
std::string http_error_message(const HubSpec& spec, const std::string& what, long status,
                               const std::string& error_code_header, const std::string& body);

}  // namespace owl::hub
