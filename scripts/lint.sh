#!/usr/bin/env bash
# Style and static checks, run by the test suite (ctest: lint.format, lint.tidy).
#   scripts/lint.sh format          fail when a file differs from .clang-format
#   scripts/lint.sh format --fix    rewrite the files in place
#   scripts/lint.sh tidy BUILD_DIR  clang-tidy (.clang-tidy's short list) over src/, using
#                                   BUILD_DIR/compile_commands.json
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null || { echo "lint: $1 is missing; run scripts/install-deps.sh" >&2; exit 1; }; }
files() { git ls-files -- "$@" 2>/dev/null || find "$@" -type f; }
case "${1:-}" in
  format)
    need clang-format
    mapfile -t srcs < <(files src tests bench fuzz | grep -E '\.(cpp|h)$')
    if [ "${2:-}" = "--fix" ]; then
      clang-format -i "${srcs[@]}"
    else
      clang-format --dry-run --Werror "${srcs[@]}"
      echo "lint: ${#srcs[@]} files formatted as .clang-format says"
    fi
    ;;
  tidy)
    need clang-tidy
    build="${2:?usage: scripts/lint.sh tidy BUILD_DIR}"
    [ -f "$build/compile_commands.json" ] || { echo "lint: $build/compile_commands.json is missing; configure with CMake first" >&2; exit 1; }
    mapfile -t srcs < <(files src | grep -E '\.cpp$')
    # GCC-only warning flags in the compile commands mean nothing to clang.
    printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -n 8 clang-tidy -p "$build" --quiet \
      --extra-arg=-Wno-unknown-warning-option --header-filter='src/.*' 2>/dev/null
    echo "lint: clang-tidy clean over ${#srcs[@]} files"
    ;;
  *)
    echo "usage: scripts/lint.sh format [--fix] | tidy BUILD_DIR" >&2
    exit 2
    ;;
esac
