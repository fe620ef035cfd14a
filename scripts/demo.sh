#!/usr/bin/env bash
# owl's main job on the data every checkout has beside it: describe and run a real model.
set -euo pipefail
owl=${1:-build/owl}
shared=${2:-../shared}
model="$shared/models/stories260K/stories260K-f32.gguf"
[ -f "$model" ] || { echo "demo: $model not found; ../shared must sit beside the repository" >&2; exit 1; }
if "$owl" --help 2>/dev/null | grep -qE '^\s+run\b'; then
  "$owl" run "$model" "Once upon a time" -n 64 --temp 0
else
  "$owl" gguf-dump "$model" --max-items 4
fi
