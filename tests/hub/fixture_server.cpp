#include "fixture_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

#include "hub/hash.h"

namespace owl::test {

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

namespace {

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

std::string url_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(const std::string& q) {
  std::map<std::string, std::string> out;
  std::stringstream ss(q);
  std::string kv;
  while (std::getline(ss, kv, '&')) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) out[url_decode(kv.substr(0, eq))] = url_decode(kv.substr(eq + 1));
  }
  return out;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 302:
      return "Found";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    default:
      return "Other";
  }
}

void send_simple(int fd, int status, const std::string& body, const std::map<std::string, std::string>& headers) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  for (const auto& [k, v] : headers) h += k + ": " + v + "\r\n";
  h += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  send_all(fd, h.data(), h.size());
  send_all(fd, body.data(), body.size());
}

std::string json_error(const std::string& msg) { return nlohmann::json{{"error", msg}}.dump(); }

}  // namespace

FixtureServer::FixtureServer() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // an ephemeral port
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0)
    throw std::runtime_error(std::string("fixture server: cannot listen: ") + std::strerror(errno));
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FixtureServer::~FixtureServer() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  std::vector<std::thread> ws;
  {
    std::lock_guard<std::mutex> g(mu_);
    ws.swap(workers_);
  }
  for (auto& w : ws) w.join();
}

void FixtureServer::add_repo(const std::string& id, FixtureRepo repo) {
  for (auto& f : repo.files) {  // hashed once: files may be large in measurements
    f.sha256 = hub::sha256_hex(f.content);
    f.git_oid = hub::git_blob_sha1(f.content);
  }
  std::lock_guard<std::mutex> g(mu_);
  repos_[id] = std::move(repo);
}
void FixtureServer::drop_after(const std::string& p, uint64_t bytes, int times) {
  std::lock_guard<std::mutex> g(mu_);
  drops_[p] = {bytes, times};
}
void FixtureServer::rate_limit(const std::string& p, int times, int retry_after_s) {
  std::lock_guard<std::mutex> g(mu_);
  rate_limits_[p] = {times, retry_after_s};
}
void FixtureServer::corrupt(const std::string& p) {
  std::lock_guard<std::mutex> g(mu_);
  corrupt_[p] = true;
}
void FixtureServer::hide(const std::string& p) {
  std::lock_guard<std::mutex> g(mu_);
  hidden_[p] = true;
}

std::vector<RequestRecord> FixtureServer::requests() {
  std::lock_guard<std::mutex> g(mu_);
  return log_;
}

std::vector<RequestRecord> FixtureServer::requests_for(const std::string& needle) {
  std::vector<RequestRecord> out;
  for (auto& r : requests())
    if (r.target.find(needle) != std::string::npos) out.push_back(r);
  return out;
}

void FixtureServer::accept_loop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard<std::mutex> g(mu_);
    workers_.emplace_back([this, fd] {
      serve(fd);
      ::close(fd);
    });
  }
}

