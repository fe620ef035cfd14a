#include "server/http_connection.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <chrono>
#include <future>
#include <system_error>
#include <thread>

namespace owl::http::detail {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

// A request's path with %XX escapes decoded; nullopt when an escape is malformed or decodes to NUL.
std::optional<std::string> percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string seconds(int ms) {
  return std::to_string(ms / 1000) + (ms % 1000 ? "." + std::to_string(ms % 1000) : "") + " s";
}

}  // namespace

Connection::Connection(Server::Impl& server, tcp::socket socket, std::string client)
    : server_(server),
      socket_(std::move(socket)),
      client_(std::move(client)),
      deadline_(server.ioc),
      write_deadline_(server.ioc) {}

void Connection::start(const std::optional<std::string>& refusal) {
  if (refusal) return reject(503, *refusal, "too_many_connections");
  arm_deadline(server_.opts.idle_timeout_ms);
  process();
}

// ---- reading and parsing ---------------------------------------------------------------------

void Connection::read() {
  // Reading goes on while a request is handled, so that a reset is seen at once; what a
  // pipelining client sends meanwhile waits in in_ (up to a bound, then the socket's buffers).
  if (reading_ || eof_ || phase_ == Phase::Closed) return;
  if ((phase_ == Phase::Handling || phase_ == Phase::Writing) && in_.size() > server_.opts.max_header_bytes) return;
  reading_ = true;
  socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                            size_t n) { self->on_read(ec, n); });
}

void Connection::on_read(const boost::system::error_code& ec, size_t n) {
  reading_ = false;
  if (phase_ == Phase::Closed) return;
  if (phase_ == Phase::Closing) {  // the answer is out; what the client still sends is dropped
    if (ec) return close();
    return read();
  }
  if (ec == asio::error::eof) {
    eof_ = true;  // a half-close: the client may still be waiting for its answer
  } else if (ec) {
    gone_ = true;
    return close();
  } else {
    in_.append(chunk_.data(), n);
  }
  process();
}

void Connection::process() {
  for (;;) {
    switch (phase_) {
      case Phase::Handling:
      case Phase::Writing:
        read();
        return;
      case Phase::Closing:
      case Phase::Closed:
        return;
      case Phase::Idle:
        // RFC 9112 2.2: empty lines before a request line are ignored.
        while (in_.starts_with("\r\n")) in_.erase(0, 2);
        if (in_.empty()) {
          if (eof_) return close();
          return read();
        }
        phase_ = Phase::Head;
        scanned_ = 0;
        arm_deadline(server_.opts.header_timeout_ms);
        break;
      case Phase::Head:
        if (!parse_head()) return;
        break;
      case Phase::Body:
        if (!parse_body()) return;
        dispatch();
        break;
    }
  }
}

bool Connection::parse_head() {
  const size_t limit = server_.opts.max_header_bytes;
  size_t end = 0;
  // Beast's parser accepts obs-fold and waits forever on bare LF; RFC 9112 lets a server refuse
  // both, and a proxy in front may read them differently (request smuggling), so refuse them.
  for (; scanned_ < in_.size(); ++scanned_) {
    const size_t i = scanned_;
    if (i >= limit) {
      reject(431, "the request head is larger than " + std::to_string(limit) + " bytes", "headers_too_large");
      return false;
    }
    if (in_[i] != '\n') continue;
    if (i == 0 || in_[i - 1] != '\r') {
      reject(400, "bare LF in the request head: lines must end with CRLF", "bad_request");
      return false;
    }
    if (i >= 3 && in_.compare(i - 3, 4, "\r\n\r\n") == 0) {
      end = i + 1;
      break;
    }
    if (i + 1 == in_.size()) break;  // the next byte tells a folded line from the next field
    if (in_[i + 1] == ' ' || in_[i + 1] == '\t') {
      reject(400, "folded header line (obs-fold) in the request head", "bad_request");
      return false;
    }
  }
  if (end == 0) {
    if (eof_)
      reject(400, "the connection was closed before the request head was complete", "bad_request");
    else
      read();
    return false;
  }

  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(limit + 1));  // checked exactly above
  parser_->body_limit(server_.opts.max_body_bytes);
  parser_->eager(true);
  beast::error_code ec;
  const size_t used = parser_->put(asio::buffer(in_.data(), end), ec);
  if (ec == bhttp::error::need_more) ec = {};
  if (ec == bhttp::error::body_limit) {
    reject(413,
           "request body of " + std::to_string(parser_->content_length().value_or(0)) + " bytes exceeds the limit of " +
               std::to_string(server_.opts.max_body_bytes) + " bytes",
           "body_too_large");
    return false;
  }
  if (ec == bhttp::error::bad_content_length) {
    reject(400, "invalid Content-Length: digits only, one value, not beside Transfer-Encoding", "bad_request");
    return false;
  }
  if (ec == bhttp::error::bad_transfer_encoding) {
    reject(400, "Transfer-Encoding repeated or beside Content-Length", "bad_request");
    return false;
  }
  if (ec == bhttp::error::bad_version) {  // Beast takes HTTP/1.0 and HTTP/1.1 only
    reject(505, "only HTTP/1.0 and HTTP/1.1 are served", "bad_request");
    return false;
  }
  if (ec || !parser_->is_header_done()) {
    reject(400, "malformed request head (" + ec.message() + ")", "bad_request");
    return false;
  }
  in_.erase(0, used);

  const auto& head = parser_->get();
  if (head.version() == 11 && head.find(bhttp::field::host) == head.end()) {
    reject(400, "an HTTP/1.1 request needs a Host header", "bad_request");  // RFC 9112 3.2
    return false;
  }
  if (auto te = head.find(bhttp::field::transfer_encoding); te != head.end()) {
    // RFC 9112 6.3: a request whose last coding is not chunked has no knowable length.
    if (!parser_->chunked()) {
      reject(400, "Transfer-Encoding without chunked as the last coding", "bad_request");
      return false;
    }
    if (!beast::iequals(te->value(), "chunked")) {
      reject(501, "only the chunked transfer coding is supported", "bad_request");
      return false;
    }
  }
  if (head.version() == 11 && beast::iequals(head[bhttp::field::expect], "100-continue") && in_.empty() &&
      (parser_->chunked() || parser_->content_length().value_or(0) > 0))
    write("HTTP/1.1 100 Continue\r\n\r\n", [](bool) {});
  phase_ = Phase::Body;
  arm_deadline(server_.opts.body_timeout_ms);
  return true;
}

