// Running the official npm clients (ollama, @anthropic-ai/sdk, playwright-core) from tests:
// each package is pinned and installed from the npm registry into the build folder's npm/
// on first use; a scenario is one run of a Node script whose last output line is a JSON
// object of what it observed, for the GoogleTest that started it to check.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace owl::test {

// build/npm, beside the owl binary.
std::string npm_prefix();

// Installs name@version there unless that version is present; parallel test processes are
// serialised by a lock. Throws with npm's log when the install fails.
void install_npm_package(const std::string& name, const std::string& version);

// Runs `node tests/server/SCRIPT NPM_PREFIX ARGS...`; its last line, parsed. Throws with the
// script's output when it fails.
nlohmann::json run_node_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace owl::test
