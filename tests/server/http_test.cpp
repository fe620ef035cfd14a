// The HTTP layer of `owl serve` as an attacker and a careless client meet it (issue #19):
// slow and half-sent connections, half-closes, strict RFC 9112 framing, chunked bodies,
// pipelining, size limits and deadlines. A real server process, raw sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <gtest/gtest.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "server/http.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string stories() { return shared_path("models/stories260K/stories260K-f32.gguf"); }

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// A client socket bound to a chosen loopback source address (all of 127.0.0.0/8 is loopback on
// Linux), so tests can be many clients at once.
class RawClient {
 public:
  explicit RawClient(int port, const std::string& source = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0)
      throw std::runtime_error("cannot bind to " + source);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
      throw std::runtime_error("cannot connect from " + source);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const std::string& bytes) {
    for (size_t off = 0; off < bytes.size();) {
      ssize_t w = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return;  // refused early; the answer is still readable
      off += static_cast<size_t>(w);
    }
  }
  void half_close() { ::shutdown(fd_, SHUT_WR); }
  // What the server sends until it closes, or until `quiet_ms` pass without a byte.
  std::string read_all(int quiet_ms = 5000) {
    std::string out;
    char buf[16384];
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, quiet_ms) <= 0) return out;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  // True when the server has sent something or closed (checked within `wait_ms`).
  bool answered(int wait_ms) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, wait_ms) > 0;
  }

 private:
  int fd_ = -1;
};

int status_of(const std::string& answer) {
  if (answer.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::stoi(answer.substr(9, 3));
}

std::string body_of(const std::string& answer) {
  size_t e = answer.find("\r\n\r\n");
  return e == std::string::npos ? "" : answer.substr(e + 4);
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string completion(const std::string& prompt, int max_tokens, bool stream = false) {
  json b = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  if (stream) b["stream"] = true;
  return b.dump();
}

// The concatenated "text" of a chunked SSE answer (raw bytes, head included).
std::string streamed_text(const std::string& answer) {
  std::string body = body_of(answer), sse;
  for (size_t pos = 0;;) {  // de-chunk
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t n = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
    if (n == 0) break;
    sse += body.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  std::string text;
  for (const auto& e : sse_events(sse))
    if (e.is_object() && !e["choices"].empty()) text += e["choices"][0]["text"].get<std::string>();
  return text;
}

// The default server (10 s head deadline, 128 connections per client).
class Http : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new ServerProcess(stories(), {"--parallel", "2", "--kv-type", "f32"}); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static int port() { return server_->port(); }
  static ServerProcess* server_;
};
ServerProcess* Http::server_ = nullptr;

// Issue #19 D1: 200 connections that send one byte and stall cost no request slot; /health
// answers at once and a completion runs while they are held.
TEST_F(Http, SlowConnectionsStarveNeitherHealthNorCompletions) {
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < 200; ++i) {  // 50 from each of four addresses (under the per-client cap)
    slow.push_back(std::make_unique<RawClient>(port(), "127.0.0." + std::to_string(2 + i % 4)));
    slow.back()->send("G");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int i = 0; i < 5; ++i) {
    auto t = Clock::now();
    auto h = http_get(port(), "/health");
    EXPECT_EQ(h.status, 200);
    EXPECT_LT(ms_since(t), 100.0);
  }
  auto r = http_post(port(), "/v1/completions", completion("Once upon a time", 5));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["text"], ", there was a little");
  for (auto& s : slow) EXPECT_FALSE(s->answered(0));  // held, not dropped: their deadline is 10 s
}

// Issue #19 D3: a client that shuts down its sending side after the request still gets the
// whole answer, whole or streamed.
TEST_F(Http, HalfClosedClientGetsTheWholeAnswer) {
  const std::string reference =
      http_post(port(), "/v1/completions", completion("Once upon a time", 40)).json()["choices"][0]["text"];
  {
    RawClient c(port());
    c.send(post("/v1/completions", completion("Once upon a time", 40)));
    c.half_close();
    std::string answer = c.read_all();
    ASSERT_EQ(status_of(answer), 200) << answer;
    EXPECT_EQ(json::parse(body_of(answer))["choices"][0]["text"], reference);
  }
  {
    RawClient c(port());
    c.send(post("/v1/completions", completion("Once upon a time", 40, true)));
    c.half_close();
    std::string answer = c.read_all();
    ASSERT_EQ(status_of(answer), 200) << answer;
    EXPECT_EQ(streamed_text(answer), reference);
    EXPECT_NE(answer.find("data: [DONE]"), std::string::npos);
  }
}

