// The chat page `owl serve` answers at "/" (web/ in the source tree: index.html, app.js,
// app.css, and the vendored Markdown parser, HTML sanitiser and KaTeX under vendor/), embedded in the
// binary at build time by cmake/embed_files.cmake so the page works offline, with no file
// beside the binary and no CDN.
//   GET /            index.html
//   GET /web/PATH    the file web/PATH
// These need no API key (the page asks for it, and sends it with its API calls).
#pragma once
#include <string_view>
#include <vector>

#include "server/http.h"

namespace owl::server {

struct WebAsset {
  std::string_view path;  // relative to web/, e.g. "vendor/purify.min.js"
  std::string_view body;
};

// Every embedded file (generated: build/web_assets.cpp).
const std::vector<WebAsset>& web_asset_table();

// Answers GET or HEAD of "/" and "/web/..." (true), else leaves the request alone (false).
bool serve_web_page(const http::Request& req, http::Response& res);

}  // namespace owl::server
