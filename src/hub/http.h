// A thin layer over libcurl for the hub client: small GETs held in memory and
// streamed (ranged) downloads handed to a callback. Knows nothing about hubs.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace owl::hub {

// When to try again: 429 (honouring Retry-After), 5xx and dropped connections.
struct RetryPolicy {
  int max_retries = 5;          // extra attempts after the first
  double max_wait_s = 60;       // a longer Retry-After is capped to this
  double base_backoff_s = 0.5;  // doubled per attempt when the server gives no delay
};

struct HttpResponse {
  long status = 0;                             // 0: no HTTP response (network error)
  std::map<std::string, std::string> headers;  // lower-case names, of the final response
  std::string body;
  std::string network_error;     // curl's message when status == 0
  bool host_unresolved = false;  // DNS found no such host (offline, or a wrong endpoint)
  int attempts = 0;              // requests made, retries included
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// GET with the body in memory, retried per `retry`; returns the last response
// (the caller turns 4xx/5xx into messages). Redirects are followed. A host that
// does not resolve is not retried: offline, that answer will not change within
// the backoff, and the user should hear it at once.
HttpResponse http_get(const std::string& url, const std::vector<std::string>& headers, const RetryPolicy& retry);

// HEAD, retried and redirected as http_get. The headers are the final response's, plus the
// X-Linked-Size / X-Linked-Etag a redirect carried (the hub describes LFS files there).
HttpResponse http_head(const std::string& url, const std::vector<std::string>& headers, const RetryPolicy& retry);

// One streamed GET of bytes [offset, end) (end == 0: to the end of the file).
struct StreamRequest {
  std::string url;
  std::vector<std::string> headers;
  uint64_t offset = 0;
  uint64_t end = 0;
  // Receives body bytes in order, starting at `offset`; returns false to abort
  // (a failed write, say).
  std::function<bool(const char* data, size_t n)> on_data;
};

struct StreamResult {
  long status = 0;        // HTTP status of the final response (0: none)
  bool complete = false;  // the whole requested range arrived
  bool aborted_by_callback = false;
  bool range_ignored = false;  // asked for offset > 0 and got a 200 with the whole file
  std::string network_error;   // curl's message for a transport failure
  std::string error_body;      // body of a non-2xx response (truncated)
  std::map<std::string, std::string> headers;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

StreamResult http_stream(const StreamRequest& req);

// Seconds to wait before retry number `attempt` (0-based) after `status`,
// from Retry-After when the server sent one, else exponential backoff.
double retry_delay_s(const std::map<std::string, std::string>& headers, int attempt, const RetryPolicy& retry);
// True for the statuses and failures worth another attempt.
bool is_transient(long status);

void sleep_s(double seconds);

}  // namespace owl::hub
