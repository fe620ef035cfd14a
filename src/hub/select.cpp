#include "hub/select.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>
#include <set>

#include "base/error.h"

namespace owl::hub {
namespace {

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && upper(s.substr(s.size() - suffix.size())) == upper(suffix);
}

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "name-00001-of-00003.gguf" -> ("name.gguf", 1, 3); other names are one-part groups.
struct SplitName {
  std::string group;
  int part = 1, parts = 1;
};
SplitName split_name(const std::string& path) {
  static const std::regex re(R"(^(.*)-(\d{5})-of-(\d{5})\.gguf$)", std::regex::icase);
  std::smatch m;
  if (std::regex_match(path, m, re)) return {m[1].str() + ".gguf", std::stoi(m[2].str()), std::stoi(m[3].str())};
  return {path, 1, 1};
}

// A word boundary for quantisation tags: the tag is not glued to letters or
// digits before it, nor to letters, digits or '_' after it.
bool contains_tag(const std::string& name, const std::string& tag) {
  std::string n = upper(name), t = upper(tag);
  for (size_t pos = n.find(t); pos != std::string::npos; pos = n.find(t, pos + 1)) {
    bool left_ok = pos == 0 || !std::isalnum(static_cast<unsigned char>(n[pos - 1]));
    size_t after = pos + t.size();
    bool right_ok = after == n.size() || (!std::isalnum(static_cast<unsigned char>(n[after])) && n[after] != '_');
    if (left_ok && right_ok) return true;
  }
  return false;
}

struct Variant {
  std::string group;  // the file path, or the split group's name
  std::vector<RepoFile> parts;
  uint64_t size = 0;
  bool projector = false;  // a vision projector (mmproj), never a default choice
};

// Files that come with safetensors weights and that the engine reads.
bool is_safetensors_companion(const std::string& path) {
  static const std::set<std::string> names = {
      "config.json",       "generation_config.json",  "tokenizer.json",     "tokenizer_config.json",
      "tokenizer.model",   "special_tokens_map.json", "vocab.json",         "merges.txt",
      "added_tokens.json", "chat_template.jinja",     "chat_template.json", "preprocessor_config.json"};
  return names.count(path) > 0;
}

Selection pick_safetensors(const std::vector<RepoFile>& files, const std::string& repo_display) {
  Selection sel;
  bool any_weights = false;
  for (const auto& f : files) {
    if (f.path.find('/') != std::string::npos) continue;  // only the top folder holds the HF model
    bool weights = ends_with_ci(f.path, ".safetensors");
    if (weights || ends_with_ci(f.path, ".safetensors.index.json") || is_safetensors_companion(f.path)) {
      sel.files.push_back(f);
      any_weights |= weights;
    }
  }
  if (!any_weights) throw Error(repo_display + " has neither GGUF nor safetensors weights; owl cannot run it");
  return sel;
}

}  // namespace

std::string quant_tag(const std::string& file_name) {
  static const std::regex re(
      R"((?:^|[^A-Za-z0-9])((?:UD-)?(?:I?Q[1-8](?:_[0-9A-Z]+)*|F16|BF16|F32|FP16|MXFP4(?:_MOE)?|TQ[12]_0))(?:[^A-Za-z0-9_]|$))",
      std::regex::icase);
  std::smatch m;
  std::string name = base_name(split_name(file_name).group);
  std::string last;
  for (auto it = std::sregex_iterator(name.begin(), name.end(), re); it != std::sregex_iterator(); ++it)
    last = (*it)[1].str();
  return upper(last);
}

Selection select_files(const std::vector<RepoFile>& files, const std::string& variant, bool variant_is_file,
                       const std::string& repo_display) {
  // A named file that is not a GGUF is fetched alone (config.json, say).
  if (variant_is_file && !ends_with_ci(variant, ".gguf")) {
    for (const auto& f : files)
      if (f.path == variant || base_name(f.path) == variant) return Selection{{f}, false, f.path};
    throw Error("file " + variant + " not found in " + repo_display);
  }

  std::map<std::string, Variant> groups;
  for (const auto& f : files) {
    if (!ends_with_ci(f.path, ".gguf")) continue;
    SplitName s = split_name(f.path);
    auto& v = groups[s.group];
    v.group = s.group;
    v.parts.push_back(f);
    v.size += f.size;
  }
  std::vector<Variant> variants;
  for (auto& [name, v] : groups) {
    std::sort(v.parts.begin(), v.parts.end(), [](const RepoFile& a, const RepoFile& b) { return a.path < b.path; });
    // Vision projectors (mmproj) ride along with multimodal GGUFs but are not a model.
    v.projector = upper(base_name(name)).rfind("MMPROJ", 0) == 0;
    if (!v.projector || variant_is_file) variants.push_back(v);
  }
  if (variants.empty()) {
    if (!variant.empty() && !variant_is_file)
      throw Error(repo_display + " has no GGUF files, so there is no quantisation " + variant + " to choose; pull " +
                  repo_display + " without ':" + variant + "' for its safetensors");
    if (variant_is_file) throw Error("file " + variant + " not found in " + repo_display);
    return pick_safetensors(files, repo_display);
  }

  auto available = [&] {
    std::string s;
    for (const auto& v : variants) {
      if (v.projector) continue;
      std::string tag = quant_tag(v.group);
      s += (s.empty() ? "" : ", ") + (tag.empty() ? base_name(v.group) : tag);
    }
    return s;
  };
  auto finish = [&](const Variant& v) {
    int expected = split_name(v.parts.front().path).parts;
    if (static_cast<int>(v.parts.size()) != expected)
      throw Error(repo_display + ": split GGUF " + base_name(v.group) + " lists " + std::to_string(v.parts.size()) +
                  " of its " + std::to_string(expected) + " parts; the repository is incomplete");
    return Selection{v.parts, true, v.parts.front().path};
  };
  // Shorter names first: "model-Q4_K_M.gguf" before "model-Q4_K_M-imatrix-test.gguf".
  auto best_of = [](std::vector<const Variant*> c) -> const Variant* {
    if (c.empty()) return nullptr;
    std::sort(c.begin(), c.end(), [](const Variant* a, const Variant* b) {
      return a->group.size() != b->group.size() ? a->group.size() < b->group.size() : a->group < b->group;
    });
    return c.front();
  };

  if (variant_is_file) {
    for (const auto& v : variants) {
      if (v.group == variant || base_name(v.group) == variant) return finish(v);
      for (const auto& p : v.parts)
        if (p.path == variant || base_name(p.path) == variant) return finish(v);
    }
    throw Error("file " + variant + " not found in " + repo_display + "; its GGUF files: " + available());
  }
  auto matching = [&](const std::string& tag) {
    std::vector<const Variant*> c;
    for (const auto& v : variants)
      if (!v.projector && contains_tag(v.group, tag)) c.push_back(&v);
    return best_of(c);
  };
  if (!variant.empty()) {
    if (const Variant* v = matching(variant)) return finish(*v);
    throw Error("no GGUF for " + variant + " in " + repo_display + "; available: " + available());
  }
  for (const char* tag : {"Q4_K_M", "Q4_0", "Q8_0"})
    if (const Variant* v = matching(tag)) return finish(*v);
  const Variant* smallest = nullptr;
  for (const auto& v : variants)
    if (!v.projector && (!smallest || v.size < smallest->size)) smallest = &v;
  if (!smallest) throw Error(repo_display + " holds only vision projector GGUFs (mmproj), no model");
  return finish(*smallest);
}

}  // namespace owl::hub
