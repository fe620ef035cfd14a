#include "server/npm_client.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <sys/wait.h>

#include "test_util.h"

namespace owl::test {

std::string npm_prefix() { return (std::filesystem::path(OWL_BINARY).parent_path() / "npm").string(); }

void install_npm_package(const std::string& name, const std::string& version) {
  const std::string p = shell_quote(npm_prefix());
  const std::string manifest = shell_quote(npm_prefix() + "/node_modules/" + name + "/package.json");
  const std::string log = npm_prefix() + "/install-" + std::filesystem::path(name).filename().string() + ".log";
  const std::string inner = "grep -qs '\"version\": \"" + version + "\"' " + manifest +
                            " || npm install --no-audit --no-fund --loglevel=error --prefix " + p + " " + name + "@" +
                            version;
  const std::string cmd =
      "mkdir -p " + p + " && flock " + p + "/.lock sh -c " + shell_quote(inner) + " > " + shell_quote(log) + " 2>&1";
  if (std::system(cmd.c_str()) != 0)
    throw std::runtime_error("cannot install " + name + "@" + version + " with npm: " + read_file(log));
}

nlohmann::json run_node_script(const std::string& script, const std::vector<std::string>& args) {
  std::string cmd =
      "node " + shell_quote(std::string(OWL_SOURCE_DIR) + "/tests/server/" + script) + " " + shell_quote(npm_prefix());
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("cannot run node");
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  const int status = ::pclose(f);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(script + " " + (args.empty() ? "" : args.back()) + " failed:\n" + out);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const size_t nl = out.rfind('\n');
  return nlohmann::json::parse(nl == std::string::npos ? out : out.substr(nl + 1));
}

}  // namespace owl::test
