#include "hub/api.h"

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "hub/cache.h"

namespace owl::hub {
namespace {

// Percent-encodes a path or query value; '/' is kept when `keep_slash`.
std::string url_escape(const std::string& s, bool keep_slash) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string trim_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::string short_body(const std::string& body) {
  // The hubs answer errors with {"error": "..."} (HF) or {"Message": "..."} (ModelScope).
  try {
    auto j = nlohmann::json::parse(body);
    if (j.is_object()) {
      if (j.contains("error") && j["error"].is_string()) return j["error"];
      if (j.contains("Message") && j["Message"].is_string()) return j["Message"];
    }
  } catch (const std::exception&) {
  }
  std::string s = body.substr(0, 200);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

RepoListing parse_hf(const HubSpec& spec, const std::string& body) {
  RepoListing out;
  try {
    auto j = nlohmann::json::parse(body);
    out.commit = j.at("sha").get<std::string>();
    for (const auto& s : j.at("siblings")) {
      RepoFile f;
      f.path = s.at("rfilename").get<std::string>();
      f.size = s.value("size", uint64_t{0});
      f.git_oid = s.value("blobId", std::string());
      if (s.contains("lfs") && s["lfs"].is_object()) {
        f.sha256 = s["lfs"].value("sha256", std::string());
        f.size = s["lfs"].value("size", f.size);
      }
      out.files.push_back(std::move(f));
    }
  } catch (const std::exception& e) {
    throw Error("unexpected answer from " + endpoint(spec.source) + " listing " + spec.repo + ": " + e.what());
  }
  return out;
}

RepoListing parse_modelscope(const HubSpec& spec, const std::string& body) {
  RepoListing out;
  try {
    auto j = nlohmann::json::parse(body);
    if (j.value("Code", 200) != 200)
      throw Error("ModelScope refused to list " + spec.repo + ": " + j.value("Message", std::string("no message")));
    for (const auto& s : j.at("Data").at("Files")) {
      if (s.value("Type", std::string("blob")) != "blob") continue;  // folders
      RepoFile f;
      f.path = s.at("Path").get<std::string>();
      f.size = s.value("Size", uint64_t{0});
      f.sha256 = s.value("Sha256", std::string());
      out.files.push_back(std::move(f));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("unexpected answer from " + endpoint(spec.source) + " listing " + spec.repo + ": " + e.what());
  }
  return out;
}

}  // namespace

std::string endpoint(Source source) {
  if (source == Source::ModelScope) {
    std::string e = env("MODELSCOPE_ENDPOINT");
    return trim_slash(e.empty() ? "https://www.modelscope.cn" : e);
  }
  std::string e = env("HF_ENDPOINT");
  return trim_slash(e.empty() ? "https://huggingface.co" : e);
}

// The token `huggingface-cli login` saved: $HF_TOKEN_PATH, $HF_HOME/token or
// ~/.cache/huggingface/token.
std::string saved_hf_token() {
  std::string path = env("HF_TOKEN_PATH");
  if (path.empty() && !env("HF_HOME").empty()) path = env("HF_HOME") + "/token";
  if (path.empty() && !env("XDG_CACHE_HOME").empty()) path = env("XDG_CACHE_HOME") + "/huggingface/token";
  if (path.empty() && !env("HOME").empty()) path = env("HOME") + "/.cache/huggingface/token";
  std::ifstream f(path);
  std::string token;
  if (!f || !std::getline(f, token)) return "";
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return token;
}

std::vector<std::string> auth_headers(Source source) {
  std::string token = source == Source::ModelScope ? env("MODELSCOPE_API_TOKEN") : env("HF_TOKEN");
  if (token.empty() && source == Source::HuggingFace) token = env("HUGGING_FACE_HUB_TOKEN");
  if (token.empty() && source == Source::HuggingFace) token = saved_hf_token();
  if (token.empty()) return {};
  return {"Authorization: Bearer " + token};
}

std::string default_revision(Source source) { return source == Source::ModelScope ? "master" : "main"; }

std::string http_error_message(const HubSpec& spec, const std::string& what, long status, const std::string& error_code,
                               const std::string& body) {
  std::string where = " on " + endpoint(spec.source);
  bool has_token = !auth_headers(spec.source).empty();
  const char* token_var = spec.source == Source::ModelScope ? "MODELSCOPE_API_TOKEN" : "HF_TOKEN";
  if (status == 0)
    return "cannot reach " + endpoint(spec.source) + " for " + what + ": " + body +
           " (no network? give owl a local file instead: owl run /path/to/model.gguf, or a Hugging Face "
           "folder; models already pulled run offline with HF_HUB_OFFLINE=1)";
  if (error_code == "RepositoryNotFound" || (status == 404 && error_code != "EntryNotFound" &&
                                             error_code != "RevisionNotFound" && what.rfind("repository", 0) == 0))
    return "repository " + spec.repo + " not found" + where + "; check the name" +
           (has_token ? "" : std::string(" (for a private repository set ") + token_var + ")");
  if (error_code == "RevisionNotFound") return "revision not found for " + what + where;
  if (status == 404) return what + " not found" + where;
  if (status == 401 || status == 403 || error_code == "GatedRepo") {
    std::string page = endpoint(spec.source) + "/" + spec.repo;
    if (!has_token)
      return spec.repo + " is gated or private (HTTP " + std::to_string(status) + "): accept its license at " + page +
             " and set " + token_var + " to an access token";
    return spec.repo + " refused the token in " + token_var + " (HTTP " + std::to_string(status) +
           "): accept the license at " + page + " with that account, or use a token with read access";
  }
  if (status == 429)
    return "rate limited by " + endpoint(spec.source) + " for " + what + " (HTTP 429); try again later";
  return what + where + " failed: HTTP " + std::to_string(status) + " " + short_body(body);
}

RepoListing fetch_listing(const HubSpec& spec, const std::string& revision, const RetryPolicy& retry) {
  std::string url;
  if (spec.source == Source::ModelScope)
    url = endpoint(spec.source) + "/api/v1/models/" + url_escape(spec.repo, true) +
          "/repo/files?Revision=" + url_escape(revision, false) + "&Recursive=true";
  else
    url = endpoint(spec.source) + "/api/models/" + url_escape(spec.repo, true) + "/revision/" +
          url_escape(revision, false) + "?blobs=true";
  HttpResponse r = http_get(url, auth_headers(spec.source), retry);
  std::string what = "repository " + spec.repo;
  if (r.status != 200)
    throw Error(
        http_error_message(spec, what, r.status, r.header("x-error-code"), r.status == 0 ? r.network_error : r.body));
  RepoListing listing = spec.source == Source::ModelScope ? parse_modelscope(spec, r.body) : parse_hf(spec, r.body);
  // ModelScope's per-file "Revision" is the commit that last changed that file,
  // not the repository's head, so its snapshots are named after the revision asked for.
  if (listing.commit.empty()) listing.commit = revision;
  return listing;
}

std::string file_url(const HubSpec& spec, const std::string& commit, const std::string& path) {
  if (spec.source == Source::ModelScope)
    return endpoint(spec.source) + "/api/v1/models/" + url_escape(spec.repo, true) +
           "/repo?Revision=" + url_escape(commit, false) + "&FilePath=" + url_escape(path, false);
  return endpoint(spec.source) + "/" + url_escape(spec.repo, true) + "/resolve/" + url_escape(commit, false) + "/" +
         url_escape(path, true);
}

void describe_from_head(const HubSpec& spec, const std::string& commit, RepoFile& f, const RetryPolicy& retry) {
  const std::string what = "file " + f.path + " of " + spec.repo_display();
  HttpResponse r = http_head(file_url(spec, commit, f.path), auth_headers(spec.source), retry);
  if (r.status == 0) throw Error("cannot reach " + endpoint(spec.source) + " for " + what + ": " + r.network_error);
  if (r.status != 200) throw Error(http_error_message(spec, what, r.status, r.header("x-error-code"), r.body));

  std::string size = r.header("x-linked-size");
  if (size.empty()) size = r.header("content-length");
  if (size.empty() || size.find_first_not_of("0123456789") != std::string::npos || size.size() > 19)
    throw Error("the hub lists " + what + " without a size, and its HEAD gives none (" +
                (size.empty() ? std::string("no Content-Length") : "Content-Length '" + size + "'") +
                "); the download could not be checked, so it is not made");
  f.size = std::stoull(size);

  // An ETag is "<hash>" or W/"<hash>": a 64-hex one is the LFS sha256, a 40-hex one the git blob id.
  std::string etag = r.header("x-linked-etag");
  if (etag.empty()) etag = r.header("etag");
  if (etag.starts_with("W/")) etag.erase(0, 2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  const bool hex = !etag.empty() && etag.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hex && etag.size() == 64) f.sha256 = etag;
  if (hex && etag.size() == 40) f.git_oid = etag;
}

}  // namespace owl::hub
