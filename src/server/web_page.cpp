#include "server/web_assets.h"

#include <string>

namespace owl::server {

namespace {

std::string_view content_type(std::string_view path) {
  if (path.ends_with(".html")) return "text/html; charset=utf-8";
  if (path.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (path.ends_with(".css")) return "text/css; charset=utf-8";
  if (path.ends_with(".svg")) return "image/svg+xml";
  if (path.ends_with(".woff2")) return "font/woff2";
  return "text/plain; charset=utf-8";
}

}  // namespace

bool serve_web_page(const http::Request& req, http::Response& res) {
  if (req.method != "GET" && req.method != "HEAD") return false;
  std::string_view path;
  if (req.path == "/")
    path = "index.html";
  else if (req.path.starts_with("/web/"))
    path = std::string_view(req.path).substr(5);
  else
    return false;
  for (const auto& a : web_asset_table()) {
    if (a.path != path) continue;
    // The page loads no script but its own: a sanitiser slip in rendering model output still
    // cannot load or inline code (CSP), and nothing may frame it.
    res.send(200, content_type(path), a.body,
             {"Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; frame-ancestors 'none'",
              "X-Content-Type-Options: nosniff", "Cache-Control: no-cache"});
    return true;
  }
  return false;
}

}  // namespace owl::server
