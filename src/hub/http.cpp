#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "base/error.h"

namespace owl::hub {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw Error("cannot initialise libcurl");
  });
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Collects the headers of the last response only: a redirect's headers are
// dropped when the next status line arrives, except the hub's X-Linked-* ones
// (on its redirect to the storage) that describe the file itself.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* h = static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    std::erase_if(*h, [](const auto& kv) { return !kv.first.starts_with("x-linked-"); });
  } else if (auto colon = line.find(':'); colon != std::string::npos) {
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    (*h)[lower(line.substr(0, colon))] = value;
  }
  return size * n;
}

struct CurlHandle {
  CURL* h;
  curl_slist* list = nullptr;
  CurlHandle() : h(curl_easy_init()) {
    if (!h) throw Error("cannot create a libcurl handle");
  }
  ~CurlHandle() {
    curl_slist_free_all(list);
    curl_easy_cleanup(h);
  }
  CurlHandle(const CurlHandle&) = delete;
  CurlHandle& operator=(const CurlHandle&) = delete;

  void common(const std::string& url, const std::vector<std::string>& headers,
              std::map<std::string, std::string>* out) {
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    // A stalled transfer (under 1 byte/s for 60 s) is a failure to retry, not a hang.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "owl/0.1");
    for (const auto& s : headers) list = curl_slist_append(list, s.c_str());
    if (list) curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
  }
};

size_t append_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

struct StreamState {
  const StreamRequest* req;
  CURL* h;
  StreamResult* res;
  bool decided = false;  // whether the first body byte settled what the body is
  bool deliver = false;  // body bytes go to on_data (else: error body)
  uint64_t received = 0;
};

size_t stream_body(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<StreamState*>(user);
  size_t bytes = size * n;
  if (!st->decided) {
    st->decided = true;
    long code = 0;
    curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 206 || (code == 200 && st->req->offset == 0)) {
      st->deliver = true;
    } else if (code == 200) {
      st->res->range_ignored = true;
      return 0;  // the caller restarts from zero
    }
  }
  if (!st->deliver) {
    if (st->res->error_body.size() < 65536) st->res->error_body.append(data, bytes);
    return bytes;
  }
  if (!st->req->on_data(data, bytes)) {
    st->res->aborted_by_callback = true;
    return 0;
  }
  st->received += bytes;
  return bytes;
}

}  // namespace

void sleep_s(double seconds) {
  if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

bool is_transient(long status) { return status == 0 || status == 408 || status == 429 || status >= 500; }

double retry_delay_s(const std::map<std::string, std::string>& headers, int attempt, const RetryPolicy& retry) {
  auto it = headers.find("retry-after");
  if (it != headers.end()) {
    // Retry-After is either delay-seconds or an HTTP date; a date (rare on the
    // hubs) falls back to backoff.
    char* end = nullptr;
    double s = std::strtod(it->second.c_str(), &end);
    if (end != it->second.c_str() && s >= 0) return std::min(s, retry.max_wait_s);
  }
  double s = retry.base_backoff_s * static_cast<double>(1 << std::min(attempt, 10));
  return std::min(s, retry.max_wait_s);
}

namespace {

HttpResponse request(const std::string& url, const std::vector<std::string>& headers, const RetryPolicy& retry,
                     bool head) {
  global_init();
  HttpResponse r;
  for (int attempt = 0;; ++attempt) {
    r = HttpResponse{};
    CurlHandle c;
    c.common(url, headers, &r.headers);
    if (head) curl_easy_setopt(c.h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &r.body);
    char err[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, err);
    CURLcode rc = curl_easy_perform(c.h);
    r.attempts = attempt + 1;
    if (rc != CURLE_OK) {
      r.status = 0;
      r.network_error = err[0] ? err : curl_easy_strerror(rc);
      r.host_unresolved = rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY;
    } else {
      curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &r.status);
    }
    if (r.host_unresolved || !is_transient(r.status) || attempt >= retry.max_retries) return r;
    sleep_s(retry_delay_s(r.headers, attempt, retry));
  }
}

}  // namespace

HttpResponse http_get(const std::string& url, const std::vector<std::string>& headers, const RetryPolicy& retry) {
  return request(url, headers, retry, /*head=*/false);
}

HttpResponse http_head(const std::string& url, const std::vector<std::string>& headers, const RetryPolicy& retry) {
  return request(url, headers, retry, /*head=*/true);
}

StreamResult http_stream(const StreamRequest& req) {
  global_init();
  StreamResult res;
  CurlHandle c;
  c.common(req.url, req.headers, &res.headers);
  std::string range;
  if (req.offset > 0 || req.end > 0) {
    range = std::to_string(req.offset) + "-" + (req.end > 0 ? std::to_string(req.end - 1) : std::string());
    curl_easy_setopt(c.h, CURLOPT_RANGE, range.c_str());
  }
  StreamState st{&req, c.h, &res};
  curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, stream_body);
  curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &st);
  char err[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, err);
  CURLcode rc = curl_easy_perform(c.h);
  curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &res.status);
  if (rc == CURLE_OK) {
    res.complete = st.deliver && (req.end == 0 || st.received == req.end - req.offset);
    if (st.deliver && !res.complete) res.network_error = "the server sent fewer bytes than asked for";
    if (!st.decided && (res.status == 200 || res.status == 206)) {
      res.complete = req.end == req.offset;  // an empty body is complete only when nothing was asked for
    }
  } else if (!res.aborted_by_callback && !res.range_ignored) {
    res.network_error = err[0] ? err : curl_easy_strerror(rc);
  }
  return res;
}

}  // namespace owl::hub
