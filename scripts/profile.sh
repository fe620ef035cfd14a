#!/usr/bin/env bash
# Regenerates docs/profiles/*.txt: perf profiles of owl bench (decode and prefill) on the speed
# issue's files, with the owl bench summary and the commit in the header.
#   scripts/profile.sh [OWL=build/owl] [DIR=/tmp/m]
# Needs perf (linux-perf) and the files scripts/bench.py makes. Run on an idle machine.
set -eu  # (no pipefail: head closes perf report's pipe early)
owl=${1:-build/owl}
dir=${2:-/tmp/m}
out=docs/profiles
mkdir -p "$out"
data=$(mktemp)
trap 'rm -f "$data"' EXIT
commit=$(git rev-parse --short HEAD)

profile() {  # name file bench-args...
  local name=$1 file=$2
  shift 2
  local summary
  summary=$(perf record -q -o "$data" -F 2000 "$owl" bench "$file" "$@" -t 2 2>/dev/null)
  {
    echo "# perf record -F 2000 $owl bench $file $* -t 2   ($(date -u +%F), commit $commit)"
    echo "# owl bench said:"
    sed 's/^/#   /' <<<"$summary"
    echo "# perf report --no-children --sort symbol (top 25; load-time work: clear_page_erms, pack_group;"
    echo "# the bandwidth probe sum_words_avx2 is owl bench's own)"
    perf report -i "$data" --no-children --sort symbol 2>/dev/null | grep -v '^#' | grep '%' | grep -v '^ *|' | head -25 |
      cut -c1-150
  } >"$out/$name.txt"
  echo "profile: $out/$name.txt"
}

profile qwen3-0.6b-q4_k_m-decode "$dir/qwen3-0.6b-q4_k_m.gguf" -p 1 -n 128 -r 2
profile qwen3-0.6b-q4_k_m-prefill512 "$dir/qwen3-0.6b-q4_k_m.gguf" -p 512 -n 1 -r 3
profile deepseek-v2-lite-8l-q4_k_m-decode "$dir/deepseek-v2-lite-8l-q4_k_m.gguf" -p 1 -n 64 -r 2
profile qwen3-30b-a3b-8l-q4_k_m-prefill512 "$dir/qwen3-30b-a3b-8l-q4_k_m.gguf" -p 512 -n 1 -r 2