bool Connection::parse_body() {
  while (!parser_->is_done()) {
    if (in_.empty()) {
      if (eof_)
        reject(400, "the connection was closed before the request body was complete", "bad_request");
      else
        read();
      return false;
    }
    beast::error_code ec;
    const size_t used = parser_->put(asio::buffer(in_), ec);
    in_.erase(0, used);
    if (ec == bhttp::error::need_more) {
      if (used == 0 && !in_.empty()) {  // a partial chunk header: wait for the rest
        if (eof_) {
          reject(400, "the connection was closed before the request body was complete", "bad_request");
          return false;
        }
        read();
        return false;
      }
      continue;
    }
    if (ec == bhttp::error::body_limit) {
      reject(413, "request body exceeds the limit of " + std::to_string(server_.opts.max_body_bytes) + " bytes",
             "body_too_large");
      return false;
    }
    if (ec) {
      reject(400, "malformed request body (" + ec.message() + ")", "bad_request");
      return false;
    }
  }
  return true;
}

// ---- answering -------------------------------------------------------------------------------

void Connection::dispatch() {
  ++deadline_generation_;  // no read deadline while the request is answered
  deadline_.cancel();
  bhttp::request<bhttp::string_body> msg = parser_->release();
  parser_.reset();
  const bool keep_alive = msg.keep_alive();
  const bool http11 = msg.version() == 11;
  const bool head_only = msg.method() == bhttp::verb::head;

  Request req;
  req.method = std::string(msg.method_string());
  std::string_view target(msg.target().data(), msg.target().size());
  std::string_view path = target;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    req.query = std::string(target.substr(q + 1));
    path = target.substr(0, q);
  }
  std::optional<std::string> decoded = percent_decode(path);
  if (!decoded) return reject(400, "malformed percent-encoding in the request path", "bad_request");
  req.path = std::move(*decoded);
  for (const auto& f : msg)
    req.headers.emplace_back(lower(std::string_view(f.name_string().data(), f.name_string().size())),
                             std::string(f.value()));
  req.body = std::move(msg.body());

  auto self = shared_from_this();
  const auto& inline_paths = server_.opts.inline_paths;
  const bool inline_path = std::find(inline_paths.begin(), inline_paths.end(), req.path) != inline_paths.end();
  if (inline_path || server_.requests.load() >= server_.opts.max_requests) {
    phase_ = Phase::Writing;
    Response res(self, keep_alive, http11, /*buffered=*/true, head_only);
    if (inline_path)
      server_.run_handler(req, res);
    else
      res.send(503, "application/json",
               error_json(
                   "the server has " + std::to_string(server_.opts.max_requests) + " requests in progress; retry later",
                   "server_error", "server_busy"),
               {"Retry-After: 1"});
    const bool keep = res.keep_alive();
    write(std::move(res.pending_), [self, keep](bool ok) {
      if (ok) self->request_done(keep);
    });
    return process();
  }

  phase_ = Phase::Handling;
  server_.requests.fetch_add(1);
  try {
    std::thread([conn = self, req = std::move(req), keep_alive, http11, head_only]() mutable {
      Server::Impl& server = conn->server_;
      {
        Response res(conn, keep_alive, http11, /*buffered=*/false, head_only);
        server.run_handler(req, res);
        const bool keep = res.keep_alive();
        asio::post(server.ioc, [conn, keep] { conn->request_done(keep); });
      }
      conn.reset();  // before the count drops: the server may end once it is zero
      server.requests.fetch_sub(1);
    }).detach();
  } catch (const std::system_error&) {
    server_.requests.fetch_sub(1);
    phase_ = Phase::Writing;
    return reject(503, "cannot start a thread for the request; retry later", "server_busy");
  }
  process();
}

