// A loopback HTTP server that plays the part of the Hugging Face and ModelScope
// hubs for the tests: the subset of their APIs owl uses, plus switches that
// make it fail the way real servers do (dropped connections, 429, gated repos,
// wrong content). Plain POSIX sockets: one thread per connection, HTTP/1.1
// with "Connection: close".
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace owl::test {

struct FixtureFile {
  std::string path;
  std::string content;
  bool lfs = true;                        // large files redirect to /cdn/<sha256>, like the real hub
  std::string sha256 = {}, git_oid = {};  // filled in by add_repo
};

struct FixtureRepo {
  std::string commit;  // 40 hex digits
  std::vector<FixtureFile> files;
  bool gated = false;  // files need "Authorization: Bearer <token>"
};

struct RequestRecord {
  std::string method;         // GET, HEAD
  std::string target;         // path and query, as sent
  std::string range;          // Range header, "" if none
  std::string authorization;  // Authorization header, "" if none
  int status = 0;
};

class FixtureServer {
 public:
  FixtureServer();
  ~FixtureServer();
  FixtureServer(const FixtureServer&) = delete;
  FixtureServer& operator=(const FixtureServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void add_repo(const std::string& id, FixtureRepo repo);

  // Body responses for `file_path` are cut (connection closed) after `bytes`
  // body bytes, for the next `times` such responses.
  void drop_after(const std::string& file_path, uint64_t bytes, int times);
  // The next `times` downloads of `file_path` answer 429 with Retry-After
  // (kListing instead of a path: the Hugging Face listing requests).
  void rate_limit(const std::string& file_path, int times, int retry_after_s);
  // Serves `file_path` with one byte changed (the listing keeps the true hash).
  void corrupt(const std::string& file_path);
  // Listed, but every download of it answers 404 EntryNotFound.
  void hide(const std::string& file_path);
  // Bytes per second for file bodies (0: unlimited).
  void throttle(uint64_t bytes_per_second) { throttle_ = bytes_per_second; }
  // Answers every request with the whole file (200), as servers without Range support do.
  void ignore_ranges(bool on) { ignore_ranges_ = on; }
  void set_token(const std::string& token) { token_ = token; }
  // The Hugging Face listing answers 200 with this body instead of the JSON.
  void garble_listing(const std::string& body) { garbled_listing_ = body; }
  static constexpr const char* kListing = "(listing)";
  // The Hugging Face listing names the files only (no size, blobId or lfs), as mirrors that
  // ignore ?blobs=true answer; HEAD of a file still describes it.
  void bare_listing(bool on) { bare_listing_ = on; }
  // HEAD answers carry no size (no Content-Length, no X-Linked-Size).
  void head_without_size(bool on) { head_without_size_ = on; }

  std::vector<RequestRecord> requests();
  // Requests whose target contains `needle`.
  std::vector<RequestRecord> requests_for(const std::string& needle);

 private:
  void accept_loop();
  void serve(int fd);
  // Sends the (ranged) body; `log_status` records the request once its status is known.
  // HEAD (`head_only`): the same head, no body.
  void send_file_body(int fd, const std::string& path, const std::string& content, const std::string& range,
                      const std::map<std::string, std::string>& extra, const std::function<void(int)>& log_status,
                      bool head_only);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::map<std::string, FixtureRepo> repos_;
  std::map<std::string, std::pair<uint64_t, int>> drops_;
  std::map<std::string, std::pair<int, int>> rate_limits_;
  std::map<std::string, bool> corrupt_, hidden_;
  std::vector<RequestRecord> log_;
  std::atomic<uint64_t> throttle_{0};
  std::atomic<bool> ignore_ranges_{false};
  std::string token_ = "hf_good_token";
  std::string garbled_listing_;
  std::atomic<bool> bare_listing_{false};
  std::atomic<bool> head_without_size_{false};
};

// Deterministic pseudo-random bytes: test files differ from each other.
std::string random_bytes(size_t n, uint32_t seed);

}  // namespace owl::test
