// Downloads one blob into the cache: locked against other downloaders (owl or
// huggingface_hub, which lock the same file), resumable from blobs/<id>.incomplete,
// optionally over several connections, verified before it becomes the blob.
//
// Resume state: without a "<id>.incomplete.ranges" file the .incomplete file is
// a contiguous prefix of the blob (what huggingface_hub leaves too). A download
// over several connections writes at scattered offsets, so it keeps
// "<id>.incomplete.ranges" (lines "start end done") up to date; its "done"
// counts never exceed the bytes already written.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hub/http.h"

namespace owl::hub {

struct DownloadOptions {
  int connections = 4;                     // parallel ranged requests for one large file
  uint64_t min_split_bytes = 64ull << 20;  // files (remainders) smaller than this use one connection
  RetryPolicy retry;
  bool quiet = false;  // no progress output
};

struct BlobDownload {
  std::string url;
  std::vector<std::string> headers;  // authorization
  std::string blob_path;             // final location, blobs/<id>
  std::string lock_path;
  uint64_t size = 0;
  std::string sha256;   // verified when set
  std::string git_oid;  // verified (Git blob SHA-1) when set and sha256 is not
  std::string display_name;
  // Turns an HTTP failure into the message the user sees.
  std::function<std::string(long status, const std::string& error_code, const std::string& body)> describe_error;
};

struct DownloadStats {
  bool downloaded = false;  // false: the blob was already there
  uint64_t bytes = 0;       // fetched in this run
  double seconds = 0;
};

// Throws owl::Error (one line) on failure; the .incomplete file stays for a
// later resume unless its content was proven wrong.
DownloadStats download_blob(const BlobDownload& d, const DownloadOptions& opt);

}  // namespace owl::hub