void FixtureServer::serve(int fd) {
  // Read the request head.
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }
  std::istringstream in(head);
  std::string method, target, version, line;
  in >> method >> target >> version;
  std::getline(in, line);
  std::map<std::string, std::string> headers;
  while (std::getline(in, line) && line != "\r") {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon), v = line.substr(colon + 1);
    for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    v.erase(0, v.find_first_not_of(' '));
    while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
    headers[k] = v;
  }
  const bool head_only = method == "HEAD";
  RequestRecord rec{method, target, headers.count("range") ? headers["range"] : "",
                    headers.count("authorization") ? headers["authorization"] : "", 0};
  auto log = [&](int status) {
    rec.status = status;
    std::lock_guard<std::mutex> g(mu_);
    log_.push_back(rec);
  };
  auto reply = [&](int status, const std::string& body, std::map<std::string, std::string> h = {}) {
    log(status);
    send_simple(fd, status, body, h);
  };

  std::string path = target.substr(0, target.find('?'));
  auto query = parse_query(target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1));
  std::vector<std::string> parts;
  {
    std::stringstream ss(path);
    std::string p;
    while (std::getline(ss, p, '/'))
      if (!p.empty()) parts.push_back(url_decode(p));
  }
  auto join_from = [&](size_t i) {
    std::string s;
    for (; i < parts.size(); ++i) s += (s.empty() ? "" : "/") + parts[i];
    return s;
  };

  std::unique_lock<std::mutex> g(mu_);
  auto find_repo = [&](const std::string& id) -> const FixtureRepo* {
    auto it = repos_.find(id);
    return it == repos_.end() ? nullptr : &it->second;
  };
  auto find_file = [](const FixtureRepo& r, const std::string& p) -> const FixtureFile* {
    for (const auto& f : r.files)
      if (f.path == p) return &f;
    return nullptr;
  };
  const std::map<std::string, std::string> not_found_repo = {{"X-Error-Code", "RepositoryNotFound"}};

  // Hugging Face: GET /api/models/{org}/{name}/revision/{rev}
  if (parts.size() == 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "revision") {
    const FixtureRepo* r = find_repo(parts[2] + "/" + parts[3]);
    // Like the real hub, an unknown repository answers 401 RepositoryNotFound to anonymous callers.
    if (!r) return g.unlock(), reply(401, json_error("Repository not found"), not_found_repo);
    if (parts[5] != "main" && parts[5] != r->commit)
      return g.unlock(), reply(404, json_error("Invalid rev id: " + parts[5]), {{"X-Error-Code", "RevisionNotFound"}});
    if (auto it = rate_limits_.find(kListing); it != rate_limits_.end() && it->second.first > 0) {
      --it->second.first;
      int after = it->second.second;
      return g.unlock(), reply(429, json_error("rate limited"), {{"Retry-After", std::to_string(after)}});
    }
    if (!garbled_listing_.empty()) {
      std::string body = garbled_listing_;
      return g.unlock(), reply(200, body, {{"Content-Type", "application/json"}});
    }
    nlohmann::json j = {{"id", parts[2] + "/" + parts[3]}, {"sha", r->commit}, {"gated", r->gated ? "auto" : "false"}};
    j["siblings"] = nlohmann::json::array();
    for (const auto& f : r->files) {
      nlohmann::json s = {{"rfilename", f.path}};
      if (!bare_listing_) {
        s["size"] = f.content.size();
        s["blobId"] = f.git_oid;
        if (f.lfs) s["lfs"] = {{"sha256", f.sha256}, {"size", f.content.size()}, {"pointerSize", 134}};
      }
      j["siblings"].push_back(s);
    }
    g.unlock();
    return reply(200, j.dump(), {{"Content-Type", "application/json"}});
  }

  // Shared by both hubs: checks, then the file body with Range support.
  auto serve_file = [&](const FixtureRepo& r, const FixtureFile& f, bool redirect_lfs) {
    if (r.gated) {
      std::string auth = rec.authorization;
      if (auth.empty())
        return g.unlock(), reply(401, json_error("Access to model is restricted. You must be authenticated."),
                                 {{"X-Error-Code", "GatedRepo"}});
      if (auth != "Bearer " + token_)
        return g.unlock(),
               reply(403, json_error("Access to model is restricted and you are not in the authorized list."),
                     {{"X-Error-Code", "GatedRepo"}});
    }
    if (hidden_.count(f.path))
      return g.unlock(), reply(404, json_error("Entry not found"), {{"X-Error-Code", "EntryNotFound"}});
    if (auto it = rate_limits_.find(f.path); it != rate_limits_.end() && it->second.first > 0) {
      --it->second.first;
      int after = it->second.second;
      return g.unlock(), reply(429, json_error("rate limited"), {{"Retry-After", std::to_string(after)}});
    }
    const std::string& sha = f.sha256;
    if (redirect_lfs && f.lfs) {
      std::map<std::string, std::string> h = {
          {"Location", "/cdn/" + sha}, {"X-Repo-Commit", r.commit}, {"X-Linked-Etag", "\"" + sha + "\""}};
      if (!head_without_size_) h["X-Linked-Size"] = std::to_string(f.content.size());
      return g.unlock(), reply(302, "", h);
    }
    std::string content = f.content;
    if (corrupt_.count(f.path) && !content.empty()) content[content.size() / 2] ^= 0x5a;
    std::map<std::string, std::string> extra = {{"ETag", "\"" + (f.lfs ? sha : f.git_oid) + "\""},
                                                {"X-Repo-Commit", r.commit}};
    g.unlock();
    send_file_body(fd, f.path, content, rec.range, extra, log, head_only);
  };

  // Hugging Face: GET /{org}/{name}/resolve/{rev}/{path...}
  if (parts.size() >= 5 && parts[2] == "resolve") {
    const FixtureRepo* r = find_repo(parts[0] + "/" + parts[1]);
    if (!r) return g.unlock(), reply(401, json_error("Repository not found"), not_found_repo);
    if (parts[3] != "main" && parts[3] != r->commit)
      return g.unlock(), reply(404, json_error("Invalid rev id"), {{"X-Error-Code", "RevisionNotFound"}});
    const FixtureFile* f = find_file(*r, join_from(4));
    if (!f) return g.unlock(), reply(404, json_error("Entry not found"), {{"X-Error-Code", "EntryNotFound"}});
    return serve_file(*r, *f, true);
  }
  // The LFS storage behind the redirect: GET /cdn/{sha256}
  if (parts.size() == 2 && parts[0] == "cdn") {
    for (const auto& [id, r] : repos_)
      for (const auto& f : r.files)
        if (f.lfs && f.sha256 == parts[1]) {
          FixtureRepo open = r;
          open.gated = false;  // the signed redirect URL is the credential
          return serve_file(open, f, false);
        }
    return g.unlock(), reply(404, "no such object");
  }
  // ModelScope: GET /api/v1/models/{org}/{name}/repo/files?Revision=&Recursive=
  //             GET /api/v1/models/{org}/{name}/repo?Revision=&FilePath=
  if (parts.size() >= 6 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "models" && parts[5] == "repo") {
    const FixtureRepo* r = find_repo(parts[3] + "/" + parts[4]);
    if (!r) return g.unlock(), reply(404, nlohmann::json{{"Code", 10010205}, {"Message", "Model not exists"}}.dump());
    if (parts.size() == 7 && parts[6] == "files") {
      nlohmann::json files = nlohmann::json::array();
      for (const auto& f : r->files)
        files.push_back({{"Name", f.path.substr(f.path.rfind('/') + 1)},
                         {"Path", f.path},
                         {"Size", f.content.size()},
                         {"Sha256", f.sha256},
                         {"Type", "blob"},
                         {"Revision", r->commit}});
      nlohmann::json j = {{"Code", 200}, {"Data", {{"Files", files}}}, {"Success", true}};
      g.unlock();
      return reply(200, j.dump(), {{"Content-Type", "application/json"}});
    }
    const FixtureFile* f = find_file(*r, query["FilePath"]);
    if (!f) return g.unlock(), reply(404, nlohmann::json{{"Code", 10010205}, {"Message", "file not found"}}.dump());
    return serve_file(*r, *f, false);
  }
  g.unlock();
  reply(404, json_error("no route for " + path));
}

