// The HTTP/1.1 server under `owl serve`, on Boost.Beast's parser and Boost.Asio's sockets.
//
// One I/O thread owns every socket: it accepts, reads and parses requests (RFC 9112: no
// conflicting or malformed Content-Length, no Content-Length beside Transfer-Encoding, no
// obs-fold, no bare LF; chunked request bodies accepted), enforces deadlines (a request's head
// and body must each arrive within a bounded time, else 408), and writes answers. Idle and
// half-sent connections are cheap (no thread each); a handler runs on its own thread only once
// its request is complete, so only requests in progress count against `max_requests`. Paths in
// `inline_paths` (/health, /metrics) are answered on the I/O thread and are never refused for
// load. A handler answers through Response, whole or streamed (chunked; to HTTP/1.0 clients
// sent as is and ended by closing); it can ask whether its client has gone (reset, or a write
// failed) without writing. A client that half-closes after its request still gets its answer.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace owl::http {

struct Request {
  std::string method;
  std::string path;                                          // percent-decoded, without the query string
  std::string query;                                         // after '?', undecoded
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                                          // de-chunked
  // The header's value, or "" when absent (name in lower case).
  std::string header(std::string_view name) const;
};

namespace detail {
class Connection;
}

// What a handler answers with: either send() once, or begin_stream() then write()s.
class Response {
 public:
  // A complete response. Extra headers are "Name: value" lines without CRLF.
  void send(int status, std::string_view content_type, std::string_view body,
            const std::vector<std::string>& extra_headers = {});
  // Starts a streamed response (chunked, or until close for HTTP/1.0); false when the client is gone.
  bool begin_stream(int status, std::string_view content_type, const std::vector<std::string>& extra_headers = {});
  // Sends one piece; false when the client is gone (the handler should stop).
  bool write(std::string_view data);
  // Ends the stream.
  void end_stream();
  // True when the client reset the connection or a write to it failed (checked without blocking).
  // A client that only half-closed (shut down its sending side) is still there.
  bool client_gone() const;

  // Called once with the status just before the answer's last bytes go out (the whole response,
  // or the stream's end): what it records is visible before the client can act on the answer.
  void on_finish(std::function<void(int status)> f) { on_finish_ = std::move(f); }

  bool sent() const { return state_ != State::None; }
  bool keep_alive() const { return keep_alive_ && !failed_ && state_ == State::Done; }
  int status() const { return status_; }

 private:
  friend class detail::Connection;
  // buffered: the bytes are kept in `pending_` and written by the connection after the handler
  // returns (handlers on the I/O thread); else each piece is written before the call returns.
  // head_only: the answer to a HEAD request, whose head is sent without the body (RFC 9110 9.3.2).
  Response(std::shared_ptr<detail::Connection> conn, bool keep_alive, bool chunked, bool buffered, bool head_only);
  bool emit(std::string bytes);
  enum class State { None, Streaming, Done };
  std::shared_ptr<detail::Connection> conn_;
  bool keep_alive_;
  bool chunked_;
  bool buffered_;
  bool head_only_;
  std::string pending_;
  bool failed_ = false;
  int status_ = 0;
  State state_ = State::None;
  std::function<void(int)> on_finish_;
};

using Handler = std::function<void(const Request&, Response&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (see Server::port())
  size_t max_body_bytes = 8u << 20;      // larger bodies get 413
  size_t max_header_bytes = 64u << 10;   // a longer request head (request line + fields + blank line) gets 431
  int max_requests = 64;                 // requests in progress at once (not counting inline paths); more get 503
  int max_connections = 4096;            // open connections; at the cap the oldest without a request in progress goes
  int max_connections_per_client = 128;  // open connections from one client address; more are refused (503)
  int idle_timeout_ms = 30000;           // a connection with no request in progress closes after this much silence
  int header_timeout_ms = 10000;         // from a request's first byte to the end of its head, else 408
  int body_timeout_ms = 30000;           // from the end of the head to the end of the body, else 408
  int write_timeout_ms = 30000;          // a client that reads nothing of an answer for this long is dropped
  // Answered on the I/O thread, never refused for load: their handlers must be quick and never block.
  std::vector<std::string> inline_paths = {"/health", "/metrics"};
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
  // Serves until stop(); returns after every handler has returned.
  void run();
  // Safe from a signal handler: run() notices within 100 ms.
  void stop() { stopping_.store(true); }

  struct Impl;  // http.cpp

 private:
  ServerOptions opts_;
  Handler handler_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
};

// "OK", "Not Found", ... for a status code.
const char* status_text(int status);

// {"error":{"message":...,"type":...,"param":null,"code":...}}: the OpenAI error shape, for the
// answers the HTTP layer gives on its own (bad framing, timeouts, limits).
std::string error_json(std::string_view message, std::string_view type, std::string_view code);

}  // namespace owl::http
