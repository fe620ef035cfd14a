#include "hub/resolve.h"

#include <filesystem>

#include "base/error.h"
#include "hub/cache.h"
#include "hub/pull.h"

namespace owl::hub {

std::string resolve_model(const std::string& spec, bool pull_if_missing) {
  std::error_code ec;
  if (std::filesystem::exists(spec, ec)) return spec;
  auto hub = parse_hub_spec(spec);
  // "dir/model.gguf" has the shape of a hub id too, but is a mistyped path.
  auto ends_with = [&](const char* ext) {
    std::string e(ext);
    return spec.size() >= e.size() && spec.compare(spec.size() - e.size(), e.size(), e) == 0;
  };
  bool file_like = ends_with(".gguf") || ends_with(".safetensors") || ends_with(".json") || ends_with(".jinja");
  if (!hub || (hub->variant.empty() && file_like))
    throw Error("model '" + spec + "' does not exist (no such file or folder, and not a hub id ORG/NAME[:QUANT])");
  if (auto cached = find_cached(*hub)) return cached->path;
  if (hub_offline())
    throw Error(hub->display() + " is not in the cache (" + cache_root(hub->source) +
                ") and HF_HUB_OFFLINE is set; unset it and run 'owl pull " + hub->display() + "'");
  if (!pull_if_missing) throw Error(hub->display() + " is not downloaded; run 'owl pull " + hub->display() + "' first");
  return pull(*hub, PullOptions{}).path;
}

}  // namespace owl::hub
