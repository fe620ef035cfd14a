#include "hub/hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/error.h"

namespace owl::hub {
namespace {

std::string to_hex(const unsigned char* d, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (unsigned i = 0; i < n; ++i) {
    s[2 * i] = digits[d[i] >> 4];
    s[2 * i + 1] = digits[d[i] & 15];
  }
  return s;
}

// One EVP digest context; the algorithm is chosen by the caller.
class Digest {
 public:
  explicit Digest(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) throw Error("cannot initialise a digest (OpenSSL)");
  }
  ~Digest() { EVP_MD_CTX_free(ctx_); }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx_, out, &n);
    return to_hex(out, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// Streams the first `limit` bytes of a file (all of it by default) through `d`; returns how many there were.
template <typename D>
uint64_t feed_file(D& d, const std::string& path, uint64_t limit = UINT64_MAX) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot read " + path + ": " + std::strerror(errno));
  std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  size_t n;
  while (total < limit && (n = std::fread(buf.data(), 1, std::min<uint64_t>(limit - total, buf.size()), f)) > 0) {
    d.update(buf.data(), n);
    total += n;
  }
  bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) throw Error("cannot read " + path + ": I/O error");
  return total;
}

}  // namespace

struct Sha256::Impl {
  Digest d{EVP_sha256()};
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {}
Sha256::~Sha256() = default;
void Sha256::update(const void* data, size_t n) { impl_->d.update(data, n); }
std::string Sha256::hex_digest() { return impl_->d.hex(); }
uint64_t Sha256::update_from_file(const std::string& path, uint64_t n) { return feed_file(*this, path, n); }

std::string sha256_hex(const std::string& data) {
  Digest d(EVP_sha256());
  d.update(data.data(), data.size());
  return d.hex();
}

std::string sha256_file(const std::string& path) {
  Digest d(EVP_sha256());
  feed_file(d, path);
  return d.hex();
}

std::string git_blob_sha1(const std::string& data) {
  Digest d(EVP_sha1());
  std::string header = "blob " + std::to_string(data.size());
  d.update(header.data(), header.size() + 1);  // includes the NUL terminator
  d.update(data.data(), data.size());
  return d.hex();
}

std::string git_blob_sha1_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot read " + path + ": " + std::strerror(errno));
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  std::fclose(f);
  Digest d(EVP_sha1());
  std::string header = "blob " + std::to_string(size);
  d.update(header.data(), header.size() + 1);
  feed_file(d, path);
  return d.hex();
}

}  // namespace owl::hub
