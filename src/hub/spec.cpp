#include "hub/spec.h"

#include <cctype>

#include "base/error.h"

namespace owl::hub {
namespace {

// Hub user, organisation and repository names: letters, digits, '-', '_', '.'.
bool valid_name_part(const std::string& s) {
  if (s.empty() || s.size() > 96 || s == "." || s == "..") return false;
  if (!std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

}  // namespace

const char* source_name(Source s) { return s == Source::ModelScope ? "ModelScope" : "Hugging Face"; }

std::string HubSpec::repo_display() const { return (source == Source::ModelScope ? "modelscope:" : "") + repo; }

std::string HubSpec::display() const { return repo_display() + (variant.empty() ? "" : ":" + variant); }

std::optional<HubSpec> parse_hub_spec(const std::string& s) {
  HubSpec spec;
  std::string rest = s;
  auto first_colon = rest.find(':');
  auto slash = rest.find('/');
  if (first_colon != std::string::npos && (slash == std::string::npos || first_colon < slash)) {
    std::string prefix = rest.substr(0, first_colon);
    if (prefix == "hf" || prefix == "huggingface") {
      spec.source = Source::HuggingFace;
    } else if (prefix == "modelscope" || prefix == "ms") {
      spec.source = Source::ModelScope;
    } else {
      throw UsageError("unknown model source '" + prefix + ":' in " + s + "; use hf:ORG/NAME or modelscope:ORG/NAME");
    }
    rest = rest.substr(first_colon + 1);
  }
  auto colon = rest.find(':');
  std::string repo = rest.substr(0, colon);
  if (colon != std::string::npos) {
    spec.variant = rest.substr(colon + 1);
    if (spec.variant.empty()) return std::nullopt;
    spec.variant_is_file = spec.variant.find('.') != std::string::npos;
  }
  slash = repo.find('/');
  if (slash == std::string::npos) return std::nullopt;
  if (!valid_name_part(repo.substr(0, slash)) || !valid_name_part(repo.substr(slash + 1))) return std::nullopt;
  spec.repo = repo;
  return spec;
}

HubSpec parse_hub_spec_or_throw(const std::string& s) {
  auto spec = parse_hub_spec(s);
  if (!spec)
    throw UsageError("'" + s +
                     "' is not a hub id; expected ORG/NAME[:QUANT|:FILE] or modelscope:ORG/NAME[:QUANT|:FILE]");
  return *spec;
}

}  // namespace owl::hub
