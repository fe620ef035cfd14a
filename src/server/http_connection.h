// The inside of the HTTP server (http.h): the shared state of a running Server and one
// client connection's life, from its first byte to its close. Everything here runs on the
// server's single I/O thread, except Connection::write_and_wait() and gone(), which a
// handler's thread calls.
#pragma once
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "server/http.h"

namespace owl::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace detail {
class Connection;
}

struct Server::Impl {
  Impl(const ServerOptions& o, const Handler& h) : opts(o), handler(h) {}

  void accept();
  // Takes a new connection in, or refuses it (per-client cap; the total cap when every
  // connection has a request in progress).
  void admit(tcp::socket socket);
  // Drops a closed connection from the books.
  void forget(detail::Connection& c);
  // Every 100 ms: on stop(), closes the acceptor and every connection, then ends the loop
  // once the last handler has returned.
  void watch(const std::atomic<bool>& stopping);
  // Runs the handler; a handler that throws or answers nothing gets a 500.
  void run_handler(const Request& req, Response& res) const;

  const ServerOptions& opts;
  const Handler& handler;
  int max_connections = 0;  // opts.max_connections within the open-files limit
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer retry{ioc};  // accept() after a failure (out of file descriptors)
  asio::steady_timer tick{ioc};
  std::list<std::shared_ptr<detail::Connection>> connections;  // oldest first
  std::unordered_map<std::string, int> per_client;             // open connections by client address
  std::atomic<int> requests{0};                                // handlers running on their own threads
  bool shutting_down = false;
};

namespace detail {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server::Impl& server, tcp::socket socket, std::string client);

  // Starts reading requests; or, when `refusal` is set, answers it (503) and closes.
  void start(const std::optional<std::string>& refusal = std::nullopt);
  // Closes at once (no answer).
  void close();
  // A request is being handled on its own thread (the connection must not be evicted).
  bool busy() const { return phase_ == Phase::Handling; }
  const std::string& client() const { return client_; }

  // From a handler's thread: writes the bytes and waits until they are written (or fail).
  bool write_and_wait(std::string bytes);
  // The client reset the connection, a write failed, or the server closed it.
  bool gone() const { return gone_.load(); }

  std::list<std::shared_ptr<Connection>>::iterator registry_pos;  // in Server::Impl::connections
  bool counted = false;                                           // in Server::Impl::per_client

 private:
  enum class Phase {
    Idle,      // waiting for a request's first byte
    Head,      // reading a request head
    Body,      // reading its body
    Handling,  // a handler thread answers it
    Writing,   // an answer written from here (inline path or refusal)
    Closing,   // answer sent; draining what the client still sends before closing
    Closed
  };

  void process();
  bool parse_head();  // true once the head is parsed and checked (phase Body)
  bool parse_body();  // true once the body is complete
  void dispatch();
  void request_done(bool keep_alive);
  // Answers with an error and closes the connection.
  void reject(int status, const std::string& message, const char* code);
  void close_gracefully();
  void read();
  void on_read(const boost::system::error_code& ec, size_t n);
  void write(std::string bytes, std::function<void(bool)> done);
  void write_next();
  void arm_deadline(int ms);
  void on_deadline();

  Server::Impl& server_;
  tcp::socket socket_;
  std::string client_;
  Phase phase_ = Phase::Idle;
  std::atomic<bool> gone_{false};
  bool reading_ = false;
  bool eof_ = false;  // the client shut down its sending side
  std::array<char, 16384> chunk_{};
  std::string in_;      // received, not yet parsed
  size_t scanned_ = 0;  // bytes of in_ checked for bare LF and obs-fold
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  asio::steady_timer deadline_;
  unsigned deadline_generation_ = 0;  // a deadline set again or cancelled makes older waits moot
  asio::steady_timer write_deadline_;
  struct PendingWrite {
    std::string bytes;
    std::function<void(bool)> done;
  };
  std::deque<PendingWrite> writes_;
};

}  // namespace detail
}  // namespace owl::http