// Issue #19 D9: bare LF line ends and obs-fold are refused at once (400), not after a timeout.
TEST_F(Http, BareLfAndObsFoldAre400) {
  for (const std::string& bad :
       {std::string("GET /health HTTP/1.1\nHost: x\n\n"), std::string("GET /health HTTP/1.1\r\nHost: x\nX: y\r\n\r\n"),
        std::string("GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n")}) {
    auto t = Clock::now();
    std::string answer = raw_exchange(port(), bad, 5);
    EXPECT_EQ(status_of(answer), 400) << answer;
    EXPECT_NE(answer.find("bad_request"), std::string::npos) << answer;
    EXPECT_LT(ms_since(t), 2000.0);
  }
}

// RFC 9112: other framing faults are refused; HTTP/1.1 needs Host.
TEST_F(Http, MalformedFramingIsRefused) {
  const std::string body = completion("Once", 1);
  auto framed = [&](const std::string& framing) {
    return "POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + framing + "\r\n" + body;
  };
  EXPECT_EQ(status_of(raw_exchange(port(), framed("Transfer-Encoding: gzip\r\n"), 5)), 400);
  EXPECT_EQ(status_of(raw_exchange(port(), framed("Transfer-Encoding: gzip, chunked\r\n"), 5)), 501);
  EXPECT_EQ(status_of(raw_exchange(port(), framed("Content-Length: 1x\r\n"), 5)), 400);
  EXPECT_EQ(status_of(raw_exchange(port(), "GET /health HTTP/1.1\r\n\r\n", 5)), 400);  // no Host
  EXPECT_EQ(status_of(raw_exchange(port(), "GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 5)), 505);
  EXPECT_EQ(status_of(raw_exchange(port(), "GET /health HTTP/1.0\r\n\r\n", 5)), 200);  // HTTP/1.0: Host optional
}

// Issue #19 D9: the 64 KiB limit on a request head is exact.
TEST_F(Http, HeaderLimitIsExact) {
  auto head_of_size = [](size_t size) {
    const std::string start = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
    return start + std::string(size - start.size() - 4, 'a') + "\r\n\r\n";
  };
  std::string at_limit = raw_exchange(port(), head_of_size(64 << 10), 5);
  EXPECT_EQ(status_of(at_limit), 200) << at_limit.substr(0, 200);
  std::string over = raw_exchange(port(), head_of_size((64 << 10) + 1), 5);
  EXPECT_EQ(status_of(over), 431) << over.substr(0, 200);
  std::string far_over = raw_exchange(port(), head_of_size(80 << 10), 5);
  EXPECT_EQ(status_of(far_over), 431) << far_over.substr(0, 200);
}

// Chunked request bodies are de-chunked; the answer equals the Content-Length one's.
TEST_F(Http, ChunkedRequestBodyIsAccepted) {
  const std::string body = completion("Once upon a time", 8);
  const std::string plain = body_of(raw_exchange(port(), post("/v1/completions", body, "Connection: close\r\n")));
  std::string chunked =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  for (size_t i = 0; i < body.size(); i += 7) {
    const std::string piece = body.substr(i, 7);
    char size[16];
    std::snprintf(size, sizeof size, "%zx", piece.size());
    chunked += std::string(size) + "\r\n" + piece + "\r\n";
  }
  chunked += "0\r\n\r\n";
  std::string answer = raw_exchange(port(), chunked);
  ASSERT_EQ(status_of(answer), 200) << answer;
  EXPECT_EQ(json::parse(body_of(answer))["choices"][0]["text"], json::parse(plain)["choices"][0]["text"]);
  EXPECT_EQ(json::parse(body_of(answer))["choices"][0]["text"], ", there was a little girl");
}

// Pipelined requests on one keep-alive connection are answered in order, each whole.
TEST_F(Http, PipelinedRequestsAreAnsweredInOrder) {
  RawClient c(port());
  c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post("/v1/completions", completion("Once upon a time", 3)) +
         "GET /v1/models/stories260K-f32 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string all = c.read_all();
  std::vector<std::string> bodies;
  for (size_t pos = 0; pos < all.size();) {
    ASSERT_EQ(all.compare(pos, 9, "HTTP/1.1 "), 0) << all;
    EXPECT_EQ(all.compare(pos + 9, 3, "200"), 0) << all;
    size_t head_end = all.find("\r\n\r\n", pos);
    size_t cl = all.find("Content-Length: ", pos);
    ASSERT_LT(cl, head_end);
    size_t n = std::stoul(all.substr(cl + 16));
    bodies.push_back(all.substr(head_end + 4, n));
    pos = head_end + 4 + n;
  }
  ASSERT_EQ(bodies.size(), 3u) << all;
  EXPECT_EQ(json::parse(bodies[0])["status"], "ok");
  EXPECT_EQ(json::parse(bodies[1])["choices"][0]["text"], ", there was");
  EXPECT_EQ(json::parse(bodies[2])["id"], "stories260K-f32");
}

// A HEAD answer is a head without its body (its Content-Length says what a GET would get):
// the next answer on the connection follows at once.
TEST_F(Http, HeadAnswersCarryNoBody) {
  RawClient c(port());
  c.send("HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string all = c.read_all();
  const size_t first_end = all.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos) << all;
  EXPECT_NE(all.substr(0, first_end).find("Content-Length: "), std::string::npos) << all;
  EXPECT_EQ(all.compare(first_end + 4, 17, "HTTP/1.1 200 OK\r\n"), 0) << all;
  EXPECT_EQ(json::parse(body_of(all.substr(first_end + 4)))["status"], "ok");
}

// Issue #19 D9: the path is percent-decoded (clients escape model ids such as "org/name").
TEST_F(Http, PathIsPercentDecoded) {
  auto m = http_get(port(), "/v1/models/stories260K%2Df32");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(m.json()["id"], "stories260K-f32");
  EXPECT_EQ(http_get(port(), "/v1/models/org%2Fstories260K-f32").status, 404);
  for (const char* bad : {"/v1/models/%zz", "/v1/models/%4", "/v1/models/a%00b"})
    EXPECT_EQ(status_of(raw_exchange(port(), std::string("GET ") + bad + " HTTP/1.1\r\nHost: x\r\n\r\n", 5)), 400)
        << bad;
}

// Issue #19 D5: a prompt far larger than the context is refused before any tokenizer or
// template work (it took 3-4 s of CPU); the bytes alone prove it cannot fit.
TEST_F(Http, HugePromptIsRefusedBeforeTokenizing) {
  const std::string huge(7u << 20, 'a');
  for (const auto& [path, body] :
       {std::pair<std::string, std::string>{"/v1/completions", json{{"prompt", huge}}.dump()},
        {"/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", huge}}}}}.dump()}}) {
    auto t = Clock::now();
    auto r = http_post(port(), path, body);
    const double took = ms_since(t);
    ASSERT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.json()["error"]["code"], "context_length_exceeded") << r.body;
    EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("bytes"), std::string::npos) << r.body;
    EXPECT_LT(took, 1500.0) << path;  // JSON parsing of 7 MB only
  }
}

