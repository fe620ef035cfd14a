// Content hashes used to verify downloads: SHA-256 (the LFS oid of large files,
// ModelScope's Sha256) and Git's blob SHA-1 (the id of small, non-LFS files).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace owl::hub {

// Incremental SHA-256 (OpenSSL libcrypto underneath).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  // Feeds the first n bytes of a file (all of it by default); returns how many there were.
  // Throws owl::Error when it cannot be read.
  uint64_t update_from_file(const std::string& path, uint64_t n = UINT64_MAX);
  std::string hex_digest();  // lower-case hex; call once

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(const std::string& data);
// Hashes a whole file; throws owl::Error when it cannot be read.
std::string sha256_file(const std::string& path);
// Git's object id of a file: SHA-1 of "blob <size>\0" followed by the content.
std::string git_blob_sha1_file(const std::string& path);
std::string git_blob_sha1(const std::string& data);

}  // namespace owl::hub
