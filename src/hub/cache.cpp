#include "hub/cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "base/error.h"

namespace fs = std::filesystem;

namespace owl::hub {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : "";
}

namespace {

std::string user_cache_dir() {
  std::string xdg = env("XDG_CACHE_HOME");
  if (!xdg.empty()) return xdg;
  std::string home = env("HOME");
  if (home.empty()) throw Error("cannot find the cache folder: HOME is not set; set HF_HUB_CACHE to a folder");
  return home + "/.cache";
}

std::string folder_name(const std::string& repo) {
  std::string s = "models--";
  for (char c : repo) s += (c == '/') ? std::string("--") : std::string(1, c);
  return s;
}

std::string unique_temp_name(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

}  // namespace

std::string cache_root(Source source) {
  if (source == Source::ModelScope) {
    std::string ms = env("OWL_MODELSCOPE_CACHE");
    return ms.empty() ? user_cache_dir() + "/owl/modelscope" : ms;
  }
  std::string hub = env("HF_HUB_CACHE");
  if (!hub.empty()) return hub;
  std::string home = env("HF_HOME");
  if (!home.empty()) return home + "/hub";
  return user_cache_dir() + "/huggingface/hub";
}

RepoPaths repo_paths(Source source, const std::string& repo) {
  std::string root = cache_root(source);
  return RepoPaths{root + "/" + folder_name(repo), root + "/.locks/" + folder_name(repo)};
}

std::optional<std::string> read_ref(const RepoPaths& p, const std::string& revision) {
  std::ifstream f(p.ref(revision));
  std::string commit;
  if (!f || !std::getline(f, commit)) return std::nullopt;
  while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  if (commit.empty()) return std::nullopt;
  return commit;
}

void write_ref(const RepoPaths& p, const std::string& revision, const std::string& commit) {
  std::string path = p.ref(revision);
  fs::create_directories(fs::path(path).parent_path());
  std::string tmp = unique_temp_name(path);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << commit;
    if (!f) throw Error("cannot write " + tmp + " (disk full or read-only cache?)");
  }
  fs::rename(tmp, path);
}

void link_snapshot_file(const RepoPaths& p, const std::string& commit, const std::string& file,
                        const std::string& blob_id) {
  fs::path link = fs::path(p.snapshot(commit)) / file;
  fs::create_directories(link.parent_path());
  // snapshots/<commit>/a/b.gguf -> ../../../blobs/<id>: one ".." per folder level.
  fs::path target = fs::path("../..");
  const fs::path rel(file);
  for (auto it = rel.begin(); std::next(it) != rel.end(); ++it) target /= "..";
  target /= fs::path("blobs") / blob_id;
  std::error_code ec;
  if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec) == target) return;
  std::string tmp = unique_temp_name(link.string());
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp);
  fs::rename(tmp, link);
}

std::vector<CachedFile> snapshot_files(const std::string& snapshot_dir) {
  std::vector<CachedFile> out;
  std::error_code ec;
  if (!fs::is_directory(snapshot_dir, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(snapshot_dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory()) continue;
    std::error_code e2;
    if (!fs::is_regular_file(it->path(), e2)) continue;                              // dangling symlink or odd entry
    std::string rel = it->path().lexically_relative(snapshot_dir).generic_string();  // not through the link
    if (rel.find(".tmp.") != std::string::npos) continue;
    out.push_back({rel, static_cast<uint64_t>(fs::file_size(it->path(), e2))});
  }
  std::sort(out.begin(), out.end(), [](const CachedFile& a, const CachedFile& b) { return a.path < b.path; });
  return out;
}

std::vector<CachedRepo> list_cached(Source source) {
  std::vector<CachedRepo> out;
  std::string root = cache_root(source);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("models--", 0) != 0 || !entry.is_directory()) continue;
    CachedRepo r;
    r.source = source;
    r.dir = entry.path().string();
    std::string rest = name.substr(8);
    auto sep = rest.find("--");
    if (sep == std::string::npos) continue;
    r.repo = rest.substr(0, sep) + "/" + rest.substr(sep + 2);
    RepoPaths p{r.dir, ""};
    std::vector<std::string> commits;
    for (const auto& s : fs::directory_iterator(r.dir + "/snapshots", ec))
      commits.push_back(s.path().filename().string());
    ec.clear();
    r.commit = read_ref(p, "main").value_or(read_ref(p, "master").value_or(commits.size() == 1 ? commits[0] : ""));
    for (const auto& c : commits) {
      auto files = snapshot_files(p.snapshot(c));
      r.n_files += files.size();
      if (c == r.commit)
        for (const auto& f : files) r.files.push_back(f.path);
    }
    for (const auto& b : fs::directory_iterator(r.dir + "/blobs", ec))
      if (b.is_regular_file()) r.size_bytes += b.file_size();
    ec.clear();
    if (r.n_files == 0 && r.size_bytes == 0) continue;
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const CachedRepo& a, const CachedRepo& b) { return a.repo < b.repo; });
  return out;
}

uint64_t remove_cached(Source source, const std::string& repo, const std::vector<std::string>& files) {
  RepoPaths p = repo_paths(source, repo);
  std::error_code ec;
  if (!fs::is_directory(p.dir, ec))
    throw Error(std::string(source == Source::ModelScope ? "modelscope:" : "") + repo + " is not in the cache (" +
                cache_root(source) + "); 'owl list' shows what is");
  uint64_t before = 0;
  for (const auto& b : fs::recursive_directory_iterator(p.dir, ec))
    if (b.is_regular_file() && !b.is_symlink()) before += b.file_size();
  if (files.empty()) {
    fs::remove_all(p.dir);
    fs::remove_all(p.lock_dir, ec);
    return before;
  }
  // Remove the named snapshot entries, then every blob nothing links to.
  size_t removed = 0;
  for (const auto& s : fs::directory_iterator(p.dir + "/snapshots", ec)) {
    for (const auto& f : files) {
      fs::path target = s.path() / f;
      if (fs::exists(fs::symlink_status(target))) removed += fs::remove_all(target);
    }
  }
  if (removed == 0)
    throw Error("no file named " + files.front() + " in the cached " + repo + "; 'owl list' shows its files");
  std::set<std::string> referenced;
  for (const auto& s : fs::recursive_directory_iterator(p.dir + "/snapshots", ec)) {
    if (!s.is_symlink()) continue;
    referenced.insert(fs::read_symlink(s.path()).filename().string());
  }
  uint64_t freed = 0;
  for (const auto& b : fs::directory_iterator(p.dir + "/blobs", ec)) {
    std::string id = b.path().filename().string();
    // The ids of partial downloads are those of their blob.
    std::string base = id.substr(0, id.find('.'));
    if (referenced.count(base)) continue;
    freed += b.is_regular_file() ? b.file_size() : 0;
    fs::remove(b.path());
  }
  // A snapshot left without files goes too, and with it the whole repository
  // when no snapshot remains.
  bool any_left = false;
  for (const auto& s : fs::directory_iterator(p.dir + "/snapshots", ec)) {
    if (snapshot_files(s.path().string()).empty())
      fs::remove_all(s.path());
    else
      any_left = true;
  }
  if (!any_left) {
    fs::remove_all(p.dir);
    fs::remove_all(p.lock_dir, ec);
  }
  return freed;
}

std::string human_size(uint64_t bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace owl::hub