// A server with short deadlines and a small per-client cap.
class HttpLimits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(stories(), {"--header-timeout", "1", "--body-timeout", "1", "--max-client-connections",
                                            "8", "--parallel", "2"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static int port() { return server_->port(); }
  static ServerProcess* server_;
};
ServerProcess* HttpLimits::server_ = nullptr;

// Issue #19 D1: the head deadline runs from the first byte and is not renewed by each byte: a
// sender that trickles is cut with 408 after the deadline, as one that stalls.
TEST_F(HttpLimits, SlowHeadsAreCutWith408) {
  RawClient stalled(port()), trickle(port());
  auto t = Clock::now();
  stalled.send("GET /health HTTP/1.1\r\nHost: x\r\n");
  const std::string head = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  trickle.send(head);
  for (int i = 0; i < 30 && !trickle.answered(0); ++i) {
    trickle.send("a");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string a = stalled.read_all(), b = trickle.read_all();
  EXPECT_EQ(status_of(a), 408) << a;
  EXPECT_NE(a.find("request_timeout"), std::string::npos) << a;
  EXPECT_EQ(status_of(b), 408) << b;
  EXPECT_LT(ms_since(t), 2500.0);
  EXPECT_GT(ms_since(t), 900.0);
}

// Issue #19 D9: a body shorter than its Content-Length gets 408 after the body deadline (400
// at once when the client half-closes), not a silent close.
TEST_F(HttpLimits, ShortBodyIs408Or400) {
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":";
  {
    RawClient c(port());
    auto t = Clock::now();
    c.send(request);
    std::string answer = c.read_all();
    EXPECT_EQ(status_of(answer), 408) << answer;
    EXPECT_LT(ms_since(t), 2500.0);
  }
  {
    RawClient c(port());
    auto t = Clock::now();
    c.send(request);
    c.half_close();
    std::string answer = c.read_all();
    EXPECT_EQ(status_of(answer), 400) << answer;
    EXPECT_NE(answer.find("closed before the request body was complete"), std::string::npos) << answer;
    EXPECT_LT(ms_since(t), 500.0);
  }
}

// One address may hold only so many connections; others are unaffected.
TEST_F(HttpLimits, PerClientConnectionCap) {
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 8; ++i) held.push_back(std::make_unique<RawClient>(port(), "127.0.0.9"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  RawClient ninth(port(), "127.0.0.9");
  ninth.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string refused = ninth.read_all();
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_NE(refused.find("too_many_connections"), std::string::npos) << refused;
  EXPECT_EQ(http_get(port(), "/health").status, 200);  // from 127.0.0.1
  held.pop_back();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  RawClient again(port(), "127.0.0.9");
  again.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(again.read_all()), 200);
}

// The HTTP layer alone, in-process, with small limits and a handler that holds its requests.
class HttpServerLimits : public ::testing::Test {
 protected:
  void start(int max_connections, int max_requests) {
    http::ServerOptions o;
    o.port = 0;
    o.max_connections = max_connections;
    o.max_requests = max_requests;
    server_ = std::make_unique<http::Server>(o, [this](const http::Request& q, http::Response& r) {
      if (q.path == "/hold")
        while (!release_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      r.send(200, "text/plain", q.path);
    });
    server_->listen();
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    release_ = true;
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  std::atomic<bool> release_{false};
};

// At the connection cap the oldest connection without a request in progress is closed to make
// room: idle connections cannot lock anyone out, and one with a request running is kept.
TEST_F(HttpServerLimits, AtTheConnectionCapTheOldestIdleConnectionMakesRoom) {
  start(/*max_connections=*/4, /*max_requests=*/8);
  RawClient busy(server_->port());
  busy.send("GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(std::make_unique<RawClient>(server_->port()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto h = http_get(server_->port(), "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_TRUE(idle[0]->answered(1000));  // the oldest idle one was closed
  EXPECT_EQ(idle[0]->read_all(100), "");
  EXPECT_FALSE(idle[2]->answered(0));
  release_ = true;
  std::string held = busy.read_all(1000);
  EXPECT_EQ(status_of(held), 200) << held;
}

// Requests in progress are limited; /health is answered beside them and never refused.
TEST_F(HttpServerLimits, BusyServerRefusesWork503ButAnswersHealth) {
  start(/*max_connections=*/64, /*max_requests=*/1);
  RawClient busy(server_->port());
  busy.send("GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto refused = http_get(server_->port(), "/work");
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.json()["error"]["code"], "server_busy");
  EXPECT_EQ(refused.header("retry-after"), "1");
  EXPECT_EQ(http_get(server_->port(), "/health").status, 200);
  release_ = true;
  EXPECT_EQ(status_of(busy.read_all(1000)), 200);
  // The held request's slot is freed when its handler returns, which can be just after the client
  // has read the answer: work is accepted again within a moment (CI saw a 503 right after).
  int status = 0;
  for (int i = 0; i < 200 && status != 200; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    status = http_get(server_->port(), "/work").status;
  }
  EXPECT_EQ(status, 200);
}

// Issue #19 D9: the API key can come from a file (out of the process list).
TEST(HttpAuth, ApiKeyFromAFile) {
  const std::string path = temp_dir() + "/owl-api-key";
  { std::ofstream(path) << "  file-key \n"; }
  ServerProcess server(stories(), {"--api-key-file", path});
  EXPECT_EQ(http_get(server.port(), "/v1/models").status, 401);
  EXPECT_EQ(http_get(server.port(), "/v1/models", {"Authorization: Bearer file-key"}).status, 200);
  { std::ofstream(path) << "\n"; }
  auto empty = run_owl({"serve", stories(), "--port", "0", "--api-key-file", path});
  EXPECT_NE(empty.exit_code, 0);
  EXPECT_NE(empty.err.find("holds no key"), std::string::npos) << empty.err;
  auto missing = run_owl({"serve", stories(), "--port", "0", "--api-key-file", path + ".absent"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("cannot read --api-key-file"), std::string::npos) << missing.err;
}

// Bad limits are one usage error line each, before the model is loaded.
TEST(HttpOptions, BadLimitsAreUsageErrors) {
  for (const auto& [flag, value, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--header-timeout", "0",
            "--header-timeout and --body-timeout must be more than 0 and at most 3600 seconds"},
           {"--body-timeout", "-1", "--header-timeout and --body-timeout must be more than 0 and at most 3600 seconds"},
           {"--max-client-connections", "0", "--max-client-connections must be 1 or more"}}) {
    auto r = run_owl({"serve", stories(), "--port", "0", flag, value});
    EXPECT_EQ(r.exit_code, 2) << flag;
    EXPECT_EQ(r.err, "owl: usage error: " + message + "\n") << flag;
  }
}

}  // namespace
}  // namespace owl::test
