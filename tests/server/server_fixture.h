// Test helpers for the server: a real `owl serve` child process on a free port,
// and a small blocking HTTP/1.1 client on raw sockets (it can read a streamed
// answer chunk by chunk and drop the connection mid-stream).
#pragma once
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace owl::test {

struct HttpResult {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

class HttpConnection {
 public:
  explicit HttpConnection(int port);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends a request (Content-Length body); extra headers as "Name: value".
  void send_request(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::vector<std::string>& headers = {});
  // Reads the status line and headers of the answer.
  void read_head(HttpResult& r);
  // Reads the next piece of the body: a chunk of a chunked answer, or the whole body.
  // Returns false at the end of the body.
  bool read_body_piece(const HttpResult& r, std::string& piece);
  // A whole exchange.
  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "",
                     const std::vector<std::string>& headers = {});
  void close();
  // Closes with a reset (SO_LINGER 0), as a client that aborts does when its answer is pending.
  void reset();
  // Shuts down the sending side only: the request is complete, the answer still wanted.
  void half_close();

 private:
  std::string read_line();
  std::string read_exact(size_t n);
  int fd_ = -1;
  std::string buf_;
  bool body_done_ = false;
};

// GET/POST on a fresh connection.
HttpResult http_get(int port, const std::string& path, const std::vector<std::string>& headers = {});
HttpResult http_post(int port, const std::string& path, const std::string& body,
                     const std::vector<std::string>& headers = {});

// Sends raw bytes on a fresh connection and returns everything the server answers until it
// closes the connection (or until timeout_s passes without a byte).
std::string raw_exchange(int port, const std::string& request, int timeout_s = 10);

// The JSON payloads of a server-sent-events body ("data: {...}"), in order; "[DONE]" kept as a string.
std::vector<nlohmann::json> sse_events(const std::string& body);

// A running `owl serve MODEL ARGS... --port 0`; stopped (SIGTERM) when destroyed.
class ServerProcess {
 public:
  ServerProcess(const std::string& model, const std::vector<std::string>& args);
  ~ServerProcess();
  int port() const { return port_; }
  // The value of a metric line "NAME VALUE" (or "NAME{labels} VALUE" with the labels given).
  double metric(const std::string& name_with_labels) const;
  std::string log() const;

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

}  // namespace owl::test