void Connection::request_done(bool keep_alive) {
  if (phase_ == Phase::Closed) return;
  if (!keep_alive || gone_) return close_gracefully();
  phase_ = Phase::Idle;
  arm_deadline(server_.opts.idle_timeout_ms);
  process();
}

void Connection::reject(int status, const std::string& message, const char* code) {
  const char* type = status >= 500 ? "server_error" : "invalid_request_error";
  const std::string body = error_json(message, type, code);
  std::string msg = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) +
                    "\r\nContent-Type: application/json\r\nConnection: close\r\n" +
                    (status == 503 ? "Retry-After: 1\r\n" : "") + "Content-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
  phase_ = Phase::Writing;
  ++deadline_generation_;
  deadline_.cancel();
  write(std::move(msg), [self = shared_from_this()](bool ok) {
    if (ok) self->close_gracefully();
  });
}

void Connection::close_gracefully() {
  if (phase_ == Phase::Closed) return;
  // Closing with unread bytes from the client would reset the connection and could destroy the
  // answer before the client has read it: send FIN, drain briefly, then close.
  phase_ = Phase::Closing;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  if (eof_ || ec) return close();
  arm_deadline(2000);
  read();
}

void Connection::close() {
  if (phase_ == Phase::Closed) return;
  phase_ = Phase::Closed;
  gone_ = true;
  ++deadline_generation_;
  deadline_.cancel();
  write_deadline_.cancel();
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  server_.forget(*this);  // last: this may drop the registry's reference
}

// ---- writing ---------------------------------------------------------------------------------

void Connection::write(std::string bytes, std::function<void(bool)> done) {
  if (phase_ == Phase::Closed) return done(false);
  writes_.push_back({std::move(bytes), std::move(done)});
  if (writes_.size() == 1) write_next();
}

void Connection::write_next() {
  write_deadline_.expires_after(std::chrono::milliseconds(server_.opts.write_timeout_ms));
  write_deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->close();  // the client reads nothing: drop it
  });
  asio::async_write(socket_, asio::buffer(writes_.front().bytes),
                    [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                      self->write_deadline_.cancel();
                      PendingWrite w = std::move(self->writes_.front());
                      self->writes_.pop_front();
                      if (ec) {
                        self->gone_ = true;
                        w.done(false);
                        while (!self->writes_.empty()) {
                          PendingWrite rest = std::move(self->writes_.front());
                          self->writes_.pop_front();
                          rest.done(false);
                        }
                        return self->close();
                      }
                      w.done(true);
                      if (!self->writes_.empty()) self->write_next();
                    });
}

bool Connection::write_and_wait(std::string bytes) {
  if (gone_) return false;
  std::promise<bool> written;
  std::future<bool> result = written.get_future();
  // The server keeps its I/O loop running until every handler has returned, so this is answered.
  asio::post(server_.ioc, [self = shared_from_this(), &bytes, &written] {
    self->write(std::move(bytes), [&written](bool ok) { written.set_value(ok); });
  });
  return result.get();
}

// ---- deadlines -------------------------------------------------------------------------------

void Connection::arm_deadline(int ms) {
  deadline_.expires_after(std::chrono::milliseconds(ms));
  deadline_.async_wait(
      [self = shared_from_this(), generation = ++deadline_generation_](const boost::system::error_code& ec) {
        if (!ec && generation == self->deadline_generation_) self->on_deadline();
      });
}

void Connection::on_deadline() {
  switch (phase_) {
    case Phase::Idle:
    case Phase::Closing:
      return close();
    case Phase::Head:
      return reject(408, "the request head did not arrive within " + seconds(server_.opts.header_timeout_ms),
                    "request_timeout");
    case Phase::Body:
      return reject(408, "the request body did not arrive within " + seconds(server_.opts.body_timeout_ms),
                    "request_timeout");
    default:
      return;
  }
}

}  // namespace owl::http::detail
