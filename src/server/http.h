// A small HTTP/1.1 server on POSIX sockets: what `owl serve` needs and no more.
// One thread per connection (bounded), keep-alive, Content-Length request
// bodies with a size limit (413 past it), and responses either whole or
// streamed with chunked transfer encoding (to HTTP/1.0 clients: unchunked,
// ended by closing the connection). A streaming handler can ask whether
// its client has gone away (peer closed or reset) without writing anything, so
// the server can stop generating for it at once.
//
// (cpp-httplib from Debian is a compiled library that the build does not link;
// this keeps the server free of that dependency.)
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace owl::http {

struct Request {
  std::string method;
  std::string path;                                          // without the query string
  std::string query;                                         // after '?', undecoded
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // The header's value, or "" when absent (name in lower case).
  std::string header(std::string_view name) const;
};

// What a handler answers with: either send() once, or begin_stream() then write()s.
class Response {
 public:
  // chunked: the client speaks HTTP/1.1. An HTTP/1.0 client knows no chunked encoding: a stream
  // to it is sent as is and ends when the connection closes.
  Response(int fd, bool keep_alive, bool chunked = true) : fd_(fd), keep_alive_(keep_alive), chunked_(chunked) {}
  // A complete response. Extra headers are "Name: value" lines without CRLF.
  void send(int status, std::string_view content_type, std::string_view body,
            const std::vector<std::string>& extra_headers = {});
  // Starts a streamed response (chunked, or until close for HTTP/1.0); false when the client is gone.
  bool begin_stream(int status, std::string_view content_type, const std::vector<std::string>& extra_headers = {});
  // Sends one piece; false when the client is gone (the handler should stop).
  bool write(std::string_view data);
  // Ends the stream.
  void end_stream();
  // True when the peer closed or reset the connection (checked without blocking).
  bool client_gone() const;

  bool sent() const { return state_ != State::None; }
  bool keep_alive() const { return keep_alive_ && !failed_ && state_ == State::Done; }
  int status() const { return status_; }

 private:
  bool send_all(std::string_view data);
  enum class State { None, Streaming, Done };
  int fd_;
  bool keep_alive_;
  bool chunked_;
  bool failed_ = false;
  int status_ = 0;
  State state_ = State::None;
};

using Handler = std::function<void(const Request&, Response&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                      // 0: any free port (see Server::port())
  size_t max_body_bytes = 8u << 20;     // larger bodies get 413
  size_t max_header_bytes = 64u << 10;  // larger headers get 431
  int max_connections = 64;             // more get 503 at once
  int idle_timeout_ms = 30000;          // keep-alive connections close after this much silence
};

class Server {
 public:
  Server(ServerOptions opts, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; throws owl::Error when the address is taken or invalid.
  void listen();
  int port() const { return port_; }
  // Accepts connections until stop(); returns after every connection thread has ended.
  void run();
  void stop();

 private:
  void serve_connection(int fd);
  ServerOptions opts_;
  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
};

// "OK", "Not Found", ... for a status code.
const char* status_text(int status);

}  // namespace owl::http