void FixtureServer::send_file_body(int fd, const std::string& path, const std::string& content,
                                   const std::string& range, const std::map<std::string, std::string>& extra,
                                   const std::function<void(int)>& log_status, bool head_only) {
  uint64_t total = content.size(), from = 0, to = total;  // [from, to)
  int status = 200;
  if (!range.empty() && !ignore_ranges_) {
    // Only the single-range forms owl sends: bytes=a- and bytes=a-b.
    unsigned long long a = 0, b = 0;
    int n = std::sscanf(range.c_str(), "bytes=%llu-%llu", &a, &b);
    if (n < 1 || a >= total) {
      log_status(416);
      send_simple(fd, 416, "", {{"Content-Range", "bytes */" + std::to_string(total)}});
      return;
    }
    from = a;
    to = n == 2 ? std::min<uint64_t>(b + 1, total) : total;
    status = 206;
  }
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  for (const auto& [k, v] : extra) h += k + ": " + v + "\r\n";
  if (status == 206)
    h += "Content-Range: bytes " + std::to_string(from) + "-" + std::to_string(to - 1) + "/" + std::to_string(total) +
         "\r\n";
  h += "Accept-Ranges: bytes\r\n";
  if (!(head_only && head_without_size_)) h += "Content-Length: " + std::to_string(to - from) + "\r\n";
  h += "Connection: close\r\n\r\n";
  log_status(status);  // before the body: the client may be done before this thread wakes again
  if (!send_all(fd, h.data(), h.size()) || head_only) return;

  uint64_t cut = UINT64_MAX;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = drops_.find(path); it != drops_.end() && it->second.second > 0) {
      --it->second.second;
      cut = it->second.first;
    }
  }
  const size_t chunk = 16 * 1024;
  uint64_t sent = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t pos = from; pos < to; pos += chunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, to - pos));
    if (sent + n > cut) n = static_cast<size_t>(cut - sent);
    if (n > 0 && !send_all(fd, content.data() + pos, n)) return;
    sent += n;
    if (sent >= cut) {
      ::shutdown(fd, SHUT_RDWR);  // the connection drops mid-body
      return;
    }
    if (uint64_t bps = throttle_.load()) {
      auto due = t0 + std::chrono::microseconds(sent * 1000000 / bps);
      std::this_thread::sleep_until(due);
    }
  }
}

}  // namespace owl::test
