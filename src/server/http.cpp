#include "server/http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <thread>

#include "base/error.h"

namespace owl::http {

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

// Waits up to timeout_ms for fd to become readable; false on timeout or stop.
bool wait_readable(int fd, int timeout_ms, const std::atomic<bool>& stopping) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!stopping.load()) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 200);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
  return false;
}

std::string response_head(int status, std::string_view content_type, const std::vector<std::string>& extra,
                          bool keep_alive) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) + "\r\n";
  if (!content_type.empty()) h += "Content-Type: " + std::string(content_type) + "\r\n";
  for (const auto& e : extra) h += e + "\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  return h;
}

}  // namespace

const char* status_text(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

bool Response::send_all(std::string_view data) {
  if (failed_) return false;
  while (!data.empty()) {
    ssize_t w = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      failed_ = true;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return true;
}

void Response::send(int status, std::string_view content_type, std::string_view body,
                    const std::vector<std::string>& extra_headers) {
  if (state_ != State::None) return;
  state_ = State::Done;
  status_ = status;
  std::string msg = response_head(status, content_type, extra_headers, keep_alive_);
  msg += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  msg += body;
  send_all(msg);
}

bool Response::begin_stream(int status, std::string_view content_type, const std::vector<std::string>& extra_headers) {
  if (state_ != State::None) return false;
  state_ = State::Streaming;
  status_ = status;
  if (!chunked_) keep_alive_ = false;  // the end of the body is the end of the connection
  std::string msg = response_head(status, content_type, extra_headers, keep_alive_);
  msg += chunked_ ? "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n" : "Cache-Control: no-cache\r\n\r\n";
  return send_all(msg);
}

bool Response::write(std::string_view data) {
  if (state_ != State::Streaming) return false;
  if (data.empty()) return !failed_;
  if (!chunked_) return send_all(data);
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string chunk = size;
  chunk += data;
  chunk += "\r\n";
  return send_all(chunk);
}

void Response::end_stream() {
  if (state_ != State::Streaming) return;
  state_ = State::Done;
  if (chunked_) send_all("0\r\n\r\n");
}

bool Response::client_gone() const {
  if (failed_) return true;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {  // data or EOF: a zero-byte peek means the peer closed
    char c;
    ssize_t r = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
  return false;
}

Server::Server(ServerOptions opts, Handler handler) : opts_(std::move(opts)), handler_(std::move(handler)) {}

Server::~Server() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void Server::listen() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(opts_.port);
  if (int rc = ::getaddrinfo(opts_.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    throw Error("cannot resolve host '" + opts_.host + "': " + gai_strerror(rc) + "; pass --host with an IP address");
  std::string last_error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0)
    throw Error("cannot listen on " + opts_.host + ":" + port + ": " + last_error +
                "; pick another --port (0 picks a free one)");
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

void Server::stop() { stopping_.store(true); }

void Server::run() {
  if (listen_fd_ < 0) listen();
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    int r = ::poll(&p, 1, 200);
    if (r <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};  // a client that stops reading cannot block a sender forever
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connections_.load() >= opts_.max_connections) {
      Response busy(fd, false);
      busy.send(
          503, "application/json",
          R"({"error":{"message":"too many open connections; retry later","type":"server_error","param":null,"code":"too_many_connections"}})");
      ::close(fd);
      continue;
    }
    connections_.fetch_add(1);
    std::thread([this, fd] {
      serve_connection(fd);
      ::close(fd);
      connections_.fetch_sub(1);
    }).detach();
  }
  while (connections_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void Server::serve_connection(int fd) {
  std::string buf;  // bytes read but not yet consumed
  auto error_reply = [&](int status, const char* message, const char* code) {
    Response r(fd, false);
    std::string body = std::string(R"({"error":{"message":")") + message +
                       R"(","type":"invalid_request_error","param":null,"code":")" + code + "\"}}";
    r.send(status, "application/json", body);
    // The client may still be sending the body we refused: read it away (briefly) so that
    // closing does not reset the connection before the client has read the answer.
    ::shutdown(fd, SHUT_WR);
    char sink[16384];
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (std::chrono::steady_clock::now() < until && wait_readable(fd, 500, stopping_))
      if (::recv(fd, sink, sizeof sink, 0) <= 0) break;
  };
  auto read_more = [&](int timeout_ms) {
    if (!wait_readable(fd, timeout_ms, stopping_)) return false;
    char tmp[16384];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  };

  while (!stopping_.load()) {
    // Head: request line and headers up to the blank line.
    size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > opts_.max_header_bytes)
        return error_reply(431, "request headers too large", "headers_too_large");
      if (!read_more(buf.empty() ? opts_.idle_timeout_ms : 10000)) return;
    }
    Request req;
    std::string_view head(buf.data(), head_end);
    size_t line_end = head.find("\r\n");
    std::string_view line = head.substr(0, line_end);
    size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) return error_reply(400, "malformed request line", "bad_request");
    req.method = std::string(line.substr(0, sp1));
    std::string target(line.substr(sp1 + 1, sp2 - sp1 - 1));
    std::string version(line.substr(sp2 + 1));
    if (size_t q = target.find('?'); q != std::string::npos) {
      req.query = target.substr(q + 1);
      target.resize(q);
    }
    req.path = target;
    size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string_view::npos) e = head.size();
      std::string_view h = head.substr(pos, e - pos);
      size_t colon = h.find(':');
      if (colon == std::string_view::npos || colon == 0)
        return error_reply(400, "malformed header line", "bad_request");
      // RFC 9112 5.1: no whitespace between the field name and the colon (a request smuggling vector).
      if (h[colon - 1] == ' ' || h[colon - 1] == '\t' || h[0] == ' ' || h[0] == '\t')
        return error_reply(400, "whitespace around a header field name", "bad_request");
      req.headers.emplace_back(lower(h.substr(0, colon)), trim(h.substr(colon + 1)));
      pos = e + 2;
    }
    buf.erase(0, head_end + 4);

    std::string connection = lower(req.header("connection"));
    const bool http11 = version == "HTTP/1.1";
    bool keep_alive = http11 ? connection != "close" : connection == "keep-alive";

    // Content-Length (RFC 9112 6.2, 6.3): digits only; every occurrence (repeated headers or a
    // comma list) must give the same value; never together with Transfer-Encoding.
    bool has_length = false, has_transfer_encoding = false;
    std::string length_text;
    for (const auto& [name, value] : req.headers) {
      if (name == "transfer-encoding") has_transfer_encoding = true;
      if (name != "content-length") continue;
      size_t p = 0;
      do {
        size_t comma = value.find(',', p);
        std::string item =
            trim(std::string_view(value).substr(p, comma == std::string::npos ? std::string::npos : comma - p));
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos)
          return error_reply(400, "invalid Content-Length", "bad_request");
        if (has_length && item != length_text)
          return error_reply(400, "conflicting Content-Length values", "bad_request");
        has_length = true;
        length_text = item;
        p = comma == std::string::npos ? std::string::npos : comma + 1;
      } while (p != std::string::npos);
    }
    if (has_transfer_encoding && has_length)
      return error_reply(400, "Content-Length together with Transfer-Encoding", "bad_request");
    if (has_transfer_encoding)
      return error_reply(411, "chunked request bodies are not supported; send Content-Length", "length_required");
    size_t length = 0;
    if (has_length) {
      errno = 0;
      unsigned long long v = std::strtoull(length_text.c_str(), nullptr, 10);
      if (errno != 0) v = std::numeric_limits<unsigned long long>::max();  // too large: 413 below
      if (v > opts_.max_body_bytes) {
        std::string msg = "request body of " + std::to_string(v) + " bytes exceeds the limit of " +
                          std::to_string(opts_.max_body_bytes) + " bytes";
        return error_reply(413, msg.c_str(), "body_too_large");
      }
      length = static_cast<size_t>(v);
    }
    if (http11 && length > 0 && lower(req.header("expect")) == "100-continue" && buf.empty()) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      if (::send(fd, cont, sizeof cont - 1, MSG_NOSIGNAL) < 0) return;
    }
    while (buf.size() < length)
      if (!read_more(10000)) return;
    req.body = buf.substr(0, length);
    buf.erase(0, length);

    Response res(fd, keep_alive, /*chunked=*/http11);
    try {
      handler_(req, res);
    } catch (const std::exception& e) {
      if (!res.sent()) {
        std::string msg = std::string("internal error: ") + e.what();
        for (auto& c : msg)
          if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = ' ';
        return error_reply(500, msg.c_str(), "internal_error");
      }
      return;
    }
    if (!res.sent())
      res.send(500, "application/json",
               R"({"error":{"message":"no response","type":"server_error","param":null,"code":"internal_error"}})");
    if (!res.keep_alive()) return;
  }
}

}  // namespace owl::http
