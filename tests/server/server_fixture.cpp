#include "server/server_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <thread>

#include "test_util.h"

namespace owl::test {

std::string HttpResult::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

HttpConnection::HttpConnection(int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("cannot connect to port " + std::to_string(port));
  timeval tv{60, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

HttpConnection::~HttpConnection() { close(); }

void HttpConnection::reset() {
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

void HttpConnection::half_close() { ::shutdown(fd_, SHUT_WR); }

void HttpConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void HttpConnection::send_request(const std::string& method, const std::string& path, const std::string& body,
                                  const std::vector<std::string>& headers) {
  std::string msg = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) msg += h + "\r\n";
  if (method == "POST")
    msg += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  msg += "\r\n" + body;
  size_t off = 0;
  while (off < msg.size()) {
    ssize_t w = ::send(fd_, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
    if (w <= 0) break;  // the server may refuse early (413); the answer is still readable
    off += static_cast<size_t>(w);
  }
  body_done_ = false;
}

std::string HttpConnection::read_line() {
  for (;;) {
    size_t e = buf_.find("\r\n");
    if (e != std::string::npos) {
      std::string line = buf_.substr(0, e);
      buf_.erase(0, e + 2);
      return line;
    }
    char tmp[8192];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) throw std::runtime_error("connection closed while reading a line");
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::string HttpConnection::read_exact(size_t n) {
  while (buf_.size() < n) {
    char tmp[8192];
    ssize_t r = ::recv(fd_, tmp, sizeof tmp, 0);
    if (r <= 0) throw std::runtime_error("connection closed inside a body");
    buf_.append(tmp, static_cast<size_t>(r));
  }
  std::string s = buf_.substr(0, n);
  buf_.erase(0, n);
  return s;
}

void HttpConnection::read_head(HttpResult& r) {
  std::string status = read_line();
  if (status.rfind("HTTP/1.1 ", 0) != 0) throw std::runtime_error("bad status line: " + status);
  r.status = std::stoi(status.substr(9, 3));
  for (std::string line = read_line(); !line.empty(); line = read_line()) {
    size_t c = line.find(':');
    std::string k = line.substr(0, c);
    for (auto& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::string v = line.substr(c + 1);
    while (!v.empty() && v[0] == ' ') v.erase(0, 1);
    r.headers.emplace_back(k, v);
  }
  if (r.status == 100) {  // "100 Continue": the real answer follows
    r = HttpResult{};
    read_head(r);
  }
}

bool HttpConnection::read_body_piece(const HttpResult& r, std::string& piece) {
  piece.clear();
  if (body_done_) return false;
  if (r.header("transfer-encoding") == "chunked") {
    size_t n = std::stoul(read_line(), nullptr, 16);
    if (n == 0) {
      read_line();
      body_done_ = true;
      return false;
    }
    piece = read_exact(n);
    read_line();
    return true;
  }
  body_done_ = true;
  piece = read_exact(std::stoul(r.header("content-length").empty() ? "0" : r.header("content-length")));
  return true;
}

HttpResult HttpConnection::request(const std::string& method, const std::string& path, const std::string& body,
                                   const std::vector<std::string>& headers) {
  send_request(method, path, body, headers);
  HttpResult r;
  read_head(r);
  std::string piece;
  while (read_body_piece(r, piece)) r.body += piece;
  return r;
}

HttpResult http_get(int port, const std::string& path, const std::vector<std::string>& headers) {
  HttpConnection c(port);
  return c.request("GET", path, "", headers);
}

HttpResult http_post(int port, const std::string& path, const std::string& body,
                     const std::vector<std::string>& headers) {
  HttpConnection c(port);
  return c.request("POST", path, body, headers);
}

std::string raw_exchange(int port, const std::string& request, int timeout_s) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to port " + std::to_string(port));
  }
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t off = 0;
  while (off < request.size()) {
    ssize_t w = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  std::string answer;
  char tmp[8192];
  for (ssize_t n; (n = ::recv(fd, tmp, sizeof tmp, 0)) > 0;) answer.append(tmp, static_cast<size_t>(n));
  ::close(fd);
  return answer;
}

std::vector<nlohmann::json> sse_events(const std::string& body) {
  std::vector<nlohmann::json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) throw std::runtime_error("SSE event without its blank line: " + body.substr(pos));
    std::string ev = body.substr(pos, end - pos);
    if (ev.rfind("data: ", 0) != 0) throw std::runtime_error("SSE event without 'data: ': " + ev);
    std::string data = ev.substr(6);
    out.push_back(data == "[DONE]" ? nlohmann::json("[DONE]") : nlohmann::json::parse(data));
    pos = end + 2;
  }
  return out;
}

ServerProcess::ServerProcess(const std::string& model, const std::vector<std::string>& args) {
  // A fresh name each time: a server allocated where a stopped one was must not read the old
  // log's "listening on" line before its child has truncated it.
  static std::atomic<int> serial{0};
  log_path_ = temp_dir() + "/serve-" + std::to_string(::getpid()) + "-" + std::to_string(serial++) + ".log";
  std::remove(log_path_.c_str());
  std::vector<std::string> argv_s = {OWL_BINARY, "serve", model, "--port", "0", "--threads", "1"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // no orphaned servers when a test binary dies
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log_text = log();
    size_t at = log_text.find("listening on http://127.0.0.1:");
    if (at != std::string::npos && log_text.find('\n', at) != std::string::npos) {
      port_ = std::stoi(log_text.substr(at + 30));
      return;
    }
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("owl serve exited early: " + log_text);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("owl serve did not start within 60 s: " + log());
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int st;
    for (int i = 0; i < 300 && ::waitpid(pid_, &st, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (::waitpid(pid_, &st, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
    }
  }
}

std::string ServerProcess::log() const {
  try {
    return read_file(log_path_);
  } catch (const std::exception&) {
    return "";
  }
}

double ServerProcess::metric(const std::string& name_with_labels) const {
  std::string text = http_get(port_, "/metrics").body;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t e = text.find('\n', pos);
    std::string line = text.substr(pos, e - pos);
    pos = e == std::string::npos ? text.size() : e + 1;
    if (line.rfind(name_with_labels + " ", 0) == 0) return std::stod(line.substr(name_with_labels.size() + 1));
  }
  throw std::runtime_error("metric " + name_with_labels + " not found in:\n" + text);
}

}  // namespace owl::test
