#include "server/http.h"

#include <utility>

#include <sys/resource.h>

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "server/http_connection.h"

namespace owl::http {

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
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string error_json(std::string_view message, std::string_view type, std::string_view code) {
  nlohmann::ordered_json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}};
  return nlohmann::ordered_json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

// ---- Response --------------------------------------------------------------------------------

namespace {

std::string response_head(int status, std::string_view content_type, const std::vector<std::string>& extra,
                          bool keep_alive) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) + "\r\n";
  if (!content_type.empty()) h += "Content-Type: " + std::string(content_type) + "\r\n";
  for (const auto& e : extra) h += e + "\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  return h;
}

}  // namespace

Response::Response(std::shared_ptr<detail::Connection> conn, bool keep_alive, bool chunked, bool buffered,
                   bool head_only)
    : conn_(std::move(conn)), keep_alive_(keep_alive), chunked_(chunked), buffered_(buffered), head_only_(head_only) {}

bool Response::emit(std::string bytes) {
  if (failed_) return false;
  if (buffered_) {
    pending_ += bytes;
    return true;
  }
  if (!conn_->write_and_wait(std::move(bytes))) failed_ = true;
  return !failed_;
}

void Response::send(int status, std::string_view content_type, std::string_view body,
                    const std::vector<std::string>& extra_headers) {
  if (state_ != State::None) return;
  state_ = State::Done;
  status_ = status;
  if (on_finish_) std::exchange(on_finish_, nullptr)(status);
  std::string msg = response_head(status, content_type, extra_headers, keep_alive_);
  msg += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  if (!head_only_) msg += body;
  emit(std::move(msg));
}

bool Response::begin_stream(int status, std::string_view content_type, const std::vector<std::string>& extra_headers) {
  if (state_ != State::None) return false;
  state_ = State::Streaming;
  status_ = status;
  if (!chunked_) keep_alive_ = false;  // the end of the body is the end of the connection
  std::string msg = response_head(status, content_type, extra_headers, keep_alive_);
  msg += chunked_ ? "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n" : "Cache-Control: no-cache\r\n\r\n";
  return emit(std::move(msg));
}

bool Response::write(std::string_view data) {
  if (state_ != State::Streaming) return false;
  if (data.empty()) return !failed_;
  if (!chunked_) return emit(std::string(data));
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string chunk = size;
  chunk += data;
  chunk += "\r\n";
  return emit(std::move(chunk));
}

void Response::end_stream() {
  if (state_ != State::Streaming) return;
  state_ = State::Done;
  if (on_finish_) std::exchange(on_finish_, nullptr)(status_);
  if (chunked_) emit("0\r\n\r\n");
}

bool Response::client_gone() const { return failed_ || conn_->gone(); }

// ---- Server ----------------------------------------------------------------------------------

Server::Server(ServerOptions opts, Handler handler)
    : opts_(std::move(opts)), handler_(std::move(handler)), impl_(std::make_unique<Impl>(opts_, handler_)) {}

Server::~Server() = default;

void Server::listen() {
  // Each connection is a file descriptor: raise the soft limit to the hard one, and keep the
  // connection cap inside it (room left for the model's files and the log).
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
    ::getrlimit(RLIMIT_NOFILE, &nofile);
  }
  impl_->max_connections = opts_.max_connections;
  if (nofile.rlim_cur > 128 && nofile.rlim_cur - 64 < static_cast<rlim_t>(opts_.max_connections))
    impl_->max_connections = static_cast<int>(nofile.rlim_cur - 64);

  const std::string port = std::to_string(opts_.port);
  boost::system::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(opts_.host, port, tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) throw Error("cannot resolve host '" + opts_.host + "': " + ec.message() + "; pass --host with an IP address");
  std::string last_error = "no address";
  for (const auto& e : endpoints) {
    tcp::acceptor& a = impl_->acceptor;
    a.open(e.endpoint().protocol(), ec);
    if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a.bind(e.endpoint(), ec);
    if (!ec) a.listen(1024, ec);
    if (!ec) break;
    last_error = ec.message();
    boost::system::error_code ignored;
    a.close(ignored);
  }
  if (!impl_->acceptor.is_open())
    throw Error("cannot listen on " + opts_.host + ":" + port + ": " + last_error +
                "; pick another --port (0 picks a free one)");
  port_ = impl_->acceptor.local_endpoint().port();
}

void Server::run() {
  if (!impl_->acceptor.is_open()) listen();
  impl_->accept();
  impl_->watch(stopping_);
  impl_->ioc.run();
}

void Server::Impl::accept() {
  acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    if (shutting_down || !acceptor.is_open()) return;
    if (ec) {  // out of file descriptors, most likely: wait for some to close
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([this](const boost::system::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    admit(std::move(socket));
    accept();
  });
}

void Server::Impl::admit(tcp::socket socket) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  std::string client = remote.address().to_string();

  std::optional<std::string> refusal;
  if (per_client[client] >= opts.max_connections_per_client) {
    refusal = "too many connections from " + client + " (the limit is " +
              std::to_string(opts.max_connections_per_client) + "); close some and retry";
  } else if (static_cast<int>(connections.size()) >= max_connections) {
    // At the cap, the oldest connection without a request in progress makes room: idle and
    // half-sent connections cannot lock out new clients (or /health).
    auto victim = std::find_if(connections.begin(), connections.end(), [](const auto& c) { return !c->busy(); });
    if (victim != connections.end())
      (*victim)->close();
    else
      refusal = "too many open connections; retry later";
  }
  if (per_client[client] == 0 && refusal) per_client.erase(client);

  auto c = std::make_shared<detail::Connection>(*this, std::move(socket), client);
  connections.push_back(c);
  c->registry_pos = std::prev(connections.end());
  if (!refusal) {
    ++per_client[c->client()];
    c->counted = true;
  }
  c->start(refusal);
}

void Server::Impl::forget(detail::Connection& c) {
  if (c.counted) {
    auto it = per_client.find(c.client());
    if (it != per_client.end() && --it->second <= 0) per_client.erase(it);
    c.counted = false;
  }
  connections.erase(c.registry_pos);  // may destroy c: nothing of it is used after this
}

void Server::Impl::watch(const std::atomic<bool>& stopping) {
  tick.expires_after(std::chrono::milliseconds(100));
  tick.async_wait([this, &stopping](const boost::system::error_code& ec) {
    if (ec) return;
    if (stopping.load() && !shutting_down) {
      shutting_down = true;
      boost::system::error_code ignored;
      acceptor.close(ignored);
      retry.cancel();
      // Closing marks every connection gone: running handlers stop at their next check.
      auto open = connections;
      for (auto& c : open) c->close();
    }
    if (shutting_down && requests.load() == 0) return ioc.stop();
    watch(stopping);
  });
}

void Server::Impl::run_handler(const Request& req, Response& res) const {
  try {
    handler(req, res);
  } catch (const std::exception& e) {
    if (!res.sent())
      res.send(500, "application/json",
               error_json(std::string("internal error: ") + e.what(), "server_error", "internal_error"));
    return;
  }
  if (!res.sent()) res.send(500, "application/json", error_json("no response", "server_error", "internal_error"));
}

}  // namespace owl::http
