#!/usr/bin/env bash
# Fuzzes the parsers (GGUF, safetensors, tokenizer, Jinja templates) with libFuzzer + ASan + UBSan.
#   scripts/fuzz.sh            # each target for FUZZ_SECONDS (default 60) seconds
#   FUZZ_SECONDS=600 scripts/fuzz.sh
# Builds with clang in build-fuzz/ (every library instrumented for coverage),
# seeds each corpus from ../shared/golden, and exits non-zero on the first crash
# (the reproducer is left in build-fuzz/crashes/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${SHARED:-$ROOT/../shared}
BUILD=${BUILD:-$ROOT/build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${JOBS:-$(nproc)}

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 1; }
[ -d "$SHARED/golden" ] || { echo "fuzz: seed data missing: expected $SHARED/golden" >&2; exit 1; }

# fuzzer-no-link instruments the libraries (the parsers live there) for coverage;
# the fuzz targets themselves get -fsanitize=fuzzer from CMakeLists.txt.
# OWL_WERROR=OFF: the warning flags are GCC's (-Wshadow=local) and clang rejects some.
if [ ! -f "$BUILD/build.ninja" ]; then
  CXX=clang++ CC=clang cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOWL_FUZZ=ON \
    -DOWL_WERROR=OFF -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" >/dev/null
fi
# The parsers need only the base, tensor and formats layers. CMakeLists.txt's fuzz targets link
# owl_runtime (every layer), so one layer that clang cannot compile would block fuzzing the
# parsers; build just these libraries through CMake and link the targets here.
cmake --build "$BUILD" -j "$JOBS" --target owl_formats owl_text owl_chat
libs=("$BUILD/libowl_formats.a" "$BUILD/libowl_tensor.a" "$BUILD/libowl_base.a")
for target in fuzz_gguf fuzz_safetensors fuzz_tokenizer fuzz_jinja; do
  extra=()
  case $target in
    fuzz_tokenizer) extra=("$BUILD/libowl_text.a") ;;
    fuzz_jinja) extra=("$BUILD/libowl_chat.a" "$BUILD/libowl_text.a") ;;
  esac
  clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -Isrc \
    -DOWL_SOURCE_DIR="\"$ROOT\"" "fuzz/$target.cpp" "${extra[@]}" "${libs[@]}" -lpcre2-8 -lutf8proc -lpthread \
    -o "$BUILD/$target"
done

seed() {  # seed corpus: golden files of that format (the large ones cut to a header-sized prefix)
  local dir=$1 pattern=$2
  mkdir -p "$dir"
  find "$SHARED/golden" -name "$pattern" | while read -r f; do
    local name; name=$(echo "${f#"$SHARED"/golden/}" | tr '/' '_')
    local keep=65536
    if [ "$pattern" = '*.safetensors' ]; then  # the JSON header and the first tensor bytes
      keep=$(( $(od -An -t u8 -N 8 "$f" | tr -d ' ') + 8 + 256 ))
    fi
    head -c "$keep" "$f" > "$dir/$name.head"
  done
  # a few whole small files, so valid inputs reach the data checks and the writer
  find "$SHARED/golden" -name "$pattern" -size -1200k | head -n 3 | while read -r f; do
    cp "$f" "$dir/$(echo "${f#"$SHARED"/golden/}" | tr '/' '_')"
  done
}

mkdir -p "$BUILD/crashes"
status=0
for target in fuzz_gguf fuzz_safetensors fuzz_tokenizer fuzz_jinja; do
  corpus="$BUILD/corpus/$target"
  case $target in
    fuzz_gguf) seed "$corpus" '*.gguf' ;;
    fuzz_safetensors) seed "$corpus" '*.safetensors' ;;
    fuzz_tokenizer) mkdir -p "$corpus"; head -c 4096 "$SHARED/tokenizers/corpus.jsonl" > "$corpus/corpus-head" ;;
    fuzz_jinja) mkdir -p "$corpus"; for f in "$SHARED"/chat-templates/*/chat_template.jinja; do
                  cp "$f" "$corpus/$(basename "$(dirname "$f")").jinja"; done ;;
  esac
  echo "== $target: $SECONDS_EACH s"
  max_len=1300000  # the small whole GGUF seeds
  [ $target = fuzz_safetensors ] && max_len=65536
  [ $target = fuzz_tokenizer ] || [ $target = fuzz_jinja ] && max_len=16384
  if ! "$BUILD/$target" "$corpus" -max_total_time="$SECONDS_EACH" -max_len=$max_len -rss_limit_mb=4096 \
      -artifact_prefix="$BUILD/crashes/$target-" -print_final_stats=1 2>"$BUILD/$target.log"; then
    echo "fuzz: $target found a crash; see $BUILD/$target.log and $BUILD/crashes/" >&2
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs" "$BUILD/$target.log" || true
done
exit $status
