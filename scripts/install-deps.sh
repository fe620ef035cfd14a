#!/usr/bin/env bash
# Installs the Debian packages owl needs to build and test, only those missing.
# Idempotent and quick when everything is present (one dpkg query, no apt run).
set -euo pipefail
packages=(
  g++ cmake ninja-build make pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libboost-dev libpcre2-dev libutf8proc-dev libcli11-dev
  libssl-dev libcurl4-openssl-dev zlib1g-dev
  clang libclang-rt-14-dev clang-format clang-tidy curl python3
  openmpi-bin libopenmpi-dev iproute2
  chromium  # the chat page's browser test (tests/server/web_page_test.cpp, driven by playwright-core)
)
# Node.js and npm run the tests with the official `openai` client (tests/server); a Node from
# elsewhere (NodeSource bundles npm) is kept, Debian's is installed only when there is none.
if ! command -v node >/dev/null 2>&1; then packages+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then packages+=(npm); fi
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -q
$sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
